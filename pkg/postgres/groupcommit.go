package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-chat/switchboard/pkg/batchq"
	"github.com/switchboard-chat/switchboard/pkg/chat"
)

// committer implements group commit on PostgreSQL: the messages that concurrent
// senders hand in while a transaction is running are stored together in the next one,
// with one round trip per batch (store_messages) and one WAL flush. Each sender is
// still answered only after the commit that made its message durable. Batches lock
// their threads in id order, so they do not deadlock with each other; since migration
// 0010 they lock no membership rows, so acks and sends do not wait for each other.
//
// Each thread's messages always go to the same shard (by a hash of the thread id).
// Committers that shared one queue took a busy thread's messages one or two at a time
// and then queued on that thread's row lock behind each other, one commit per batch of
// one: a 100-member thread topped out near 700 messages a second. With one shard per
// thread, what arrives while a batch commits is the next batch, so batches grow with
// the load instead of the lock queue. The default is a single shard (see
// Config.Committers): more shards split the queue and, with it, the batches.
//
// There are no committer goroutines: the sender that finds its shard idle commits on
// its own goroutine (the leader), so a lone send crosses no goroutine hand-off. Senders
// that arrive meanwhile queue; when the leader's batch is done it answers its batch and
// hands the lead to the oldest waiting sender, whose batch is everything queued by then.
type committer struct {
	db     *DB
	shards []commitShard
	max    int
	log    *slog.Logger

	mu       sync.Mutex // guards closed; inflight counts submits in progress
	closed   bool
	inflight sync.WaitGroup

	batches  atomic.Int64 // transactions the group commit ran (CommitStats)
	messages atomic.Int64 // messages they carried
}

// commitShard is one thread shard's queue.
type commitShard = batchq.Queue[*sendReq]

type sendReq struct {
	ctx  context.Context
	m    chat.NewMessage
	done chan sendRes // buffered 1: the lead, then (or only) the answer
}

type sendRes struct {
	st   chat.Stored
	err  error
	lead bool // not an answer: commit the next batch, then wait for the answer
}

func newCommitter(db *DB, shards, maxBatch int, log *slog.Logger) *committer {
	return &committer{db: db, shards: make([]commitShard, shards), max: maxBatch, log: log}
}

// stop refuses new sends and waits for those in progress; safe to call again.
func (c *committer) stop() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.inflight.Wait()
}

// shard picks the shard of a thread (FNV-1a of its id).
func (c *committer) shard(threadID string) *commitShard {
	h := uint32(2166136261)
	for i := 0; i < len(threadID); i++ {
		h = (h ^ uint32(threadID[i])) * 16777619
	}
	return &c.shards[h%uint32(len(c.shards))]
}

// submit stores m in a batch and returns after its commit. Once queued, a request's
// outcome is awaited even if ctx ends (a batch drops requests whose context ended
// before its transaction starts), so a sender is never told "unavailable" about a
// message that then commits.
func (c *committer) submit(ctx context.Context, m chat.NewMessage) (chat.Stored, error) {
	if err := ctx.Err(); err != nil {
		return chat.Stored{}, err
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return chat.Stored{}, errCommitterClosed
	}
	c.inflight.Add(1)
	c.mu.Unlock()
	defer c.inflight.Done()

	sh := c.shard(m.ThreadID)
	r := &sendReq{ctx: ctx, m: m, done: make(chan sendRes, 1)}
	lead := sh.Join(r)
	for {
		if lead {
			c.lead(sh)
		}
		res := <-r.done
		if !res.lead {
			return res.st, res.err
		}
		lead = true
	}
}

// lead commits the oldest queued requests (the leader's own among them) and passes the
// lead on, or marks the shard idle.
func (c *committer) lead(sh *commitShard) {
	c.commit(sh.Take(c.max, nil))
	if next, ok := sh.Pass(); ok {
		next.done <- sendRes{lead: true}
	}
}

// errCommitterClosed answers a send made after Close.
var errCommitterClosed = errors.New("postgres: the store is closed")

// commit stores one batch. Requests whose caller already gave up are dropped before
// the transaction starts.
func (c *committer) commit(batch []*sendReq) {
	live := batch[:0:0]
	var deadline time.Time
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.done <- sendRes{err: err}
			continue
		}
		live = append(live, r)
		if d, ok := r.ctx.Deadline(); ok && (deadline.IsZero() || d.Before(deadline)) {
			deadline = d
		}
	}
	if len(live) == 0 {
		return
	}
	ctx := context.Background()
	if !deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	c.count(1, len(live))
	if len(live) == 1 {
		st, err := c.db.createMessage(ctx, live[0].m)
		st.Committed = time.Now()
		live[0].done <- sendRes{st: st, err: err}
		return
	}
	results, err := c.db.createMessages(ctx, live)
	if err == nil {
		committed := time.Now() // one instant for the batch: its messages can share a lookup
		for i, r := range live {
			results[i].st.Committed = committed
			r.done <- results[i]
		}
		return
	}
	if !isUniqueViolation(err) && sqlState(err) != "40P01" {
		for _, r := range live {
			r.done <- sendRes{err: fmt.Errorf("group commit of %d messages: %w", len(live), err)}
		}
		return
	}
	// Another host stored a concurrent repeat of one of these client_msg_ids (or,
	// should a lock order ever be missed, PostgreSQL broke a deadlock): the batch rolled
	// back whole; store each on its own, which sorts repeats out.
	c.count(len(live), len(live))
	for _, r := range live {
		st, err := c.db.createMessage(ctx, r.m)
		r.done <- sendRes{st: st, err: err}
	}
}

// count adds n transactions carrying msgs messages to CommitStats.
func (c *committer) count(n, msgs int) {
	c.batches.Add(int64(n))
	c.messages.Add(int64(msgs))
}

// createMessages stores a batch with one call of store_messages (migration 0004) or,
// from bulkBatch messages, store_messages_bulk (0005): one round trip and one commit.
// Results are in batch order; repeats answer the first message, read in one query
// after the commit.
func (d *DB) createMessages(ctx context.Context, batch []*sendReq) ([]sendRes, error) {
	now := d.nowUTC()
	n := len(batch)
	ids, threads, senders, cmids, bodies := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	for i, r := range batch {
		ids[i], threads[i], senders[i], cmids[i], bodies[i] = chat.NewID(), r.m.ThreadID, r.m.SenderID, r.m.ClientMsgID, r.m.Body
	}
	query := `SELECT idx, seq, coalesce(members, ''), status FROM store_messages($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6)`
	if n >= int(bulkBatch.Load()) {
		query = `SELECT idx, seq, coalesce(members, ''), status FROM store_messages_bulk($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6)`
	}
	// database/sql, not gorm, as in createMessageOneTrip: the send path.
	rows, err := d.sqlDB.QueryContext(ctx, query,
		pgArray(ids), pgArray(threads), pgArray(senders), pgArray(cmids), pgArray(bodies), now)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	res := make([]sendRes, n)
	var repeats []int
	// A thread's members come with its first created row of the batch (migration 0004);
	// its later rows share that list.
	membersOf := map[string][]string{}
	for rows.Next() {
		var (
			idx            int
			seq            int64
			members, state string
		)
		if err := rows.Scan(&idx, &seq, &members, &state); err != nil {
			return nil, err
		}
		i := idx - 1
		if i < 0 || i >= n {
			return nil, fmt.Errorf("store_messages answered index %d of %d", idx, n)
		}
		m := batch[i].m
		switch state {
		case "created":
			if members != "" {
				membersOf[m.ThreadID] = strings.Split(members, ",")
			}
			res[i] = sendRes{st: chat.Stored{Created: true, Message: chat.Message{
				ID: ids[i], ThreadID: m.ThreadID, Seq: seq, SenderID: m.SenderID, ClientMsgID: m.ClientMsgID, Body: m.Body, CreatedAt: now}}}
		case "not_member":
			res[i] = sendRes{err: errNotMember()}
		default:
			repeats = append(repeats, i)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for i := range res {
		if res[i].st.Created {
			mem, ok := membersOf[res[i].st.Message.ThreadID]
			if !ok { // not with migration 0004; read them rather than fail a committed send
				var err error
				if mem, err = d.MemberIDs(ctx, res[i].st.Message.ThreadID); err != nil {
					return nil, fmt.Errorf("members after group commit: %w", err)
				}
				membersOf[res[i].st.Message.ThreadID] = mem
			}
			res[i].st.Members = mem
		}
	}
	for _, i := range repeats {
		m := batch[i].m
		first, err := d.messageByClientMsgID(ctx, m.SenderID, m.ClientMsgID)
		if err != nil {
			res[i] = sendRes{err: fmt.Errorf("create message: read the first of a repeat: %w", err)}
			continue
		}
		// A repeat within this very batch may have been created just now.
		members := []string(nil)
		for j := range res {
			if res[j].st.Created && res[j].st.Message.ThreadID == m.ThreadID {
				members = res[j].st.Members
				break
			}
		}
		if members == nil {
			members, _ = d.MemberIDs(ctx, m.ThreadID)
		}
		res[i] = sendRes{st: chat.Stored{Message: first, Members: members}}
	}
	return res, nil
}

// bulkBatch is the batch size from which store_messages_bulk (one set-based statement)
// beats store_messages (a loop of statements per message). It was 6 until migrations
// 0007 and 0008 made the bulk statement dearer (an index probe per message) and the
// loop cheaper (locks by key); since then the loop is the cheaper up to about a dozen
// messages, whether they share a thread or not (pgbench, ms a call, loop against bulk:
// 5 threads 0.75 against 1.40, 16 threads 1.83 against 1.73; 6 messages to one thread
// 0.78 against 1.43, 16 1.55 against 1.39). The bulk statement's cost is in running it,
// not planning it: a generic plan saved little. docs/bench/README.md has the rest.
// Atomic so that tests can send a batch down either path.
var bulkBatch atomic.Int32

func init() { bulkBatch.Store(12) }

// pgArray renders a text array literal, quoting every element, so that a batch goes
// as one parameter per column whatever its size (one prepared statement for all).
func pgArray(vs []string) string {
	var sb strings.Builder
	sb.WriteByte('{')
	for i, v := range vs {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteByte('"')
		for j := 0; j < len(v); j++ {
			if v[j] == '"' || v[j] == '\\' {
				sb.WriteByte('\\')
			}
			sb.WriteByte(v[j])
		}
		sb.WriteByte('"')
	}
	sb.WriteByte('}')
	return sb.String()
}
