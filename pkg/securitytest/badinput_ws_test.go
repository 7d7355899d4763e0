package securitytest

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard-chat/switchboard/pkg/hosttest"
)

// ackedSeq reads a member's acked seq from PostgreSQL.
func (s *stack) ackedSeq(tb testing.TB, threadID, userID string) int64 {
	tb.Helper()
	var seq int64
	if err := s.sql.QueryRowContext(context.Background(), `SELECT acked_seq FROM thread_members WHERE thread_id = $1 AND user_id = $2`, threadID, userID).Scan(&seq); err != nil {
		tb.Fatalf("read acked_seq: %v", err)
	}
	return seq
}

// TestBadInputWebSocket sends one bad frame per row on a fresh socket and checks the
// exact answer (an error frame with the socket still open, or the close code) and that
// nothing changed in PostgreSQL or Redis beyond the socket's own presence entry.
func TestBadInputWebSocket(t *testing.T) {
	t.Parallel()
	s := newStack(t, 1, nil)
	h := s.h()
	alice, bob, carol := h.newUser(t, "alice"), h.newUser(t, "bob"), h.newUser(t, "carol")
	th := h.newThread(t, alice, "ours", bob)
	for i := 0; i < 3; i++ {
		h.send(t, alice, th.ID, fmt.Sprintf("m%d", i+1))
	}
	theirs := h.newThread(t, carol, "theirs")
	h.send(t, carol, theirs.ID, "private")
	// Acks are written in batches: after a bad ack, a good ack of the marker thread
	// reaching PostgreSQL proves that a batch was written after the bad one.
	marker := h.newThread(t, alice, "marker", bob)
	for i := 0; i < 12; i++ {
		h.send(t, alice, marker.ID, fmt.Sprintf("k%d", i+1))
	}
	T, C, M := th.ID, theirs.ID, marker.ID
	const missing = "0190aaaa-bbbb-7ccc-8ddd-eeeeeeeeeeee"
	markerKey := "pg/thread_members/" + M + "/" + bob.ID
	markerSeq := int64(0)

	send := func(thread, cmid, body string) string {
		b, _ := json.Marshal(struct {
			Type        string `json:"type"`
			ThreadID    string `json:"thread_id"`
			ClientMsgID string `json:"client_msg_id"`
			Body        string `json:"body"`
		}{"send", thread, cmid, body})
		return string(b)
	}
	rows := []struct {
		name   string
		frame  string
		binary bool
		close  int    // the close code expected, or 0 for an open socket
		code   string // the error frame expected ("" for none)
		ref    string
		ack    bool // an ack: prove with the marker that nothing was written
		pong   bool // the frame itself is a ping answered pong
	}{
		{name: "binary frame", frame: `{"type":"ping"}`, binary: true, close: websocket.CloseUnsupportedData},
		{name: "invalid UTF-8", frame: "\xff\xfe\xfd", close: websocket.CloseInvalidFramePayloadData},
		{name: "invalid UTF-8 inside a valid send", frame: `{"type":"send","thread_id":"` + T + `","client_msg_id":"u1","body":"a` + "\xc3\x28" + `b"}`, close: websocket.CloseInvalidFramePayloadData},
		{name: "17 KiB frame", frame: send(T, "big", strings.Repeat("b", 17<<10)), close: websocket.CloseMessageTooBig},

		{name: "invalid JSON", frame: `{"type":"ping"`, code: "invalid_frame"},
		{name: "JSON array", frame: `[{"type":"ping"}]`, code: "invalid_frame"},
		{name: "JSON string", frame: `"ping"`, code: "invalid_frame"},
		{name: "JSON null", frame: `null`, code: "invalid_frame"},
		{name: "empty frame", frame: ``, code: "invalid_frame"},
		{name: "two objects", frame: `{"type":"ping"}{"type":"ping"}`, code: "invalid_frame"},
		{name: "data after the object", frame: send(T, "x1", "hi") + ` x`, code: "invalid_frame"},
		{name: "nested 8,000 deep (the most 16 KiB holds) in an unknown field is ignored", frame: `{"type":"ping","x":` + nested(8000, ``) + `}`, pong: true},

		{name: "unknown type", frame: `{"type":"hack"}`, code: "unknown_type"},
		{name: "type in upper case", frame: `{"type":"SEND","thread_id":"` + T + `","client_msg_id":"u2","body":"hi"}`, code: "unknown_type", ref: "u2"},
		{name: "type a number", frame: `{"type":5}`, code: "invalid_request"},
		{name: "type missing", frame: `{"thread_id":"` + T + `"}`, code: "invalid_request"},
		{name: "send: body missing", frame: `{"type":"send","thread_id":"` + T + `","client_msg_id":"m1"}`, code: "invalid_request", ref: "m1"},
		{name: "send: body null", frame: `{"type":"send","thread_id":"` + T + `","client_msg_id":"m2","body":null}`, code: "invalid_request", ref: "m2"},
		{name: "send: body a number", frame: `{"type":"send","thread_id":"` + T + `","client_msg_id":"m3","body":5}`, code: "invalid_request", ref: "m3"},
		{name: "send: client_msg_id missing", frame: `{"type":"send","thread_id":"` + T + `","body":"hi"}`, code: "invalid_request"},
		{name: "send: client_msg_id a number", frame: `{"type":"send","thread_id":"` + T + `","client_msg_id":5,"body":"hi"}`, code: "invalid_request"},
		{name: "send: thread_id missing", frame: `{"type":"send","client_msg_id":"m4","body":"hi"}`, code: "invalid_request", ref: "m4"},
		{name: "ack: seq missing", frame: `{"type":"ack","thread_id":"` + T + `"}`, code: "invalid_request", ack: true},
		{name: "ack: seq a string", frame: `{"type":"ack","thread_id":"` + T + `","seq":"1"}`, code: "invalid_request", ack: true},
		{name: "ack: seq a fraction", frame: `{"type":"ack","thread_id":"` + T + `","seq":1.5}`, code: "invalid_request", ack: true},
		{name: "ack: seq negative", frame: `{"type":"ack","thread_id":"` + T + `","seq":-1}`, code: "invalid_request", ack: true},
		{name: "ack: thread_id missing", frame: `{"type":"ack","seq":1}`, code: "invalid_request", ack: true},
		{name: "sync: id missing", frame: `{"type":"sync","thread_id":"` + T + `"}`, code: "invalid_request"},
		{name: "sync: limit 0", frame: `{"type":"sync","id":"s1","thread_id":"` + T + `","limit":0}`, code: "invalid_request", ref: "s1"},
		{name: "sync: limit 201", frame: `{"type":"sync","id":"s2","thread_id":"` + T + `","limit":201}`, code: "invalid_request", ref: "s2"},
		{name: "sync: after_seq -1", frame: `{"type":"sync","id":"s3","thread_id":"` + T + `","after_seq":-1}`, code: "invalid_request", ref: "s3"},
		{name: "typing: thread_id missing", frame: `{"type":"typing"}`, code: "invalid_request"},

		// Well-formed frames the service refuses.
		{name: "ack beyond last_seq", frame: `{"type":"ack","thread_id":"` + T + `","seq":4}`, code: "invalid_request", ack: true},
		{name: "ack of 2^63-1", frame: `{"type":"ack","thread_id":"` + T + `","seq":9223372036854775807}`, code: "invalid_request", ack: true},
		{name: "ack for a thread one is not in", frame: `{"type":"ack","thread_id":"` + C + `","seq":1}`, code: "not_member", ack: true},
		{name: "ack for a thread that does not exist", frame: `{"type":"ack","thread_id":"` + missing + `","seq":1}`, code: "not_member", ack: true},
		{name: "ack for an id that is not an id", frame: `{"type":"ack","thread_id":"x","seq":0}`, code: "not_member", ack: true},
		{name: "send to another's thread", frame: send(C, "n1", "hi"), code: "not_member", ref: "n1"},
		{name: "send to a thread that does not exist", frame: send(missing, "n2", "hi"), code: "not_member", ref: "n2"},
		{name: "send to an id that is not an id", frame: send("'; DROP TABLE messages;--", "n3", "hi"), code: "not_member", ref: "n3"},
		{name: "sync of another's thread", frame: `{"type":"sync","id":"q1","thread_id":"` + C + `"}`, code: "not_member", ref: "q1"},
		{name: "sync of a thread that does not exist", frame: `{"type":"sync","id":"q2","thread_id":"` + missing + `"}`, code: "not_member", ref: "q2"},
		{name: "typing in another's thread", frame: `{"type":"typing","thread_id":"` + C + `"}`, code: "not_member"},
		{name: "typing in a thread that does not exist", frame: `{"type":"typing","thread_id":"` + missing + `"}`, code: "not_member"},
		{name: "send: empty body", frame: send(T, "e1", ""), code: "invalid_request", ref: "e1"},
		{name: "send: body with NUL", frame: send(T, "e2", "a\x00b"), code: "invalid_request", ref: "e2"},
		{name: "send: client_msg_id of 65 characters", frame: send(T, strings.Repeat("c", 65), "hi"), code: "invalid_request", ref: strings.Repeat("c", 65)},
		{name: "send: client_msg_id not ASCII", frame: send(T, "café", "hi"), code: "invalid_request", ref: "café"},
	}
	for _, tc := range rows {
		t.Run(tc.name, func(t *testing.T) {
			w := h.dial(t, bob)
			before := s.snapshot(t)
			typ := websocket.TextMessage
			if tc.binary {
				typ = websocket.BinaryMessage
			}
			_ = w.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if err := w.c.WriteMessage(typ, []byte(tc.frame)); err != nil {
				t.Fatalf("write: %v", err)
			}
			if tc.close != 0 {
				w.wantClose(t, tc.close, 5*time.Second)
				s.presenceGone(t, w)
				wantUnchanged(t, before.withoutSocket(bob.ID, w.ConnID), s.snapshot(t).withoutSocket(bob.ID, w.ConnID))
				return
			}
			got := w.roundTrip(t) // the socket is still open: the ping is answered
			switch {
			case tc.pong: // answered by the first pong; the second is roundTrip's
				if f := w.next(t); len(got) != 0 || f.typ() != "pong" {
					t.Errorf("answer %v then %v, want a pong", got, f)
				}
			case len(got) != 1:
				t.Errorf("answer %v, want one error frame %s", got, tc.code)
			default:
				if err := checkErrorFrame(got[0], tc.code, tc.ref); err != nil {
					t.Error(err)
				}
			}
			ignore := func(string) bool { return false }
			if tc.ack {
				markerSeq++
				w.write(t, fmt.Sprintf(`{"type":"ack","thread_id":%q,"seq":%d}`, M, markerSeq))
				hosttest.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
					if got := s.ackedSeq(t, M, bob.ID); got != markerSeq {
						return fmt.Errorf("marker acked_seq %d, want %d", got, markerSeq)
					}
					return nil
				})
				ignore = func(k string) bool { return k == markerKey }
			}
			wantUnchanged(t, before.without(ignore), s.snapshot(t).without(ignore))
			_ = w.c.Close()
			s.presenceGone(t, w)
		})
	}

	t.Run("a non-member learns nothing: one answer for another's thread and for none", func(t *testing.T) {
		cw := h.dial(t, carol)
		before := s.snapshot(t)
		var answers []frame
		for i, id := range []string{C, missing, "x"} {
			w := h.dial(t, bob) // a socket each: typing is limited per socket
			w.write(t, send(id, fmt.Sprintf("l%d", i), "hi"))
			w.write(t, fmt.Sprintf(`{"type":"sync","id":"l%d","thread_id":%q}`, i, id))
			w.write(t, fmt.Sprintf(`{"type":"typing","thread_id":%q}`, id))
			got := w.roundTrip(t)
			if len(got) != 3 {
				t.Fatalf("answers %v, want 3 error frames", got)
			}
			answers = append(answers, got...)
		}
		for i := 3; i < len(answers); i++ {
			a, b := answers[i], answers[i%3]
			if a.str("code") != "not_member" || a.str("code") != b.str("code") || a.str("message") != b.str("message") {
				t.Errorf("answer %v differs from %v", a, b)
			}
		}
		// The thread's member got nothing: no message, no typing.
		if got := cw.roundTrip(t); len(got) != 0 {
			t.Errorf("the thread's member received %v", got)
		}
		ignore := func(k string) bool { return strings.HasPrefix(k, "redis/presence:{"+bob.ID+"}/") }
		wantUnchanged(t, before.without(ignore), s.snapshot(t).without(ignore))
	})

	t.Run("20 bad frames in 10 s are answered; the 21st closes 1008", func(t *testing.T) {
		w := h.dial(t, bob)
		before := s.snapshot(t)
		for i := 0; i < 20; i++ {
			w.write(t, `{"type":`)
		}
		got := w.roundTrip(t)
		if len(got) != 20 {
			t.Fatalf("%d answers to 20 bad frames, want 20", len(got))
		}
		for _, f := range got {
			if err := checkErrorFrame(f, "invalid_frame", ""); err != nil {
				t.Fatal(err)
			}
		}
		w.write(t, `{"type":`)
		w.wantClose(t, websocket.ClosePolicyViolation, 5*time.Second)
		s.presenceGone(t, w)
		wantUnchanged(t, before.withoutSocket(bob.ID, w.ConnID), s.snapshot(t).withoutSocket(bob.ID, w.ConnID))
	})

	t.Run("a typing flood is dropped silently", func(t *testing.T) {
		w, aw := h.dial(t, bob), h.dial(t, alice)
		// 20 frames at once, then one every 10 ms for a second and a half: the burst
		// and the rate are both exercised.
		start := time.Now()
		for i := 0; i < 20; i++ {
			w.write(t, `{"type":"typing","thread_id":"`+T+`"}`)
		}
		pace := time.NewTicker(10 * time.Millisecond)
		for i := 0; i < 150; i++ {
			<-pace.C
			w.write(t, `{"type":"typing","thread_id":"`+T+`"}`)
		}
		pace.Stop()
		if got := w.roundTrip(t); len(got) != 0 {
			t.Fatalf("the flooder got %v, want nothing (dropped silently)", got)
		}
		elapsed := time.Since(start)
		// Relayed typing frames were queued to alice before her pong.
		got := aw.roundTrip(t)
		for _, f := range got {
			if f.typ() != "typing" || f.str("user_id") != bob.ID || f.str("thread_id") != T {
				t.Fatalf("alice got %v, want only bob's typing", f)
			}
		}
		// 2 per second with a burst of 2.
		allowed := 2 + int(2*elapsed.Seconds()) + 1
		if len(got) < 2 || len(got) > allowed {
			t.Errorf("alice got %d typing frames of 170 sent in %s, want 2..%d", len(got), elapsed, allowed)
		}
		t.Logf("%d of 170 typing frames relayed in %s", len(got), elapsed)
	})
}
