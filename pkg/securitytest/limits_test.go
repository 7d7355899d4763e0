package securitytest

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard-chat/switchboard/pkg/hosttest"
)

// Every limit of contract section 8, at the limit and one past it. Limits are settings:
// where the default would make a test slow or timing-dependent, the test configures a
// smaller value and says so; the default itself is then exercised where that is cheap.

// wantRateLimited fails unless r is 429 rate_limited with a Retry-After of whole
// seconds between 1 and max.
func wantRateLimited(tb testing.TB, r reply, max int) {
	tb.Helper()
	hosttest.WantError(tb, r, http.StatusTooManyRequests, "rate_limited")
	ra, err := strconv.Atoi(r.Header.Get("Retry-After"))
	if err != nil || ra < 1 || ra > max {
		tb.Errorf("Retry-After %q, want whole seconds 1..%d", r.Header.Get("Retry-After"), max)
	}
}

func credentials(username, password string) map[string]string {
	return map[string]string{"username": username, "password": password}
}

// TestLimitFailedLogins: 5 failed logins per username per 15 minutes (the default),
// counted cluster-wide: failures on two hosts add up; the 6th attempt is 429 even with
// the right password, creates no session, and other usernames are not affected.
func TestLimitFailedLogins(t *testing.T) {
	t.Parallel()
	s := newStack(t, 2, nil)
	h1, h2 := s.hosts[0], s.hosts[1]
	victim, bystander := h1.newUser(t, "victim"), h1.newUser(t, "bystander")
	unknown := s.name("nobody")
	for _, name := range []string{victim.Username, unknown} {
		for i := 1; i <= 5; i++ {
			h := []*node{h1, h2}[i%2]
			r := h.do(t, req{Method: "POST", Path: "/api/v1/auth/login", Body: credentials(name, "wrong-"+testPassword)})
			hosttest.WantError(t, r, http.StatusUnauthorized, "invalid_credentials")
		}
	}
	before := s.snapshot(t)
	for _, h := range []*node{h1, h2} {
		r := h.do(t, req{Method: "POST", Path: "/api/v1/auth/login", Body: credentials(victim.Username, "wrong-"+testPassword)})
		wantRateLimited(t, r, 15*60)
		r = h.do(t, req{Method: "POST", Path: "/api/v1/auth/login", Body: credentials(victim.Username, testPassword)})
		wantRateLimited(t, r, 15*60)
		r = h.do(t, req{Method: "POST", Path: "/api/v1/auth/login", Body: credentials(strings.ToUpper(victim.Username), testPassword)})
		wantRateLimited(t, r, 15*60)
		r = h.do(t, req{Method: "POST", Path: "/api/v1/auth/login", Body: credentials(unknown, testPassword)})
		wantRateLimited(t, r, 15*60)
	}
	wantUnchanged(t, before, s.snapshot(t)) // no session was created
	h2.login(t, bystander.Username)
	// The existing session of the victim still works: the limit blocks guessing, not use.
	hosttest.WantStatus(t, h2.do(t, req{Method: "GET", Path: "/api/v1/me", Token: victim.Token}), http.StatusOK)
}

// TestLimitAuthPerAddress: 30 logins and registrations per client address per minute
// (the default). The client address is the TCP peer, or with CHAT_TRUSTED_PROXIES the
// right-most X-Forwarded-For entry that is not a trusted proxy; a peer that is not
// trusted cannot choose its address with X-Forwarded-For.
func TestLimitAuthPerAddress(t *testing.T) {
	t.Parallel()
	s := newStores(t)
	proxied := s.addHost(t, map[string]string{"CHAT_LIMIT_AUTH_PER_MINUTE": "30", "CHAT_TRUSTED_PROXIES": "127.0.0.1/32"}, nil)
	direct := s.addHost(t, map[string]string{"CHAT_LIMIT_AUTH_PER_MINUTE": "30"}, nil)
	// Users straight in the database: their creation spends no auth budget.
	names := s.createUsers(t, "member", 20)

	// burst makes 30 auth requests (half registrations, half logins) at once through
	// h with X-Forwarded-For xff(i), expecting each to succeed, and returns when the
	// first was sent. The bucket refills at 0.5/s, so the 31st request is refused only
	// if it comes within 2 s: the checks below allow for a slow machine.
	burst := func(t *testing.T, h *node, xff func(i int) string) time.Time {
		t.Helper()
		start := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, 30)
		for i := 0; i < 30; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := req{Method: "POST", Path: "/api/v1/auth/login", Body: credentials(names[i%len(names)], testPassword), Header: http.Header{"X-Forwarded-For": {xff(i)}}}
				want := http.StatusOK
				if i%2 == 1 {
					r.Path, r.Body, want = "/api/v1/auth/register", credentials(s.name("reg"), testPassword), http.StatusCreated
				}
				got, err := h.try(r)
				if err == nil && got.Status != want {
					err = fmt.Errorf("request %d: status %d, want %d: %s", i, got.Status, want, got.Body)
				}
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		return start
	}
	// past sends auth requests through h with X-Forwarded-For xff until one is
	// refused; it fails unless the refusal is the 31st request, allowing one more
	// success per 2 s that passed since start (the refill).
	past := func(t *testing.T, h *node, xff string, start time.Time) {
		t.Helper()
		for extra := 0; ; extra++ {
			name := s.name("late")
			before := s.snapshot(t)
			r := h.do(t, req{Method: "POST", Path: "/api/v1/auth/register", Body: credentials(name, testPassword), Header: http.Header{"X-Forwarded-For": {xff}}})
			if r.Status == http.StatusTooManyRequests {
				wantRateLimited(t, r, 60)
				wantUnchanged(t, before, s.snapshot(t)) // nothing registered
				return
			}
			hosttest.WantStatus(t, r, http.StatusCreated)
			if allowed := int(time.Since(start).Seconds() / 2); extra+1 > allowed {
				t.Fatalf("request %d from one address was allowed %s after the first; the limit is 30 a minute", 31+extra, time.Since(start))
			}
		}
	}

	t.Run("behind a trusted proxy: per X-Forwarded-For address", func(t *testing.T) {
		start := burst(t, proxied, func(int) string { return "203.0.113.7" })
		past(t, proxied, "203.0.113.7", start)
		// A client prepending an address of its choice is still its own address: the
		// right-most entry that is not a trusted proxy counts.
		past(t, proxied, "198.51.100.1, 203.0.113.7", start)
		past(t, proxied, "198.51.100.2, 203.0.113.7, 127.0.0.1", start)
		// Another address has its own budget.
		r := proxied.do(t, req{Method: "POST", Path: "/api/v1/auth/login", Body: credentials(names[0], testPassword), Header: http.Header{"X-Forwarded-For": {"203.0.113.8"}}})
		hosttest.WantStatus(t, r, http.StatusOK)
	})
	t.Run("from an untrusted peer: X-Forwarded-For is ignored", func(t *testing.T) {
		start := burst(t, direct, func(i int) string { return fmt.Sprintf("192.0.2.%d", i+1) })
		past(t, direct, "192.0.2.200", start)
		past(t, direct, "", start)
	})
}

// TestLimitSendBurst: messages per user are a token bucket of 40 refilled at 20/s,
// counted in Redis for every device, HTTP and WebSocket alike, on every host.
// CHAT_LIMIT_SEND_RATE is set to one token per 1000 s so that the burst is exact and no
// refill blurs the 41st; the rate itself is the limiter's unit tests' business.
func TestLimitSendBurst(t *testing.T) {
	t.Parallel()
	s := newStack(t, 2, map[string]string{"CHAT_LIMIT_SEND_RATE": "0.001"})
	h1, h2 := s.hosts[0], s.hosts[1]
	alice, bob := h1.newUser(t, "alice"), h1.newUser(t, "bob")
	th := h1.newThread(t, alice, "burst", bob)
	w1, w2 := h1.dial(t, alice), h2.dial(t, alice)

	// 40: 20 over HTTP on host 1, 10 over WebSocket on host 2, 9 over WebSocket on
	// host 1, the 40th over HTTP on host 2.
	for i := 0; i < 20; i++ {
		h1.send(t, alice, th.ID, fmt.Sprintf("h1-%d", i))
	}
	for i, w := range []*wsConn{w2, w1} {
		n := []int{10, 9}[i]
		for j := 0; j < n; j++ {
			w.write(t, map[string]string{"type": "send", "thread_id": th.ID, "client_msg_id": fmt.Sprintf("ws%d-%d", i, j), "body": "hi"})
		}
		for j := 0; j < n; j++ {
			if f := w.until(t, "sent"); f.str("client_msg_id") != fmt.Sprintf("ws%d-%d", i, j) {
				t.Fatalf("sent %v out of order", f)
			}
		}
	}
	h2.send(t, alice, th.ID, "the 40th")

	before := s.snapshot(t)
	for _, h := range []*node{h1, h2} {
		r := h.do(t, req{Method: "POST", Path: "/api/v1/threads/" + th.ID + "/messages", Token: alice.Token, Body: map[string]string{"client_msg_id": "over-" + h.Name, "body": "hi"}})
		wantRateLimited(t, r, 1000)
	}
	for i, w := range []*wsConn{w1, w2} {
		ref := fmt.Sprintf("over-ws%d", i)
		w.write(t, map[string]string{"type": "send", "thread_id": th.ID, "client_msg_id": ref, "body": "hi"})
		f := w.until(t, "error")
		if err := checkErrorFrame(f, "rate_limited", ref); err != nil {
			t.Error(err)
		}
	}
	wantUnchanged(t, before, s.snapshot(t)) // nothing stored
	if got := s.snapshot(t)["pg/messages#count"]; got != "40" {
		t.Errorf("%s messages stored, want 40", got)
	}
	// The bucket is the user's: bob may still send.
	h2.send(t, bob, th.ID, "bob is not limited")
}

// TestLimitSocketsPerUser: 20 open sockets per user, counted cluster-wide: 10 on each of
// two hosts, then the 21st upgrade on either host is 429; closing one makes room.
func TestLimitSocketsPerUser(t *testing.T) {
	t.Parallel()
	s := newStack(t, 2, nil)
	h1, h2 := s.hosts[0], s.hosts[1]
	u, other := h1.newUser(t, "many"), h1.newUser(t, "other")
	var socks []*wsConn
	for i := 0; i < 20; i++ {
		socks = append(socks, []*node{h2, h1}[i/10].dial(t, u)) // the 20th is allowed
	}
	before := s.snapshot(t)
	for _, h := range []*node{h1, h2} {
		c, r, err := h.tryDial(u.Token, dialOpts{})
		if err == nil {
			_ = c.Close()
			t.Fatalf("the 21st socket was opened on %s", h.Name)
		}
		hosttest.WantError(t, r, http.StatusTooManyRequests, "rate_limited")
		// Section 2: every limit of section 8 answers 429 with Retry-After in seconds.
		if ra, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || ra < 1 {
			t.Errorf("the 21st upgrade's Retry-After = %q, want whole seconds", r.Header.Get("Retry-After"))
		}
	}
	wantUnchanged(t, before, s.snapshot(t))
	h1.dial(t, other) // another user is not affected

	_ = socks[0].c.Close()
	s.presenceGone(t, socks[0])
	h1.dial(t, u) // room again
}

// TestLimitSizes: message body 8,192 bytes, WebSocket frame 16 KiB, HTTP request body
// 1 MiB (all defaults), and the other size limits of the contract, each exactly at the
// limit (accepted) and one past it (refused, nothing stored).
func TestLimitSizes(t *testing.T) {
	t.Parallel()
	s := newStack(t, 1, nil)
	h := s.h()
	alice, bob := h.newUser(t, "alice"), h.newUser(t, "bob")
	th := h.newThread(t, alice, "sizes", bob)
	w := h.dial(t, alice)
	n := 0
	cmid := func() string { n++; return fmt.Sprintf("size-%d", n) }
	sendHTTP := func(body string) reply {
		return h.do(t, req{Method: "POST", Path: "/api/v1/threads/" + th.ID + "/messages", Token: alice.Token, Body: map[string]string{"client_msg_id": cmid(), "body": body}})
	}
	sendWS := func(body string) (frame, string) {
		id := cmid()
		w.write(t, map[string]string{"type": "send", "thread_id": th.ID, "client_msg_id": id, "body": body})
		for {
			f := w.next(t)
			if f.typ() == "sent" || f.typ() == "error" {
				return f, id
			}
		}
	}

	bodies := []struct {
		name string
		body string
		ok   bool
	}{
		{"body of 8,192 ASCII bytes", strings.Repeat("a", 8192), true},
		{"body of 8,193 ASCII bytes", strings.Repeat("a", 8193), false},
		{"body of 8,192 bytes in 4,096 two-byte characters", strings.Repeat("é", 4096), true},
		{"body of 8,193 bytes in 4,097 characters", strings.Repeat("é", 4096) + "a", false},
		{"body of 8,192 bytes in 2,048 four-byte characters", strings.Repeat("🙂", 2048), true},
		{"body of 8,195 bytes in 2,049 characters", strings.Repeat("🙂", 2048) + "abc", false},
		{"body of 1 byte", "a", true},
	}
	for _, tc := range bodies {
		t.Run(tc.name+" over HTTP", func(t *testing.T) {
			before := s.snapshot(t)
			r := sendHTTP(tc.body)
			if tc.ok {
				hosttest.WantStatus(t, r, http.StatusCreated)
				return
			}
			hosttest.WantError(t, r, http.StatusRequestEntityTooLarge, "too_large")
			wantUnchanged(t, before, s.snapshot(t))
		})
		t.Run(tc.name+" over WebSocket", func(t *testing.T) {
			before := s.snapshot(t)
			f, id := sendWS(tc.body)
			if tc.ok {
				if f.typ() != "sent" || f.msg().Body != tc.body {
					t.Fatalf("answer %v, want sent", f)
				}
				return
			}
			if err := checkErrorFrame(f, "too_large", id); err != nil {
				t.Fatal(err)
			}
			wantUnchanged(t, before, s.snapshot(t))
		})
	}

	// padded returns a JSON object of exactly size bytes: prefix, then a "pad" field.
	padded := func(prefix string, size int) string {
		head := prefix + `,"pad":"`
		return head + strings.Repeat("p", size-len(head)-2) + `"}`
	}
	t.Run("a frame of exactly 16,384 bytes is read", func(t *testing.T) {
		f := padded(`{"type":"ping"`, 16384)
		if len(f) != 16384 {
			t.Fatalf("frame of %d bytes", len(f))
		}
		w.write(t, f)
		w.until(t, "pong")
	})
	t.Run("a frame of 16,385 bytes closes 1009", func(t *testing.T) {
		w := h.dial(t, bob)
		before := s.snapshot(t)
		w.write(t, padded(`{"type":"ping"`, 16385))
		w.wantClose(t, websocket.CloseMessageTooBig, 5*time.Second)
		s.presenceGone(t, w)
		wantUnchanged(t, before.withoutSocket(bob.ID, w.ConnID), s.snapshot(t).withoutSocket(bob.ID, w.ConnID))
	})

	read := func(body string, chunked bool) reply {
		return h.do(t, req{Method: "POST", Path: "/api/v1/threads/" + th.ID + "/read", Token: bob.Token, Body: body, Chunked: chunked})
	}
	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprintf("an HTTP body of exactly 1 MiB is read (chunked %v)", chunked), func(t *testing.T) {
			hosttest.WantStatus(t, read(padded(`{"seq":0`, 1<<20), chunked), http.StatusNoContent)
		})
		t.Run(fmt.Sprintf("an HTTP body of 1 MiB + 1 byte is 413 (chunked %v)", chunked), func(t *testing.T) {
			before := s.snapshot(t)
			hosttest.WantError(t, read(padded(`{"seq":1`, 1<<20+1), chunked), http.StatusRequestEntityTooLarge, "too_large")
			wantUnchanged(t, before, s.snapshot(t))
		})
	}

	t.Run("typing: 2 at once are relayed, the 3rd is dropped", func(t *testing.T) {
		bw := h.dial(t, bob)
		aw := h.dial(t, alice)
		start := time.Now()
		for i := 0; i < 3; i++ {
			bw.write(t, `{"type":"typing","thread_id":"`+th.ID+`"}`)
		}
		if got := bw.roundTrip(t); len(got) != 0 {
			t.Fatalf("bob got %v", got)
		}
		elapsed := time.Since(start)
		got := aw.roundTrip(t)
		// The bucket refills 2/s: only a very slow machine lets the 3rd through.
		if want := 2; len(got) != want && (elapsed < 400*time.Millisecond || len(got) > 3) {
			t.Errorf("alice got %d typing frames of 3 sent in %s, want %d", len(got), elapsed, want)
		}
	})

	// Other sizes of the contract, at the limit (the bad-input tests cover one past).
	t.Run("usernames of 3 and 32 characters, passwords of 8 and 72 bytes", func(t *testing.T) {
		for _, c := range []map[string]string{
			credentials("abc", "12345678"),
			credentials(strings.Repeat("z", 32), strings.Repeat("p", 72)),
			credentials("p72u", strings.Repeat("é", 36)),
		} {
			hosttest.WantStatus(t, h.do(t, req{Method: "POST", Path: "/api/v1/auth/register", Body: c}), http.StatusCreated)
			hosttest.WantStatus(t, h.do(t, req{Method: "POST", Path: "/api/v1/auth/login", Body: c}), http.StatusOK)
		}
	})
	t.Run("thread name of 200 bytes, client_msg_id of 64 characters, history page of 200, 200 presence ids", func(t *testing.T) {
		h.newThread(t, alice, strings.Repeat("n", 200))
		r := h.do(t, req{Method: "POST", Path: "/api/v1/threads/" + th.ID + "/messages", Token: alice.Token, Body: map[string]string{"client_msg_id": strings.Repeat("c", 64), "body": "x"}})
		hosttest.WantStatus(t, r, http.StatusCreated)
		hosttest.WantStatus(t, h.do(t, req{Method: "GET", Path: "/api/v1/threads/" + th.ID + "/messages?limit=200", Token: alice.Token}), http.StatusOK)
		ids := strings.Repeat("&user_id="+bob.ID, 200)[1:]
		hosttest.WantStatus(t, h.do(t, req{Method: "GET", Path: "/api/v1/presence?" + ids, Token: alice.Token}), http.StatusOK)
		hosttest.WantError(t, h.do(t, req{Method: "GET", Path: "/api/v1/presence?" + ids + "&user_id=" + alice.ID, Token: alice.Token}), http.StatusBadRequest, "invalid_request")
	})
}

// TestLimitThreadMembers: members of one thread. CHAT_LIMIT_THREAD_MEMBERS is set to 5
// to keep it quick; TestLimitThreadMembersDefault checks the default 1,000.
func TestLimitThreadMembers(t *testing.T) {
	t.Parallel()
	s := newStack(t, 1, map[string]string{"CHAT_LIMIT_THREAD_MEMBERS": "5"})
	h := s.h()
	owner := h.newUser(t, "owner")
	names := s.createUsers(t, "m", 6)
	create := func(members []string) reply {
		return h.do(t, req{Method: "POST", Path: "/api/v1/threads", Token: owner.Token, Body: map[string]any{"name": "club", "members": members}})
	}
	hosttest.WantStatus(t, create(names[:4]), http.StatusCreated) // 5 with the creator
	// The creator named among the members counts once.
	hosttest.WantStatus(t, create(append([]string{owner.Username}, names[:4]...)), http.StatusCreated)
	// So does a name repeated, in any case: 5 distinct with the creator.
	hosttest.WantStatus(t, create(append([]string{strings.ToUpper(names[0]), names[0], owner.Username}, names[:4]...)), http.StatusCreated)

	before := s.snapshot(t)
	hosttest.WantError(t, create(names[:5]), http.StatusBadRequest, "invalid_request") // 6
	wantUnchanged(t, before, s.snapshot(t))

	r := create(names[:3]) // 4
	hosttest.WantStatus(t, r, http.StatusCreated)
	var out struct {
		Thread apiThread `json:"thread"`
	}
	r.Decode(t, &out)
	add := func(name string) reply {
		return h.do(t, req{Method: "POST", Path: "/api/v1/threads/" + out.Thread.ID + "/members", Token: owner.Token, Body: map[string]string{"username": name}})
	}
	hosttest.WantStatus(t, add(names[3]), http.StatusOK) // the 5th
	before = s.snapshot(t)
	hosttest.WantError(t, add(names[4]), http.StatusBadRequest, "invalid_request") // the 6th
	wantUnchanged(t, before, s.snapshot(t))
	hosttest.WantStatus(t, add(names[3]), http.StatusOK) // adding a member again is harmless
}

// TestLimitThreadMembersDefault: at the default of 1,000 members. The 1,000 users are
// inserted straight into the database, so the test takes a second or two.
func TestLimitThreadMembersDefault(t *testing.T) {
	t.Parallel()
	s := newStack(t, 1, nil)
	h := s.h()
	owner := h.newUser(t, "owner")
	names := s.createUsers(t, "k", 1000)
	create := func(members []string) reply {
		return h.do(t, req{Method: "POST", Path: "/api/v1/threads", Token: owner.Token, Body: map[string]any{"name": "big", "members": members}})
	}
	r := create(names[:999])
	hosttest.WantStatus(t, r, http.StatusCreated)
	var out struct {
		Thread apiThread `json:"thread"`
	}
	r.Decode(t, &out)
	if len(out.Thread.Members) != 1000 {
		t.Fatalf("%d members, want 1000", len(out.Thread.Members))
	}
	before := s.snapshot(t)
	hosttest.WantError(t, create(names), http.StatusBadRequest, "invalid_request") // 1,001
	r = h.do(t, req{Method: "POST", Path: "/api/v1/threads/" + out.Thread.ID + "/members", Token: owner.Token, Body: map[string]string{"username": names[999]}})
	hosttest.WantError(t, r, http.StatusBadRequest, "invalid_request")
	wantUnchanged(t, before, s.snapshot(t))
}

// TestLimitSendQueue: one socket's send queue. CHAT_LIMIT_SEND_QUEUE is set to 4
// frames: at the default of 256 a client that stops reading would need some 85 MB of
// answers queued before it. At the limit, 4 requests pipelined by a client that then
// reads find room for their answers however slow the server's writer is. Past it, a
// client that stops reading (with a small receive buffer) while asking for 330 KB
// history pages, one at a time, is closed with 1013 once its queue is full; it then
// reads again and finds the close after the frames already sent.
func TestLimitSendQueue(t *testing.T) {
	t.Parallel()
	s := newStack(t, 1, map[string]string{"CHAT_LIMIT_SEND_QUEUE": "4"})
	h := s.h()
	alice, bob := h.newUser(t, "alice"), h.newUser(t, "bob")
	th := h.newThread(t, alice, "queue", bob)
	big := strings.Repeat("q", 8192)
	for i := 0; i < 40; i++ {
		h.send(t, alice, th.ID, big)
	}

	t.Run("at the limit: 4 pipelined requests are answered", func(t *testing.T) {
		w := h.dial(t, bob) // and a catch-up of 40 messages passed through a queue of 4
		for i := 0; i < 4; i++ {
			w.write(t, map[string]any{"type": "sync", "id": fmt.Sprint(i), "thread_id": th.ID, "after_seq": i, "limit": 1})
		}
		for i := 0; i < 4; i++ {
			if f := w.next(t); f.typ() != "sync_result" || f.str("id") != fmt.Sprint(i) {
				t.Fatalf("answer %v, want sync_result %d", f, i)
			}
		}
		if got := w.roundTrip(t); len(got) != 0 {
			t.Fatalf("bob got %v", got)
		}
	})

	t.Run("past the limit: a client that does not read is closed 1013", func(t *testing.T) {
		w := h.dialWith(t, bob, dialOpts{RecvBuf: 4096})
		closes := func() float64 { return h.metric(t, `switchboard_ws_closes_total{code="1013"}`) }
		answers := func() float64 { return h.metric(t, `switchboard_ws_frames_out_total{type="sync_result"}`) }
		closed, answered := closes(), answers()
		// One request at a time, each handled (answer queued, or the socket closed)
		// before the next: the server never holds unread requests when it closes, so
		// it ends the connection with FIN, not RST, and the close frame arrives.
		for i := 0; ; i++ {
			if i == 400 {
				t.Fatal("400 history pages queued to a client that does not read, and no 1013")
			}
			w.write(t, map[string]any{"type": "sync", "id": fmt.Sprint(i), "thread_id": th.ID, "limit": 200})
			var done bool
			hosttest.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
				if c := closes(); c > closed {
					done = true
					return nil
				}
				if a := answers(); a > answered {
					answered = a
					return nil
				}
				return fmt.Errorf("sync %d not handled", i)
			})
			if done {
				break
			}
		}
		got, _, err := w.closeCode(10 * time.Second)
		if got != websocket.CloseTryAgainLater {
			t.Fatalf("socket ended with %d (%v), want close 1013", got, err)
		}
		s.presenceGone(t, w)
	})
}
