package cluster

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/pkg/chat"
)

// gatedPresence answers Lookup only when the test opens the gate, counting calls.
type gatedPresence struct {
	chat.PresenceStore
	calls atomic.Int32
	gate  chan struct{}
}

func (p *gatedPresence) Lookup(ctx context.Context, users []string) (map[string][]chat.Connection, error) {
	p.calls.Add(1)
	select {
	case <-p.gate:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return map[string][]chat.Connection{users[0]: {{UserID: users[0], HostID: "h2", ConnID: "c1"}}}, nil
}

// TestSharedLookup: messages of a thread committed before a lookup began share it; a
// message committed after it began must not (it could miss a socket registered in
// between) and gets its own; other threads and other member lists never share.
func TestSharedLookup(t *testing.T) {
	p := &gatedPresence{gate: make(chan struct{})}
	d := &Deliverer{presence: p}
	members := []string{"u1", "u2"}
	ctx := context.Background()
	committed := time.Now()
	time.Sleep(time.Millisecond)

	var wg sync.WaitGroup
	results := make([]map[string][]chat.Connection, 5)
	lookup := func(i int, thread string, after time.Time, rs []string) {
		defer wg.Done()
		got, err := d.sharedLookup(ctx, thread, after, rs)
		if err != nil {
			t.Error(err)
		}
		results[i] = got
	}
	wg.Add(1)
	go lookup(0, "t1", committed, members)
	waitCalls(t, p, 1)
	// Committed before the lookup in flight began: joins it.
	wg.Add(1)
	go lookup(1, "t1", committed, members)
	time.Sleep(20 * time.Millisecond)
	if n := p.calls.Load(); n != 1 {
		t.Fatalf("%d lookups for two messages committed before the first began, want 1", n)
	}
	// Committed after it began, another thread, other members: each its own.
	wg.Add(3)
	go lookup(2, "t1", time.Now(), members)
	go lookup(3, "t2", committed, members)
	go lookup(4, "t1", committed, []string{"u1", "u3"})
	waitCalls(t, p, 4)
	close(p.gate)
	wg.Wait()
	for i, r := range results {
		if len(r["u1"]) != 1 {
			t.Fatalf("message %d got %v", i, r)
		}
	}
	// Nothing in flight: the next lookup is a fresh one.
	if _, err := d.sharedLookup(ctx, "t1", committed, members); err != nil || p.calls.Load() != 5 {
		t.Fatalf("after the flights ended: %d calls, %v", p.calls.Load(), err)
	}
}

func waitCalls(t *testing.T, p *gatedPresence, n int32) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for p.calls.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d lookups started, want %d", p.calls.Load(), n)
		}
		time.Sleep(time.Millisecond)
	}
}
