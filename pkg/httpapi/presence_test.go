package httpapi_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard-chat/switchboard/pkg/hosttest"
)

// presenceOf asks GET /presence as u for ids.
func (s *testServer) presenceOf(tb testing.TB, u testUser, ids ...string) []apiPresence {
	tb.Helper()
	q := url.Values{"user_id": ids}
	r := s.Do(tb, call{Method: "GET", Path: "/api/v1/presence?" + q.Encode(), Token: u.Token})
	hosttest.WantStatus(tb, r, http.StatusOK)
	var out struct {
		Presence []apiPresence `json:"presence"`
	}
	r.Decode(tb, &out)
	if out.Presence == nil {
		tb.Fatalf("presence %s: want an array", r.Body)
	}
	return out.Presence
}

// dialWS opens /ws with u's token and reads the hello frame.
func (s *testServer) dialWS(tb testing.TB, u testUser) *websocket.Conn {
	tb.Helper()
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	c, resp, err := d.Dial("ws://"+s.Addr+"/ws", http.Header{"Authorization": {"Bearer " + u.Token}})
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	if err != nil {
		tb.Fatalf("dial /ws: %v (%v)", err, resp)
	}
	tb.Cleanup(func() { _ = c.Close() })
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var hello struct {
		Type string `json:"type"`
	}
	if err := c.ReadJSON(&hello); err != nil || hello.Type != "hello" {
		tb.Fatalf("first frame %+v, %v: want hello", hello, err)
	}
	return c
}

func TestPresence(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)

	t.Run("only users you share a thread with, known ids only", func(t *testing.T) {
		t.Parallel()
		alice, bob, carol, stranger := s.newUser(t, "alice"), s.newUser(t, "bob"), s.newUser(t, "carol"), s.newUser(t, "stranger")
		s.newThread(t, alice, "ab", bob)
		th := s.newThread(t, carol, "ca", alice)
		// carol left: she no longer shares a thread with alice.
		hosttest.WantStatus(t, s.Do(t, call{Method: "DELETE", Path: "/api/v1/threads/" + th.ID + "/members/" + carol.ID, Token: carol.Token}), http.StatusNoContent)

		got := s.presenceOf(t, alice, bob.ID, stranger.ID, carol.ID, "01890000-0000-7000-8000-000000000000", "garbage", bob.ID)
		if len(got) != 1 || got[0].UserID != bob.ID {
			t.Fatalf("presence %+v, want only bob", got)
		}
		if got[0].Online || got[0].LastSeen != nil {
			t.Errorf("bob never connected: %+v, want offline with last_seen null", got[0])
		}
	})

	t.Run("no ids: an empty list", func(t *testing.T) {
		t.Parallel()
		u := s.newUser(t, "lonely")
		if got := s.presenceOf(t, u); len(got) != 0 {
			t.Fatalf("presence %+v, want []", got)
		}
	})

	t.Run("too many ids: 400", func(t *testing.T) {
		t.Parallel()
		u := s.newUser(t, "many")
		ids := make([]string, 201)
		for i := range ids {
			ids[i] = fmt.Sprintf("01890000-0000-7000-8000-%012d", i)
		}
		r := s.Do(t, call{Method: "GET", Path: "/api/v1/presence?" + url.Values{"user_id": ids}.Encode(), Token: u.Token})
		hosttest.WantError(t, r, http.StatusBadRequest, "invalid_request")
	})

	t.Run("online while a socket is open, then last_seen", func(t *testing.T) {
		t.Parallel()
		alice, bob := s.newUser(t, "alice"), s.newUser(t, "bob")
		s.newThread(t, alice, "live", bob)
		ws := s.dialWS(t, bob)
		hosttest.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
			if p := s.presenceOf(t, alice, bob.ID); len(p) != 1 || !p[0].Online {
				return fmt.Errorf("presence %+v, want bob online", p)
			}
			return nil
		})
		before := time.Now().Add(-time.Second)
		_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye"), time.Now().Add(time.Second))
		_ = ws.Close()
		hosttest.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
			p := s.presenceOf(t, alice, bob.ID)
			if len(p) != 1 || p[0].Online || p[0].LastSeen == nil {
				return fmt.Errorf("presence %+v, want bob offline with last_seen", p)
			}
			if seen := wantUTC(t, "last_seen", *p[0].LastSeen); seen.Before(before.Truncate(time.Second)) {
				return fmt.Errorf("last_seen %s is before the socket closed", *p[0].LastSeen)
			}
			return nil
		})
	})
}

// TestLogoutClosesSockets: logout answers 204 and every socket of that session closes
// with 4001 (section 2); sockets of the user's other sessions stay open.
func TestLogoutClosesSockets(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	u := s.newUser(t, "closer")
	other := testUser{ID: u.ID, Username: u.Username, Token: s.login(t, u.Username).Token}
	ws1, ws2 := s.dialWS(t, u), s.dialWS(t, u)
	keep := s.dialWS(t, other)
	// Catch-up ends with synced; after that the sockets are fully registered.
	for _, c := range []*websocket.Conn{ws1, ws2, keep} {
		readUntil(t, c, "synced")
	}

	hosttest.WantStatus(t, s.Do(t, call{Method: "POST", Path: "/api/v1/auth/logout", Token: u.Token}), http.StatusNoContent)
	start := time.Now() // the contract's 2 s run from the logout answer
	for i, c := range []*websocket.Conn{ws1, ws2} {
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		var err error
		for err == nil {
			_, _, err = c.ReadMessage()
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != 4001 {
			t.Errorf("socket %d ended with %v, want close 4001", i+1, err)
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("sockets closed %s after logout, want within 2s", d)
	} else {
		t.Logf("sockets closed %s after the logout answer", d)
	}
	// The other session's socket still answers a ping.
	_ = keep.SetReadDeadline(time.Now().Add(3 * time.Second))
	if err := keep.WriteJSON(map[string]string{"type": "ping"}); err != nil {
		t.Fatalf("write ping: %v", err)
	}
	readUntil(t, keep, "pong")
}

// readUntil reads frames from c until one of type typ arrives.
func readUntil(t *testing.T, c *websocket.Conn, typ string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		var f map[string]any
		if err := c.ReadJSON(&f); err != nil {
			t.Fatalf("waiting for %s: %v", typ, err)
		}
		if f["type"] == typ {
			return
		}
		if f["type"] == "error" {
			t.Fatalf("error frame while waiting for %s: %v", typ, f)
		}
	}
}
