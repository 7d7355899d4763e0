package chat

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// AckBuffer collects acks from sockets and writes them to the store in batches, so that
// a busy host makes one UPDATE round per interval instead of one per ack. The contract
// asks that an ack be durable within 1 s; the default interval is 200 ms.
type AckBuffer struct {
	store    ThreadStore
	interval time.Duration
	max      int
	log      *slog.Logger

	mu      sync.Mutex
	pending map[ackKey]int64
	kick    chan struct{}
}

type ackKey struct{ thread, user string }

// NewAckBuffer returns a buffer flushing every interval (200 ms when 0), or sooner when
// max keys (10,000 when 0) are waiting.
func NewAckBuffer(store ThreadStore, interval time.Duration, max int, log *slog.Logger) *AckBuffer {
	if interval == 0 {
		interval = 200 * time.Millisecond
	}
	if max == 0 {
		max = 10000
	}
	return &AckBuffer{store: store, interval: interval, max: max, log: log, pending: map[ackKey]int64{}, kick: make(chan struct{}, 1)}
}

// Add records that user holds thread up to seq. Only the highest seq per key is kept.
func (a *AckBuffer) Add(threadID, userID string, seq int64) {
	a.mu.Lock()
	k := ackKey{threadID, userID}
	if seq > a.pending[k] {
		a.pending[k] = seq
	}
	full := len(a.pending) >= a.max
	a.mu.Unlock()
	if full {
		select {
		case a.kick <- struct{}{}:
		default:
		}
	}
}

// Run flushes until ctx ends, then flushes once more.
func (a *AckBuffer) Run(ctx context.Context) {
	t := time.NewTicker(a.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
			a.Flush(fctx)
			cancel()
			return
		case <-t.C:
		case <-a.kick:
		}
		a.Flush(ctx)
	}
}

// Flush writes what is pending. On a store error the acks are put back (keeping the
// highest seq), so an ack is retried rather than lost while the database is down.
func (a *AckBuffer) Flush(ctx context.Context) {
	a.mu.Lock()
	if len(a.pending) == 0 {
		a.mu.Unlock()
		return
	}
	batch := a.pending
	a.pending = make(map[ackKey]int64, len(batch))
	a.mu.Unlock()
	acks := make([]AckUpdate, 0, len(batch))
	for k, s := range batch {
		acks = append(acks, AckUpdate{ThreadID: k.thread, UserID: k.user, Seq: s})
	}
	if err := a.store.Ack(ctx, acks); err != nil {
		a.log.Warn("flush acks", "n", len(acks), "err", err)
		for _, u := range acks {
			a.Add(u.ThreadID, u.UserID, u.Seq)
		}
	}
}
