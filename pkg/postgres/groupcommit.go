package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"gorm.io/gorm"

	"github.com/switchboard-chat/switchboard/pkg/chat"
)

// committer implements group commit on PostgreSQL: the messages that concurrent
// senders hand in while a transaction is running are stored together in the next one,
// with a fixed number of round trips per batch (lock the threads and read their
// members; insert every message; move every thread's last_seq and every sender's read
// mark) and one WAL flush. Each sender is still answered only after the commit that
// made its message durable. A few committers run at once, so one slow batch does not
// stall the rest. They lock threads in id order and memberships in (thread, user)
// order, the orders every other multi-row writer uses (Ack), so they do not deadlock.
type committer struct {
	db    *DB
	in    chan *sendReq
	max   int
	log   *slog.Logger
	wg    sync.WaitGroup
	close chan struct{}
	once  sync.Once
}

type sendReq struct {
	ctx  context.Context
	m    chat.NewMessage
	done chan sendRes // buffered 1
}

type sendRes struct {
	st  chat.Stored
	err error
}

func newCommitter(db *DB, workers, maxBatch int, log *slog.Logger) *committer {
	c := &committer{db: db, in: make(chan *sendReq, 4*maxBatch), max: maxBatch, log: log, close: make(chan struct{})}
	for i := 0; i < workers; i++ {
		c.wg.Add(1)
		go c.run()
	}
	return c
}

// stop ends the committers once; safe to call again.
func (c *committer) stop() {
	c.once.Do(func() { close(c.close) })
	c.wg.Wait()
}

// submit hands m to the committers and waits for its commit. Once a request is taken
// into a batch its outcome is awaited even if ctx ends, so a sender is never told
// "unavailable" about a message that then commits.
func (c *committer) submit(ctx context.Context, m chat.NewMessage) (chat.Stored, error) {
	r := &sendReq{ctx: ctx, m: m, done: make(chan sendRes, 1)}
	select {
	case c.in <- r:
	case <-ctx.Done():
		return chat.Stored{}, ctx.Err()
	case <-c.close:
		return chat.Stored{}, errCommitterClosed
	}
	select {
	case res := <-r.done:
		return res.st, res.err
	case <-c.close:
		// The committers finish the batch they hold and exit; a request still queued
		// would never be answered, so wait for them and then look.
		c.wg.Wait()
		select {
		case res := <-r.done:
			return res.st, res.err
		default:
			return chat.Stored{}, errCommitterClosed
		}
	}
}

// errCommitterClosed answers a send made after (or queued at) Close.
var errCommitterClosed = errors.New("postgres: the store is closed")

func (c *committer) run() {
	defer c.wg.Done()
	batch := make([]*sendReq, 0, c.max)
	for {
		batch = batch[:0]
		select {
		case r := <-c.in:
			batch = append(batch, r)
		case <-c.close:
			return
		}
	fill:
		for len(batch) < c.max {
			select {
			case r := <-c.in:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		c.commit(batch)
	}
}

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
	if len(live) == 1 {
		st, err := c.db.createMessage(ctx, live[0].m)
		live[0].done <- sendRes{st: st, err: err}
		return
	}
	results, err := c.db.createMessages(ctx, live)
	if err == nil {
		for i, r := range live {
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
	for _, r := range live {
		st, err := c.db.createMessage(ctx, r.m)
		r.done <- sendRes{st: st, err: err}
	}
}

// SQL of createMessages (PostgreSQL only).
const (
	// Locks the batch's threads in id order (no deadlock between committers) and reads
	// their members under the lock, in one round trip.
	lockThreadsSQL = `SELECT t.id, t.last_seq, m.user_id FROM threads t
JOIN thread_members m ON m.thread_id = t.id
WHERE t.id IN ? ORDER BY t.id FOR UPDATE OF t`
	existingSQL = messageColumns + ` WHERE sender_id IN ? AND client_msg_id IN ?`
)

// createMessages stores a batch in one transaction; results are in batch order. A
// unique violation (a concurrent repeat stored elsewhere) rolls it all back.
func (d *DB) createMessages(ctx context.Context, batch []*sendReq) ([]sendRes, error) {
	now := d.nowUTC()
	res := make([]sendRes, len(batch))
	var threadIDs, senders, cmids []string
	for _, r := range batch {
		if !slices.Contains(threadIDs, r.m.ThreadID) {
			threadIDs = append(threadIDs, r.m.ThreadID)
		}
		senders = append(senders, r.m.SenderID)
		cmids = append(cmids, r.m.ClientMsgID)
	}
	// Repeats of messages already stored need no lock: answer them from the table.
	existing, err := queryMessages(d.gdb.WithContext(ctx), existingSQL, senders, cmids)
	if err != nil {
		return nil, err
	}
	type key struct{ sender, cmid string }
	first := make(map[key]chat.Message, len(existing))
	for _, m := range existing {
		first[key{m.SenderID, m.ClientMsgID}] = m
	}
	err = d.gdb.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		rows, err := tx.Raw(lockThreadsSQL, threadIDs).Rows()
		if err != nil {
			return fmt.Errorf("lock threads: %w", err)
		}
		lastSeq := map[string]int64{}
		members := map[string][]string{}
		for rows.Next() {
			var id, user string
			var seq int64
			if err := rows.Scan(&id, &seq, &user); err != nil {
				rows.Close()
				return err
			}
			lastSeq[id] = seq
			members[id] = append(members[id], user)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		var ins []chat.Message
		inBatch := map[key]int{} // key -> index in batch of the message stored for it
		readMark := map[[2]string]int64{}
		for i, r := range batch {
			m := r.m
			if !slices.Contains(members[m.ThreadID], m.SenderID) {
				res[i] = sendRes{err: errNotMember()}
				continue
			}
			k := key{m.SenderID, m.ClientMsgID}
			if msg, ok := first[k]; ok {
				res[i] = sendRes{st: chat.Stored{Message: msg, Members: members[m.ThreadID]}}
				continue
			}
			if j, ok := inBatch[k]; ok {
				res[i] = sendRes{st: chat.Stored{Message: res[j].st.Message, Members: members[m.ThreadID]}}
				continue
			}
			lastSeq[m.ThreadID]++
			msg := chat.Message{ID: chat.NewID(), ThreadID: m.ThreadID, Seq: lastSeq[m.ThreadID], SenderID: m.SenderID,
				ClientMsgID: m.ClientMsgID, Body: m.Body, CreatedAt: now}
			ins = append(ins, msg)
			inBatch[k] = i
			readMark[[2]string{m.ThreadID, m.SenderID}] = msg.Seq
			res[i] = sendRes{st: chat.Stored{Message: msg, Created: true, Members: members[m.ThreadID]}}
		}
		if len(ins) == 0 {
			return nil
		}
		var sb strings.Builder
		args := make([]any, 0, 7*len(ins))
		sb.WriteString(`INSERT INTO messages (id, thread_id, seq, sender_id, client_msg_id, body, created_at) VALUES `)
		for i, m := range ins {
			if i > 0 {
				sb.WriteByte(',')
			}
			sb.WriteString(`(?, ?, ?, ?, ?, ?, ?)`)
			args = append(args, m.ID, m.ThreadID, m.Seq, m.SenderID, m.ClientMsgID, m.Body, m.CreatedAt)
		}
		if err := tx.Exec(sb.String(), args...).Error; err != nil {
			return err
		}
		// Lock the senders' memberships in the one order every multi-row writer of
		// thread_members uses (see Ack), then one statement moves every thread's
		// last_seq and every sender's read mark.
		marks := make([]chat.AckUpdate, 0, len(readMark))
		for k, seq := range readMark {
			marks = append(marks, chat.AckUpdate{ThreadID: k[0], UserID: k[1], Seq: seq})
		}
		slices.SortFunc(marks, func(a, b chat.AckUpdate) int {
			return cmp.Or(cmp.Compare(a.ThreadID, b.ThreadID), cmp.Compare(a.UserID, b.UserID))
		})
		if err := lockMembers(tx, marks); err != nil {
			return err
		}
		sb.Reset()
		args = args[:0]
		sb.WriteString(`WITH t(id, seq) AS (VALUES `)
		n := 0
		for _, id := range threadIDs {
			if _, ok := members[id]; !ok {
				continue
			}
			if n > 0 {
				sb.WriteByte(',')
			}
			sb.WriteString(`(?::uuid, ?::bigint)`)
			args = append(args, id, lastSeq[id])
			n++
		}
		sb.WriteString(`), r(thread_id, user_id, seq) AS (VALUES `)
		for i, m := range marks {
			if i > 0 {
				sb.WriteByte(',')
			}
			sb.WriteString(`(?::uuid, ?::uuid, ?::bigint)`)
			args = append(args, m.ThreadID, m.UserID, m.Seq)
		}
		sb.WriteString(`), ut AS (UPDATE threads SET last_seq = t.seq,
  last_activity_at = CASE WHEN last_activity_at < ? THEN ? ELSE last_activity_at END
  FROM t WHERE threads.id = t.id AND threads.last_seq < t.seq RETURNING 1)
UPDATE thread_members SET read_seq = r.seq FROM r
WHERE thread_members.thread_id = r.thread_id AND thread_members.user_id = r.user_id AND thread_members.read_seq < r.seq`)
		args = append(args, now, now)
		return tx.Exec(sb.String(), args...).Error
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}
