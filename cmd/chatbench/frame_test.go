package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestParseFrame(t *testing.T) {
	t.Parallel()
	m := contractMessage{ID: "0190aaaa-0000-7000-8000-000000000001", ThreadID: "0190bbbb-0000-7000-8000-000000000002", Seq: 42,
		SenderID: "0190cccc-0000-7000-8000-000000000003", ClientMsgID: "m1z", Body: "t=123456789 s=3 k=7 x x", CreatedAt: time.Now().UTC()}
	enc := func(v any) []byte { b, _ := json.Marshal(v); return b }
	msgFrame := enc(map[string]any{"type": "message", "message": m})
	cases := []struct {
		name  string
		data  []byte
		check func(t *testing.T, f *inFrame)
	}{
		{"message (fast path)", enc(struct {
			Type    string          `json:"type"`
			Message contractMessage `json:"message"`
		}{"message", m}), func(t *testing.T, f *inFrame) {
			if string(f.Type) != "message" || string(f.Msg.ID) != m.ID || string(f.Msg.ThreadID) != m.ThreadID || f.Msg.Seq != 42 || string(f.Msg.Body) != m.Body {
				t.Fatalf("got %+v", f.Msg)
			}
		}},
		{"message with keys in another order", msgFrame, func(t *testing.T, f *inFrame) {
			if string(f.Msg.ID) != m.ID || f.Msg.Seq != 42 || string(f.Msg.ThreadID) != m.ThreadID {
				t.Fatalf("got %+v", f.Msg)
			}
		}},
		{"sent", enc(struct {
			Type        string          `json:"type"`
			ClientMsgID string          `json:"client_msg_id"`
			Message     contractMessage `json:"message"`
		}{"sent", "m1z", m}), func(t *testing.T, f *inFrame) {
			if string(f.Type) != "sent" || string(f.ClientMsgID) != "m1z" || f.Msg.Seq != 42 || string(f.Msg.ID) != m.ID {
				t.Fatalf("got %+v %q", f.Msg, f.ClientMsgID)
			}
		}},
		{"message with an escaped body falls back to encoding/json", enc(map[string]any{"type": "message", "message": contractMessage{
			ID: m.ID, ThreadID: m.ThreadID, Seq: 7, Body: `t=5 "quoted" \ "id":"x"`}}), func(t *testing.T, f *inFrame) {
			if string(f.Msg.ID) != m.ID || f.Msg.Seq != 7 || string(f.Msg.Body) != `t=5 "quoted" \ "id":"x"` {
				t.Fatalf("got %+v", f.Msg)
			}
		}},
		{"error (message is text)", []byte(`{"type":"error","ref":"m1a","code":"unavailable","message":"database is unavailable"}`), func(t *testing.T, f *inFrame) {
			if string(f.Type) != "error" || string(f.Code) != "unavailable" || string(f.Ref) != "m1a" {
				t.Fatalf("got %q %q %q", f.Type, f.Code, f.Ref)
			}
		}},
		{"hello", []byte(`{"type":"hello","user":{"id":"u1","username":"a"},"conn_id":"c1","host_id":"bench2"}`), func(t *testing.T, f *inFrame) {
			if string(f.Type) != "hello" || string(f.HostID) != "bench2" {
				t.Fatalf("got %q %q", f.Type, f.HostID)
			}
		}},
		{"sync_result", enc(map[string]any{"type": "sync_result", "id": "g1", "thread_id": m.ThreadID, "messages": []contractMessage{m, m}, "has_more": true}), func(t *testing.T, f *inFrame) {
			if string(f.SyncID) != "g1" || len(f.Messages) != 2 || !f.HasMore || f.Messages[1].Seq != 42 {
				t.Fatalf("got %+v", f)
			}
		}},
		{"synced", []byte(`{"type":"synced"}`), func(t *testing.T, f *inFrame) {
			if string(f.Type) != "synced" {
				t.Fatalf("got %q", f.Type)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var f inFrame
			if err := parseFrame(tc.data, &f); err != nil {
				t.Fatalf("parse %s: %v", tc.data, err)
			}
			tc.check(t, &f)
		})
	}
	var f inFrame
	if err := parseFrame([]byte(`{"type":`), &f); err == nil {
		t.Fatal("invalid JSON must be an error")
	}
}

func TestFramesWeWriteAreJSON(t *testing.T) {
	t.Parallel()
	var send struct {
		Type        string `json:"type"`
		ThreadID    string `json:"thread_id"`
		ClientMsgID string `json:"client_msg_id"`
		Body        string `json:"body"`
	}
	b := appendSend(nil, "th-1", "m42", 987654321, 5, 42, 64)
	if err := json.Unmarshal(b, &send); err != nil {
		t.Fatalf("send frame %s: %v", b, err)
	}
	if send.Type != "send" || send.ThreadID != "th-1" || send.ClientMsgID != "m42" || len(send.Body) < 64 || !strings.HasPrefix(send.Body, "t=987654321 ") {
		t.Fatalf("send frame %+v", send)
	}
	if ts, ok := bodyTime([]byte(send.Body)); !ok || ts != 987654321 {
		t.Fatalf("bodyTime = %d %v", ts, ok)
	}
	var ack struct {
		Type     string `json:"type"`
		ThreadID string `json:"thread_id"`
		Seq      int64  `json:"seq"`
	}
	if err := json.Unmarshal(appendAck(nil, "th-1", 17), &ack); err != nil || ack.Seq != 17 || ack.Type != "ack" || ack.ThreadID != "th-1" {
		t.Fatalf("ack %+v %v", ack, err)
	}
	var sync struct {
		Type     string `json:"type"`
		ID       string `json:"id"`
		ThreadID string `json:"thread_id"`
		AfterSeq int64  `json:"after_seq"`
		Limit    int    `json:"limit"`
	}
	if err := json.Unmarshal(appendSync(nil, "g1", "th-1", 9, 200), &sync); err != nil || sync.AfterSeq != 9 || sync.Limit != 200 || sync.ID != "g1" || sync.ThreadID != "th-1" || sync.Type != "sync" {
		t.Fatalf("sync %+v %v", sync, err)
	}
}

func BenchmarkParseMessageFrame(b *testing.B) {
	data, _ := json.Marshal(struct {
		Type    string          `json:"type"`
		Message contractMessage `json:"message"`
	}{"message", contractMessage{ID: "0190aaaa-0000-7000-8000-000000000001", ThreadID: "0190bbbb-0000-7000-8000-000000000002", Seq: 42,
		SenderID: "0190cccc-0000-7000-8000-000000000003", ClientMsgID: "m1z", Body: "t=123456789 s=3 k=7 x x x x x x x x x x x x x x x x", CreatedAt: time.Now()}})
	b.ReportAllocs()
	var f inFrame
	for b.Loop() {
		if err := parseFrame(data, &f); err != nil {
			b.Fatal(err)
		}
	}
}
