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
func (s *registrationStore) TakeDisconnects(context.Context, string) ([]chat.Disconnect, error) {
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

// hostsStore answers Hosts with what the test set.
type hostsStore struct {
	chat.PresenceStore
	mu    sync.Mutex
	hosts []chat.Host
}

func (s *hostsStore) set(hosts ...chat.Host) {
	s.mu.Lock()
	s.hosts = hosts
	s.mu.Unlock()
}

func (s *hostsStore) Hosts(context.Context) ([]chat.Host, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]chat.Host(nil), s.hosts...), nil
}

// repairHub counts RepairAll passes; each waits for a token on release when it is set.
type repairHub struct {
	idleHub
	mu      sync.Mutex
	passes  int
	started chan struct{}
	release chan struct{}
}

func (h *repairHub) RepairAll(context.Context) {
	h.mu.Lock()
	h.passes++
	h.mu.Unlock()
	if h.started != nil {
		h.started <- struct{}{}
	}
	if h.release != nil {
		<-h.release
	}
}

func (h *repairHub) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.passes
}

// TestRefreshRepairsWhenAHostDies: a host that dies without leaving (its heartbeat goes
// stale, or it comes back as a new instance) may have committed messages it never
// handed to this host, so every local socket is repaired from the store; a host that
// leaves (a drain removes its registration) or is still beating is no cause.
func TestRefreshRepairsWhenAHostDies(t *testing.T) {
	now := time.Now()
	host := func(id, instance string, beat time.Time) chat.Host {
		return chat.Host{HostID: id, InternalURL: "http://" + id, Instance: instance, LastHeartbeat: beat}
	}
	self := host("h1", "i1", now)
	store := &hostsStore{}
	hub := &repairHub{started: make(chan struct{}, 8)}
	dir := NewDirectory(self, 6*time.Second)
	log := slog.New(slog.DiscardHandler)
	n := NewNode(NodeConfig{Self: self}, store, dir, NewRegistry(store, dir, log), hub, log)
	ctx := context.Background()
	steps := []struct {
		name   string
		hosts  []chat.Host
		repair bool
	}{
		{"first view", []chat.Host{host("h2", "a", now), host("h3", "b", now)}, false},
		{"both still beating", []chat.Host{host("h2", "a", now.Add(time.Second)), host("h3", "b", now.Add(time.Second))}, false},
		{"h3 drained and left", []chat.Host{host("h2", "a", now.Add(2*time.Second))}, false},
		{"h2 killed: heartbeat stale", []chat.Host{host("h2", "a", now.Add(-time.Minute))}, true},
		{"h2 still stale", []chat.Host{host("h2", "a", now.Add(-time.Minute))}, false},
		{"h2 back as a new instance", []chat.Host{host("h2", "c", now)}, false},
		{"h2 killed and restarted between two refreshes", []chat.Host{host("h2", "d", now)}, true},
	}
	want := 0
	for _, s := range steps {
		store.set(s.hosts...)
		n.refresh(ctx)
		if s.repair {
			want++
			select {
			case <-hub.started:
			case <-time.After(5 * time.Second):
				t.Fatalf("%s: no repair of the local sockets", s.name)
			}
		}
		time.Sleep(20 * time.Millisecond) // a repair it wrongly started would have begun
		if got := hub.count(); got != want {
			t.Fatalf("%s: %d repairs in all, want %d", s.name, got, want)
		}
	}
}

// TestRepairAllRunsAgainWhenAskedMeanwhile: a cause that comes while a repair runs may
// concern sockets the running pass is already past, so one more pass follows it; any
// number of causes meanwhile make one pass, not one each.
func TestRepairAllRunsAgainWhenAskedMeanwhile(t *testing.T) {
	self := chat.Host{HostID: "h1", InternalURL: "http://h1", Instance: "i1"}
	store := &hostsStore{}
	hub := &repairHub{started: make(chan struct{}, 8), release: make(chan struct{})}
	dir := NewDirectory(self, 6*time.Second)
	log := slog.New(slog.DiscardHandler)
	n := NewNode(NodeConfig{Self: self}, store, dir, NewRegistry(store, dir, log), hub, log)
	ctx := context.Background()
	n.repairAll(ctx, "first")
	<-hub.started
	n.repairAll(ctx, "second")
	n.repairAll(ctx, "third")
	hub.release <- struct{}{}
	select {
	case <-hub.started:
	case <-time.After(5 * time.Second):
		t.Fatal("no second pass after causes that came while the first ran")
	}
	hub.release <- struct{}{}
	time.Sleep(20 * time.Millisecond)
	if got := hub.count(); got != 2 {
		t.Fatalf("%d passes, want 2", got)
	}
	n.repairAll(ctx, "later")
	<-hub.started
	hub.release <- struct{}{}
}
