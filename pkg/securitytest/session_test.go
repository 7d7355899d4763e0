package securitytest

import (
	"net/http"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/pkg/hosttest"
)

// TestLogoutEndsAccessOnEveryHost: a logout through one host closes the session's
// sockets on both hosts with 4001 within 2 s of the logout answer, and the token is
// refused everywhere afterwards; another session of the same user is untouched.
func TestLogoutEndsAccessOnEveryHost(t *testing.T) {
	t.Parallel()
	s := newStack(t, 2, nil)
	h1, h2 := s.hosts[0], s.hosts[1]
	u := h1.newUser(t, "leaver")
	keep := h2.session(t, u)
	w1, w2 := h1.dial(t, u), h2.dial(t, u)
	wk := h2.dial(t, keep)

	hosttest.WantStatus(t, h1.do(t, req{Method: "POST", Path: "/api/v1/auth/logout", Token: u.Token}), http.StatusNoContent)
	answered := time.Now()
	for i, w := range []*wsConn{w1, w2} {
		at := w.wantClose(t, 4001, 3*time.Second)
		if d := at.Sub(answered); d > 2*time.Second {
			t.Errorf("socket on host %d closed %s after the logout answer, want within 2s", i+1, d)
		}
	}
	for _, h := range []*node{h1, h2} {
		hosttest.WantError(t, h.do(t, req{Method: "GET", Path: "/api/v1/me", Token: u.Token}), http.StatusUnauthorized, "unauthenticated")
		hosttest.WantError(t, h.do(t, req{Method: "POST", Path: "/api/v1/threads", Token: u.Token, Body: `{"name":"x"}`}), http.StatusUnauthorized, "unauthenticated")
		hosttest.WantError(t, h.do(t, req{Method: "GET", Path: "/api/v1/me", Cookie: u.Token}), http.StatusUnauthorized, "unauthenticated")
		_, r, err := h.tryDial(u.Token, dialOpts{})
		if err == nil {
			t.Fatalf("%s opened a socket for a logged-out token", h.Name)
		}
		hosttest.WantError(t, r, http.StatusUnauthorized, "unauthenticated")
		hosttest.WantStatus(t, h.do(t, req{Method: "GET", Path: "/api/v1/me", Token: keep.Token}), http.StatusOK)
	}
	if got := wk.roundTrip(t); len(got) != 0 {
		t.Errorf("the other session's socket got %v", got)
	}
	// Logging out twice is 401: the session is gone.
	hosttest.WantError(t, h2.do(t, req{Method: "POST", Path: "/api/v1/auth/logout", Token: u.Token}), http.StatusUnauthorized, "unauthenticated")
}

// TestSessionExpiryEndsAccessOnEveryHost: a session that expires closes its sockets on
// both hosts with 4001 within 2 s of expires_at, and the token is refused everywhere.
// CHAT_SESSION_TTL is 3 s (the least the config allows is 1 s): expires_at is cut to
// the second, so this leaves at least 2 s to open the sockets on a loaded machine.
func TestSessionExpiryEndsAccessOnEveryHost(t *testing.T) {
	t.Parallel()
	s := newStack(t, 2, map[string]string{"CHAT_SESSION_TTL": "3s"})
	h1, h2 := s.hosts[0], s.hosts[1]
	name := s.name("brief")
	h1.register(t, name)
	l := h1.login(t, name)
	u := user{ID: l.User.ID, Username: name, Token: l.Token}
	expires, err := time.Parse(time.RFC3339, l.ExpiresAt)
	if err != nil {
		t.Fatalf("expires_at %q: %v", l.ExpiresAt, err)
	}
	if d := time.Until(expires); d > 3*time.Second || d < 1500*time.Millisecond {
		t.Fatalf("expires_at is %s away, want about 3s", d)
	}
	w1, w2 := h1.dial(t, u), h2.dial(t, u)
	for _, h := range []*node{h1, h2} {
		hosttest.WantStatus(t, h.do(t, req{Method: "GET", Path: "/api/v1/me", Token: u.Token}), http.StatusOK)
	}
	if time.Now().After(expires) {
		t.Fatalf("the machine is too slow: the session expired before the sockets were open")
	}
	for i, w := range []*wsConn{w1, w2} {
		at := w.wantClose(t, 4001, time.Until(expires)+5*time.Second)
		if d := at.Sub(expires); d > 2*time.Second {
			t.Errorf("socket on host %d closed %s after expires_at, want within 2s", i+1, d)
		}
	}
	for _, h := range []*node{h1, h2} {
		hosttest.WantError(t, h.do(t, req{Method: "GET", Path: "/api/v1/me", Token: u.Token}), http.StatusUnauthorized, "unauthenticated")
		_, r, err := h.tryDial(u.Token, dialOpts{})
		if err == nil {
			t.Fatalf("%s opened a socket for an expired token", h.Name)
		}
		hosttest.WantError(t, r, http.StatusUnauthorized, "unauthenticated")
	}
}
