// Package ws serves the WebSocket half of the contract: the /ws upgrade, a reader
// goroutine per socket and a writer goroutine only while frames go out, and the Hub
// that indexes this host's sockets and writes to them in seq order with bounded queues.
package ws

import (
	"context"
	"hash/fnv"
	"iter"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-chat/switchboard/pkg/chat"
	"github.com/switchboard-chat/switchboard/pkg/metrics"
)

// Registry is the presence table as the hub needs it (pkg/cluster implements it).
type Registry interface {
	// Register writes the connection's presence entry and returns once it is written
	// (or failed): catch-up must not start before, or a concurrent send could miss
	// the socket.
	Register(ctx context.Context, c chat.Connection) error
	// Unregister removes the entry; it may be batched.
	Unregister(c chat.Connection)
	// ReserveSocket claims, cluster-wide and atomically with counting them, one of
	// the user's limit socket slots for the socket connID about to be upgraded: false
	// when the user's live sockets and claimed slots already reach limit. Register
	// of connID drops the claim; so does ReleaseSocket (the upgrade failed), and it
	// expires by itself. An error means nothing could be counted (Redis down).
	ReserveSocket(ctx context.Context, userID, connID string, limit int) (bool, error)
	// ReleaseSocket drops the claim of an upgrade that failed.
	ReleaseSocket(userID, connID string)
}

// HubConfig configures a Hub; zero values get the contract's defaults.
type HubConfig struct {
	HostID         string
	Instance       string
	FrameBytes     int
	SendQueue      int
	SocketsPerUser int
	TypingRate     float64
	PingInterval   time.Duration
	PongTimeout    time.Duration
	// CheckOrigin decides whether a browser's Origin may open a socket.
	CheckOrigin func(r *http.Request) bool
	// Authenticate returns the session of the request (cookie or Bearer).
	Authenticate func(r *http.Request) (chat.Session, error)
}

const shardCount = 64

type shard struct {
	mu    sync.RWMutex
	users map[string]map[string]*Conn
	// upgrading counts, per user, the upgrades admitted here whose socket is not in
	// users yet: with users, the host's own count of the user's sockets, which
	// decides alone (and atomically, under mu) while Redis cannot be asked.
	upgrading map[string]int
}

// Hub indexes this host's sockets in 64 shards keyed by an FNV hash of the user id, so
// that a delivery locks one shard, never the whole host.
type Hub struct {
	cfg      HubConfig
	svc      *chat.Service
	registry Registry
	acks     *chat.AckBuffer
	metrics  *metrics.Metrics
	log      *slog.Logger
	upgrader websocket.Upgrader

	shards [shardCount]shard
	count  atomic.Int64

	stageWrite prometheus.Observer // the "write" stage: one frame onto the socket

	linger time.Duration // how long an idle writer waits: writerLinger, shorter in tests

	heldMu sync.Mutex
	heldBy map[*Conn]struct{} // sockets holding messages back for a gap
	// ended holds the sessions DisconnectSession ended here in the last endedFor, so
	// that a socket whose upgrade authenticated just before the logout, and joins
	// after DisconnectSession looked, is closed too (start checks after add).
	endedMu sync.Mutex
	ended   map[string]time.Time
	// admitMu orders each socket's conns.Add before Drain's Wait, as WaitGroup
	// requires: a socket admitted before draining began is waited for, and none is
	// admitted after.
	admitMu  sync.Mutex
	draining atomic.Bool
	conns    sync.WaitGroup
}

// NewHub returns a Hub. svc serves sends, syncs and catch-up; acks buffers acks.
func NewHub(cfg HubConfig, svc *chat.Service, registry Registry, acks *chat.AckBuffer, m *metrics.Metrics, log *slog.Logger) *Hub {
	if cfg.FrameBytes == 0 {
		cfg.FrameBytes = 16 << 10
	}
	if cfg.SendQueue == 0 {
		cfg.SendQueue = 256
	}
	if cfg.SocketsPerUser == 0 {
		cfg.SocketsPerUser = 20
	}
	if cfg.TypingRate == 0 {
		cfg.TypingRate = 2
	}
	if cfg.PingInterval == 0 {
		cfg.PingInterval = 25 * time.Second
	}
	if cfg.PongTimeout == 0 {
		cfg.PongTimeout = 60 * time.Second
	}
	h := &Hub{cfg: cfg, svc: svc, registry: registry, acks: acks, metrics: m, log: log, stageWrite: m.Stage.WithLabelValues("write"), linger: writerLinger,
		ended: map[string]time.Time{}}
	for i := range h.shards {
		h.shards[i].users = map[string]map[string]*Conn{}
		h.shards[i].upgrading = map[string]int{}
	}
	h.upgrader = websocket.Upgrader{
		// Small read buffers and a shared write-buffer pool keep an idle socket cheap:
		// frames are small JSON objects, and gorilla reads a frame larger than the
		// buffer straight into the message. Write buffers are only held during a write,
		// so they can be large enough that a message of the largest body goes out as one
		// frame rather than in 1 KiB fragments.
		ReadBufferSize:  256,
		WriteBufferSize: 8192,
		WriteBufferPool: &sync.Pool{},
		CheckOrigin:     func(*http.Request) bool { return true }, // checked before Upgrade
	}
	return h
}

func (h *Hub) shardOf(userID string) *shard {
	f := fnv.New32a()
	_, _ = f.Write([]byte(userID))
	return &h.shards[f.Sum32()%shardCount]
}

// Count returns the number of live sockets on this host.
func (h *Hub) Count() int { return int(h.count.Load()) }

func (h *Hub) add(c *Conn) {
	s := h.shardOf(c.user.ID)
	s.mu.Lock()
	m := s.users[c.user.ID]
	if m == nil {
		m = map[string]*Conn{}
		s.users[c.user.ID] = m
	}
	m[c.id] = c
	s.releaseLocked(c.user.ID) // its slot is held by the socket from now on
	s.mu.Unlock()
	h.count.Add(1)
	h.metrics.Connections.Inc()
}

// claimLocal counts an upgrade of the user's under way on this host. With check, it
// is refused (false) when the user's sockets here and upgrades under way here already
// reach the limit: the count and the claim are one step under the shard's lock.
func (h *Hub) claimLocal(userID string, check bool) bool {
	s := h.shardOf(userID)
	s.mu.Lock()
	defer s.mu.Unlock()
	if check && len(s.users[userID])+s.upgrading[userID] >= h.cfg.SocketsPerUser {
		return false
	}
	s.upgrading[userID]++
	return true
}

// releaseLocal forgets an upgrade counted by claimLocal that failed.
func (h *Hub) releaseLocal(userID string) {
	s := h.shardOf(userID)
	s.mu.Lock()
	s.releaseLocked(userID)
	s.mu.Unlock()
}

func (s *shard) releaseLocked(userID string) {
	if n := s.upgrading[userID]; n > 1 {
		s.upgrading[userID] = n - 1
	} else {
		delete(s.upgrading, userID)
	}
}

func (h *Hub) remove(c *Conn) {
	s := h.shardOf(c.user.ID)
	s.mu.Lock()
	if m := s.users[c.user.ID]; m != nil {
		delete(m, c.id)
		if len(m) == 0 {
			delete(s.users, c.user.ID)
		}
	}
	s.mu.Unlock()
	h.count.Add(-1)
	h.metrics.Connections.Dec()
}

// connsOf returns the user's sockets on this host (a copy, safe to use unlocked).
func (h *Hub) connsOf(userID string) []*Conn {
	s := h.shardOf(userID)
	s.mu.RLock()
	defer s.mu.RUnlock()
	m := s.users[userID]
	if len(m) == 0 {
		return nil
	}
	out := make([]*Conn, 0, len(m))
	for _, c := range m {
		out = append(out, c)
	}
	return out
}

// each calls fn for every socket on this host.
func (h *Hub) each(fn func(*Conn)) {
	for i := range h.shards {
		s := &h.shards[i]
		s.mu.RLock()
		var cs []*Conn
		for _, m := range s.users {
			for _, c := range m {
				cs = append(cs, c)
			}
		}
		s.mu.RUnlock()
		for _, c := range cs {
			fn(c)
		}
	}
}

// Connections lists this host's presence entries (for re-registration and debugging).
func (h *Hub) Connections() []chat.Connection {
	var out []chat.Connection
	h.each(func(c *Conn) { out = append(out, c.Info()) })
	return out
}

// MessageFrame encodes the `message` frame of m once, for every socket it goes to.
func MessageFrame(m *chat.Message) *outFrame { return newFrame("message", EncodeMessage(m)) }

// DeliverMessage writes m to the named sockets (or every socket of each user) except
// exceptConnID, in seq order per socket, encoding the frame once. It answers per
// socket; gaps are filled from the store before this returns.
func (h *Hub) DeliverMessage(ctx context.Context, m *chat.Message, recipients []chat.Recipient, exceptConnID string) []chat.DeliveryResult {
	var f *outFrame
	results := make([]chat.DeliveryResult, 0, len(recipients))
	var gaps []*Conn
	var gapFrom []int64
	for res, c := range h.targets(recipients, exceptConnID) {
		if c != nil {
			if f == nil {
				f = MessageFrame(m)
			}
			if from, ok := c.deliverLive(m, f); !ok {
				gaps, gapFrom = append(gaps, c), append(gapFrom, from)
			}
		}
		results = append(results, res)
	}
	if len(gaps) == 0 {
		return results
	}
	// Bounded like Run's fills: this runs on the sender's reader or a deliver call,
	// which must not wait on a database that answers nothing.
	gctx, cancel := context.WithTimeout(ctx, gapFillTimeout)
	defer cancel()
	for i, c := range gaps {
		from := gapFrom[i]
		if from == startUnknown {
			// Where the member starts: its acked seq (0 in a new thread, the last seq
			// when it joined an old one), but never past this message.
			from = m.Seq - 1
			if ms, err := h.svc.Store.Membership(gctx, m.ThreadID, c.user.ID); err == nil && ms.AckedSeq < from {
				from = ms.AckedSeq
			}
		}
		h.fill(gctx, c, m.ThreadID, from, m.Seq)
	}
	return results
}

// noteHeld records that c holds messages back, for Run to check.
func (h *Hub) noteHeld(c *Conn) {
	h.heldMu.Lock()
	if h.heldBy == nil {
		h.heldBy = map[*Conn]struct{}{}
	}
	h.heldBy[c] = struct{}{}
	h.heldMu.Unlock()
}

// gapWait is how long a socket holds a message that overtook an earlier one before the
// gap is filled from the store: long enough for the earlier one, a few hundred
// microseconds behind on another goroutine or host, to arrive on its own.
const gapWait = 20 * time.Millisecond

// gapFillTimeout bounds the store reads that fill a gap; what is not filled by then is
// held for the next try (Run) or left to the member's next catch-up.
const gapFillTimeout = 2 * time.Second

// Run fills the gaps that did not close by themselves, until ctx ends.
func (h *Hub) Run(ctx context.Context) {
	t := time.NewTicker(gapWait / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		h.heldMu.Lock()
		var cs []*Conn
		for c := range h.heldBy {
			cs = append(cs, c)
		}
		h.heldMu.Unlock()
		// One read per thread serves every socket held on it: when a busy thread's
		// messages overtake each other on the way to this host, every member's socket
		// here has the same gap, and a query per socket multiplied the store's load
		// exactly when it was already behind.
		type want struct {
			c    *Conn
			last int64
		}
		fills := map[string][]want{}
		upTos := map[string]int64{}
		for _, c := range cs {
			for threadID, upTo := range c.heldGaps(gapWait) {
				last, _ := c.position(threadID)
				fills[threadID] = append(fills[threadID], want{c, last})
				upTos[threadID] = max(upTos[threadID], upTo)
			}
		}
		for threadID, ws := range fills {
			from := ws[0].last
			for _, w := range ws {
				from = min(from, w.last)
			}
			fctx, cancel := context.WithTimeout(ctx, gapFillTimeout)
			msgs := h.fetchRange(fctx, threadID, from, upTos[threadID])
			cancel()
			for _, w := range ws {
				i := sort.Search(len(msgs), func(i int) bool { return msgs[i].Seq > w.last })
				if i < len(msgs) {
					w.c.queueInOrder(threadID, msgs[i:])
				}
			}
		}
		for _, c := range cs {
			c.mu.Lock()
			empty := c.heldN == 0
			c.mu.Unlock()
			select {
			case <-c.done:
				empty = true
			default:
			}
			if empty {
				h.heldMu.Lock()
				delete(h.heldBy, c)
				h.heldMu.Unlock()
			}
		}
	}
}

// fetchRange reads a thread's messages (from, upTo] from the store, in pages; on an
// error it returns what it has (the next tick tries again).
func (h *Hub) fetchRange(ctx context.Context, threadID string, from, upTo int64) []chat.Message {
	var out []chat.Message
	for from < upTo {
		msgs, _, err := h.svc.Store.MessagesAfter(ctx, threadID, from, upTo, chat.MaxPage)
		if err != nil {
			h.log.Warn("fill gap", "thread_id", threadID, "err", err)
			return out
		}
		if len(msgs) == 0 {
			return out
		}
		out = append(out, msgs...)
		from = msgs[len(msgs)-1].Seq
	}
	return out
}

// fill queues the thread's messages (from, upTo] to c from the store: the path taken
// when a message overtook an earlier one between hosts, or a hand-off was missed.
func (h *Hub) fill(ctx context.Context, c *Conn, threadID string, from, upTo int64) {
	for from < upTo {
		msgs, _, err := h.svc.Store.MessagesAfter(ctx, threadID, from, upTo, chat.MaxPage)
		if err != nil {
			h.log.Warn("fill gap", "conn_id", c.id, "thread_id", threadID, "err", err)
			return
		}
		if len(msgs) == 0 {
			return
		}
		c.queueInOrder(threadID, msgs)
		from = msgs[len(msgs)-1].Seq
	}
}

// Repair pushes a thread's messages up to seq to this host's sockets of members that
// are behind: how a missed hand-off (recorded by another host in Redis) is made good.
func (h *Hub) Repair(ctx context.Context, threadID string, seq int64) {
	members, err := h.svc.Store.MemberIDs(ctx, threadID)
	if err != nil {
		h.log.Warn("repair: members", "thread_id", threadID, "err", err)
		return
	}
	for _, uid := range members {
		for _, c := range h.connsOf(uid) {
			last, known := c.position(threadID)
			if !known {
				ms, err := h.svc.Store.Membership(ctx, threadID, uid)
				if err != nil {
					continue
				}
				last = ms.AckedSeq
			}
			if last < seq {
				h.fill(ctx, c, threadID, last, seq)
			}
		}
	}
}

// RepairAll pushes to every local socket, from the store, the messages of its user's
// threads it has not been given. The node calls it after Redis lost this host's
// presence entries (restarted empty): until the host wrote them again, senders'
// lookups found none of its sockets, so their messages went to no host, and no
// hand-off was recorded either (that record lived in Redis too); and after another
// host died between storing a message and handing it over. The memberships of all
// local users come in one query per 500 users (MembershipsOf): a host death sets off
// this repair on every other host while the dead host's clients reconnect and load
// the database too. It stops when ctx ends.
func (h *Hub) RepairAll(ctx context.Context) {
	users := map[string][]*Conn{}
	h.each(func(c *Conn) { users[c.user.ID] = append(users[c.user.ID], c) })
	if len(users) == 0 {
		return
	}
	// A chunk at a time, so a host of many sockets never holds all their memberships.
	for ids := range slices.Chunk(slices.Collect(maps.Keys(users)), repairChunk) {
		all, err := h.svc.Store.MembershipsOf(ctx, ids)
		if err != nil {
			h.log.Warn("repair all: memberships", "users", len(ids), "err", err)
			continue
		}
		for uid, ms := range all {
			for _, m := range ms {
				for _, c := range users[uid] {
					if ctx.Err() != nil {
						return
					}
					last, known := c.position(m.ThreadID)
					if !known {
						last = m.AckedSeq
					}
					if last < m.LastSeq {
						h.fill(ctx, c, m.ThreadID, last, m.LastSeq)
					}
				}
			}
		}
	}
}

// repairChunk is how many users' memberships RepairAll asks for at once.
const repairChunk = 500

// DeliverTyping writes a typing notice to the recipients' sockets, answering like
// DeliverMessage (contract section 5). A socket whose queue is full drops the notice
// rather than closing, and is still answered delivered: it is connected, and
// not_connected would remove a live socket's entry.
func (h *Hub) DeliverTyping(threadID, userID string, recipients []chat.Recipient, exceptConnID string) []chat.DeliveryResult {
	f := newFrame("typing", EncodeTyping(threadID, userID))
	var results []chat.DeliveryResult
	for res, c := range h.targets(recipients, exceptConnID) {
		if c != nil {
			c.push(f)
		}
		results = append(results, res)
	}
	return results
}

// targets walks the sockets a deliver call names, with each one's answer: every
// socket of a recipient without conn ids (but exceptConnID, which is left out), else
// each listed conn id, not_connected when it has no socket here. The socket is nil
// when nothing is to be written to it: not connected, or exceptConnID (the sender's
// own socket, answered delivered because it got `sent`).
func (h *Hub) targets(recipients []chat.Recipient, exceptConnID string) iter.Seq2[chat.DeliveryResult, *Conn] {
	return func(yield func(chat.DeliveryResult, *Conn) bool) {
		for _, r := range recipients {
			conns := h.connsOf(r.UserID)
			if len(r.ConnIDs) == 0 {
				for _, c := range conns {
					if c.id != exceptConnID && !yield(chat.DeliveryResult{UserID: r.UserID, ConnID: c.id, Status: chat.StatusDelivered}, c) {
						return
					}
				}
				continue
			}
			for _, id := range r.ConnIDs {
				var c *Conn
				for _, x := range conns {
					if x.id == id {
						c = x
						break
					}
				}
				res := chat.DeliveryResult{UserID: r.UserID, ConnID: id, Status: chat.StatusDelivered}
				if c == nil {
					res.Status = chat.StatusNotConnected
				} else if c.id == exceptConnID {
					c = nil
				}
				if !yield(res, c) {
					return
				}
			}
		}
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// endedFor bounds the time from an upgrade's authentication to its socket joining the
// hub (a Redis round trip, the handshake's write): a logout in that gap is remembered
// this long.
const endedFor = 30 * time.Second

// DisconnectSession closes every socket of a session here with 4001, and any that
// joins within endedFor.
func (h *Hub) DisconnectSession(hash string) int {
	// Remembered before the scan: a socket added after the scan looked at its shard
	// was added after this, and start finds the session here.
	h.endedMu.Lock()
	h.ended[hash] = time.Now()
	h.endedMu.Unlock()
	n := 0
	h.each(func(c *Conn) {
		if c.sess.Hash == hash {
			c.Close(CloseSessionEnded, "session ended")
			n++
		}
	})
	return n
}

// DisconnectUser closes every socket of a user here with 4001.
func (h *Hub) DisconnectUser(userID string) int {
	cs := h.connsOf(userID)
	for _, c := range cs {
		c.Close(CloseSessionEnded, "session ended")
	}
	return len(cs)
}

// sessionEnded reports whether DisconnectSession ended the session lately.
func (h *Hub) sessionEnded(hash string) bool {
	h.endedMu.Lock()
	defer h.endedMu.Unlock()
	_, ok := h.ended[hash]
	return ok
}

// ExpireSessions closes sockets whose session has expired (4001). The host calls it
// every second, so expiry ends access within the contract's bound without asking Redis.
// It also forgets the sessions ended more than endedFor ago.
func (h *Hub) ExpireSessions(now time.Time) {
	h.endedMu.Lock()
	for hash, at := range h.ended {
		if now.Sub(at) > endedFor {
			delete(h.ended, hash)
		}
	}
	h.endedMu.Unlock()
	h.each(func(c *Conn) {
		if !c.sess.ExpiresAt.IsZero() && !now.Before(c.sess.ExpiresAt) {
			c.Close(CloseSessionEnded, "session expired")
		}
	})
}

// Drain refuses new sockets and closes every socket with 1012, spread over spread
// (with jitter) so the clients do not reconnect elsewhere as one herd; it returns when
// every socket's goroutines are done or ctx ends.
func (h *Hub) Drain(ctx context.Context, spread time.Duration) {
	h.admitMu.Lock()
	h.draining.Store(true)
	h.admitMu.Unlock()
	var all []*Conn
	h.each(func(c *Conn) { all = append(all, c) })
	if len(all) > 0 {
		step := spread / time.Duration(len(all))
		for _, c := range all {
			c.Close(CloseHostShutdown, "host shutting down")
			if step > 0 {
				select {
				case <-time.After(time.Duration(rand.Int64N(int64(step) + 1))): //nolint:gosec // jitter, not a secret
				case <-ctx.Done():
				}
			}
		}
	}
	done := make(chan struct{})
	go func() { h.conns.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// Draining reports whether Drain has begun.
func (h *Hub) Draining() bool { return h.draining.Load() }

// ServeHTTP upgrades /ws: 401 without a session, 403 for a foreign Origin, 429 past
// the per-user socket limit, 503 while draining.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.draining.Load() {
		httpError(w, http.StatusServiceUnavailable, chat.EUnavailable, "host is shutting down")
		return
	}
	if h.cfg.CheckOrigin != nil && !h.cfg.CheckOrigin(r) {
		httpError(w, http.StatusForbidden, chat.EForbiddenOrigin, "origin not allowed")
		return
	}
	sess, err := h.cfg.Authenticate(r)
	if err != nil {
		code := chat.ErrorCode(err)
		status := http.StatusUnauthorized
		if code == chat.EUnavailable {
			status = http.StatusServiceUnavailable
		} else {
			code = chat.EUnauthenticated
		}
		httpError(w, status, code, chat.ErrorMessage(err))
		return
	}
	// Claim a slot of the per-user socket limit before upgrading: in Redis, counted
	// and claimed in one step across hosts, and here on this host. The socket holds
	// its slot by its presence entry once registered (start), which drops the claims.
	// While Redis cannot be asked, the host's own count decides.
	id := chat.NewID()
	reserved, err := h.registry.ReserveSocket(r.Context(), sess.UserID, id, h.cfg.SocketsPerUser)
	if err != nil {
		h.log.Debug("socket limit counted on this host only", "user_id", sess.UserID, "err", err)
	}
	if (err == nil && !reserved) || !h.claimLocal(sess.UserID, err != nil) {
		if reserved {
			h.registry.ReleaseSocket(sess.UserID, id)
		}
		// Section 2: a limit of section 8 answers 429 with Retry-After. A slot frees
		// only when one of the user's sockets closes, which no clock here foresees;
		// a few seconds keeps a reconnect loop from hammering the cluster.
		w.Header().Set("Retry-After", strconv.Itoa(socketRetryAfterSecs))
		httpError(w, http.StatusTooManyRequests, chat.ERateLimited, "too many open sockets for this user")
		return
	}
	released := false
	release := func() {
		if released {
			return
		}
		released = true
		h.releaseLocal(sess.UserID)
		if reserved {
			h.registry.ReleaseSocket(sess.UserID, id)
		}
	}
	if !h.admit() {
		release()
		httpError(w, http.StatusServiceUnavailable, chat.EUnavailable, "host is shutting down")
		return
	}
	// A refused upgrade gives its slot back before the refusal goes out.
	cw := &corkWriter{ResponseWriter: w, beforeError: release}
	wsConn, err := h.upgrader.Upgrade(cw, r, nil)
	if err != nil {
		release()
		h.conns.Done()
		return // the upgrader has answered
	}
	c := &Conn{
		hub: h, ws: wsConn, cork: cw.conn, id: id, user: chat.User{ID: sess.UserID, Username: sess.Username},
		sess: sess, since: time.Now().UTC(), q: queue{max: h.cfg.SendQueue}, done: make(chan struct{}),
		syncing: true,
	}
	c.startPings()
	go h.start(c)
}

// admit counts a socket about to be upgraded unless the hub is draining.
func (h *Hub) admit() bool {
	h.admitMu.Lock()
	defer h.admitMu.Unlock()
	if h.draining.Load() {
		return false
	}
	h.conns.Add(1)
	return true
}

// start says hello, registers the socket and runs catch-up, starting the reader once
// the socket is registered. It runs on a goroutine of its own that ends with catch-up
// because encoding frames, registering and querying the store need deeper stacks than
// an idle read: run on the reader, they would grow its stack to 8 KiB, and a stack
// that is a quarter used is never shrunk, so every idle socket would keep twice the
// 4 KiB it needs.
func (h *Hub) start(c *Conn) {
	c.enqueue(newFrame("hello", encode(helloFrame{Type: "hello", User: c.user, ConnID: c.id, HostID: h.cfg.HostID})))
	h.add(c)
	if h.draining.Load() { // lost a race with Drain
		c.Close(CloseHostShutdown, "host shutting down")
	}
	if h.sessionEnded(c.sess.Hash) { // lost a race with a logout
		c.Close(CloseSessionEnded, "session ended")
	}
	// The socket outlives the upgrade request: catch-up runs under a context of its
	// own, which Close cancels.
	ctx := c.newContext(&c.setupCancel)
	defer c.endContext(&c.setupCancel)
	// Presence first, then catch-up: a send that commits after our read looks us up
	// after we registered, so every message reaches this socket one way or the other.
	rctx, rcancel := context.WithTimeout(ctx, 3*time.Second)
	if err := h.registry.Register(rctx, c.Info()); err != nil {
		h.log.Warn("register presence", "conn_id", c.id, "err", err)
	}
	rcancel()
	go h.read(c)
	h.catchUp(ctx, c)
}

// read is the socket's reader goroutine; when the socket is done it unregisters it.
func (h *Hub) read(c *Conn) {
	defer h.conns.Done()
	c.readLoop()
	c.Close(websocket.CloseNormalClosure, "")
	h.remove(c)
	h.registry.Unregister(c.Info())
	c.awaitPeerClose()
}

// catchUp pushes every message after the user's acked seq in each thread, oldest first
// in pages, then `synced`; live messages that arrived meanwhile are fetched in order.
func (h *Hub) catchUp(ctx context.Context, c *Conn) {
	var ms []chat.Membership
	if !h.untilStoreAnswers(ctx, c, "memberships", func(sctx context.Context) (err error) {
		ms, err = h.svc.Store.Memberships(sctx, c.user.ID)
		return err
	}) {
		return
	}
	pos := make(map[string]int64, len(ms))
	for _, m := range ms {
		pos[m.ThreadID] = m.AckedSeq
		if !h.push(ctx, c, m.ThreadID, m.AckedSeq, m.LastSeq, pos) {
			return
		}
	}
	for {
		// Leave room for what live delivery may add before `synced` goes out.
		if !c.waitQueueBelow(ctx, c.q.max-c.q.max/4) {
			return
		}
		c.mu.Lock()
		var behind map[string]int64
		for t, s := range c.pending {
			if s > pos[t] {
				if behind == nil {
					behind = map[string]int64{}
				}
				behind[t] = s
			}
		}
		c.pending = nil
		if behind == nil {
			c.lastSeq = pos
			c.syncing = false
			c.enqueue(syncedOut)
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		for t, s := range behind {
			if _, known := pos[t]; !known {
				// Joined during catch-up: start where a new member starts.
				if m, err := h.svc.Store.Membership(ctx, t, c.user.ID); err == nil {
					pos[t] = m.AckedSeq
				} else {
					pos[t] = s - 1
				}
			}
			if !h.push(ctx, c, t, pos[t], s, pos) {
				return
			}
		}
	}
}

// Catch-up's waits for a database that does not answer: doubled from the first to the
// last, with jitter, so that the sockets of a host do not all ask again at once.
const (
	catchUpRetryFirst = 500 * time.Millisecond
	catchUpRetryLast  = 5 * time.Second
)

// untilStoreAnswers runs a catch-up read of the store (each try bounded by the store
// timeout) until it succeeds, or returns false once the socket closes. A socket that
// connects while PostgreSQL is unreachable stays open, as every socket does through
// an outage (contract section 4.5): it is told once with `error unavailable`, and its
// catch-up, then `synced`, waits for the database. Closing it instead would send every
// client that connects meanwhile into a reconnect loop against a cluster that cannot
// serve it either.
func (h *Hub) untilStoreAnswers(ctx context.Context, c *Conn, step string, read func(context.Context) error) bool {
	wait, told := catchUpRetryFirst, false
	for {
		sctx, cancel := h.svc.StoreContext(ctx)
		err := read(sctx)
		cancel()
		if err == nil {
			if told {
				h.log.Info("catch-up resumes: the database answers", "conn_id", c.id)
			}
			return true
		}
		if ctx.Err() != nil || c.closed() {
			return false
		}
		if !told {
			told = true
			h.log.Warn("catch-up waits for the database", "conn_id", c.id, "step", step, "err", err)
		}
		if !c.toldUnavailable {
			c.toldUnavailable = true
			c.sendError("", chat.EUnavailable, "the database is unavailable: catch-up resumes when it answers")
		}
		t := time.NewTimer(wait/2 + rand.N(wait/2+1)) //nolint:gosec // jitter, not a secret
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return false
		}
		wait = min(2*wait, catchUpRetryLast)
	}
}

// push queues (from, upTo] of a thread in pages, waiting for queue room.
func (h *Hub) push(ctx context.Context, c *Conn, threadID string, from, upTo int64, pos map[string]int64) bool {
	for from < upTo {
		var msgs []chat.Message
		if !h.untilStoreAnswers(ctx, c, "page", func(sctx context.Context) (err error) {
			msgs, _, err = h.svc.Store.MessagesAfter(sctx, threadID, from, upTo, chat.MaxPage)
			return err
		}) {
			return false
		}
		if len(msgs) == 0 {
			break
		}
		for i := range msgs {
			if c.takeOwn(threadID, msgs[i].Seq) {
				continue // sent from this socket while it caught up: it had `sent`
			}
			// Leave a quarter of the queue free for what the socket's own requests
			// bring (sent, pong, sync_result, error), which is queued without waiting:
			// a full queue would close with 1013 a client that reads at its link's pace
			// and sends while catching up.
			if !c.waitQueueBelow(ctx, c.q.max-c.q.max/4-1) {
				return false
			}
			if !c.enqueueWait(ctx, newFrame("message", EncodeMessage(&msgs[i]))) {
				return false
			}
		}
		from = msgs[len(msgs)-1].Seq
		pos[threadID] = from
	}
	return true
}

// socketRetryAfterSecs is the Retry-After of an upgrade refused by the per-user socket
// limit.
const socketRetryAfterSecs = 5

func httpError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(encode(map[string]any{"error": map[string]string{"code": code, "message": msg}}))
}
