package cluster

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/pkg/chat"
)

// registrationStore keeps one host registration as Heartbeat and RemoveHost leave it.
// A heartbeat can be held on its way to Redis (hold), as a slow round trip would be.
type registrationStore struct {
	chat.PresenceStore
	mu         sync.Mutex
	registered bool
	hold       chan struct{} // non-nil: the next Heartbeat waits for it to close
	holding    chan struct{} // closed when a held Heartbeat has started
}

func (s *registrationStore) Heartbeat(ctx context.Context, h chat.Host, ttl time.Duration) (bool, error) {
	s.mu.Lock()
	hold, holding := s.hold, s.holding
	s.hold = nil
	s.mu.Unlock()
	if hold != nil {
		close(holding)
		<-hold
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	fresh := !s.registered
	s.registered = true
	return fresh, nil
}

func (s *registrationStore) RemoveHost(ctx context.Context, hostID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.registered = false
	return nil
}

func (s *registrationStore) Hosts(context.Context) ([]chat.Host, error) { return nil, nil }
func (s *registrationStore) TakeHandoffs(context.Context, string) (map[string]int64, error) {
	return nil, nil
}

// idleHub is a hub with no sockets.
type idleHub struct{ localHub }

func (idleHub) Connections() []chat.Connection { return nil }
func (idleHub) ExpireSessions(time.Time)       {}
func (idleHub) RepairAll(context.Context)      {}

// TestLeaveWinsOverAHeartbeatInFlight: a heartbeat already on its way to Redis when the
// host drains must not register the drained host again after Leave removed it. Other
// hosts would otherwise count it as live, and send to it, until its heartbeat went
// stale.
func TestLeaveWinsOverAHeartbeatInFlight(t *testing.T) {
	store := &registrationStore{}
	self := chat.Host{HostID: "h1", InternalURL: "http://127.0.0.1:1", Instance: "i1"}
	dir := NewDirectory(self, 6*time.Second)
	log := slog.New(slog.DiscardHandler)
	n := NewNode(NodeConfig{Self: self, HeartbeatEvery: 10 * time.Millisecond, HostTTL: 6 * time.Second},
		store, dir, NewRegistry(store, dir, log), idleHub{}, log)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := n.Claim(ctx); err != nil {
		t.Fatal(err)
	}
	hold, holding := make(chan struct{}), make(chan struct{})
	store.mu.Lock()
	store.hold, store.holding = hold, holding
	store.mu.Unlock()
	done := make(chan struct{})
	go func() { defer close(done); n.Run(ctx) }()

	<-holding // Run's heartbeat is in flight
	left := make(chan struct{})
	go func() { defer close(left); n.Leave(context.Background()) }()
	time.Sleep(20 * time.Millisecond) // let Leave run as far as it can meanwhile
	close(hold)                       // the heartbeat lands
	<-left
	time.Sleep(50 * time.Millisecond) // several more ticks of the heartbeat
	cancel()
	<-done

	store.mu.Lock()
	defer store.mu.Unlock()
	if store.registered {
		t.Fatal("the host is registered after Leave: a heartbeat in flight re-registered it")
	}
}
