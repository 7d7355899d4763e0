// Package batchq is the queue behind Switchboard's two kinds of batching: the
// PostgreSQL group commit (pkg/postgres) and the Redis pipelines shared by concurrent
// sends (pkg/redis). Neither has a goroutine of its own. The caller that finds the queue
// idle leads: it takes the oldest requests, its own among them, runs them as one batch
// on its own goroutine, answers them, and then passes the lead to the oldest request
// still waiting. What arrives while a batch runs is the next batch, so batches grow
// with the load and a lone caller is never delayed.
//
// The queue only keeps the order and says who leads; how a request is answered, or
// handed the lead, is up to its user.
package batchq

import "sync"

// Queue is a leader/follower queue of requests R (pointers, compared by identity). The
// zero value is an idle, empty queue. It is safe for concurrent use.
type Queue[R comparable] struct {
	mu     sync.Mutex
	busy   bool // a leader is running; every request in q waits for a lead or an answer
	q      []R
	leader R // the request whose caller leads now (or was handed the lead): it cannot leave
}

// Join queues r and reports whether its caller leads now, because the queue was idle.
// A caller that does not lead waits to be answered or handed the lead (Pass).
func (q *Queue[R]) Join(r R) (lead bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.q = append(q.q, r)
	if q.busy {
		return false
	}
	q.busy, q.leader = true, r
	return true
}

// Take removes and returns the oldest requests, as many as fit in max by weight (nil:
// each weighs 1), and always at least one, however heavy. Only the leader calls it.
func (q *Queue[R]) Take(max int, weight func(R) int) []R {
	q.mu.Lock()
	defer q.mu.Unlock()
	n, sum := 0, 0
	for n < len(q.q) {
		w := 1
		if weight != nil {
			w = weight(q.q[n])
		}
		if n > 0 && sum+w > max {
			break
		}
		sum += w
		n++
	}
	batch := make([]R, n)
	copy(batch, q.q)
	clear(q.q[:n])
	q.q = q.q[n:]
	if len(q.q) == 0 {
		q.q = nil // let a burst's backing array go
	}
	return batch
}

// Pass ends the leader's turn once its batch is answered. It returns the oldest waiting
// request, whose caller the leader must now hand the lead to, or false when none is
// waiting and the queue is idle again.
func (q *Queue[R]) Pass() (next R, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var zero R
	if len(q.q) == 0 {
		q.busy, q.leader = false, zero
		return zero, false
	}
	q.leader = q.q[0]
	return q.leader, true
}

// Leave removes r, whose caller gave up waiting, and reports whether it could: not once
// a batch has taken r or r has been handed the lead, since then its caller must see the
// batch (or its own lead) through.
func (q *Queue[R]) Leave(r R) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if r == q.leader {
		return false
	}
	for i, x := range q.q {
		if x == r {
			q.q = append(q.q[:i], q.q[i+1:]...)
			return true
		}
	}
	return false
}
