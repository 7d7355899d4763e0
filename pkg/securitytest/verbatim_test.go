package securitytest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/switchboard-chat/switchboard/pkg/hosttest"
)

// payloads are SQL, HTML, template and format strings that must be stored and
// returned byte for byte, never executed or rendered.
var payloads = []string{
	`'); DROP TABLE users;--`,
	`<script>alert(1)</script>`,
	`"; DELETE FROM messages WHERE '1'='1`,
	`' OR 1=1 --`,
	`1; SELECT pg_sleep(10)--`,
	`Robert'); DROP TABLE threads;--`,
	`<img src=x onerror=alert(document.cookie)>`,
	`</script><script>alert(1)</script>`,
	`{{7*7}} ${7*7} <%= 7*7 %> #{7*7}`,
	`%s%s%n%x %v`,
	`\u0000 \x00 \\ \" \n`,
	`../../../../etc/passwd`,
	"$1 $$ E'\\\\' \u202e\u2028\u2029 🙂 混合",
	`]]><!-- --> &amp; &lt;`,
}

// TestSQLAndHTMLVerbatim stores every payload in every string field a user can set:
// thread names, message bodies (HTTP and WebSocket), client_msg_ids (printable ASCII)
// and passwords, and checks each comes back byte-identical from every read (answer,
// GET, history, the live frame, sync) and is byte-identical in PostgreSQL, and that
// every table is still there with the rows expected.
func TestSQLAndHTMLVerbatim(t *testing.T) {
	t.Parallel()
	s := newStack(t, 1, nil)
	h := s.h()
	alice, bob := h.newUser(t, "alice"), h.newUser(t, "bob")
	aw, bw := h.dial(t, alice), h.dial(t, bob)
	tablesBefore := s.snapshot(t)["pg/tables"]

	var messages int
	for i, p := range payloads {
		t.Run(fmt.Sprintf("payload %d %q", i, p), func(t *testing.T) {
			// Thread name.
			th := h.newThread(t, alice, p, bob)
			if th.Name != p {
				t.Errorf("create answered name %q, want %q", th.Name, p)
			}
			r := h.do(t, req{Method: "GET", Path: "/api/v1/threads/" + th.ID, Token: bob.Token})
			hosttest.WantStatus(t, r, http.StatusOK)
			var got struct {
				Thread apiThread `json:"thread"`
			}
			r.Decode(t, &got)
			if got.Thread.Name != p {
				t.Errorf("GET answered name %q, want %q", got.Thread.Name, p)
			}
			s.wantColumn(t, `SELECT name FROM threads WHERE id = $1`, th.ID, p)

			// Body and client_msg_id over HTTP (the client_msg_id only where the
			// payload is printable ASCII of at most 64 characters).
			cmid := fmt.Sprintf("http-%d", i)
			if asciiID(p) {
				cmid = p
			}
			r = h.do(t, req{Method: "POST", Path: "/api/v1/threads/" + th.ID + "/messages", Token: alice.Token,
				Body: map[string]string{"client_msg_id": cmid, "body": p}})
			hosttest.WantStatus(t, r, http.StatusCreated)
			var sent struct {
				Message apiMessage `json:"message"`
			}
			r.Decode(t, &sent)
			if sent.Message.Body != p || sent.Message.ClientMsgID != cmid {
				t.Errorf("send answered body %q, client_msg_id %q; want %q, %q", sent.Message.Body, sent.Message.ClientMsgID, p, cmid)
			}
			s.wantColumn(t, `SELECT body FROM messages WHERE id = $1`, sent.Message.ID, p)
			s.wantColumn(t, `SELECT client_msg_id FROM messages WHERE id = $1`, sent.Message.ID, cmid)
			if f := bw.untilMessage(t, cmid); f.msg().Body != p {
				t.Errorf("live frame body %q, client_msg_id %q; want %q, %q", f.msg().Body, f.msg().ClientMsgID, p, cmid)
			}

			// Body over WebSocket.
			wsID := fmt.Sprintf("ws-%d", i)
			bw.write(t, map[string]string{"type": "send", "thread_id": th.ID, "client_msg_id": wsID, "body": p})
			if f := bw.until(t, "sent"); f.msg().Body != p {
				t.Errorf("sent frame body %q, want %q", f.msg().Body, p)
			}
			if f := aw.untilMessage(t, wsID); f.msg().Body != p {
				t.Errorf("alice's live frame body %q, want %q", f.msg().Body, p)
			}

			// History and sync.
			r = h.do(t, req{Method: "GET", Path: "/api/v1/threads/" + th.ID + "/messages", Token: bob.Token})
			hosttest.WantStatus(t, r, http.StatusOK)
			var hist struct {
				Messages []apiMessage `json:"messages"`
			}
			r.Decode(t, &hist)
			if len(hist.Messages) != 2 || hist.Messages[0].Body != p || hist.Messages[1].Body != p || hist.Messages[0].ClientMsgID != cmid {
				t.Errorf("history %+v, want two messages with body %q", hist.Messages, p)
			}
			aw.write(t, map[string]string{"type": "sync", "id": p, "thread_id": th.ID})
			f := aw.until(t, "sync_result")
			var sr struct {
				ID       string       `json:"id"`
				Messages []apiMessage `json:"messages"`
			}
			f.into(t, &sr)
			if sr.ID != p || len(sr.Messages) != 2 || sr.Messages[1].Body != p {
				t.Errorf("sync_result %+v, want id %q and two messages with body %q", sr, p, p)
			}
			messages += 2

			// Password: a user whose password is the payload logs in with exactly it.
			if len(p) >= 8 && len(p) <= 72 && !strings.ContainsRune(p, 0) {
				name := s.name("pw")
				r = h.do(t, req{Method: "POST", Path: "/api/v1/auth/register", Body: map[string]string{"username": name, "password": p}})
				hosttest.WantStatus(t, r, http.StatusCreated)
				r = h.do(t, req{Method: "POST", Path: "/api/v1/auth/login", Body: map[string]string{"username": name, "password": p}})
				hosttest.WantStatus(t, r, http.StatusOK)
				var l loginAnswer
				r.Decode(t, &l)
				watch.secret("token", l.Token)
				r = h.do(t, req{Method: "POST", Path: "/api/v1/auth/login", Body: map[string]string{"username": name, "password": p + " "}})
				hosttest.WantError(t, r, http.StatusUnauthorized, "invalid_credentials")
			}
		})
	}

	st := s.snapshot(t)
	if st["pg/tables"] != tablesBefore {
		t.Errorf("tables %s, were %s", st["pg/tables"], tablesBefore)
	}
	if got, want := st["pg/threads#count"], fmt.Sprint(len(payloads)); got != want {
		t.Errorf("%s threads, want %s", got, want)
	}
	if got, want := st["pg/messages#count"], fmt.Sprint(messages); got != want {
		t.Errorf("%s messages, want %s", got, want)
	}
}

// asciiID reports whether p can be a client_msg_id: 1..64 printable ASCII characters.
func asciiID(p string) bool {
	if len(p) == 0 || len(p) > 64 {
		return false
	}
	for i := 0; i < len(p); i++ {
		if p[i] < 0x20 || p[i] > 0x7e {
			return false
		}
	}
	return true
}

// wantColumn fails unless the query's one text column for id is want, byte for byte.
func (s *stack) wantColumn(tb testing.TB, query, id, want string) {
	tb.Helper()
	var got string
	if err := s.sql.QueryRowContext(context.Background(), query, id).Scan(&got); err != nil {
		tb.Fatalf("%s: %v", query, err)
	}
	if got != want {
		tb.Errorf("%s = %q in PostgreSQL, want %q", query, got, want)
	}
}

// msg returns the message of a message or sent frame.
func (f frame) msg() apiMessage {
	var m apiMessage
	b, _ := json.Marshal(f["message"])
	_ = json.Unmarshal(b, &m)
	return m
}

// untilMessage reads frames until the message frame of clientMsgID arrives.
func (w *wsConn) untilMessage(tb testing.TB, clientMsgID string) frame {
	tb.Helper()
	for {
		f := w.until(tb, "message")
		if f.msg().ClientMsgID == clientMsgID {
			return f
		}
	}
}

// into decodes the whole frame into v.
func (f frame) into(tb testing.TB, v any) {
	tb.Helper()
	b, _ := json.Marshal(f)
	if err := json.Unmarshal(b, v); err != nil {
		tb.Fatalf("decode frame %v: %v", f, err)
	}
}
