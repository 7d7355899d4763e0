package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/switchboard-chat/switchboard/pkg/chat"
	"github.com/switchboard-chat/switchboard/pkg/internal/outage"
	"github.com/switchboard-chat/switchboard/pkg/internal/rawio"
	"github.com/switchboard-chat/switchboard/pkg/metrics"
)

// localHub is this host's socket hub (*ws.Hub), as the deliverer and the internal
// listener need it.
type localHub interface {
	DeliverMessage(ctx context.Context, m *chat.Message, recipients []chat.Recipient, exceptConnID string) []chat.DeliveryResult
	DeliverTyping(threadID, userID string, recipients []chat.Recipient, exceptConnID string) []chat.DeliveryResult
	DisconnectSession(hash string) int
	DisconnectUser(userID string) int
	Connections() []chat.Connection
	Repair(ctx context.Context, threadID string, seq int64)
}

// Internal routes.
const (
	PathDeliver     = "/internal/v1/deliver"
	PathDisconnect  = "/internal/v1/disconnect"
	PathConnections = "/internal/v1/connections"
)

// DelivererConfig configures a Deliverer; zero values get defaults.
type DelivererConfig struct {
	HostID  string
	Timeout time.Duration // total deadline of one fan-out, retries included (2 s)
	Workers int           // concurrent outgoing calls (64)
	Retries int           // retries of one call (2)
}

// Deliverer implements chat.Deliverer: local sockets are written directly; every other
// host with recipients gets ONE signed POST per message carrying all of them, all
// hosts in parallel, through a fixed pool of workers sharing one keep-alive client, so
// no goroutine is started per message.
type Deliverer struct {
	cfg      DelivererConfig
	hub      localHub
	presence chat.PresenceStore
	dir      *Directory
	signer   *Signer
	client   *retryablehttp.Client
	metrics  *metrics.Metrics
	log      *slog.Logger

	jobs     chan *call
	inflight sync.WaitGroup
	stop     chan struct{}
	workers  sync.WaitGroup

	// lookupOutage is begun by a failed presence lookup. While it lasts, route skips
	// Redis and goes straight to every known host, so an outage costs one lookup timeout
	// in all, not one per message (which, on the socket's reader goroutine, held each
	// connection to about two sends a second) nor one a second (an inline retry held
	// every send behind it for up to 500 ms); only probes (probeRedis) end it.
	lookupOutage outage.State
	// fallbackHosts are the hosts known when the lookups began to fail: the fallback
	// goes to them as well as to those known now, because a Redis that comes back
	// empty lists only the hosts that re-registered since.
	fallbackHosts atomic.Pointer[[]chat.Host]

	// unreachable maps a host id to when (unix nanos) it may be called again: after a
	// call to a live host failed, its next deliveries for hostRetryAfter go straight to
	// the hand-off record it repairs from, instead of each paying failed connects and
	// retries on the sender's reader goroutine.
	unreachable sync.Map

	flightsMu sync.Mutex
	flights   map[string]*lookupFlight // by thread id: the latest lookup in flight

	lanesMu sync.Mutex
	lanes   map[string]*lane // by host id: deliveries waiting for a call to that host (lane.go)

	// owed are the hand-offs this host could not record while Redis was unreachable:
	// by host id (everyHost: every other host, for a fan-out that went to the last
	// known hosts only), thread id -> highest seq. flushOwed records them once Redis
	// answers. Without them, a message stored meanwhile never reached a socket that
	// stayed connected to a host the fallback missed: one that joined since the last
	// host list, or one whose call failed when no hand-off could be written.
	owedMu       sync.Mutex
	owed         map[string]map[string]int64
	owedN        int  // entries in owed
	owedFlushing bool // a flushOwed goroutine runs
	owedDropped  bool // owed was full: logged once per outage
	flushers     sync.WaitGroup
}

// everyHost is the owed key of a hand-off to every other registered host.
const everyHost = "*"

// maxOwed bounds owed. Past it, what is missed reaches sockets on their next message
// in the thread or their reconnect.
const maxOwed = 10000

// hostRetryAfter is how long a host whose delivery failed is handed its messages
// through the hand-off record without being called.
const hostRetryAfter = time.Second

func (d *Deliverer) hostDown(hostID string) bool {
	v, ok := d.unreachable.Load(hostID)
	until, isTime := v.(int64)
	return ok && isTime && time.Now().UnixNano() < until
}

// lookupRetryAfter spaces the probes (probeRedis) that end the skipping of presence
// lookups after one failed.
const lookupRetryAfter = time.Second

// host returns a host's registration from the view, or from the hosts known before
// the lookups failed (fallbackHosts).
func (d *Deliverer) host(hostID string) (chat.Host, bool) {
	if h, ok := d.dir.Host(hostID); ok {
		return h, true
	}
	if before := d.fallbackHosts.Load(); before != nil {
		for _, h := range *before {
			if h.HostID == hostID {
				return h, true
			}
		}
	}
	return chat.Host{}, false
}

// probeRedis checks, off the send path and at most once per lookupRetryAfter (longer
// than a probe may take, so one at a time), whether Redis answers again; the first
// answer ends the skipping at once, so lookups resume as soon as Redis is back (the
// last known host list may then be partial: hosts re-register).
func (d *Deliverer) probeRedis() {
	if !d.lookupOutage.ProbeDue(lookupRetryAfter) {
		return
	}
	d.inflight.Add(1)
	go func() {
		defer d.inflight.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		if _, err := d.presence.Hosts(ctx); err == nil && d.lookupOutage.Recover() {
			d.log.Info("presence lookups back on redis")
		}
	}()
}

// lookupFailed starts skipping presence lookups until a probe finds Redis answering.
// Only the call that starts the skipping logs, once per outage.
func (d *Deliverer) lookupFailed(err error) {
	d.dir.ReadFailed()
	if d.fallbackHosts.Load() == nil {
		known := d.dir.Known()
		d.fallbackHosts.Store(&known)
	}
	if d.lookupOutage.Fail() { // the first probe goes out with the next send
		d.log.Warn("presence lookup failed; delivering to every known host until redis answers", "err", err)
	}
}

// call is one host-to-host request handed to the worker pool.
type call struct {
	ctx    context.Context
	host   chat.Host
	path   string
	body   []byte
	result chan callResult // buffered 1; nil for fire-and-forget
	cancel context.CancelFunc
}

type callResult struct {
	status int
	body   []byte
	err    error
}

var _ chat.Deliverer = (*Deliverer)(nil)

// NewDeliverer starts the worker pool; Close stops it.
func NewDeliverer(cfg DelivererConfig, hub localHub, presence chat.PresenceStore, dir *Directory, signer *Signer, m *metrics.Metrics, log *slog.Logger) *Deliverer {
	if cfg.Timeout == 0 {
		cfg.Timeout = 2 * time.Second
	}
	if cfg.Workers == 0 {
		cfg.Workers = 64
	}
	if cfg.Retries == 0 {
		cfg.Retries = 2
	}
	d := &Deliverer{cfg: cfg, hub: hub, presence: presence, dir: dir, signer: signer, metrics: m, log: log,
		jobs: make(chan *call, 4096), stop: make(chan struct{})}
	d.client = NewClient(cfg.Retries, m, log)
	for i := 0; i < cfg.Workers; i++ {
		d.workers.Add(1)
		go d.work()
	}
	return d
}

// NewClient returns the pooled keep-alive client with bounded retries used for every
// host-to-host call (and by chatctl).
func NewClient(retries int, m *metrics.Metrics, log *slog.Logger) *retryablehttp.Client {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         rawio.WrapDial((&net.Dialer{Timeout: time.Second, KeepAlive: 30 * time.Second}).DialContext),
		MaxIdleConns:        512,
		MaxIdleConnsPerHost: 128,
		IdleConnTimeout:     90 * time.Second,
	}
	c := retryablehttp.NewClient()
	c.HTTPClient = &http.Client{Transport: tr}
	c.RetryMax = retries
	c.RetryWaitMin = 20 * time.Millisecond
	c.RetryWaitMax = 200 * time.Millisecond
	c.Logger = nil
	if m != nil {
		c.RequestLogHook = func(_ retryablehttp.Logger, _ *http.Request, attempt int) {
			if attempt > 0 {
				m.InternalRetry.Inc()
			}
		}
	}
	// Never retry a 4xx: the call is wrong, not unlucky.
	c.CheckRetry = retryablehttp.DefaultRetryPolicy
	c.ErrorHandler = retryablehttp.PassthroughErrorHandler
	return c
}

// Close stops the workers after in-flight deliveries finish (or ctx ends).
func (d *Deliverer) Close(ctx context.Context) {
	done := make(chan struct{})
	go func() { d.inflight.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	close(d.stop)
	d.workers.Wait()
	d.flushers.Wait()
	d.client.HTTPClient.CloseIdleConnections()
}

func (d *Deliverer) work() {
	defer d.workers.Done()
	for {
		select {
		case c := <-d.jobs:
			r := d.callHost(c)
			if c.result != nil {
				c.result <- r
			}
			if c.cancel != nil {
				c.cancel()
			}
		case <-d.stop:
			return
		}
	}
}

func (d *Deliverer) do(c *call) callResult {
	start := time.Now()
	req, err := retryablehttp.NewRequestWithContext(c.ctx, http.MethodPost, c.host.InternalURL+c.path, c.body)
	if err != nil {
		return callResult{err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	d.signer.SignRequest(req.Request, c.body)
	resp, err := d.client.Do(req)
	if err != nil {
		d.metrics.InternalCall.WithLabelValues(c.path, "error").Observe(time.Since(start).Seconds())
		return callResult{err: err}
	}
	defer resp.Body.Close()
	body, err := readBody(resp.Body, resp.ContentLength, maxInternalBody)
	d.metrics.InternalCall.WithLabelValues(c.path, fmt.Sprint(resp.StatusCode)).Observe(time.Since(start).Seconds())
	return callResult{status: resp.StatusCode, body: body, err: err}
}

// submit hands a call to the pool, waiting for room until ctx ends.
func (d *Deliverer) submit(c *call) bool {
	select {
	case d.jobs <- c:
		return true
	case <-c.ctx.Done():
		return false
	}
}

type typingBody struct {
	ThreadID string `json:"thread_id"`
	UserID   string `json:"user_id"`
}

type deliverAnswer struct {
	Results []chat.DeliveryResult `json:"results"`
}

// errLookupSkipped: route did not ask Redis, which failed and has not answered a probe
// since.
var errLookupSkipped = errors.New("presence lookup skipped: redis failed and has not answered since")

// route groups the recipients' live entries by host. Entries on this host are skipped
// (the hub writes locally by user); entries of dead hosts or of a previous instance
// come back as stale. With Redis unreachable, every other live host of the last known
// list gets every recipient with no connection ids.
//
// threadID and after let concurrent messages of one thread share a lookup (see
// sharedLookup); threadID "" never shares.
func (d *Deliverer) route(ctx context.Context, threadID string, after time.Time, recipients []string) (groups map[string][]chat.Recipient, stale []chat.Connection, fallback bool) {
	groups = map[string][]chat.Recipient{}
	// The lookup gets a slice of the deadline, not all of it: with Redis down, the
	// client's dial retries would otherwise use up the time the fallback needs.
	var entries map[string][]chat.Connection
	err := errLookupSkipped
	if !d.lookupOutage.Down() {
		lctx, lcancel := context.WithTimeout(ctx, min(500*time.Millisecond, d.cfg.Timeout/4))
		entries, err = d.sharedLookup(lctx, threadID, after, recipients)
		lcancel()
		switch {
		case err == nil:
			d.fallbackHosts.Store(nil)
		case ctx.Err() == nil:
			d.lookupFailed(err)
		}
	} else {
		d.probeRedis()
	}
	if err != nil {
		return d.everyKnownHost(recipients), nil, true
	}
	reloaded := false
	for _, uid := range recipients {
		var perHost map[string]int // host -> index in groups[host]
		for _, c := range entries[uid] {
			if c.HostID == d.cfg.HostID {
				// Local sockets are written directly. An entry of this host's earlier
				// instance (a restart) is nobody's socket: no other host would remove
				// it where this host is the user's only sender.
				if !d.dir.AliveInstance(c.HostID, c.Instance) {
					stale = append(stale, c)
				}
				continue
			}
			if !d.dir.AliveInstance(c.HostID, c.Instance) && !reloaded {
				// The view is up to a second old: a host that joined or restarted since
				// is missing from it or has a newer instance. Reload it once before
				// calling an entry stale, or a live socket's entry would be deleted and
				// the socket miss every message until it reconnects.
				reloaded = true
				hosts, err := d.presence.Hosts(ctx)
				if err != nil {
					// Redis answered the lookup but not this (right after it came back,
					// the client may still refuse new connections): the view cannot be
					// checked, so no entry may be called stale. Deliver as when Redis is
					// unreachable.
					return d.everyKnownHost(recipients), nil, true
				}
				d.dir.Update(hosts)
			}
			if !d.dir.AliveInstance(c.HostID, c.Instance) {
				stale = append(stale, c)
				continue
			}
			if perHost == nil {
				perHost = map[string]int{}
			}
			i, ok := perHost[c.HostID]
			if !ok {
				groups[c.HostID] = append(groups[c.HostID], chat.Recipient{UserID: uid})
				i = len(groups[c.HostID]) - 1
				perHost[c.HostID] = i
			}
			groups[c.HostID][i].ConnIDs = append(groups[c.HostID][i].ConnIDs, c.ConnID)
		}
	}
	return groups, stale, false
}

// lookupFlight is one presence lookup that concurrent messages of a thread share.
type lookupFlight struct {
	started    time.Time
	recipients []string
	done       chan struct{}
	entries    map[string][]chat.Connection // read-only once done is closed
	err        error
}

// sharedLookup looks the recipients up, sharing the lookup with concurrent messages of
// the same thread. Group commit hands a busy thread's senders their answers together,
// and each then looked the same 100 members up on its own: most of a fan-out host's
// Redis work. A message may only use a lookup that began after its own commit (after):
// a socket that registered before that instant must be seen, or it could miss the
// message (its catch-up read may have run before the commit). So a message joins a
// lookup in flight only if it started after `after`, for the same members; else it
// starts its own, which later messages can join.
func (d *Deliverer) sharedLookup(ctx context.Context, threadID string, after time.Time, recipients []string) (map[string][]chat.Connection, error) {
	if threadID == "" {
		return d.presence.Lookup(ctx, recipients)
	}
	d.flightsMu.Lock()
	if f := d.flights[threadID]; f != nil && !f.started.Before(after) && slices.Equal(f.recipients, recipients) {
		d.flightsMu.Unlock()
		select {
		case <-f.done:
			return f.entries, f.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	f := &lookupFlight{started: time.Now(), recipients: recipients, done: make(chan struct{})}
	if d.flights == nil {
		d.flights = map[string]*lookupFlight{}
	}
	d.flights[threadID] = f
	d.flightsMu.Unlock()

	f.entries, f.err = d.presence.Lookup(ctx, recipients)
	close(f.done)
	d.flightsMu.Lock()
	if d.flights[threadID] == f {
		delete(d.flights, threadID)
	}
	d.flightsMu.Unlock()
	return f.entries, f.err
}

// everyKnownHost is the route while Redis cannot be read: every recipient, with no
// connection ids, to every other host of the last known list and of the list known
// when the lookups began to fail.
func (d *Deliverer) everyKnownHost(recipients []string) map[string][]chat.Recipient {
	groups := map[string][]chat.Recipient{}
	all := make([]chat.Recipient, len(recipients))
	for i, u := range recipients {
		all[i] = chat.Recipient{UserID: u}
	}
	if before := d.fallbackHosts.Load(); before != nil {
		for _, h := range *before {
			groups[h.HostID] = all
		}
	}
	for _, h := range d.dir.Known() {
		groups[h.HostID] = all
	}
	return groups
}

// DeliverMessage implements chat.Deliverer.
func (d *Deliverer) DeliverMessage(ctx context.Context, st chat.Stored, exceptConnID string) {
	d.inflight.Add(1)
	defer d.inflight.Done()
	start := time.Now()
	msg, recipients, committed := st.Message, st.Members, st.Committed
	if committed.IsZero() {
		committed = start
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.cfg.Timeout)
	defer cancel()

	all := make([]chat.Recipient, len(recipients))
	for i, u := range recipients {
		all[i] = chat.Recipient{UserID: u}
	}
	local := d.hub.DeliverMessage(ctx, &msg, all, exceptConnID)
	d.metrics.Deliveries.WithLabelValues("local").Add(float64(len(local)))
	d.metrics.ObserveStage("local", start)

	t := time.Now()
	groups, stale, fallback := d.route(ctx, msg.ThreadID, committed, recipients)
	if len(stale) > 0 {
		d.metrics.Deliveries.WithLabelValues("stale").Add(float64(len(stale)))
	}
	d.metrics.ObserveStage("presence", t)
	if fallback {
		// The last known hosts may not be all of them: a host that joined since gets
		// the message through a hand-off once Redis answers.
		d.owe(everyHost, msg.ThreadID, msg.Seq)
	}
	if len(groups) > 0 {
		t = time.Now()
		msgJSON, _ := json.Marshal(&msg)
		calls := make([]*call, 0, len(groups))
		var inline *call
		for hostID, rs := range groups {
			h, ok := d.host(hostID)
			if !ok {
				continue
			}
			if d.hostDown(h.HostID) {
				d.missed(msg, h.HostID, errors.New("host unreachable a moment ago; not called"))
				continue
			}
			body := appendDeliverBody(make([]byte, 0, len(msgJSON)+40+len(rs)*110), msgJSON, rs)
			c := &call{ctx: ctx, host: h, path: PathDeliver, body: body, result: make(chan callResult, 1)}
			if inline == nil {
				// One call is made on this goroutine, which would only wait anyway: a
				// message to one other host (every one-to-one message) then crosses no
				// goroutine hand-off to a worker and back.
				inline = c
				calls = append(calls, c)
			} else if d.submit(c) {
				calls = append(calls, c)
			} else {
				d.missed(msg, h.HostID, fmt.Errorf("deliver queue full"))
			}
		}
		if inline != nil {
			inline.result <- d.callHost(inline)
		}
		var gone []chat.Connection
		for _, c := range calls {
			var r callResult
			select {
			case r = <-c.result:
			case <-ctx.Done():
				r = callResult{err: ctx.Err()}
			}
			if r.err != nil || r.status != http.StatusOK {
				err := r.err
				if err == nil {
					err = fmt.Errorf("status %d", r.status)
				}
				d.unreachable.Store(c.host.HostID, time.Now().Add(hostRetryAfter).UnixNano())
				d.missed(msg, c.host.HostID, err)
				continue
			}
			d.unreachable.Delete(c.host.HostID)
			results, err := decodeAnswer(r.body)
			if err != nil {
				d.missed(msg, c.host.HostID, err)
				continue
			}
			for _, res := range results {
				if res.Status == chat.StatusNotConnected {
					gone = append(gone, chat.Connection{UserID: res.UserID, HostID: c.host.HostID, ConnID: res.ConnID})
					d.metrics.Deliveries.WithLabelValues("not_connected").Inc()
				} else {
					d.metrics.Deliveries.WithLabelValues("remote").Inc()
				}
			}
		}
		d.metrics.ObserveStage("remote", t)
		stale = append(stale, gone...)
	}
	if len(stale) > 0 {
		if err := d.presence.RemoveConnections(ctx, stale); err != nil {
			d.log.Warn("remove stale presence", "n", len(stale), "err", err)
		}
	}
	d.metrics.DeliverTime.Observe(time.Since(start).Seconds())
}

// missed records that host did not take msg: the host, alive but unreachable, reads the
// record from Redis and pushes the message to its sockets from the database.
func (d *Deliverer) missed(msg chat.Message, hostID string, cause error) {
	d.metrics.Deliveries.WithLabelValues("failed").Inc()
	d.log.Warn("deliver to host failed; recording hand-off", "to_host", hostID, "thread_id", msg.ThreadID, "seq", msg.Seq, "err", cause)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := d.presence.AddHandoff(ctx, hostID, msg.ThreadID, msg.Seq); err != nil {
		d.log.Warn("record hand-off; keeping it until redis answers", "to_host", hostID, "thread_id", msg.ThreadID, "seq", msg.Seq, "err", err)
		d.owe(hostID, msg.ThreadID, msg.Seq)
		return
	}
	d.metrics.Handoffs.WithLabelValues("recorded").Inc()
}

// owe keeps a hand-off that cannot be recorded now (see Deliverer.owed) and makes sure
// a flushOwed runs.
func (d *Deliverer) owe(hostID, threadID string, seq int64) {
	d.owedMu.Lock()
	defer d.owedMu.Unlock()
	threads := d.owed[hostID]
	if _, ok := threads[threadID]; !ok {
		if d.owedN >= maxOwed {
			if !d.owedDropped {
				d.owedDropped = true
				d.log.Error("too many hand-offs waiting for redis; dropping the rest (sockets get them on their next message or reconnect)", "max", maxOwed)
			}
			return
		}
		if d.owed == nil {
			d.owed = map[string]map[string]int64{}
		}
		if threads == nil {
			threads = map[string]int64{}
			d.owed[hostID] = threads
		}
		d.owedN++
	}
	threads[threadID] = max(threads[threadID], seq)
	if !d.owedFlushing {
		d.owedFlushing = true
		d.flushers.Add(1)
		go d.flushOwed()
	}
}

// owedFlushEvery spaces flushOwed's attempts.
const owedFlushEvery = time.Second

// flushOwed records the owed hand-offs once Redis answers, trying every
// owedFlushEvery until none is left or the deliverer closes.
func (d *Deliverer) flushOwed() {
	defer d.flushers.Done()
	tick := time.NewTicker(owedFlushEvery)
	defer tick.Stop()
	for {
		select {
		case <-d.stop:
			d.owedMu.Lock()
			if d.owedN > 0 {
				d.log.Warn("closing with hand-offs never recorded", "threads", d.owedN)
			}
			d.owedMu.Unlock()
			return
		case <-tick.C:
		}
		if d.recordOwed() {
			return
		}
	}
}

// recordOwed writes what is owed to Redis and reports whether nothing is left, in
// which case flushOwed ends. What fails stays owed.
func (d *Deliverer) recordOwed() (done bool) {
	d.owedMu.Lock()
	owed := d.owed
	d.owed, d.owedN, d.owedDropped = nil, 0, false
	d.owedMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	hosts, err := d.presence.Hosts(ctx)
	recorded := 0
	for hostID, threads := range owed {
		targets := []string{hostID}
		if hostID == everyHost {
			targets = targets[:0]
			for _, h := range hosts {
				if h.HostID != d.cfg.HostID {
					targets = append(targets, h.HostID)
				}
			}
		}
		for threadID, seq := range threads {
			for _, to := range targets {
				if err == nil {
					err = d.presence.AddHandoff(ctx, to, threadID, seq)
				}
				if err != nil {
					break
				}
				recorded++
				d.metrics.Handoffs.WithLabelValues("recorded").Inc()
			}
			if err != nil {
				d.owe(hostID, threadID, seq) // again, for every target: records are idempotent
			}
		}
	}
	if recorded > 0 {
		d.log.Info("recorded the hand-offs kept while redis was unreachable", "records", recorded)
	}
	d.owedMu.Lock()
	defer d.owedMu.Unlock()
	if d.owedN == 0 {
		d.owedFlushing = false
		return true
	}
	return false
}

// DeliverTyping implements chat.Deliverer; best effort, it does not wait for answers.
func (d *Deliverer) DeliverTyping(ctx context.Context, threadID, userID string, recipients []string, exceptConnID string) {
	all := make([]chat.Recipient, len(recipients))
	for i, u := range recipients {
		all[i] = chat.Recipient{UserID: u}
	}
	d.hub.DeliverTyping(threadID, userID, all, exceptConnID)
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 500*time.Millisecond)
	groups, _, _ := d.route(lctx, "", time.Time{}, recipients)
	cancel()
	for hostID, rs := range groups {
		h, ok := d.host(hostID)
		if !ok {
			continue
		}
		body, _ := json.Marshal(deliverRequest{Typing: &typingBody{ThreadID: threadID, UserID: userID}, Recipients: rs})
		// Fire and forget: the call's own deadline, not the caller's.
		cctx, ccancel := context.WithTimeout(context.Background(), time.Second)
		c := &call{ctx: cctx, host: h, path: PathDeliver, body: body, cancel: ccancel}
		select {
		case d.jobs <- c:
		default:
			ccancel() // pool saturated: typing is the first thing to shed
		}
	}
}

// DisconnectSession implements chat.Deliverer: this host's sockets of the session and
// every other live host's are closed with 4001 before it returns (or its deadline).
// A host the call cannot reach gets a record in Redis instead, which it takes within
// a second of reaching Redis (Node), so a cut link cannot keep a logged-out session's
// sockets open.
func (d *Deliverer) DisconnectSession(ctx context.Context, sessionHash string) error {
	d.hub.DisconnectSession(sessionHash)
	return d.broadcastDisconnect(ctx, chat.Disconnect{SessionHash: sessionHash})
}

// DisconnectUser closes every socket of a user on every host, as DisconnectSession.
func (d *Deliverer) DisconnectUser(ctx context.Context, userID string) error {
	d.hub.DisconnectUser(userID)
	return d.broadcastDisconnect(ctx, chat.Disconnect{UserID: userID})
}

func (d *Deliverer) broadcastDisconnect(ctx context.Context, disc chat.Disconnect) error {
	body, _ := json.Marshal(disc)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 1500*time.Millisecond)
	defer cancel()
	// Reload the view first (disconnects are rare): a host that joined within the
	// last second would otherwise keep the sockets of a logged-out session open.
	hctx, hcancel := context.WithTimeout(ctx, 500*time.Millisecond)
	if hosts, err := d.presence.Hosts(hctx); err == nil {
		d.dir.Update(hosts)
	}
	hcancel()
	var calls []*call
	// failed: the hosts that did not answer 200, and those registered whose heartbeat
	// is stale. A host cut off from Redis stops beating but keeps its sockets, and
	// re-registers them when it is back: it takes the record then, if within its TTL.
	var failed []string
	for _, h := range d.dir.Silent() {
		failed = append(failed, h.HostID)
	}
	for _, h := range d.dir.Others() {
		c := &call{ctx: ctx, host: h, path: PathDisconnect, body: body, result: make(chan callResult, 1)}
		if d.submit(c) {
			calls = append(calls, c)
		} else {
			failed = append(failed, h.HostID)
		}
	}
	var firstErr error
	for _, c := range calls {
		var r callResult
		select {
		case r = <-c.result:
		case <-ctx.Done():
			select {
			case r = <-c.result:
			default:
				r.err = ctx.Err()
			}
		}
		if r.err == nil && r.status != http.StatusOK {
			r.err = fmt.Errorf("status %d", r.status)
		}
		if r.err != nil {
			failed = append(failed, c.host.HostID)
			if firstErr == nil {
				firstErr = fmt.Errorf("%s: %w", c.host.HostID, r.err)
			}
		}
	}
	if len(failed) == 0 {
		return firstErr
	}
	// The broadcast's own deadline may be spent: the records get a second of their own.
	octx, ocancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer ocancel()
	for _, hostID := range failed {
		if err := d.presence.AddDisconnect(octx, hostID, disc); err != nil {
			d.log.Error("disconnect could not reach a host nor be recorded for it; its sockets stay open until the session expires",
				"host", hostID, "err", err)
			continue
		}
		d.log.Warn("disconnect recorded for a host that did not take it (unreachable, or its heartbeat stale)", "host", hostID, "err", firstErr)
	}
	return firstErr
}

// Get performs a signed GET against a host's internal listener (chatctl connections).
func Get(ctx context.Context, client *retryablehttp.Client, signer *Signer, baseURL, path string) ([]byte, error) {
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodGet, baseURL+path, nil)
	if err != nil {
		return nil, err
	}
	signer.SignRequest(req.Request, nil)
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxInternalBody))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s%s: %d %s", baseURL, path, resp.StatusCode, bytes.TrimSpace(b))
	}
	return b, nil
}
