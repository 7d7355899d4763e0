package ws

import (
	"context"
	"sync"
	"time"
)

// queue is one socket's bounded send queue. It is a slice that grows with what is
// waiting, up to max, and is released when the writer has drained it, so an idle socket
// holds a few words instead of a fixed 256-slot buffer.
//
// The writer goroutine runs only while there is something to write: push starts it,
// and it lingers writerLinger after the queue empties before it ends, so a socket that
// receives steadily keeps one writer while an idle one has none and pays no stack.
type queue struct {
	mu    sync.Mutex
	items []*outFrame
	max   int
	// writing is true while a writer goroutine runs; wake (made with it) tells a
	// lingering writer that frames arrived.
	writing bool
	wake    chan struct{}
	// closed stops the queue for good: the socket is closing, so nothing more goes
	// out and no writer starts again.
	closed bool
	// room is made by the first waitBelow that has to wait (catch-up of a backlog);
	// take signals it.
	room chan struct{}
	// final, set by Conn.closeAfterQueued, is the close frame the writer writes once
	// it has written what was queued (the queue is closed to new frames meanwhile).
	final *finalClose
}

// finalClose is a close the writer owes once the queue is written.
type finalClose struct {
	code     int
	reason   string
	deadline time.Time // no queued frame is written past it
}

// writerLinger is how long a writer waits for more frames after the queue empties
// before it ends: long enough that a busy socket keeps one writer across messages,
// short enough that a socket gone quiet soon stops paying for a goroutine. (Hub.linger
// holds it, so that tests can make it short.)
const writerLinger = time.Second

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// pushResult is what push did with a frame.
type pushResult int

const (
	pushed     pushResult = iota
	pushFull              // the queue is at max: the socket is too slow
	pushClosed            // the socket is closing: the frame is dropped
)

// push adds f unless the queue is full or closed. start is true when the caller must
// start the writer (the queue now counts it as running).
func (q *queue) push(f *outFrame) (res pushResult, start bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	switch {
	case q.closed:
		return pushClosed, false
	case len(q.items) >= q.max:
		return pushFull, false
	}
	q.items = append(q.items, f)
	if !q.writing {
		q.writing = true
		q.wake = make(chan struct{}, 1)
		return pushed, true
	}
	signal(q.wake)
	return pushed, false
}

// take moves every waiting frame into buf (the writer's own slice) and returns it.
//
// fin is the close the writer owes once the queue is written (Conn.closeAfterQueued),
// read in the same critical section: an empty take with fin set means nothing queued
// before the close is left.
func (q *queue) take(buf []*outFrame) (_ []*outFrame, fin *finalClose) {
	q.mu.Lock()
	fin = q.final
	buf = append(buf, q.items...)
	clear(q.items)
	if cap(q.items) > 64 {
		q.items = nil // a burst is over: give its memory back
	} else {
		q.items = q.items[:0]
	}
	if q.room != nil && len(buf) > 0 {
		signal(q.room)
	}
	q.mu.Unlock()
	return buf, fin
}

// stopIfEmpty ends the writer's turn when nothing waits; false means frames arrived
// and the writer goes on.
func (q *queue) stopIfEmpty() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if (len(q.items) > 0 && !q.closed) || q.final != nil {
		return false // the writer goes on: frames wait, or it owes the close frame
	}
	q.writing, q.wake = false, nil
	return true
}

// closeLocked drops what waits and refuses every later push.
func (q *queue) closeLocked() {
	q.closed = true
	clear(q.items)
	q.items = nil
}

// closeAfterLocked refuses every later push but keeps what waits, for the writer to
// write before the close frame fin (flush true; start true when the caller must start
// the writer, false when one runs: it is woken). When nothing waits and no writer
// runs, flush is false, fin is not kept, and the caller closes at once.
func (q *queue) closeAfterLocked(fin *finalClose) (flush, start bool) {
	q.closed = true
	if !q.writing && len(q.items) == 0 {
		return false, false
	}
	q.final = fin
	if !q.writing {
		q.writing = true
		q.wake = make(chan struct{}, 1)
		return true, true
	}
	signal(q.wake)
	return true, false
}

// owed returns the close the writer owes once the queue is written, if any.
func (q *queue) owed() *finalClose {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.final
}

// waitBelow blocks until at most n frames wait; false when done closes or ctx ends
// first.
func (q *queue) waitBelow(ctx context.Context, done <-chan struct{}, n int) bool {
	for {
		q.mu.Lock()
		if len(q.items) <= n {
			q.mu.Unlock()
			return true
		}
		if q.room == nil {
			q.room = make(chan struct{}, 1)
		}
		room := q.room
		q.mu.Unlock()
		select {
		case <-room:
		case <-done:
			return false
		case <-ctx.Done():
			return false
		}
	}
}
