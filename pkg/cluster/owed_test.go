package cluster

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/pkg/chat"
	"github.com/switchboard-chat/switchboard/pkg/metrics"
)

// downPresence is a Redis that refuses every call until up is set, and then lists
// hosts and records hand-offs.
type downPresence struct {
	chat.PresenceStore
	up       atomic.Bool
	hosts    []chat.Host
	mu       sync.Mutex
	handoffs map[[2]string]int64 // (host, thread) -> seq
}

var errRefused = errors.New("dial tcp: connection refused")

func (p *downPresence) Lookup(context.Context, []string) (map[string][]chat.Connection, error) {
	if !p.up.Load() {
		return nil, errRefused
	}
	return map[string][]chat.Connection{}, nil
}

func (p *downPresence) Hosts(context.Context) ([]chat.Host, error) {
	if !p.up.Load() {
		return nil, errRefused
	}
	return p.hosts, nil
}

func (p *downPresence) AddHandoff(_ context.Context, hostID, threadID string, seq int64) error {
	if !p.up.Load() {
		return errRefused
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.handoffs == nil {
		p.handoffs = map[[2]string]int64{}
	}
	k := [2]string{hostID, threadID}
	p.handoffs[k] = max(p.handoffs[k], seq)
	return nil
}

func (p *downPresence) recorded() map[[2]string]int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.handoffs)
}

// nobodyHub is a hub with no sockets.
type nobodyHub struct{ localHub }

func (nobodyHub) DeliverMessage(context.Context, *chat.Message, []chat.Recipient, string) []chat.DeliveryResult {
	return nil
}

// TestHandoffsKeptUntilRedisAnswers: while Redis is unreachable a fan-out goes to the
// last known hosts, and a call that fails there cannot be recorded as a hand-off. Both
// leave sockets that stay connected without the message: on a host the call missed,
// and on a host that joined after the last host list (contract section 4.1: live if
// connected). Once Redis answers, the sender records the hand-offs it kept: to the
// host it could not call, and to every other registered host for the threads it
// delivered to without a lookup, so each repairs its sockets from the store.
func TestHandoffsKeptUntilRedisAnswers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	_ = ln.Close() // calls to b are refused
	now := time.Now()
	a := chat.Host{HostID: "a", InternalURL: "http://127.0.0.1:1", Instance: "ia", LastHeartbeat: now}
	b := chat.Host{HostID: "b", InternalURL: dead, Instance: "ib", LastHeartbeat: now}
	c := chat.Host{HostID: "c", InternalURL: dead, Instance: "ic", LastHeartbeat: now} // joins while Redis is out of reach
	dir := NewDirectory(a, time.Hour)
	dir.Update([]chat.Host{a, b})
	p := &downPresence{hosts: []chat.Host{a, b, c}}
	d := NewDeliverer(DelivererConfig{HostID: "a", Timeout: 2 * time.Second, Retries: 1}, nobodyHub{}, p, dir,
		NewSigner("0123456789abcdef0123456789abcdef"), metrics.New(), slog.New(slog.DiscardHandler))
	defer d.Close(context.Background())

	send := func(thread string, seq int64) {
		d.DeliverMessage(context.Background(), chat.Stored{
			Message: chat.Message{ID: chat.NewID(), ThreadID: thread, Seq: seq, SenderID: "u1", Body: "x", CreatedAt: time.Now()},
			Members: []string{"u1", "u2"},
		}, "")
	}
	send("t1", 1)
	send("t1", 2)
	send("t2", 7)
	time.Sleep(1500 * time.Millisecond) // flushOwed tries, and fails, meanwhile
	if got := p.recorded(); len(got) != 0 {
		t.Fatalf("hand-offs recorded while Redis refused them: %v", got)
	}

	p.up.Store(true)
	want := map[[2]string]int64{
		{"b", "t1"}: 2, {"b", "t2"}: 7, // b's calls failed
		{"c", "t1"}: 2, {"c", "t2"}: 7, // c was not in the last known list
	}
	deadline := time.Now().Add(3 * time.Second)
	for !maps.Equal(p.recorded(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("3 s after Redis answered, the hand-offs recorded are %v, want %v", p.recorded(), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Nothing is left to record: the flusher has ended.
	deadline = time.Now().Add(2 * time.Second)
	for {
		d.owedMu.Lock()
		flushing := d.owedFlushing
		d.owedMu.Unlock()
		if !flushing {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the flusher still runs with nothing owed")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
