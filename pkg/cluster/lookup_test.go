package cluster

import (
	"context"
	"errors"
	"log/slog"
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

// hungPresence stands for a Redis that accepts connections and never answers, until
// the test revives it.
type hungPresence struct {
	chat.PresenceStore
	alive           atomic.Bool
	failOnce        atomic.Bool // the next lookup fails at once, as on a blip
	lookups, probes atomic.Int32
}

func (p *hungPresence) Lookup(ctx context.Context, users []string) (map[string][]chat.Connection, error) {
	p.lookups.Add(1)
	if p.failOnce.CompareAndSwap(true, false) {
		return nil, errors.New("i/o timeout")
	}
	if p.alive.Load() {
		return map[string][]chat.Connection{}, nil
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

func (p *hungPresence) Hosts(ctx context.Context) ([]chat.Host, error) {
	p.probes.Add(1)
	if p.alive.Load() {
		return nil, nil
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestHungRedisCostsOneLookupTimeout: while Redis does not answer, only the first
// presence lookup waits for it; every later send goes straight to every known host,
// and a probe off the send path (the first with the next send, then one a second)
// finds Redis when it is back.
// Retrying the lookup inline once a second held a send, and every send queued behind
// it on its socket, for the lookup's 500 ms timeout each time.
func TestHungRedisCostsOneLookupTimeout(t *testing.T) {
	now := time.Now()
	self := chat.Host{HostID: "a", InternalURL: "http://127.0.0.1:1", Instance: "ia", LastHeartbeat: now}
	b := chat.Host{HostID: "b", InternalURL: "http://127.0.0.1:2", Instance: "ib", LastHeartbeat: now}
	dir := NewDirectory(self, time.Hour)
	dir.Update([]chat.Host{self, b})
	p := &hungPresence{}
	d := NewDeliverer(DelivererConfig{HostID: "a", Timeout: 2 * time.Second}, nil, p, dir, NewSigner("0123456789abcdef0123456789abcdef"), nil, slog.New(slog.DiscardHandler))
	defer d.Close(context.Background())
	members := []string{"u1", "u2"}
	route := func() (map[string][]chat.Recipient, time.Duration) {
		start := time.Now()
		groups, _, _ := d.route(context.Background(), "t1", time.Now(), members)
		return groups, time.Since(start)
	}

	groups, took := route()
	if len(groups["b"]) != 2 {
		t.Fatalf("with Redis hung, host b got %v, want both members", groups["b"])
	}
	if took < 400*time.Millisecond {
		t.Fatalf("the first lookup returned after %v; the fake should have held it to its timeout", took)
	}
	var slowest time.Duration
	for end := time.Now().Add(2500 * time.Millisecond); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		groups, took := route()
		slowest = max(slowest, took)
		if len(groups["b"]) != 2 {
			t.Fatalf("with Redis hung, host b got %v, want both members", groups["b"])
		}
	}
	if slowest > 100*time.Millisecond {
		t.Errorf("a send waited %v for the presence lookup after Redis had already failed", slowest)
	}
	if n := p.lookups.Load(); n != 1 {
		t.Errorf("%d lookups reached the hung Redis in 3 s, want only the first", n)
	}
	if n := p.probes.Load(); n < 2 || n > 4 {
		t.Errorf("%d probes in 2.5 s, want one about every second", n)
	}

	p.alive.Store(true)
	deadline := time.Now().Add(3 * time.Second)
	for p.lookups.Load() == 1 {
		if time.Now().After(deadline) {
			t.Fatal("presence lookups did not resume within 3 s of Redis answering")
		}
		if groups, _ := route(); p.lookups.Load() > 1 && len(groups) != 0 {
			t.Fatalf("after Redis came back, an empty presence table still routed %v", groups)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestLookupBlipRecoversAtOnce: after one failed lookup with Redis otherwise well, the
// first probe goes out with the next send, and lookups resume without waiting a second.
func TestLookupBlipRecoversAtOnce(t *testing.T) {
	now := time.Now()
	self := chat.Host{HostID: "a", InternalURL: "http://127.0.0.1:1", Instance: "ia", LastHeartbeat: now}
	dir := NewDirectory(self, time.Hour)
	dir.Update([]chat.Host{self})
	p := &hungPresence{}
	p.alive.Store(true)
	p.failOnce.Store(true)
	d := NewDeliverer(DelivererConfig{HostID: "a", Timeout: 2 * time.Second}, nil, p, dir, NewSigner("0123456789abcdef0123456789abcdef"), nil, slog.New(slog.DiscardHandler))
	defer d.Close(context.Background())
	start := time.Now()
	for p.lookups.Load() < 2 {
		if time.Since(start) > 500*time.Millisecond {
			t.Fatalf("lookups had not resumed %v after one failed with Redis well", time.Since(start))
		}
		d.route(context.Background(), "t1", time.Now(), []string{"u1"})
		time.Sleep(5 * time.Millisecond)
	}
	if n := p.probes.Load(); n != 1 {
		t.Errorf("%d probes, want the one that found Redis well", n)
	}
}
