package ws_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard-chat/switchboard/pkg/chat"
	"github.com/switchboard-chat/switchboard/pkg/hosttest"
	"github.com/switchboard-chat/switchboard/pkg/metrics"
	"github.com/switchboard-chat/switchboard/pkg/ws"
)

// downRegistry is a presence registry whose Redis is unreachable: it counts nothing.
type downRegistry struct{ nopRegistry }

func (downRegistry) ReserveSocket(context.Context, string, string, int) (bool, error) {
	return false, errors.New("redis is down")
}

// While Redis cannot count a user's sockets, the host's own count decides, and it is
// as atomic as Redis's: 25 upgrades of one user started at once open exactly 20
// sockets (contract §8) and get 429 for the other 5; a socket closed frees its slot.
func TestSocketLimitOnThisHostWhileRedisIsDown(t *testing.T) {
	svc := chat.NewService(chat.ServiceConfig{}, nil)
	svc.Store = quietStore{thread: chat.NewID()}
	log := slog.New(slog.DiscardHandler)
	const tries = 25
	// Every upgrade waits in its session lookup until all have arrived, so that they
	// all count the user's sockets at the same moment.
	var arrived sync.WaitGroup
	arrived.Add(tries)
	all := make(chan struct{})
	go func() { arrived.Wait(); close(all) }()
	var calls atomic.Int32
	cfg := ws.HubConfig{HostID: "test", Authenticate: func(r *http.Request) (chat.Session, error) {
		if calls.Add(1) <= tries {
			arrived.Done()
			select {
			case <-all:
			case <-time.After(5 * time.Second):
			}
		}
		return chat.Session{UserID: strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "), Username: "u"}, nil
	}}
	hub := ws.NewHub(cfg, svc, downRegistry{}, chat.NewAckBuffer(nil, time.Hour, 0, log), metrics.New(), log)
	srv := httptest.NewServer(hub)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		hub.Drain(ctx, 0)
		srv.Close()
	})
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"
	user := chat.NewID()
	dial := func() (*websocket.Conn, int, error) {
		return hosttest.DialStatus(url, http.Header{"Authorization": {"Bearer " + user}})
	}

	open, refused, failures := hosttest.UpgradeBurst(tries, func(int) (*websocket.Conn, int, error) { return dial() })
	t.Cleanup(func() {
		for _, c := range open {
			_ = c.Close()
		}
	})
	if len(failures) > 0 {
		t.Fatalf("upgrades failed otherwise than 429: %v", failures)
	}
	if len(open) != 20 || refused != tries-20 {
		t.Fatalf("%d concurrent upgrades opened %d sockets and were refused %d times, want 20 and %d", tries, len(open), refused, tries-20)
	}
	// A dial returns once the upgrade is answered, before the hub counts the socket:
	// wait for all 20, or 19 could be read before the close below is seen at all.
	eventually(t, 5*time.Second, "every open socket should be counted", func() bool { return hub.Count() == 20 })
	_ = open[0].Close()
	open = open[1:]
	eventually(t, 5*time.Second, "the closed socket should free its slot", func() bool { return hub.Count() == 19 })
	c, status, err := dial()
	if err != nil {
		t.Fatalf("after a socket closed: status %d (%v), want a socket", status, err)
	}
	open = append(open, c)
	if c, status, err := dial(); err == nil {
		_ = c.Close()
		t.Fatal("a 21st socket was opened")
	} else if status != http.StatusTooManyRequests {
		t.Fatalf("the 21st upgrade answered %d (%v), want 429", status, err)
	}
}
