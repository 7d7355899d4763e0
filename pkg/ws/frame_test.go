package ws_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/pkg/chat"
	"github.com/switchboard-chat/switchboard/pkg/ws"
)

const tid = "01890000-0000-7000-8000-0000000000f1"

func ptr[T any](v T) *T { return &v }

func TestDecodeFrameValid(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		in   string
		want ws.InFrame
	}{
		{"send", `{"type":"send","thread_id":"` + tid + `","client_msg_id":"c1","body":"hi"}`,
			ws.InFrame{Type: "send", ThreadID: tid, ClientMsgID: "c1", Body: ptr("hi")}},
		{"send with an empty body (checked later, by the service)", `{"type":"send","thread_id":"t","client_msg_id":"c1","body":""}`,
			ws.InFrame{Type: "send", ThreadID: "t", ClientMsgID: "c1", Body: ptr("")}},
		{"ack", `{"type":"ack","thread_id":"` + tid + `","seq":7}`,
			ws.InFrame{Type: "ack", ThreadID: tid, Seq: ptr(int64(7))}},
		{"ack of 0", `{"type":"ack","thread_id":"t","seq":0}`,
			ws.InFrame{Type: "ack", ThreadID: "t", Seq: ptr(int64(0))}},
		{"sync", `{"type":"sync","id":"r1","thread_id":"` + tid + `","after_seq":3,"limit":20}`,
			ws.InFrame{Type: "sync", ID: "r1", ThreadID: tid, AfterSeq: ptr(int64(3)), Limit: ptr(20)}},
		{"sync with defaults", `{"type":"sync","id":"r2","thread_id":"t"}`,
			ws.InFrame{Type: "sync", ID: "r2", ThreadID: "t"}},
		{"sync with limit 200", `{"type":"sync","id":"r3","thread_id":"t","limit":200}`,
			ws.InFrame{Type: "sync", ID: "r3", ThreadID: "t", Limit: ptr(200)}},
		{"typing", `{"type":"typing","thread_id":"t"}`, ws.InFrame{Type: "typing", ThreadID: "t"}},
		{"ping", `{"type":"ping"}`, ws.InFrame{Type: "ping"}},
		{"surrounding whitespace", " \n\t{\"type\":\"ping\"}\r\n ", ws.InFrame{Type: "ping"}},
		{"unknown fields ignored", `{"type":"ping","x":{"y":[1,2]},"z":null}`, ws.InFrame{Type: "ping"}},
		{"a field name in another case is an unknown field", `{"type":"send","thread_id":"t","client_msg_id":"C1","body":"Hi","BODY":"other","Thread_ID":"u"}`,
			ws.InFrame{Type: "send", ThreadID: "t", ClientMsgID: "C1", Body: ptr("Hi")}},
		{"escaped strings", `{"type":"send","thread_id":"t","client_msg_id":"c\u0031","body":"\u00e9\n"}`,
			ws.InFrame{Type: "send", ThreadID: "t", ClientMsgID: "c1", Body: ptr("é\n")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, err := ws.DecodeFrame([]byte(tc.in))
			if err != nil {
				t.Fatalf("DecodeFrame: %v", err)
			}
			if !equalFrames(*f, tc.want) {
				t.Fatalf("got %s, want %s", dump(*f), dump(tc.want))
			}
		})
	}
}

func equalFrames(a, b ws.InFrame) bool {
	return dump(a) == dump(b)
}

func dump(f ws.InFrame) string {
	b, _ := json.Marshal(f)
	return string(b)
}

func TestDecodeFrameErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in, code, ref string
	}{
		// Not JSON, or not one object.
		{"empty", ``, "invalid_frame", ""},
		{"blank", "  \n", "invalid_frame", ""},
		{"garbage", `hello`, "invalid_frame", ""},
		{"truncated", `{"type":"ping"`, "invalid_frame", ""},
		{"single quotes", `{'type':'ping'}`, "invalid_frame", ""},
		{"trailing comma", `{"type":"ping",}`, "invalid_frame", ""},
		{"two objects", `{"type":"ping"}{"type":"ping"}`, "invalid_frame", ""},
		{"trailing garbage", `{"type":"ping"} x`, "invalid_frame", ""},
		{"array", `[{"type":"ping"}]`, "invalid_frame", ""},
		{"string", `"ping"`, "invalid_frame", ""},
		{"number", `1`, "invalid_frame", ""},
		{"null", `null`, "invalid_frame", ""},
		{"true", `true`, "invalid_frame", ""},
		{"NUL byte", "{\"type\":\"ping\"}\x00", "invalid_frame", ""},

		// Unknown type.
		{"unknown type", `{"type":"shout","id":"r9"}`, "unknown_type", "r9"},
		{"server-side type", `{"type":"hello"}`, "unknown_type", ""},
		{"type in upper case", `{"type":"PING"}`, "unknown_type", ""},
		{"unknown type echoes client_msg_id", `{"type":"sendd","client_msg_id":"c7"}`, "unknown_type", "c7"},

		// Missing or bad fields: invalid_request with the reference echoed.
		{"no type", `{}`, chat.EInvalid, ""},
		{"empty type", `{"type":"","id":"r1"}`, chat.EInvalid, "r1"},
		{"type not a string", `{"type":1,"id":"r1"}`, chat.EInvalid, "r1"},
		{"body only in another case", `{"type":"send","thread_id":"t","client_msg_id":"c5","Body":"x"}`, chat.EInvalid, "c5"},
		{"mistyped field: id wins over client_msg_id", `{"type":"sync","id":"r2","client_msg_id":"c2","thread_id":"t","after_seq":"x"}`, chat.EInvalid, "r2"},
		{"mistyped field: client_msg_id when id is not a string", `{"type":"send","id":3,"client_msg_id":"c3","thread_id":"t","body":"x"}`, chat.EInvalid, "c3"},
		{"well-formed: id wins over client_msg_id", `{"type":"send","id":"r4","client_msg_id":"c4","body":"x"}`, chat.EInvalid, "r4"},
		{"send without thread_id", `{"type":"send","client_msg_id":"c1","body":"x"}`, chat.EInvalid, "c1"},
		{"send without client_msg_id", `{"type":"send","thread_id":"t","body":"x"}`, chat.EInvalid, ""},
		{"send without body", `{"type":"send","thread_id":"t","client_msg_id":"c2"}`, chat.EInvalid, "c2"},
		{"send with a null body", `{"type":"send","thread_id":"t","client_msg_id":"c3","body":null}`, chat.EInvalid, "c3"},
		{"send with a numeric body", `{"type":"send","thread_id":"t","client_msg_id":"c4","body":5}`, chat.EInvalid, "c4"},
		{"send with an object body", `{"type":"send","thread_id":"t","client_msg_id":"c5","body":{}}`, chat.EInvalid, "c5"},
		{"send with a numeric thread_id", `{"type":"send","thread_id":9,"client_msg_id":"c6","body":"x"}`, chat.EInvalid, "c6"},
		{"send with a numeric client_msg_id", `{"type":"send","thread_id":"t","client_msg_id":6,"body":"x"}`, chat.EInvalid, ""},
		{"ack without seq", `{"type":"ack","thread_id":"t"}`, chat.EInvalid, ""},
		{"ack without thread_id", `{"type":"ack","seq":1}`, chat.EInvalid, ""},
		{"ack with a negative seq", `{"type":"ack","thread_id":"t","seq":-1}`, chat.EInvalid, ""},
		{"ack with a string seq", `{"type":"ack","thread_id":"t","seq":"1"}`, chat.EInvalid, ""},
		{"ack with a fractional seq", `{"type":"ack","thread_id":"t","seq":1.5}`, chat.EInvalid, ""},
		{"ack with a seq beyond int64", `{"type":"ack","thread_id":"t","seq":9223372036854775808}`, chat.EInvalid, ""},
		{"sync without id", `{"type":"sync","thread_id":"t"}`, chat.EInvalid, ""},
		{"sync without thread_id", `{"type":"sync","id":"r2"}`, chat.EInvalid, "r2"},
		{"sync with a negative after_seq", `{"type":"sync","id":"r3","thread_id":"t","after_seq":-1}`, chat.EInvalid, "r3"},
		{"sync with limit 0", `{"type":"sync","id":"r4","thread_id":"t","limit":0}`, chat.EInvalid, "r4"},
		{"sync with limit 201", `{"type":"sync","id":"r5","thread_id":"t","limit":201}`, chat.EInvalid, "r5"},
		{"sync with a string limit", `{"type":"sync","id":"r6","thread_id":"t","limit":"5"}`, chat.EInvalid, "r6"},
		{"sync with a numeric id", `{"type":"sync","id":6,"thread_id":"t"}`, chat.EInvalid, ""},
		{"typing without thread_id", `{"type":"typing"}`, chat.EInvalid, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, err := ws.DecodeFrame([]byte(tc.in))
			if f != nil {
				t.Fatalf("got frame %s, want an error", dump(*f))
			}
			var fe *ws.FrameError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v (%T), want *ws.FrameError", err, err)
			}
			if fe.Code != tc.code || fe.Ref != tc.ref || fe.Message == "" {
				t.Fatalf("got %+v, want code %q ref %q and a message", fe, tc.code, tc.ref)
			}
		})
	}
}

// FuzzDecodeFrame: whatever the input, DecodeFrame does not panic and returns either a
// frame of a known type or a *FrameError with one of the contract's codes.
func FuzzDecodeFrame(f *testing.F) {
	for _, seed := range []string{
		``, `{}`, `null`, `[]`, `"x"`, `{"type":"ping"}`, `{"type":"typing","thread_id":"t"}`,
		`{"type":"send","thread_id":"t","client_msg_id":"c","body":"b"}`,
		`{"type":"send","thread_id":"t","client_msg_id":"c","body":null}`,
		`{"type":"ack","thread_id":"t","seq":1}`, `{"type":"ack","thread_id":"t","seq":-1}`,
		`{"type":"sync","id":"r","thread_id":"t","after_seq":0,"limit":200}`,
		`{"type":"sync","id":"r","thread_id":"t","limit":1e400}`,
		`{"type":"nope","id":"r"}`, `{"type":1,"client_msg_id":["x"]}`,
		`{"type":"send","body":"\ud800"}`, "{\"type\":\"ping\",\"x\":\"\xff\"}",
		`{"type":"ping"} {}`, strings.Repeat("[", 10000), `{"a":` + strings.Repeat(`{"a":`, 500) + `1` + strings.Repeat("}", 501),
	} {
		f.Add([]byte(seed))
	}
	known := map[string]bool{"send": true, "ack": true, "sync": true, "typing": true, "ping": true}
	codes := map[string]bool{"invalid_frame": true, "unknown_type": true, chat.EInvalid: true}
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, err := ws.DecodeFrame(data)
		if err == nil {
			if fr == nil || !known[fr.Type] {
				t.Fatalf("no error but frame %+v", fr)
			}
			return
		}
		if fr != nil {
			t.Fatalf("both a frame and an error %v", err)
		}
		var fe *ws.FrameError
		if !errors.As(err, &fe) || !codes[fe.Code] || fe.Message == "" {
			t.Fatalf("error %#v, want a *ws.FrameError with a known code", err)
		}
	})
}

func TestEncodeMessage(t *testing.T) {
	t.Parallel()
	m := &chat.Message{ID: "m1", ThreadID: tid, Seq: 42, SenderID: "u1", ClientMsgID: "c1", Body: "héllo <b>\u2028",
		CreatedAt: time.Date(2025, 6, 1, 12, 0, 0, 123000000, time.UTC)}
	var got struct {
		Type    string       `json:"type"`
		Message chat.Message `json:"message"`
	}
	b := ws.EncodeMessage(m)
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("EncodeMessage gave %s: %v", b, err)
	}
	if got.Type != "message" || got.Message != *m {
		t.Fatalf("round trip: %+v, want %+v", got.Message, *m)
	}
	if !strings.Contains(string(b), `"created_at":"2025-06-01T12:00:00.123Z"`) {
		t.Errorf("created_at not RFC 3339 UTC in %s", b)
	}

	var typing map[string]string
	if err := json.Unmarshal(ws.EncodeTyping(tid, "u1"), &typing); err != nil ||
		typing["type"] != "typing" || typing["thread_id"] != tid || typing["user_id"] != "u1" || len(typing) != 3 {
		t.Fatalf("EncodeTyping: %v %v", typing, err)
	}
}

func BenchmarkEncodeMessage(b *testing.B) {
	m := &chat.Message{ID: "01890000-0000-7000-8000-000000000001", ThreadID: tid, Seq: 123456,
		SenderID: "01890000-0000-7000-8000-00000000000a", ClientMsgID: "6f1c3a9e-2b7d-4c1e-9f0a-1b2c3d4e5f60",
		Body: strings.Repeat("a typical chat message ", 4), CreatedAt: time.Now().UTC()}
	b.ReportAllocs()
	b.SetBytes(int64(len(ws.EncodeMessage(m))))
	for b.Loop() {
		_ = ws.EncodeMessage(m)
	}
}

func BenchmarkDecodeFrame(b *testing.B) {
	for _, body := range []string{"a typical chat message", "A typical chat message"} {
		// Only an upper-case letter in a member's name sends the frame through the
		// slower check of its names (jsonscan.ExactKeys); in the body it costs nothing.
		in := []byte(`{"type":"send","thread_id":"` + tid + `","client_msg_id":"6f1c3a9e-2b7d-4c1e-9f0a-1b2c3d4e5f60","body":"` + body + `"}`)
		b.Run(body[:1], func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(in)))
			for b.Loop() {
				if _, err := ws.DecodeFrame(in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
