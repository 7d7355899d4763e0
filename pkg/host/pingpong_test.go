package host_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard-chat/switchboard/pkg/hosttest"
	"github.com/switchboard-chat/switchboard/pkg/redis"
)

// pingPeer is a WebSocket client that reads everything, counts the server's pings and
// answers them or not.
type pingPeer struct {
	conn   *websocket.Conn
	dialed time.Time
	connID string // from hello
	pings  atomic.Int32
	pongs  chan struct{} // a `{"type":"pong"}` frame arrived
	done   chan struct{} // the reader ended: closed and err are set
	mu     sync.Mutex
	closed time.Time
	err    error
}

func dialPingPeer(t *testing.T, h *hosttest.Host, token string, answer bool) *pingPeer {
	t.Helper()
	p := &pingPeer{dialed: time.Now(), pongs: make(chan struct{}, 16), done: make(chan struct{})}
	conn, status, err := hosttest.DialStatus("ws://"+h.Addr+"/ws", http.Header{"Authorization": {"Bearer " + token}})
	if err != nil {
		t.Fatalf("dial: %d %v", status, err)
	}
	p.conn = conn
	conn.SetPingHandler(func(data string) error {
		p.pings.Add(1)
		if !answer {
			return nil
		}
		return conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	hello := make(chan string, 1)
	go func() {
		defer close(p.done)
		for {
			_, data, err := conn.ReadMessage()
			if err != nil {
				p.mu.Lock()
				p.closed, p.err = time.Now(), err
				p.mu.Unlock()
				return
			}
			var f struct {
				Type   string `json:"type"`
				ConnID string `json:"conn_id"`
			}
			_ = json.Unmarshal(data, &f)
			switch f.Type {
			case "hello":
				hello <- f.ConnID
			case "pong":
				p.pongs <- struct{}{}
			}
		}
	}()
	t.Cleanup(func() {
		_ = conn.Close()
		<-p.done
	})
	select {
	case p.connID = <-hello:
	case <-p.done:
		t.Fatalf("socket ended before hello: %v", p.err)
	case <-time.After(5 * time.Second):
		t.Fatal("no hello within 5 s")
	}
	return p
}

func (p *pingPeer) closedAt() (time.Time, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed, p.err
}

// TestSilentSocketClosedQuietSocketKept (contract section 3, with the intervals scaled
// down through CHAT_PING_INTERVAL and CHAT_PONG_TIMEOUT): a peer that reads but never
// answers a ping, and sends nothing, is closed by the host no sooner than the pong
// timeout after it connected and no later than ping interval + pong timeout, and its
// presence entry leaves Redis within that bound; a peer that answers pings but sends
// nothing is not silent: it is still open, with its entry, after twice the pong
// timeout, and answers a ping frame. TestFaultHalfOpenClient covers a vanished client
// in a cluster; nothing else kept the quiet-but-alive side.
func TestSilentSocketClosedQuietSocketKept(t *testing.T) {
	const ping, pong = time.Second, 3 * time.Second
	h := hosttest.Start(t, hosttest.Options{Env: map[string]string{
		"CHAT_PING_INTERVAL": ping.String(), "CHAT_PONG_TIMEOUT": pong.String(),
	}})
	const pw = "long enough password"
	quietName, muteName := "quiet"+hosttest.RandomHex(3), "mute"+hosttest.RandomHex(3)
	quietUser, muteUser := h.Register(t, quietName, pw), h.Register(t, muteName, pw)
	quietTok, muteTok := h.Login(t, quietName, pw).Token, h.Login(t, muteName, pw).Token

	quiet := dialPingPeer(t, h, quietTok, true)
	mute := dialPingPeer(t, h, muteTok, false)

	store := redis.New(h.Stores.Redis, redis.Config{Prefix: h.Stores.Prefix}, nil)
	has := func(userID, connID string) (bool, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		entries, err := store.Lookup(ctx, []string{userID})
		if err != nil {
			return false, err
		}
		for _, e := range entries[userID] {
			if e.ConnID == connID && e.HostID == h.HostID {
				return true, nil
			}
		}
		return false, nil
	}
	hosttest.CheckFor(t, 2*time.Second, 10*time.Millisecond, func() error {
		for _, p := range []struct {
			user string
			peer *pingPeer
		}{{quietUser.ID, quiet}, {muteUser.ID, mute}} {
			if ok, err := has(p.user, p.peer.connID); err != nil || !ok {
				return fmt.Errorf("no presence entry for socket %s (%w)", p.peer.connID, err)
			}
		}
		return nil
	})

	// The mute peer: closed, and its entry gone, between pong and ping + pong.
	bound := ping + pong
	select {
	case <-mute.done:
	case <-time.After(time.Until(mute.dialed.Add(bound + 2*time.Second))):
		t.Fatalf("a socket that answered no ping is still open %v after it connected (ping %v, pong timeout %v)", time.Since(mute.dialed), ping, pong)
	}
	at, err := mute.closedAt()
	closedAfter := at.Sub(mute.dialed)
	t.Logf("the mute socket got %d pings and was closed %v after it connected (%v)", mute.pings.Load(), closedAfter.Round(time.Millisecond), err)
	if closedAfter < pong {
		t.Errorf("the mute socket was closed %v after it connected, before the pong timeout %v", closedAfter, pong)
	}
	if closedAfter > bound {
		t.Errorf("the mute socket was closed %v after it connected, past ping + pong timeout %v", closedAfter, bound)
	}
	if mute.pings.Load() == 0 {
		t.Errorf("the mute socket was closed without having been pinged")
	}
	hosttest.CheckFor(t, time.Until(mute.dialed.Add(bound+2*time.Second)), 10*time.Millisecond, func() error {
		if ok, err := has(muteUser.ID, mute.connID); err != nil || ok {
			return fmt.Errorf("the mute socket's presence entry is still there %v after it connected (%w)", time.Since(mute.dialed), err)
		}
		return nil
	})
	if gone := time.Since(mute.dialed); gone > bound {
		t.Errorf("the mute socket's presence entry left %v after it connected, past ping + pong timeout %v", gone, bound)
	}

	// The quiet peer: still open at twice the pong timeout, having sent only pongs.
	time.Sleep(time.Until(quiet.dialed.Add(2 * pong)))
	select {
	case <-quiet.done:
		at, err := quiet.closedAt()
		t.Fatalf("the socket that answers pings was closed %v after it connected: %v", at.Sub(quiet.dialed), err)
	default:
	}
	if n := quiet.pings.Load(); n < 3 {
		t.Errorf("the quiet socket got %d pings in %v, want about one a %v", n, time.Since(quiet.dialed), ping)
	}
	if ok, err := has(quietUser.ID, quiet.connID); err != nil || !ok {
		t.Errorf("the quiet socket's presence entry is gone (%v)", err)
	}
	if n := h.Host.Hub.Count(); n != 1 {
		t.Errorf("the hub holds %d sockets, want only the quiet one", n)
	}
	if err := quiet.conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"ping"}`)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-quiet.pongs:
	case <-quiet.done:
		_, err := quiet.closedAt()
		t.Fatalf("the quiet socket closed instead of answering a ping frame: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("the quiet socket got no pong frame within 5 s")
	}
}
