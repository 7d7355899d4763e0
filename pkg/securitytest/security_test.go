package securitytest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/switchboard-chat/switchboard/pkg/chat"
	"github.com/switchboard-chat/switchboard/pkg/hosttest"
	"github.com/switchboard-chat/switchboard/pkg/httpapi"
	"github.com/switchboard-chat/switchboard/pkg/password"
)

// monitorRedis records every command the test Redis receives (MONITOR on a connection
// of its own) until stop, which returns the lines.
func (s *stack) monitorRedis(tb testing.TB) (stop func() []string) {
	tb.Helper()
	opt, err := goredis.ParseURL(s.RedisURL)
	if err != nil {
		tb.Fatal(err)
	}
	d := net.Dialer{Timeout: 2 * time.Second}
	conn, err := d.DialContext(context.Background(), "tcp", opt.Addr)
	if err != nil {
		tb.Fatalf("MONITOR: %v", err)
	}
	rd := bufio.NewReaderSize(conn, 1<<16)
	command := func(args ...string) {
		fmt.Fprintf(conn, "*%d\r\n", len(args))
		for _, a := range args {
			fmt.Fprintf(conn, "$%d\r\n%s\r\n", len(a), a)
		}
		line, err := rd.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "+OK") {
			tb.Fatalf("%s: %q %v", args[0], line, err)
		}
	}
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if opt.Password != "" {
		command("AUTH", opt.Password)
	}
	command("MONITOR")
	_ = conn.SetDeadline(time.Time{})
	var (
		mu    sync.Mutex
		lines []string
		done  = make(chan struct{})
	)
	go func() {
		defer close(done)
		for {
			line, err := rd.ReadString('\n')
			if err != nil {
				return
			}
			mu.Lock()
			lines = append(lines, line)
			mu.Unlock()
		}
	}()
	var once sync.Once
	stop = func() []string {
		once.Do(func() {
			_ = conn.Close()
			<-done
		})
		mu.Lock()
		defer mu.Unlock()
		return lines
	}
	tb.Cleanup(func() { stop() })
	return stop
}

// TestTokensOnlyHashed: a session token never reaches Redis (not in any command Redis
// receives: MONITOR sees login, authentication, a socket, logout) and is stored
// nowhere, in Redis or PostgreSQL; the session key is the token's SHA-256.
func TestTokensOnlyHashed(t *testing.T) {
	t.Parallel()
	s := newStack(t, 2, nil)
	h1, h2 := s.hosts[0], s.hosts[1]
	stop := s.monitorRedis(t)
	u := h1.newUser(t, "hashed")
	second := h2.session(t, u)
	hosttest.WantStatus(t, h2.do(t, req{Method: "GET", Path: "/api/v1/me", Token: u.Token}), http.StatusOK)
	hosttest.WantStatus(t, h1.do(t, req{Method: "GET", Path: "/api/v1/me", Cookie: second.Token}), http.StatusOK)
	w := h2.dial(t, u)
	hosttest.WantStatus(t, h1.do(t, req{Method: "POST", Path: "/api/v1/auth/logout", Token: u.Token}), http.StatusNoContent)
	w.wantClose(t, 4001, 3*time.Second)

	st := s.snapshot(t)
	dump := s.dumpAll(t)
	for _, tok := range []string{u.Token, second.Token} {
		if strings.Contains(dump, tok) {
			t.Errorf("a token is stored in Redis or PostgreSQL")
		}
	}
	if _, ok := st["redis/session:"+chat.HashToken(second.Token)]; !ok {
		t.Errorf("no session key for the live session's SHA-256; keys: %v", keys(st, "redis/session:"))
	}
	if _, ok := st["redis/session:"+chat.HashToken(u.Token)]; ok {
		t.Errorf("the logged-out session's key is still there")
	}
	lines := stop()
	if len(lines) == 0 {
		t.Fatal("MONITOR saw nothing")
	}
	sawHash := false
	for _, l := range lines {
		for _, tok := range []string{u.Token, second.Token} {
			if strings.Contains(l, tok) {
				t.Errorf("Redis received a token: %q", l)
			}
		}
		sawHash = sawHash || strings.Contains(l, chat.HashToken(second.Token))
	}
	if !sawHash {
		t.Errorf("MONITOR did not see the session's hash: the check saw the wrong traffic")
	}
}

// dumpAll returns every key and value under the test's prefix (rate limits included)
// and every row of every table, as one text.
func (s *stack) dumpAll(tb testing.TB) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var b strings.Builder
	iter := s.Redis.Scan(ctx, 0, s.Prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		b.WriteString(k + "\n")
		switch typ, _ := s.Redis.Type(ctx, k).Result(); typ {
		case "string":
			v, _ := s.Redis.Get(ctx, k).Result()
			b.WriteString(v + "\n")
		case "hash":
			m, _ := s.Redis.HGetAll(ctx, k).Result()
			for f, v := range m {
				b.WriteString(f + "=" + v + "\n")
			}
		default:
			v, _ := s.Redis.Dump(ctx, k).Result()
			b.WriteString(v + "\n")
		}
	}
	for _, table := range []string{"users", "threads", "thread_members", "messages"} {
		rows, err := s.sql.QueryContext(ctx, `SELECT row_to_json(t)::text FROM `+table+` t`) //nolint:gosec // names from the list above
		if err != nil {
			tb.Fatal(err)
		}
		for rows.Next() {
			var v string
			_ = rows.Scan(&v)
			b.WriteString(v + "\n")
		}
		_ = rows.Close()
	}
	return b.String()
}

func keys(st state, prefix string) []string {
	var out []string
	for k := range st {
		if strings.HasPrefix(k, prefix) {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// TestCookieFlags: the session cookie is HttpOnly, SameSite=Lax, Path=/, lives as long
// as the session, is Secure with CHAT_COOKIE_SECURE=true, and logout clears it with the
// same flags.
func TestCookieFlags(t *testing.T) {
	t.Parallel()
	s := newStores(t)
	plain := s.addHost(t, nil, nil)
	secure := s.addHost(t, map[string]string{"CHAT_COOKIE_SECURE": "true"}, nil)
	name := s.name("cookie")
	plain.register(t, name)
	for _, h := range []*node{plain, secure} {
		t.Run(h.Name, func(t *testing.T) {
			wantSecure := h == secure
			r := h.do(t, req{Method: "POST", Path: "/api/v1/auth/login", Body: credentials(name, testPassword)})
			hosttest.WantStatus(t, r, http.StatusOK)
			var l loginAnswer
			r.Decode(t, &l)
			watch.secret("token", l.Token)
			if len(l.Token) < 43 { // 32 random bytes
				t.Errorf("token of %d characters, want at least 43", len(l.Token))
			}
			ck := cookieNamed(r, httpapi.CookieName)
			if ck == nil {
				t.Fatalf("no %s cookie in %v", httpapi.CookieName, r.Header.Values("Set-Cookie"))
			}
			expires, _ := time.Parse(time.RFC3339, l.ExpiresAt)
			if ck.Value != l.Token || !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Path != "/" || ck.Secure != wantSecure || ck.Domain != "" {
				t.Errorf("cookie %q: want the token, HttpOnly, SameSite=Lax, Path=/, no Domain, Secure=%v", r.Header.Get("Set-Cookie"), wantSecure)
			}
			if d := time.Until(expires) - time.Duration(ck.MaxAge)*time.Second; d < -2*time.Second || d > 2*time.Second {
				t.Errorf("cookie Max-Age %d, session expires in %s", ck.MaxAge, time.Until(expires))
			}
			if d := ck.Expires.Sub(expires); d < -time.Second || d > time.Second {
				t.Errorf("cookie Expires %s, session expires_at %s", ck.Expires, expires)
			}
			r = h.do(t, req{Method: "POST", Path: "/api/v1/auth/logout", Cookie: l.Token})
			hosttest.WantStatus(t, r, http.StatusNoContent)
			ck = cookieNamed(r, httpapi.CookieName)
			if ck == nil || ck.Value != "" || ck.MaxAge >= 0 || !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Path != "/" || ck.Secure != wantSecure {
				t.Errorf("logout cookie %q: want it cleared with the same flags", r.Header.Get("Set-Cookie"))
			}
		})
	}
}

func cookieNamed(r reply, name string) *http.Cookie {
	for _, c := range r.Cookies {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// TestForeignOriginRefused: every state-changing route (POST, DELETE) authenticated by
// the cookie with a foreign Origin answers 403 forbidden_origin and changes nothing;
// the same request from the host's own origin, from an origin of
// CHAT_ALLOWED_ORIGINS, without Origin, or authenticated by Bearer, succeeds. /ws
// refuses a foreign Origin too.
func TestForeignOriginRefused(t *testing.T) {
	t.Parallel()
	// Every case sends as alice on a fresh thread: about 50 sends in a second or two,
	// past the default burst of 40 on a fast machine. The send limit has its own test.
	s := newStack(t, 1, map[string]string{"CHAT_ALLOWED_ORIGINS": "https://chat.example.com", "CHAT_LIMIT_SEND_BURST": "100000"})
	h := s.h()
	alice, bob := h.newUser(t, "alice"), h.newUser(t, "bob")
	foreign := []string{"https://evil.example", "null", "http://127.0.0.1:1", "http://" + h.Addr + ".evil.example", "https://chat.example.com.evil.example", "file://"}

	// Each route on a thread of its own; bob's session for logout is fresh each time.
	type target struct {
		th   apiThread
		sess user
	}
	routes := []struct {
		name string
		r    func(tg target) req
		ok   int
	}{
		{"POST /auth/logout", func(tg target) req { return req{Method: "POST", Path: "/api/v1/auth/logout", Cookie: tg.sess.Token} }, 204},
		{"POST /threads", func(tg target) req {
			return req{Method: "POST", Path: "/api/v1/threads", Body: map[string]any{"name": "csrf", "members": []string{}}}
		}, 201},
		{"POST /threads/{id}/members", func(tg target) req {
			return req{Method: "POST", Path: "/api/v1/threads/" + tg.th.ID + "/members", Body: map[string]string{"username": bob.Username}}
		}, 200},
		{"DELETE /threads/{id}/members/{id}", func(tg target) req {
			return req{Method: "DELETE", Path: "/api/v1/threads/" + tg.th.ID + "/members/" + alice.ID}
		}, 204},
		{"POST /threads/{id}/messages", func(tg target) req {
			return req{Method: "POST", Path: "/api/v1/threads/" + tg.th.ID + "/messages", Body: map[string]string{"client_msg_id": "csrf-" + hosttest.RandomHex(4), "body": "hi"}}
		}, 201},
		{"POST /threads/{id}/read", func(tg target) req {
			return req{Method: "POST", Path: "/api/v1/threads/" + tg.th.ID + "/read", Body: map[string]int{"seq": 1}}
		}, 204},
	}
	newTarget := func(t *testing.T) target {
		th := h.newThread(t, alice, "target")
		h.send(t, alice, th.ID, "hello")
		return target{th: th, sess: h.session(t, alice)}
	}
	for _, rt := range routes {
		for _, origin := range foreign {
			t.Run(rt.name+" with cookie from "+origin, func(t *testing.T) {
				tg := newTarget(t)
				before := s.snapshot(t)
				r := rt.r(tg)
				if r.Cookie == "" {
					r.Cookie = alice.Token
				}
				r.Origin = origin
				hosttest.WantError(t, h.do(t, r), http.StatusForbidden, "forbidden_origin")
				wantUnchanged(t, before, s.snapshot(t))
			})
		}
		for _, way := range []string{"own origin", "allowed origin", "no Origin", "Bearer from a foreign origin"} {
			t.Run(rt.name+" with "+way, func(t *testing.T) {
				tg := newTarget(t)
				r := rt.r(tg)
				tok := r.Cookie
				if tok == "" {
					tok = alice.Token
				}
				r.Cookie = tok
				switch way {
				case "own origin":
					r.Origin = "http://" + h.Addr
				case "allowed origin":
					r.Origin = "https://chat.example.com"
				case "Bearer from a foreign origin":
					r.Cookie, r.Token, r.Origin = "", tok, "https://evil.example"
				}
				hosttest.WantStatus(t, h.do(t, r), rt.ok)
			})
		}
	}
	t.Run("/ws with the cookie from a foreign origin", func(t *testing.T) {
		for _, origin := range foreign {
			_, r, err := h.tryDial("", dialOpts{Header: http.Header{"Origin": {origin}, "Cookie": {httpapi.CookieName + "=" + alice.Token}}})
			if err == nil {
				t.Fatalf("socket opened from %s", origin)
			}
			hosttest.WantError(t, r, http.StatusForbidden, "forbidden_origin")
		}
		c, _, err := h.tryDial("", dialOpts{Header: http.Header{"Origin": {"https://chat.example.com"}, "Cookie": {httpapi.CookieName + "=" + alice.Token}}})
		if err != nil {
			t.Fatalf("socket from an allowed origin: %v", err)
		}
		_ = c.Close()
	})
}

// TestLoginTimingUnknownUser: a login for a user who does not exist costs about as much
// as a wrong password (a dummy hash comparison), so timing does not tell which
// usernames exist. With bcrypt at the production cost (password.New(0), cost 12), the
// median of 7 tries of each, interleaved, must be within a factor of 2. Under the race
// detector bcrypt runs some 13 times slower, so there the cost is 8, where a
// comparison still takes hundreds of milliseconds, far above the request's own cost.
// CHAT_LIMIT_LOGIN_FAILURES is raised so the failures are not cut short by 429s.
func TestLoginTimingUnknownUser(t *testing.T) {
	t.Parallel()
	cost := 0 // password.DefaultCost
	if raceDetector {
		cost = 8
	}
	s := newStores(t)
	h := s.addHost(t, map[string]string{"CHAT_LIMIT_LOGIN_FAILURES": "1000"}, password.New(cost))
	name := s.name("timed")
	h.register(t, name)
	const tries = 7
	var wrong, unknown []time.Duration
	var bodies []string
	timed := func(username string) time.Duration {
		start := time.Now()
		r := h.do(t, req{Method: "POST", Path: "/api/v1/auth/login", Body: credentials(username, "wrong-"+testPassword)})
		d := time.Since(start)
		hosttest.WantError(t, r, http.StatusUnauthorized, "invalid_credentials")
		bodies = append(bodies, string(r.Body))
		return d
	}
	for i := 0; i < tries; i++ {
		if i%2 == 0 {
			wrong = append(wrong, timed(name))
			unknown = append(unknown, timed(s.name("nobody")))
		} else {
			unknown = append(unknown, timed(s.name("nobody")))
			wrong = append(wrong, timed(name))
		}
	}
	mw, mu := median(wrong), median(unknown)
	ratio := float64(mu) / float64(mw)
	t.Logf("median login: wrong password %s, unknown user %s (ratio %.2f)", mw, mu, ratio)
	if ratio < 0.5 || ratio > 2 {
		t.Errorf("an unknown user's login takes %.2f times a wrong password's (%s vs %s), want 0.5..2", ratio, mu, mw)
	}
	slices.Sort(bodies)
	if bodies[0] != bodies[len(bodies)-1] {
		t.Errorf("answers differ: %q vs %q", bodies[0], bodies[len(bodies)-1])
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
