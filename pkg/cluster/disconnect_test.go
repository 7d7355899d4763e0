package cluster

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/pkg/chat"
	"github.com/switchboard-chat/switchboard/pkg/metrics"
)

// disconnectPresence lists hosts and keeps the disconnect records it is given.
type disconnectPresence struct {
	chat.PresenceStore
	hosts   []chat.Host
	mu      sync.Mutex
	records map[string][]chat.Disconnect
}

func (p *disconnectPresence) Hosts(context.Context) ([]chat.Host, error) { return p.hosts, nil }

func (p *disconnectPresence) AddDisconnect(_ context.Context, hostID string, d chat.Disconnect) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.records == nil {
		p.records = map[string][]chat.Disconnect{}
	}
	p.records[hostID] = append(p.records[hostID], d)
	return nil
}

// sessionHub counts the sessions it is asked to disconnect.
type sessionHub struct {
	localHub
	mu    sync.Mutex
	ended []string
}

func (h *sessionHub) DisconnectSession(hash string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ended = append(h.ended, hash)
	return 1
}

// TestDisconnectRecordedForHostsNotTaken: a logout's disconnect goes to every live
// host; a host that refuses the call, and a host still registered whose heartbeat is
// stale (cut off from Redis, it keeps its sockets and comes back), get a record in
// Redis instead, which they take on their next tick. A host that took the call gets
// none.
func TestDisconnectRecordedForHostsNotTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + ln.Addr().String()
	_ = ln.Close()
	took := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"closed":1}`))
	}))
	defer took.Close()

	now := time.Now()
	a := chat.Host{HostID: "a", InternalURL: "http://127.0.0.1:1", Instance: "ia", LastHeartbeat: now}
	b := chat.Host{HostID: "b", InternalURL: refused, Instance: "ib", LastHeartbeat: now}
	c := chat.Host{HostID: "c", InternalURL: took.URL, Instance: "ic", LastHeartbeat: now.Add(-time.Minute)}
	e := chat.Host{HostID: "e", InternalURL: took.URL, Instance: "ie", LastHeartbeat: now}
	p := &disconnectPresence{hosts: []chat.Host{a, b, c, e}}
	hub := &sessionHub{}
	d := NewDeliverer(DelivererConfig{HostID: "a", Timeout: 2 * time.Second, Retries: 1}, hub, p, NewDirectory(a, 6*time.Second),
		NewSigner("0123456789abcdef0123456789abcdef"), metrics.New(), slog.New(slog.DiscardHandler))
	defer d.Close(context.Background())

	if err := d.DisconnectSession(context.Background(), "s1"); err == nil {
		t.Error("DisconnectSession = nil with b refusing the call, want its error")
	}
	if !slices.Equal(hub.ended, []string{"s1"}) {
		t.Errorf("local hub ended %v, want [s1]", hub.ended)
	}
	want := map[string][]chat.Disconnect{"b": {{SessionHash: "s1"}}, "c": {{SessionHash: "s1"}}}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.records) != len(want) || !slices.Equal(p.records["b"], want["b"]) || !slices.Equal(p.records["c"], want["c"]) {
		t.Fatalf("disconnect records %v, want %v: one for the host that refused, one for the silent one, none for the one that took the call", p.records, want)
	}
}
