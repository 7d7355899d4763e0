package httpapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/switchboard-chat/switchboard/pkg/hosttest"
)

func TestSendMessage(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	alice, bob, eve := s.newUser(t, "alice"), s.newUser(t, "bob"), s.newUser(t, "eve")
	th := s.newThread(t, alice, "send", bob)
	path := "/api/v1/threads/" + th.ID + "/messages"

	t.Run("201 with the message", func(t *testing.T) {
		t.Parallel()
		r := s.Do(t, call{Method: "POST", Path: path, Token: alice.Token, Body: map[string]string{"client_msg_id": "first-201", "body": "héllo\nworld"}})
		hosttest.WantStatus(t, r, http.StatusCreated)
		var raw map[string]map[string]any
		r.Decode(t, &raw)
		if len(raw) != 1 || len(raw["message"]) < 7 {
			t.Errorf("answer %s: want {message:{id, thread_id, seq, sender_id, client_msg_id, body, created_at}}", r.Body)
		}
		var out struct{ Message apiMessage }
		r.Decode(t, &out)
		m := out.Message
		if m.ID == "" || m.ThreadID != th.ID || m.Seq < 1 || m.SenderID != alice.ID || m.ClientMsgID != "first-201" || m.Body != "héllo\nworld" {
			t.Errorf("message %+v", m)
		}
		wantUTC(t, "created_at", m.CreatedAt)
	})

	t.Run("a repeated client_msg_id answers 200 with the first message", func(t *testing.T) {
		t.Parallel()
		first := s.Do(t, call{Method: "POST", Path: path, Token: bob.Token, Body: map[string]string{"client_msg_id": "repeat-me", "body": "original"}})
		hosttest.WantStatus(t, first, http.StatusCreated)
		var m1 struct{ Message apiMessage }
		first.Decode(t, &m1)
		for _, body := range []string{"original", "a different body"} {
			again := s.Do(t, call{Method: "POST", Path: path, Token: bob.Token, Body: map[string]string{"client_msg_id": "repeat-me", "body": body}})
			hosttest.WantStatus(t, again, http.StatusOK)
			var m2 struct{ Message apiMessage }
			again.Decode(t, &m2)
			if m2.Message != m1.Message {
				t.Errorf("repeat answered %+v, want the first %+v", m2.Message, m1.Message)
			}
		}
		// The same client_msg_id from another sender is another message.
		other := s.Do(t, call{Method: "POST", Path: path, Token: alice.Token, Body: map[string]string{"client_msg_id": "repeat-me", "body": "mine"}})
		hosttest.WantStatus(t, other, http.StatusCreated)
		// Nothing was stored twice.
		n := 0
		for _, m := range s.history(t, alice, th.ID, "?limit=200").Messages {
			if m.ClientMsgID == "repeat-me" {
				n++
			}
		}
		if n != 2 {
			t.Errorf("%d messages with client_msg_id repeat-me, want 2 (one per sender)", n)
		}
	})

	okBodies := []struct{ name, body string }{
		{"1 byte", "x"},
		{"8192 bytes", strings.Repeat("a", 8192)},
		{"8192 bytes of 4-byte characters", strings.Repeat("😀", 2048)},
		{"only spaces", "   "},
	}
	for _, tc := range okBodies {
		t.Run("accepts body of "+tc.name, func(t *testing.T) {
			t.Parallel()
			m := s.send(t, alice, th.ID, tc.body)
			if m.Body != tc.body {
				t.Errorf("stored body differs")
			}
		})
	}

	okIDs := []struct{ name, id string }{
		{"64 characters", strings.Repeat("k", 64)},
		{"every printable ASCII character", " !\"#$%&'()*+,-./09:;<=>?@AZ[\\]^_`az{|}~"},
		{"a UUID", "6f1c3a9e-2b7d-4c1e-9f0a-1b2c3d4e5f60"},
	}
	for _, tc := range okIDs {
		t.Run("accepts client_msg_id of "+tc.name, func(t *testing.T) {
			t.Parallel()
			r := s.Do(t, call{Method: "POST", Path: path, Token: alice.Token, Body: map[string]string{"client_msg_id": tc.id, "body": "ok"}})
			hosttest.WantStatus(t, r, http.StatusCreated)
			var out struct{ Message apiMessage }
			r.Decode(t, &out)
			if out.Message.ClientMsgID != tc.id {
				t.Errorf("client_msg_id %q, want %q", out.Message.ClientMsgID, tc.id)
			}
		})
	}

	bad := []struct {
		name   string
		user   testUser
		path   string
		body   string
		status int
		code   string
	}{
		{"body over 8192 bytes", alice, path, `{"client_msg_id":"big","body":"` + strings.Repeat("a", 8193) + `"}`, http.StatusRequestEntityTooLarge, "too_large"},
		{"body over 8192 bytes in 4-byte characters", alice, path, `{"client_msg_id":"big4","body":"` + strings.Repeat("😀", 2049) + `"}`, http.StatusRequestEntityTooLarge, "too_large"},
		{"NUL in the body", alice, path, `{"client_msg_id":"nul","body":"a\u0000b"}`, http.StatusBadRequest, "invalid_request"},
		{"empty body", alice, path, `{"client_msg_id":"empty","body":""}`, http.StatusBadRequest, "invalid_request"},
		{"missing body", alice, path, `{"client_msg_id":"nobody"}`, http.StatusBadRequest, "invalid_request"},
		{"body not a string", alice, path, `{"client_msg_id":"num","body":42}`, http.StatusBadRequest, "invalid_request"},
		{"missing client_msg_id", alice, path, `{"body":"hi"}`, http.StatusBadRequest, "invalid_request"},
		{"empty client_msg_id", alice, path, `{"client_msg_id":"","body":"hi"}`, http.StatusBadRequest, "invalid_request"},
		{"client_msg_id of 65 characters", alice, path, `{"client_msg_id":"` + strings.Repeat("k", 65) + `","body":"hi"}`, http.StatusBadRequest, "invalid_request"},
		{"client_msg_id with a tab", alice, path, `{"client_msg_id":"a\tb","body":"hi"}`, http.StatusBadRequest, "invalid_request"},
		{"client_msg_id with DEL", alice, path, `{"client_msg_id":"a\u007fb","body":"hi"}`, http.StatusBadRequest, "invalid_request"},
		{"client_msg_id with non-ASCII", alice, path, `{"client_msg_id":"café","body":"hi"}`, http.StatusBadRequest, "invalid_request"},
		{"client_msg_id not a string", alice, path, `{"client_msg_id":7,"body":"hi"}`, http.StatusBadRequest, "invalid_request"},
		{"non-member", eve, path, `{"client_msg_id":"eve","body":"let me in"}`, http.StatusNotFound, "not_found"},
		{"unknown thread", alice, "/api/v1/threads/01890000-0000-7000-8000-000000000000/messages", `{"client_msg_id":"unknown","body":"hi"}`, http.StatusNotFound, "not_found"},
		{"malformed thread id", alice, "/api/v1/threads/xyz/messages", `{"client_msg_id":"malformed","body":"hi"}`, http.StatusNotFound, "not_found"},
	}
	for _, tc := range bad {
		t.Run(fmt.Sprintf("%d for %s", tc.status, tc.name), func(t *testing.T) {
			t.Parallel()
			r := s.Do(t, call{Method: "POST", Path: tc.path, Token: tc.user.Token, Body: tc.body})
			hosttest.WantError(t, r, tc.status, tc.code)
		})
	}

	t.Run("a refused message is not stored", func(t *testing.T) {
		t.Parallel()
		r := s.Do(t, call{Method: "POST", Path: path, Token: eve.Token, Body: `{"client_msg_id":"refused-eve","body":"x"}`})
		hosttest.WantError(t, r, http.StatusNotFound, "not_found")
		r = s.Do(t, call{Method: "POST", Path: path, Token: alice.Token, Body: `{"client_msg_id":"refused-big","body":"` + strings.Repeat("a", 8193) + `"}`})
		hosttest.WantError(t, r, http.StatusRequestEntityTooLarge, "too_large")
		for _, m := range s.history(t, alice, th.ID, "?limit=200").Messages {
			if strings.HasPrefix(m.ClientMsgID, "refused-") {
				t.Errorf("stored %+v", m)
			}
		}
		// And the id was not used up.
		r = s.Do(t, call{Method: "POST", Path: path, Token: alice.Token, Body: `{"client_msg_id":"refused-big","body":"small"}`})
		hosttest.WantStatus(t, r, http.StatusCreated)
	})
}

func TestHistory(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	alice, bob, eve := s.newUser(t, "alice"), s.newUser(t, "bob"), s.newUser(t, "eve")
	th := s.newThread(t, alice, "history", bob)
	const n = 30
	sent := make([]apiMessage, 0, n)
	for i := 1; i <= n; i++ {
		u := alice
		if i%3 == 0 {
			u = bob
		}
		sent = append(sent, s.send(t, u, th.ID, "message "+strconv.Itoa(i)))
	}
	for i, m := range sent {
		if m.Seq != int64(i+1) {
			t.Fatalf("message %d has seq %d", i+1, m.Seq)
		}
	}
	empty := s.newThread(t, alice, "empty")

	pages := []struct {
		query   string
		want    []int64
		hasMore bool
	}{
		{"", seqRange(1, 30), false},
		{"?after_seq=0", seqRange(1, 30), false},
		{"?limit=10", seqRange(1, 10), true},
		{"?after_seq=10&limit=10", seqRange(11, 20), true},
		{"?after_seq=20&limit=10", seqRange(21, 30), false},
		{"?after_seq=25", seqRange(26, 30), false},
		{"?after_seq=30", seqRange(1, 0), false},
		{"?after_seq=1000", seqRange(1, 0), false},
		{"?limit=1", seqRange(1, 1), true},
		{"?limit=200", seqRange(1, 30), false},
		{"?limit=30", seqRange(1, 30), false},
		{"?limit=29", seqRange(1, 29), true},
		{"?before_seq=31&limit=10", seqRange(21, 30), true},
		{"?before_seq=1000&limit=10", seqRange(21, 30), true},
		{"?before_seq=21&limit=10", seqRange(11, 20), true},
		{"?before_seq=11&limit=10", seqRange(1, 10), false},
		{"?before_seq=5", seqRange(1, 4), false},
		{"?before_seq=1", seqRange(1, 0), false},
		{"?before_seq=31", seqRange(1, 30), false},
		{"?limit=5&unknown=1", seqRange(1, 5), true},
	}
	for _, tc := range pages {
		t.Run("page "+tc.query, func(t *testing.T) {
			t.Parallel()
			h := s.history(t, bob, th.ID, tc.query)
			if got := seqs(h.Messages); !slices.Equal(got, tc.want) {
				t.Errorf("seqs %v, want %v", got, tc.want)
			}
			if *h.HasMore != tc.hasMore {
				t.Errorf("has_more %v, want %v", *h.HasMore, tc.hasMore)
			}
			for _, m := range h.Messages {
				if m != sent[m.Seq-1] {
					t.Errorf("seq %d is %+v, was sent as %+v", m.Seq, m, sent[m.Seq-1])
				}
			}
		})
	}

	t.Run("an empty thread", func(t *testing.T) {
		t.Parallel()
		h := s.history(t, alice, empty.ID, "")
		if len(h.Messages) != 0 || *h.HasMore {
			t.Errorf("empty thread: %+v", h)
		}
	})

	badQueries := []string{
		"?limit=0", "?limit=201", "?limit=-1", "?limit=abc", "?limit=", "?limit=1.5", "?limit=1e2",
		"?limit=99999999999999999999", "?limit=9223372036854775807",
		"?after_seq=-1", "?after_seq=abc", "?after_seq=", "?after_seq=1.0", "?after_seq=99999999999999999999",
		"?before_seq=0", "?before_seq=-5", "?before_seq=x", "?before_seq=", "?before_seq=99999999999999999999",
		"?after_seq=1&before_seq=5",
		"?limit=%00",
	}
	for _, q := range badQueries {
		t.Run("400 for "+q, func(t *testing.T) {
			t.Parallel()
			r := s.Do(t, call{Method: "GET", Path: "/api/v1/threads/" + th.ID + "/messages" + q, Token: alice.Token})
			hosttest.WantError(t, r, http.StatusBadRequest, "invalid_request")
		})
	}

	for name, c := range map[string]call{
		"non-member":     {Path: "/api/v1/threads/" + th.ID + "/messages", Token: eve.Token},
		"unknown thread": {Path: "/api/v1/threads/01890000-0000-7000-8000-000000000000/messages", Token: alice.Token},
		"malformed id":   {Path: "/api/v1/threads/zzz/messages", Token: alice.Token},
	} {
		t.Run("404 for "+name, func(t *testing.T) {
			t.Parallel()
			c.Method = "GET"
			hosttest.WantError(t, s.Do(t, c), http.StatusNotFound, "not_found")
		})
	}
}

// TestConcurrentSenders: 50 users send to one thread at once; seq is 1..50 with no gap
// and no duplicate, and each message is stored once.
func TestConcurrentSenders(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	const n = 50
	owner := s.newUser(t, "owner")
	senders := make([]testUser, n)
	var wg sync.WaitGroup
	for i := range senders {
		name := s.name("sender")
		wg.Go(func() {
			creds := map[string]string{"username": name, "password": testPassword}
			var reg struct{ User apiUser }
			var l loginAnswer
			if err := s.tryJSON(call{Method: "POST", Path: "/api/v1/auth/register", Body: creds}, http.StatusCreated, &reg); err != nil {
				t.Error(err)
				return
			}
			if err := s.tryJSON(call{Method: "POST", Path: "/api/v1/auth/login", Body: creds}, http.StatusOK, &l); err != nil {
				t.Error(err)
				return
			}
			senders[i] = testUser{ID: reg.User.ID, Username: reg.User.Username, Token: l.Token}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	th := s.newThread(t, owner, "busy", senders...)

	start := make(chan struct{})
	got := make([]apiMessage, n)
	for i, u := range senders {
		wg.Go(func() {
			<-start
			var out struct{ Message apiMessage }
			c := call{Method: "POST", Path: "/api/v1/threads/" + th.ID + "/messages", Token: u.Token,
				Body: map[string]string{"client_msg_id": "concurrent", "body": "from " + u.Username}}
			if err := s.tryJSON(c, http.StatusCreated, &out); err != nil {
				t.Error(err)
			}
			got[i] = out.Message
		})
	}
	close(start)
	wg.Wait()
	if t.Failed() {
		return
	}

	h := s.history(t, owner, th.ID, "?limit=200")
	if want := seqRange(1, n); !slices.Equal(seqs(h.Messages), want) {
		t.Fatalf("seqs %v, want %v", seqs(h.Messages), want)
	}
	bySender := map[string]apiMessage{}
	for _, m := range h.Messages {
		if _, dup := bySender[m.SenderID]; dup {
			t.Errorf("sender %s has two messages", m.SenderID)
		}
		bySender[m.SenderID] = m
	}
	for i, u := range senders {
		if m, ok := bySender[u.ID]; !ok || m != got[i] {
			t.Errorf("%s: stored %+v, answered %+v", u.Username, m, got[i])
		}
	}
	if th := s.thread(t, owner, th.ID); th.LastSeq != n || th.Unread != n {
		t.Errorf("last_seq %d unread %d, want %d and %d", th.LastSeq, th.Unread, n, n)
	}
}

// TestSendRateLimit: past a user's burst, 429 with Retry-After, and nothing stored.
func TestSendRateLimit(t *testing.T) {
	t.Parallel()
	s := newServer(t, map[string]string{"CHAT_LIMIT_SEND_BURST": "3", "CHAT_LIMIT_SEND_RATE": "0.01"})
	alice, bob := s.newUser(t, "alice"), s.newUser(t, "bob")
	th := s.newThread(t, alice, "limited", bob)
	for i := 0; i < 3; i++ {
		s.send(t, alice, th.ID, "ok")
	}
	r := s.Do(t, call{Method: "POST", Path: "/api/v1/threads/" + th.ID + "/messages", Token: alice.Token, Body: map[string]string{"client_msg_id": "over", "body": "too many"}})
	hosttest.WantError(t, r, http.StatusTooManyRequests, "rate_limited")
	if secs, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || secs < 1 {
		t.Errorf("Retry-After %q, want whole seconds >= 1", r.Header.Get("Retry-After"))
	}
	if got := seqs(s.history(t, alice, th.ID, "").Messages); !slices.Equal(got, seqRange(1, 3)) {
		t.Errorf("seqs %v, want 1..3: the refused message must not be stored", got)
	}
	// The limit is per user.
	s.send(t, bob, th.ID, "bob is fine")
}

// TestConcurrentRepeats: the same client_msg_id sent by one user many times at once is
// stored once; exactly one answer is 201 and every answer carries that message.
func TestConcurrentRepeats(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	alice := s.newUser(t, "alice")
	th := s.newThread(t, alice, "repeats")
	const n = 12
	type result struct {
		status int
		msg    apiMessage
	}
	results := make([]result, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range results {
		wg.Go(func() {
			<-start
			r, err := s.Try(call{Method: "POST", Path: "/api/v1/threads/" + th.ID + "/messages", Token: alice.Token,
				Body: map[string]string{"client_msg_id": "same", "body": "once " + strconv.Itoa(i)}})
			if err != nil {
				t.Error(err)
				return
			}
			var out struct{ Message apiMessage }
			if err := json.Unmarshal(r.Body, &out); err != nil {
				t.Errorf("decode %s: %v", r.Body, err)
			}
			results[i] = result{r.Status, out.Message}
		})
	}
	close(start)
	wg.Wait()
	created := 0
	for _, r := range results {
		switch r.status {
		case http.StatusCreated:
			created++
		case http.StatusOK:
		default:
			t.Errorf("status %d", r.status)
		}
		if r.msg != results[0].msg {
			t.Errorf("answers differ: %+v vs %+v", r.msg, results[0].msg)
		}
	}
	if created != 1 {
		t.Errorf("%d answers were 201, want exactly 1", created)
	}
	if got := seqs(s.history(t, alice, th.ID, "").Messages); !slices.Equal(got, []int64{1}) {
		t.Errorf("seqs %v, want [1]", got)
	}
}
