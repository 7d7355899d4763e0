package redis

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/switchboard-chat/switchboard/pkg/batchq"
)

// batcher sends the hot-path commands of concurrent callers (every send's rate-limit
// script and presence lookup) to Redis in one pipeline, one pipeline at a time: what
// callers hand in while a pipeline is out is the next one. Each call to Redis costs the
// host a write and a read system call and Redis as much again, whatever it carries,
// so under load the calls, not the commands, are what the host and Redis spend their
// time on. A lone caller is not delayed: with nothing out, its pipeline leaves at once.
//
// As in the PostgreSQL committer there is no batcher goroutine (package batchq): the
// caller that finds the batcher idle sends the pipeline on its own goroutine (the
// leader) and, when it is answered, hands the lead to the oldest caller waiting.
//
// Against a single server the pipelines go over one connection the batcher holds
// (conn), not through the pool: go-redis checks every pooled connection it hands out
// with a recvfrom system call, and with GOMAXPROCS=1 that call, the only one of the
// hot path still made through the scheduler (see package rawio), woke the runtime's
// sysmon thread for every pipeline. Holding the connection cut the hosts' CPU per
// message at 1,000 msg/s by a fifth (414 against 524 µs, lower in 8 of 8 paired
// runs). A held connection that fails is closed, and that pipeline is sent once more
// through the pool, whose check is what finds a fresh connection after Redis restarts.
type batcher struct {
	rdb  goredis.UniversalClient
	conn *goredis.Conn // the held connection (one server only); only the leader touches it
	max  int           // commands per pipeline (soft: one caller's commands are never split)
	q    batchq.Queue[*batchReq]

	pipelines atomic.Int64
	commands  atomic.Int64
}

// batchReq is one caller's commands.
type batchReq struct {
	ctx   context.Context
	n     int
	queue func(goredis.Pipeliner)
	done  chan bool // buffered 1: true hands over the lead, false answers
	err   error     // set before an answer: the caller's context ended before its commands went out
}

// batchMaxWait bounds one pipeline when none of its callers has a deadline, so that a
// hung Redis holds the callers queued behind it for at most this long (plus their own
// pipeline), not for the client's full read timeout.
const batchMaxWait = time.Second

func newBatcher(rdb goredis.UniversalClient, max int) *batcher {
	return &batcher{rdb: rdb, max: max}
}

// do has queue add n commands to the next pipeline and returns once that pipeline has
// been answered; each command then holds its own result or error. It returns ctx's
// error, and queue's commands were not sent, if ctx ended while the request waited its
// turn; a request already in a pipeline waits for it, which is bounded by the earliest
// deadline of that pipeline's callers.
func (b *batcher) do(ctx context.Context, n int, queue func(goredis.Pipeliner)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r := &batchReq{ctx: ctx, n: n, queue: queue, done: make(chan bool, 1)}
	lead := b.q.Join(r)
	for {
		if lead {
			b.lead()
		}
		select {
		case lead = <-r.done:
			if !lead {
				return r.err
			}
			continue
		case <-ctx.Done():
		}
		if b.q.Leave(r) {
			return ctx.Err()
		}
		if lead = <-r.done; !lead {
			return r.err
		}
	}
}

// lead sends the oldest queued requests, the leader's own among them, as one pipeline,
// then passes the lead on or leaves the batcher idle.
func (b *batcher) lead() {
	b.run(b.q.Take(b.max, func(r *batchReq) int { return r.n }))
	if next, ok := b.q.Pass(); ok {
		next.done <- true
	}
}

// run sends one pipeline and answers its requests. Requests whose caller already gave
// up are answered with that error and left out.
func (b *batcher) run(batch []*batchReq) {
	live := batch[:0]
	var deadline time.Time
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.err = err
			r.done <- false
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
	if deadline.IsZero() {
		deadline = time.Now().Add(batchMaxWait)
	}
	// The pipeline is everyone's, so it runs on no caller's context, only until the
	// earliest of their deadlines.
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	b.exec(ctx, live)
	for _, r := range live {
		r.done <- false
	}
}

// exec sends live's commands as one pipeline, over the held connection when there is
// one (see batcher). Each caller reads its own commands' errors.
func (b *batcher) exec(ctx context.Context, live []*batchReq) {
	single, ok := b.rdb.(*goredis.Client) // not a Redis Cluster
	if !ok {
		_ = b.send(ctx, b.rdb.Pipeline(), live)
		return
	}
	if b.conn == nil {
		b.conn = single.Conn()
	}
	err := b.send(ctx, b.conn.Pipeline(), live)
	var reply goredis.Error
	if err == nil || errors.As(err, &reply) {
		return // answered; a command's own error (NOSCRIPT, nil) is its caller's
	}
	// The connection broke (Redis restarted or went away, or a deadline cut an answer
	// short): go-redis will not use it again.
	_ = b.conn.Close()
	b.conn = nil
	if ctx.Err() == nil {
		_ = b.send(ctx, single.Pipeline(), live)
	}
}

// send queues live's commands on pipe and sends it.
func (b *batcher) send(ctx context.Context, pipe goredis.Pipeliner, live []*batchReq) error {
	cmds := 0
	for _, r := range live {
		r.queue(pipe)
		cmds += r.n
	}
	_, err := pipe.Exec(ctx)
	b.pipelines.Add(1)
	b.commands.Add(int64(cmds))
	return err
}

// PipelineStats reports how many pipelines the hot path (rate-limit scripts and
// presence lookups) has sent and how many commands they carried; their ratio is how
// many callers' commands shared a round trip.
func (s *Store) PipelineStats() (pipelines, commands int64) {
	return s.batch.pipelines.Load(), s.batch.commands.Load()
}
