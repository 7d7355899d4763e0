package ws

import (
	"context"
	"sync"
)

// queue is one socket's bounded send queue. It is a slice that grows with what is
// waiting, up to max, and is released when the writer has drained it, so an idle socket
// holds a few words instead of a fixed 256-slot buffer; a one-slot channel wakes the
// writer.
type queue struct {
	mu    sync.Mutex
	items []*outFrame
	max   int
	wake  chan struct{} // the writer has something to do
	room  chan struct{} // the writer took frames: enqueueWait may try again
}

func newQueue(max int) *queue {
	return &queue{max: max, wake: make(chan struct{}, 1), room: make(chan struct{}, 1)}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// push adds f unless the queue is full.
func (q *queue) push(f *outFrame) bool {
	q.mu.Lock()
	if len(q.items) >= q.max {
		q.mu.Unlock()
		return false
	}
	q.items = append(q.items, f)
	q.mu.Unlock()
	signal(q.wake)
	return true
}

// len reports how many frames wait.
func (q *queue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}

// take moves every waiting frame into buf (the writer's own slice) and returns it.
func (q *queue) take(buf []*outFrame) []*outFrame {
	q.mu.Lock()
	buf = append(buf, q.items...)
	clear(q.items)
	if cap(q.items) > 64 {
		q.items = nil // a burst is over: give its memory back
	} else {
		q.items = q.items[:0]
	}
	q.mu.Unlock()
	signal(q.room)
	return buf
}

// waitRoom blocks until the writer has taken frames, done closes or ctx ends.
func (q *queue) waitRoom(ctx context.Context, done <-chan struct{}) bool {
	select {
	case <-q.room:
		return true
	case <-done:
		return false
	case <-ctx.Done():
		return false
	}
}
