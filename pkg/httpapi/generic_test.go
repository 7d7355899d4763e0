package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/pkg/clustertest"
	"github.com/switchboard-chat/switchboard/pkg/dbtest"
	"github.com/switchboard-chat/switchboard/pkg/hosttest"
	"github.com/switchboard-chat/switchboard/pkg/redis"
)

// authedRoutes is every route of section 2 that needs a session, with a body that
// would be valid.
func authedRoutes(threadID, userID string) []call {
	tp := "/api/v1/threads/" + threadID
	return []call{
		{Method: "POST", Path: "/api/v1/auth/logout"},
		{Method: "GET", Path: "/api/v1/me"},
		{Method: "POST", Path: "/api/v1/threads", Body: `{"name":"x","members":[]}`},
		{Method: "GET", Path: "/api/v1/threads"},
		{Method: "GET", Path: tp},
		{Method: "POST", Path: tp + "/members", Body: `{"username":"someone"}`},
		{Method: "DELETE", Path: tp + "/members/" + userID},
		{Method: "GET", Path: tp + "/messages?limit=5"},
		{Method: "POST", Path: tp + "/messages", Body: `{"client_msg_id":"c","body":"b"}`},
		{Method: "POST", Path: tp + "/read", Body: `{"seq":0}`},
		{Method: "GET", Path: "/api/v1/presence?user_id=" + userID},
	}
}

func TestUnauthenticated(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	alice, bob := s.newUser(t, "alice"), s.newUser(t, "bob")
	th := s.newThread(t, alice, "t", bob)
	t.Run("routes", func(t *testing.T) {
		for _, c := range authedRoutes(th.ID, bob.ID) {
			for _, cred := range []struct {
				name          string
				token, cookie string
			}{
				{"no session", "", ""},
				{"unknown bearer", "bm90LWEtcmVhbC10b2tlbi1ub3QtYS1yZWFsLXRva2Vu", ""},
				{"unknown cookie", "", "bm90LWEtcmVhbC10b2tlbi1ub3QtYS1yZWFsLXRva2Vu"},
			} {
				t.Run(fmt.Sprintf("%s %s with %s", c.Method, c.Path, cred.name), func(t *testing.T) {
					t.Parallel()
					req := c // shared by the credentials' subtests
					req.Token, req.Cookie = cred.token, cred.cookie
					hosttest.WantError(t, s.Do(t, req), http.StatusUnauthorized, "unauthenticated")
				})
			}
		}
	})
	// Nothing changed: bob is still a member, and no message or thread appeared.
	t.Run("nothing changed", func(t *testing.T) {
		got := s.thread(t, alice, th.ID)
		if len(got.Members) != 2 || got.LastSeq != 0 {
			t.Errorf("thread changed: %+v", got)
		}
		if ts := s.listThreads(t, alice); len(ts) != 1 {
			t.Errorf("alice has %d threads, want 1", len(ts))
		}
	})
}

func TestRequestBodies(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	u := s.newUser(t, "bodies")
	register := func(name string) string {
		return `{"username":"` + name + `","password":"` + testPassword + `"}`
	}

	media := []struct {
		name, contentType string
		auth              bool
		path              string
	}{
		{"no Content-Type", "none", false, "/api/v1/auth/register"},
		{"text/plain", "text/plain", false, "/api/v1/auth/register"},
		{"form", "application/x-www-form-urlencoded", false, "/api/v1/auth/login"},
		{"application/jsonx", "application/jsonx", false, "/api/v1/auth/register"},
		{"application/json-patch+json", "application/json-patch+json", false, "/api/v1/auth/register"},
		{"garbage", ";;;", false, "/api/v1/auth/register"},
		{"text/plain on an authed route", "text/plain", true, "/api/v1/threads"},
	}
	for _, tc := range media {
		t.Run("415 for "+tc.name, func(t *testing.T) {
			t.Parallel()
			name := s.name("media")
			c := call{Method: "POST", Path: tc.path, ContentType: tc.contentType, Body: register(name)}
			if tc.auth {
				c.Token, c.Body = u.Token, `{"name":"x"}`
			}
			hosttest.WantError(t, s.Do(t, c), http.StatusUnsupportedMediaType, "unsupported_media_type")
			if !tc.auth {
				// And nothing was registered.
				r := s.Do(t, call{Method: "POST", Path: "/api/v1/auth/register", Body: register(name)})
				hosttest.WantStatus(t, r, http.StatusCreated)
			}
		})
	}

	for _, ct := range []string{"application/json; charset=utf-8", "Application/JSON", "application/json;charset=UTF-8"} {
		t.Run("accepts Content-Type "+ct, func(t *testing.T) {
			t.Parallel()
			r := s.Do(t, call{Method: "POST", Path: "/api/v1/auth/register", ContentType: ct, Body: register(s.name("ct"))})
			hosttest.WantStatus(t, r, http.StatusCreated)
		})
	}

	invalid := []struct{ name, body string }{
		{"empty body", ""},
		{"truncated JSON", `{"username":"trunc","password":"` + testPassword},
		{"malformed JSON", `{username: "x"}`},
		{"single quotes", `{'username':'x'}`},
		{"trailing comma", `{"username":"x","password":"y",}`},
		{"a JSON array", `["x","y"]`},
		{"a JSON string", `"x"`},
		{"a JSON number", `42`},
		{"two objects", `{"username":"two1","password":"` + testPassword + `"}{"username":"two2"}`},
		{"trailing garbage", `{"username":"garb","password":"` + testPassword + `"} x`},
		{"a stray closing brace", `{"username":"brace","password":"` + testPassword + `"}}`},
		{"a stray closing bracket", `{"username":"brack","password":"` + testPassword + `"} ]`},
		{"username a number", `{"username":123,"password":"` + testPassword + `"}`},
		{"username an object", `{"username":{"a":1},"password":"` + testPassword + `"}`},
		{"password a bool", `{"username":"boolpw","password":true}`},
		{"null object", `null`},
		{"invalid UTF-8 outside strings", "{\"username\":\"x\",\xff}"},
	}
	t.Run("400 for no body and no Content-Type", func(t *testing.T) {
		t.Parallel()
		// The 415 rule is for requests with a body; this one lacks its JSON.
		r := s.Do(t, call{Method: "POST", Path: "/api/v1/auth/register", ContentType: "none"})
		hosttest.WantError(t, r, http.StatusBadRequest, "invalid_request")
	})
	for _, tc := range invalid {
		t.Run("400 for "+tc.name, func(t *testing.T) {
			t.Parallel()
			r := s.Do(t, call{Method: "POST", Path: "/api/v1/auth/register", Body: tc.body, ContentType: "application/json"})
			hosttest.WantError(t, r, http.StatusBadRequest, "invalid_request")
		})
	}

	t.Run("400 for a wrong type on an authed route", func(t *testing.T) {
		t.Parallel()
		r := s.Do(t, call{Method: "POST", Path: "/api/v1/threads", Token: u.Token, Body: `{"name":["x"]}`})
		hosttest.WantError(t, r, http.StatusBadRequest, "invalid_request")
	})

	t.Run("unknown fields are ignored", func(t *testing.T) {
		t.Parallel()
		name := s.name("unknown")
		r := s.Do(t, call{Method: "POST", Path: "/api/v1/auth/register", Body: `{"username":"` + name + `","password":"` + testPassword + `","email":"x@example.com","admin":true,"nested":{"a":[1,2,{"b":null}]}}`})
		hosttest.WantStatus(t, r, http.StatusCreated)
		r = s.Do(t, call{Method: "POST", Path: "/api/v1/threads", Token: u.Token, Body: `{"name":"extra","members":[],"topic":"ignored","private":false}`})
		hosttest.WantStatus(t, r, http.StatusCreated)
	})

	t.Run("a field name in another case is an unknown field", func(t *testing.T) {
		t.Parallel()
		// Only in another case: the fields are missing.
		r := s.Do(t, call{Method: "POST", Path: "/api/v1/auth/register", Body: `{"USERNAME":"` + s.name("fold") + `","PassWord":"` + testPassword + `"}`})
		hosttest.WantError(t, r, http.StatusBadRequest, "invalid_request")
		// Beside the real one, before or after it: ignored.
		name, other := s.name("kept"), s.name("other")
		r = s.Do(t, call{Method: "POST", Path: "/api/v1/auth/register", Body: `{"username":"` + name + `","Username":"` + other + `","password":"` + testPassword + `"}`})
		hosttest.WantStatus(t, r, http.StatusCreated)
		var out struct {
			User struct {
				Username string `json:"username"`
			} `json:"user"`
		}
		r.Decode(t, &out)
		if out.User.Username != name {
			t.Errorf("registered %q, want %q: a member named Username was taken for username", out.User.Username, name)
		}
	})

	big := func(n int) []byte {
		// A valid JSON object of exactly n bytes, padded with spaces.
		head := []byte(`{"username":"x","password":"` + testPassword + `"}`)
		return append(head, bytes.Repeat([]byte(" "), n-len(head))...)
	}
	t.Run("a body of exactly 1 MiB is read", func(t *testing.T) {
		t.Parallel()
		r := s.Do(t, call{Method: "POST", Path: "/api/v1/auth/register", Body: big(1 << 20)})
		hosttest.WantError(t, r, http.StatusBadRequest, "invalid_request") // the username is too short: the body was read
	})
	for _, tc := range []struct {
		name    string
		size    int
		chunked bool
		auth    bool
		path    string
	}{
		{"1 MiB + 1 byte", 1<<20 + 1, false, false, "/api/v1/auth/register"},
		{"2 MiB", 2 << 20, false, false, "/api/v1/auth/register"},
		{"2 MiB chunked", 2 << 20, true, false, "/api/v1/auth/login"},
		{"2 MiB on an authed route", 2 << 20, false, true, "/api/v1/threads"},
		{"2 MiB chunked on an authed route", 2 << 20, true, true, "/api/v1/threads"},
	} {
		t.Run("413 for "+tc.name, func(t *testing.T) {
			t.Parallel()
			c := call{Method: "POST", Path: tc.path, Body: big(tc.size), Chunked: tc.chunked}
			if tc.auth {
				c.Token = u.Token
			}
			hosttest.WantError(t, s.Do(t, c), http.StatusRequestEntityTooLarge, "too_large")
		})
	}
}

func TestRoutes(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	u := s.newUser(t, "routes")

	for _, c := range []call{
		{Method: "GET", Path: "/api/v1/nope"},
		{Method: "POST", Path: "/api/v1/nope", Body: `{}`},
		{Method: "GET", Path: "/api/v2/me"},
		{Method: "GET", Path: "/api/v1/threads/x/messages/y"},
		{Method: "GET", Path: "/api/v1/users"},
		{Method: "DELETE", Path: "/api/v1/auth"},
		{Method: "POST", Path: "/nope", Body: `{}`},
		{Method: "GET", Path: "/api/v1/me/"},
		{Method: "POST", Path: "/api/v1/threads/", Body: `{"name":"x"}`},
		{Method: "GET", Path: "/api/v1//me"},
	} {
		t.Run(fmt.Sprintf("404 for %s %s", c.Method, c.Path), func(t *testing.T) {
			t.Parallel()
			c.Token = u.Token
			hosttest.WantError(t, s.Do(t, c), http.StatusNotFound, "not_found")
		})
	}

	for _, c := range []call{
		{Method: "GET", Path: "/api/v1/auth/register"},
		{Method: "GET", Path: "/api/v1/auth/login"},
		{Method: "DELETE", Path: "/api/v1/auth/logout"},
		{Method: "POST", Path: "/api/v1/me"},
		{Method: "PUT", Path: "/api/v1/threads"},
		{Method: "PATCH", Path: "/api/v1/threads/01890000-0000-7000-8000-000000000000"},
		{Method: "DELETE", Path: "/api/v1/threads/01890000-0000-7000-8000-000000000000/messages"},
		{Method: "GET", Path: "/api/v1/threads/01890000-0000-7000-8000-000000000000/read"},
		{Method: "POST", Path: "/api/v1/presence"},
		{Method: "POST", Path: "/healthz"},
		{Method: "DELETE", Path: "/metrics"},
	} {
		t.Run(fmt.Sprintf("405 for %s %s", c.Method, c.Path), func(t *testing.T) {
			t.Parallel()
			c.Token = u.Token
			hosttest.WantError(t, s.Do(t, c), http.StatusMethodNotAllowed, "method_not_allowed")
		})
	}

	t.Run("healthz", func(t *testing.T) {
		t.Parallel()
		r := s.Do(t, call{Method: "GET", Path: "/healthz"})
		hosttest.WantStatus(t, r, http.StatusOK)
	})
	t.Run("readyz", func(t *testing.T) {
		t.Parallel()
		r := s.Do(t, call{Method: "GET", Path: "/readyz"})
		hosttest.WantStatus(t, r, http.StatusOK)
	})
	t.Run("metrics", func(t *testing.T) {
		t.Parallel()
		s.Do(t, call{Method: "GET", Path: "/api/v1/me", Token: u.Token})
		r := s.Do(t, call{Method: "GET", Path: "/metrics"})
		hosttest.WantStatus(t, r, http.StatusOK)
		if !strings.HasPrefix(r.Header.Get("Content-Type"), "text/plain") {
			t.Errorf("Content-Type %q, want Prometheus text", r.Header.Get("Content-Type"))
		}
		body := string(r.Body)
		if !strings.Contains(body, "switchboard_http_requests_total") {
			t.Fatalf("no switchboard_http_requests_total in /metrics")
		}
		// Labelled by route template, not the raw path.
		if !strings.Contains(body, `route="/api/v1/me"`) {
			t.Errorf("no series for route /api/v1/me")
		}
	})
}

// TestForbiddenOrigin: a cookie-authenticated POST or DELETE with a foreign Origin is
// 403 forbidden_origin and changes nothing; Bearer requests are not checked.
func TestForbiddenOrigin(t *testing.T) {
	t.Parallel()
	const extra = "https://chat.example.com"
	s := newServer(t, map[string]string{"CHAT_ALLOWED_ORIGINS": extra})
	own := "http://" + s.Addr

	foreign := []string{
		"https://evil.example",
		"null",
		"http://" + s.Addr + ".evil.example",
		"http://127.0.0.1:1",
		"https://chat.example.com.evil.example",
		"not a url",
	}
	for _, origin := range foreign {
		t.Run("create thread, cookie, Origin "+origin, func(t *testing.T) {
			t.Parallel()
			u := s.newUser(t, "victim")
			r := s.Do(t, call{Method: "POST", Path: "/api/v1/threads", Cookie: u.Token, Origin: origin, Body: `{"name":"csrf","members":[]}`})
			hosttest.WantError(t, r, http.StatusForbidden, "forbidden_origin")
			if ts := s.listThreads(t, u); len(ts) != 0 {
				t.Errorf("a thread was created: %+v", ts)
			}
		})
	}

	t.Run("every state-changing route checks it and changes nothing", func(t *testing.T) {
		t.Parallel()
		alice, bob, carol := s.newUser(t, "alice"), s.newUser(t, "bob"), s.newUser(t, "carol")
		th := s.newThread(t, alice, "t", bob)
		s.send(t, bob, th.ID, "hi")
		tp := "/api/v1/threads/" + th.ID
		for _, c := range []call{
			{Method: "POST", Path: "/api/v1/auth/logout"},
			{Method: "POST", Path: "/api/v1/threads", Body: `{"name":"x","members":[]}`},
			{Method: "POST", Path: tp + "/members", Body: `{"username":"` + carol.Username + `"}`},
			{Method: "DELETE", Path: tp + "/members/" + bob.ID},
			{Method: "POST", Path: tp + "/messages", Body: `{"client_msg_id":"csrf","body":"forged"}`},
			{Method: "POST", Path: tp + "/read", Body: `{"seq":1}`},
		} {
			c.Cookie, c.Origin = alice.Token, "https://evil.example"
			hosttest.WantError(t, s.Do(t, c), http.StatusForbidden, "forbidden_origin")
		}
		got := s.thread(t, alice, th.ID) // the session still works
		if len(got.Members) != 2 || got.LastSeq != 1 || got.Unread != 1 {
			t.Errorf("thread changed: %+v", got)
		}
		if n := len(s.listThreads(t, alice)); n != 1 {
			t.Errorf("alice has %d threads, want 1", n)
		}
	})

	t.Run("reads are not checked", func(t *testing.T) {
		t.Parallel()
		u := s.newUser(t, "reader")
		r := s.Do(t, call{Method: "GET", Path: "/api/v1/me", Cookie: u.Token, Origin: "https://evil.example"})
		hosttest.WantStatus(t, r, http.StatusOK)
	})

	allowed := []struct {
		name       string
		origin     string
		bearer     bool
		wantStatus int
	}{
		{"Bearer with a foreign Origin", "https://evil.example", true, http.StatusCreated},
		{"cookie with the host's own Origin", own, false, http.StatusCreated},
		{"cookie with the host's own Origin and a trailing slash", own + "/", false, http.StatusCreated},
		{"cookie with a configured Origin", extra, false, http.StatusCreated},
		{"cookie without Origin", "", false, http.StatusCreated},
	}
	for _, tc := range allowed {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			u := s.newUser(t, "ok")
			c := call{Method: "POST", Path: "/api/v1/threads", Origin: tc.origin, Body: `{"name":"fine","members":[]}`}
			if tc.bearer {
				c.Token = u.Token
			} else {
				c.Cookie = u.Token
			}
			hosttest.WantStatus(t, s.Do(t, c), tc.wantStatus)
		})
	}

	t.Run("register and login are not cookie-authenticated", func(t *testing.T) {
		t.Parallel()
		name := s.name("public")
		r := s.Do(t, call{Method: "POST", Path: "/api/v1/auth/register", Origin: "https://evil.example", Body: map[string]string{"username": name, "password": testPassword}})
		hosttest.WantStatus(t, r, http.StatusCreated)
	})
}

// TestDatabaseDown: with PostgreSQL gone, a send answers 503 unavailable (nothing
// half-stored), and /readyz turns 503; sessions live in Redis and still authenticate.
func TestDatabaseDown(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	alice := s.newUser(t, "alice")
	th := s.newThread(t, alice, "down")
	s.send(t, alice, th.ID, "before")
	if err := s.DB.Close(); err != nil {
		t.Fatal(err)
	}
	hosttest.WantStatus(t, s.Do(t, call{Method: "GET", Path: "/api/v1/me", Token: alice.Token}), http.StatusOK)
	start := time.Now()
	r := s.Do(t, call{Method: "POST", Path: "/api/v1/threads/" + th.ID + "/messages", Token: alice.Token, Body: `{"client_msg_id":"during","body":"x"}`})
	e := hosttest.WantError(t, r, http.StatusServiceUnavailable, "unavailable")
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("unavailable after %s, want within 5s", d)
	}
	if strings.Contains(strings.ToLower(e.Message), "sql") || strings.Contains(e.Message, "closed") {
		t.Errorf("the message leaks the cause: %q", e.Message)
	}
	hosttest.WantError(t, s.Do(t, call{Method: "GET", Path: "/api/v1/threads", Token: alice.Token}), http.StatusServiceUnavailable, "unavailable")
	hosttest.WantError(t, s.Do(t, call{Method: "GET", Path: "/readyz"}), http.StatusServiceUnavailable, "unavailable")
	hosttest.WantStatus(t, s.Do(t, call{Method: "GET", Path: "/healthz"}), http.StatusOK)
}

// TestRedisDown: with Redis unreachable /readyz turns 503 (GET and HEAD: balancers
// probe with either) while /healthz stays 200, and turns 200 again once Redis
// answers. Logins and socket upgrades need Redis, so the balancer must stop sending
// them at its next probe, not when the heartbeat goes stale: the host TTL here is 30 s,
// so a 503 within 5 s can only come from the Redis check itself.
func TestRedisDown(t *testing.T) {
	t.Parallel()
	s, proxy := newServerOnCuttableRedis(t, map[string]string{"CHAT_HOST_TTL": "30s"})
	wantReady(t, s)

	proxy.Cut()
	waitReadyz(t, s, 5*time.Second, http.StatusServiceUnavailable, "")
	hosttest.WantStatus(t, s.Do(t, call{Method: "HEAD", Path: "/readyz"}), http.StatusServiceUnavailable)
	hosttest.WantStatus(t, s.Do(t, call{Method: "GET", Path: "/healthz"}), http.StatusOK)
	hosttest.WantStatus(t, s.Do(t, call{Method: "HEAD", Path: "/healthz"}), http.StatusOK)

	proxy.Restore()
	waitReadyz(t, s, 10*time.Second, http.StatusOK, "after Redis came back")
	wantReady(t, s)
	hosttest.WantStatus(t, s.Do(t, call{Method: "HEAD", Path: "/readyz"}), http.StatusOK)
}

// TestReadyzNeedsFreshHeartbeat: a host whose heartbeat Redis refuses (here another
// instance holds its id) turns /readyz 503 though both stores answer: after
// CHAT_HOST_TTL its peers count it dead and deliver nothing to its sockets, so it must
// leave the balancer's rotation. When the id is free again it registers anew and is
// ready again.
func TestReadyzNeedsFreshHeartbeat(t *testing.T) {
	t.Parallel()
	s := newServer(t, map[string]string{"CHAT_HEARTBEAT_INTERVAL": "200ms", "CHAT_HOST_TTL": "1s"})
	wantReady(t, s)
	hosts := s.Prefix + "hosts"
	raw, err := s.Redis.HGet(t.Context(), hosts, s.HostID).Result()
	if err != nil {
		t.Fatalf("host %s not registered in %s: %v", s.HostID, hosts, err)
	}
	var reg map[string]any
	if err := json.Unmarshal([]byte(raw), &reg); err != nil {
		t.Fatalf("registration %s: %v", raw, err)
	}
	reg["instance"] = "usurper-" + hosttest.RandomHex(4)

	// The usurper beats twice as often as the host, so every heartbeat of the host
	// finds a live holder of another instance.
	stop := make(chan struct{})
	usurped := make(chan error, 1)
	go func(stop <-chan struct{}) {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			now := time.Now().UTC()
			reg["hb_ms"], reg["last_heartbeat"] = now.UnixMilli(), now.Format(time.RFC3339Nano)
			b, err := json.Marshal(reg)
			if err == nil {
				err = s.Redis.HSet(context.Background(), hosts, s.HostID, b).Err()
			}
			if err != nil {
				usurped <- err
				return
			}
			select {
			case <-stop:
				usurped <- nil
				return
			case <-tick.C:
			}
		}
	}(stop)
	var once sync.Once
	stopUsurper := func() {
		once.Do(func() {
			close(stop)
			if err := <-usurped; err != nil {
				t.Errorf("usurp host id: %v", err)
			}
		})
	}
	defer stopUsurper()

	waitReadyz(t, s, 5*time.Second, http.StatusServiceUnavailable, "")
	hosttest.WantStatus(t, s.Do(t, call{Method: "GET", Path: "/healthz"}), http.StatusOK)

	stopUsurper()
	waitReadyz(t, s, 10*time.Second, http.StatusOK, "with its id free again")
}

// TestReadyzWhileDraining: once Run's context ends (SIGTERM), /readyz answers 503
// while the listener still serves and the host is still registered, so the balancer
// takes it out of rotation before it leaves the cluster and while its sockets'
// clients reconnect elsewhere; /healthz stays 200, as the process is alive and a
// liveness probe must not kill it mid-drain.
func TestReadyzWhileDraining(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	wantReady(t, s)
	hosts := s.Prefix + "hosts"
	// A socket whose client never answers the close frame holds the drain for about a
	// second before the host leaves and the listener shuts: the window to probe in.
	s.dialWS(t, s.newUser(t, "alice"))

	stopped := make(chan struct{})
	go func() { s.Stop(); close(stopped) }()
	defer func() { <-stopped }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := s.Try(call{Method: "GET", Path: "/readyz"})
		if err != nil {
			t.Fatalf("the listener closed (%v) before /readyz answered 503", err)
		}
		if r.Status != http.StatusOK {
			hosttest.WantError(t, r, http.StatusServiceUnavailable, "unavailable")
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("/readyz still answers 200 10 s after the drain began")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if ok, err := s.Redis.HExists(t.Context(), hosts, s.HostID).Result(); err != nil || !ok {
		t.Errorf("/readyz turned 503 only once the host had left %s (registered %v, err %v)", hosts, ok, err)
	}
	r, err := s.Try(call{Method: "GET", Path: "/healthz"})
	if err != nil || r.Status != http.StatusOK {
		t.Errorf("while draining, /healthz answered %d (%v), want 200", r.Status, err)
	}
}

// wantReady fails unless /readyz answers 200 naming the host.
// waitReadyz polls /readyz until it answers status (503 with the contract's
// `unavailable` error), failing the test after within; when says in what state.
func waitReadyz(t *testing.T, s *testServer, within time.Duration, status int, when string) {
	t.Helper()
	hosttest.CheckFor(t, within, 20*time.Millisecond, func() error {
		r, err := s.Try(call{Method: "GET", Path: "/readyz"})
		if err != nil {
			return err
		}
		if status == http.StatusServiceUnavailable {
			_, err = hosttest.CheckError(r, status, "unavailable")
			return err
		}
		if r.Status != status {
			return fmt.Errorf("%s, /readyz answered %d: %s", when, r.Status, r.Body)
		}
		return nil
	})
}

func wantReady(t *testing.T, s *testServer) {
	t.Helper()
	r := s.Do(t, call{Method: "GET", Path: "/readyz"})
	hosttest.WantStatus(t, r, http.StatusOK)
	var body struct {
		Status string `json:"status"`
		HostID string `json:"host_id"`
	}
	r.Decode(t, &body)
	if body.Status != "ready" || body.HostID != s.HostID {
		t.Fatalf("/readyz answered %s, want status ready and host_id %s", r.Body, s.HostID)
	}
}

// newServerOnCuttableRedis is newServer with every Redis connection of the host going
// through a proxy the test may cut. The testServer's own Redis client bypasses it.
func newServerOnCuttableRedis(t *testing.T, env map[string]string) (*testServer, *clustertest.Proxy) {
	t.Helper()
	direct, prefix := dbtest.NewRedis(t)
	base := os.Getenv("TEST_REDIS_URL")
	if base == "" {
		base = dbtest.DefaultRedisURL
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("TEST_REDIS_URL: %v", err)
	}
	proxy := clustertest.NewProxy(t, u.Host)
	u.Host = proxy.Addr()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	proxied, err := redis.Dial(ctx, u.String(), nil)
	if err != nil {
		t.Fatalf("dial Redis through the proxy: %v", err)
	}
	t.Cleanup(func() { _ = proxied.Close() })
	stores := &hosttest.Stores{
		DatabaseURL: dbtest.NewDatabaseURL(t), RedisURL: u.String(), Redis: proxied, Prefix: prefix, Secret: hosttest.RandomHex(32),
	}
	h := stores.Start(t, hosttest.Options{Env: env})
	return &testServer{Host: h, Redis: direct, Prefix: prefix}, proxy
}

// TestDrainLeavesCluster: a drained host removes its registration and does not
// heartbeat it back while the listener waits for a slow request to finish.
func TestDrainLeavesCluster(t *testing.T) {
	t.Parallel()
	s := newServer(t, map[string]string{"CHAT_HEARTBEAT_INTERVAL": "200ms", "CHAT_DRAIN_TIMEOUT": "1s"})
	hosts := s.Prefix + "hosts"
	if ok, err := s.Redis.HExists(t.Context(), hosts, s.HostID).Result(); err != nil || !ok {
		t.Fatalf("host %s not registered in %s: %v", s.HostID, hosts, err)
	}
	// A request stuck in its body keeps the listener's Shutdown waiting.
	conn, err := net.Dial("tcp", s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = io.WriteString(conn, "POST /api/v1/auth/register HTTP/1.1\r\nHost: "+s.Addr+
		"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"use\r\n")
	if err != nil {
		t.Fatal(err)
	}
	s.Stop()
	if ok, err := s.Redis.HExists(t.Context(), hosts, s.HostID).Result(); err != nil || ok {
		t.Fatalf("after the drain, %s still holds host %s (err %v)", hosts, s.HostID, err)
	}
}
