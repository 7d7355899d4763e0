package ws_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard-chat/switchboard/pkg/hosttest"
)

// syncAnswer is a `sync_result` or `error` frame, decoded as the contract spells it.
// RawMessages keeps `messages` as sent, so that a null list is told from an empty one
// (a client iterating it may not expect null).
type syncAnswer struct {
	Type        string             `json:"type"`
	ID          string             `json:"id"`
	ThreadID    string             `json:"thread_id"`
	Messages    []hosttest.Message `json:"messages"`
	HasMore     *bool              `json:"has_more"`
	Ref         string             `json:"ref"`
	Code        string             `json:"code"`
	RawMessages json.RawMessage    `json:"-"`
}

// syncRequest writes one `sync` (or any) frame and returns its answer. The socket has
// caught up before (dial waits for `synced`) and nothing is sent meanwhile, but a
// `message` frame may still repeat (at-least-once), so those are skipped.
func syncRequest(t *testing.T, c *websocket.Conn, frame string) syncAnswer {
	t.Helper()
	if err := c.WriteMessage(websocket.TextMessage, []byte(frame)); err != nil {
		t.Fatalf("write %s: %v", frame, err)
	}
	for {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, data, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("answer to %s: %v", frame, err)
		}
		var a syncAnswer
		if err := json.Unmarshal(data, &a); err != nil {
			t.Fatalf("answer to %s: %v: %s", frame, err, data)
		}
		if a.Type == "message" {
			continue
		}
		var raw struct {
			Messages json.RawMessage `json:"messages"`
		}
		_ = json.Unmarshal(data, &raw)
		a.RawMessages = raw.Messages
		return a
	}
}

// syncFrame builds a `sync` frame; fields are added verbatim (`"after_seq":3`).
func syncFrame(id, threadID string, fields ...string) string {
	s := fmt.Sprintf(`{"type":"sync","id":%q,"thread_id":%q`, id, threadID)
	for _, f := range fields {
		s += "," + f
	}
	return s + "}"
}

// Contract §3 and asyncapi receiveSync: `sync` answers the messages with seq >
// after_seq, oldest first, at most limit (1..200, default 50) of them, and has_more
// says whether more follow that page. Checked on a real host with a thread of 205
// messages, more than the largest page, so that has_more is true on full pages and
// false on the last one, also when the last page is exactly full.
func TestSyncPages(t *testing.T) {
	h := hosttest.Start(t, hosttest.Options{Env: map[string]string{
		// 205 messages from one test: the per-user send limit would answer 429.
		"CHAT_LIMIT_SEND_RATE": "100000", "CHAT_LIMIT_SEND_BURST": "100000",
	}})
	const password = "sync pages password"
	type user struct{ name, token string }
	newUser := func(prefix string) user {
		name := prefix + hosttest.RandomHex(4)
		h.Register(t, name, password)
		return user{name, h.Login(t, name, password).Token}
	}
	alice, bob, eve := newUser("alice"), newUser("bob"), newUser("eve")
	th := h.NewThread(t, alice.token, "sync pages", bob.name)
	empty := h.NewThread(t, bob.token, "empty")
	evesOwn := h.NewThread(t, eve.token, "not bob's")
	const n = 205
	sent := make([]hosttest.Message, 0, n)
	for i := 1; i <= n; i++ {
		from := alice
		if i%3 == 0 {
			from = bob
		}
		m := h.Send(t, from.token, th.ID, fmt.Sprintf("message %d", i))
		if m.Seq != int64(i) {
			t.Fatalf("message %d was stored with seq %d", i, m.Seq)
		}
		sent = append(sent, m)
	}

	c, _ := dial(t, "ws://"+h.Addr+"/ws", bob.token)

	// check fails unless a is a sync_result of thread for the sync id holding exactly the
	// messages of seq from..to as sent, and has_more is hasMore.
	check := func(t *testing.T, a syncAnswer, id, thread string, from, to int64, hasMore bool) {
		t.Helper()
		if a.Type != "sync_result" || a.ThreadID != thread || a.HasMore == nil {
			t.Fatalf("answer %+v, want a sync_result of thread %s with has_more", a, thread)
		}
		// asyncapi SyncResultFrame: id is sent but not in the contract's table, so a
		// client must tolerate its absence; when sent, it must be the right one.
		if a.ID != "" && a.ID != id {
			t.Errorf("sync_result id %q, want %q", a.ID, id)
		}
		if string(a.RawMessages) == "null" {
			t.Errorf("messages is null, want a list")
		}
		var got, want []int64
		for _, m := range a.Messages {
			got = append(got, m.Seq)
		}
		for s := from; s <= to; s++ {
			want = append(want, s)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("seqs %v, want %v", got, want)
		}
		for _, m := range a.Messages {
			if s := sent[m.Seq-1]; m.ID != s.ID || m.ThreadID != s.ThreadID || m.SenderID != s.SenderID || m.ClientMsgID != s.ClientMsgID || m.Body != s.Body {
				t.Errorf("seq %d is %+v, was sent as %+v", m.Seq, m, s)
			}
		}
		if *a.HasMore != hasMore {
			t.Errorf("has_more %v, want %v (page %d..%d of %d)", *a.HasMore, hasMore, from, to, n)
		}
	}

	pages := []struct {
		fields   []string
		from, to int64
		hasMore  bool
	}{
		// No limit: the default of 50; no after_seq: from seq 1.
		{nil, 1, 50, true},
		{[]string{`"after_seq":0`}, 1, 50, true},
		{[]string{`"after_seq":154`}, 155, 204, true},
		{[]string{`"after_seq":155`}, 156, 205, false}, // exactly 50 left: the last page
		// The largest page, 200.
		{[]string{`"limit":200`}, 1, 200, true},
		{[]string{`"after_seq":4`, `"limit":200`}, 5, 204, true},
		{[]string{`"after_seq":5`, `"limit":200`}, 6, 205, false},
		{[]string{`"after_seq":100`, `"limit":200`}, 101, 205, false},
		{[]string{`"limit":1`}, 1, 1, true},
		{[]string{`"after_seq":203`, `"limit":1`}, 204, 204, true},
		{[]string{`"after_seq":204`, `"limit":1`}, 205, 205, false},
		{[]string{`"after_seq":200`, `"limit":10`}, 201, 205, false},
		// Nothing after the last seq, or after a seq the thread never reached.
		{[]string{`"after_seq":205`}, 206, 205, false},
		{[]string{`"after_seq":1000`, `"limit":3`}, 1001, 1000, false},
	}
	for i, p := range pages {
		t.Run(strings.ReplaceAll(strings.Join(append([]string{"page"}, p.fields...), " "), `"`, ""), func(t *testing.T) {
			id := fmt.Sprintf("p%d", i)
			check(t, syncRequest(t, c, syncFrame(id, th.ID, p.fields...)), id, th.ID, p.from, p.to, p.hasMore)
		})
	}

	t.Run("an empty thread", func(t *testing.T) {
		check(t, syncRequest(t, c, syncFrame("e1", empty.ID)), "e1", empty.ID, 1, 0, false)
	})

	// A client pages on from the last seq of each page: every message comes exactly
	// once, in order, and has_more is false only on the last page. 205 is 5 pages of
	// 41 exactly, and not a whole number of pages of 7, 50 or 200.
	for _, limit := range []int{7, 41, 50, 200} {
		t.Run(fmt.Sprintf("paging with limit %d", limit), func(t *testing.T) {
			var after int64
			var seen []int64
			pages := 0
			for {
				id := fmt.Sprintf("l%d-%d", limit, pages)
				fields := []string{fmt.Sprintf(`"after_seq":%d`, after)}
				if limit != 50 { // 50 is left to the default
					fields = append(fields, fmt.Sprintf(`"limit":%d`, limit))
				}
				a := syncRequest(t, c, syncFrame(id, th.ID, fields...))
				to := min(after+int64(limit), n)
				check(t, a, id, th.ID, after+1, to, to < n)
				pages++
				for _, m := range a.Messages {
					seen = append(seen, m.Seq)
				}
				if !*a.HasMore {
					break
				}
				if pages > n {
					t.Fatal("has_more never became false")
				}
				after = a.Messages[len(a.Messages)-1].Seq
			}
			if want := (n + limit - 1) / limit; pages != want {
				t.Errorf("%d pages, want %d", pages, want)
			}
			if len(seen) != n {
				t.Errorf("%d messages over all pages, want %d", len(seen), n)
			}
		})
	}

	// asyncapi receiveSync: an error answers with ref = the sync's id, so that a client
	// with several syncs in flight knows which one failed.
	refusals := []struct {
		name, thread, field, code string
	}{
		{"another's thread", evesOwn.ID, "", "not_member"},
		{"a thread that does not exist", "01890000-0000-7000-8000-000000000000", "", "not_member"},
		{"limit 0", th.ID, `"limit":0`, "invalid_request"},
		{"limit 201", th.ID, `"limit":201`, "invalid_request"},
		{"limit -1", th.ID, `"limit":-1`, "invalid_request"},
		{"limit 2^31", th.ID, `"limit":2147483648`, "invalid_request"},
		{"limit a string", th.ID, `"limit":"10"`, "invalid_request"},
		{"limit a fraction", th.ID, `"limit":1.5`, "invalid_request"},
		{"after_seq -1", th.ID, `"after_seq":-1`, "invalid_request"},
		{"after_seq a string", th.ID, `"after_seq":"1"`, "invalid_request"},
		{"after_seq a fraction", th.ID, `"after_seq":0.5`, "invalid_request"},
		{"after_seq past int64", th.ID, `"after_seq":9223372036854775808`, "invalid_request"},
	}
	for i, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			id := fmt.Sprintf("r%d", i)
			var fields []string
			if tc.field != "" {
				fields = append(fields, tc.field)
			}
			a := syncRequest(t, c, syncFrame(id, tc.thread, fields...))
			if a.Type != "error" || a.Code != tc.code || a.Ref != id {
				t.Fatalf("answer %+v, want error %s with ref %q", a, tc.code, id)
			}
		})
	}

	// The socket outlived every refusal (fewer than the 21 bad frames of the 1008 rule).
	if a := syncRequest(t, c, `{"type":"ping"}`); a.Type != "pong" {
		t.Fatalf("ping answered %+v, want pong", a)
	}
}
