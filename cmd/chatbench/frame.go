package main

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"
)

// Frames are parsed with a small scanner for the two hot shapes (`message` and
// `sent`, which carry one message object) and with encoding/json for the rest. The
// scanner looks for quoted keys ("id":"), which cannot match inside a JSON string
// (quotes there are escaped), and only takes values without escapes; anything it is
// unsure of falls back to encoding/json, so it is a shortcut, never a guess.

// wireMessage is the part of a message chatbench checks. Byte slices alias the frame
// buffer: valid until the next read.
type wireMessage struct {
	ID       []byte
	ThreadID []byte
	Seq      int64
	Body     []byte
}

// inFrame is one server frame.
type inFrame struct {
	Type        []byte
	Msg         wireMessage // message, sent
	ClientMsgID []byte      // sent
	Code, Ref   []byte      // error
	HostID      []byte      // hello
	SyncID      []byte      // sync_result
	Messages    []wireMessage
	HasMore     bool
}

var (
	typeMessage = []byte("message")
	typeSent    = []byte("sent")
)

// stringAfter returns the raw value of the first "key":"value" in b (key given with
// its quotes and colon, e.g. `"id":"`); ok is false when absent or escaped.
func stringAfter(b []byte, key string) ([]byte, bool) {
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return nil, false
	}
	v := b[i+len(key):]
	j := bytes.IndexByte(v, '"')
	if j < 0 || bytes.IndexByte(v[:j], '\\') >= 0 {
		return nil, false
	}
	return v[:j], true
}

func intAfter(b []byte, key string) (int64, bool) {
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return 0, false
	}
	v := b[i+len(key):]
	j := 0
	for j < len(v) && v[j] >= '0' && v[j] <= '9' {
		j++
	}
	if j == 0 {
		return 0, false
	}
	n, err := strconv.ParseInt(string(v[:j]), 10, 64)
	return n, err == nil
}

// parseFrame fills f from data. Byte slices in f alias data.
func parseFrame(data []byte, f *inFrame) error {
	*f = inFrame{Messages: f.Messages[:0]}
	typ, ok := stringAfter(data, `"type":"`)
	if ok && (bytes.Equal(typ, typeMessage) || bytes.Equal(typ, typeSent)) {
		f.Type = typ
		if fastMessage(data, f) {
			return nil
		}
	}
	return slowFrame(data, f)
}

// fastMessage scans a message or sent frame; false means "use encoding/json".
func fastMessage(data []byte, f *inFrame) bool {
	i := bytes.Index(data, []byte(`"message":{`))
	if i < 0 {
		return false
	}
	if bytes.Equal(f.Type, typeSent) {
		// client_msg_id also sits inside the message; either copy is the same.
		if v, ok := stringAfter(data[:i], `"client_msg_id":"`); ok {
			f.ClientMsgID = v
		} else if v, ok := stringAfter(data[i:], `"client_msg_id":"`); ok {
			f.ClientMsgID = v
		} else {
			return false
		}
	}
	// The server writes id, thread_id, seq, ..., body in that order: each key is
	// looked for after the previous one (a key cannot appear inside a string value,
	// whose quotes are escaped), so the frame is scanned about once, not four times.
	// Another order fails a lookup and goes to encoding/json.
	m := data[i:]
	var ok bool
	if f.Msg.ID, m, ok = stringAfterRest(m, `"id":"`); !ok {
		return false
	}
	if f.Msg.ThreadID, m, ok = stringAfterRest(m, `"thread_id":"`); !ok {
		return false
	}
	if f.Msg.Seq, ok = intAfter(m, `"seq":`); !ok {
		return false
	}
	f.Msg.Body, _, ok = stringAfterRest(m, `"body":"`)
	return ok
}

// stringAfterRest is stringAfter that also returns what follows the value.
func stringAfterRest(b []byte, key string) (val, rest []byte, ok bool) {
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return nil, nil, false
	}
	v := b[i+len(key):]
	j := bytes.IndexByte(v, '"')
	if j < 0 || bytes.IndexByte(v[:j], '\\') >= 0 {
		return nil, nil, false
	}
	return v[:j], v[j+1:], true
}

type jsonMessage struct {
	ID       string `json:"id"`
	ThreadID string `json:"thread_id"`
	Seq      int64  `json:"seq"`
	Body     string `json:"body"`
}

func (m *jsonMessage) wire() wireMessage {
	return wireMessage{ID: []byte(m.ID), ThreadID: []byte(m.ThreadID), Seq: m.Seq, Body: []byte(m.Body)}
}

func slowFrame(data []byte, f *inFrame) error {
	var j struct {
		Type        string          `json:"type"`
		Message     json.RawMessage `json:"message"` // an object, or an error's text
		ClientMsgID string          `json:"client_msg_id"`
		Code        string          `json:"code"`
		Ref         string          `json:"ref"`
		HostID      string          `json:"host_id"`
		ID          string          `json:"id"`
		Messages    []jsonMessage   `json:"messages"`
		HasMore     bool            `json:"has_more"`
	}
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	f.Type = []byte(j.Type)
	if len(j.Message) > 0 && j.Message[0] == '{' {
		var m jsonMessage
		if err := json.Unmarshal(j.Message, &m); err != nil {
			return err
		}
		f.Msg = m.wire()
	}
	f.ClientMsgID, f.Code, f.Ref = []byte(j.ClientMsgID), []byte(j.Code), []byte(j.Ref)
	f.HostID, f.SyncID, f.HasMore = []byte(j.HostID), []byte(j.ID), j.HasMore
	for i := range j.Messages {
		f.Messages = append(f.Messages, j.Messages[i].wire())
	}
	return nil
}

// Bodies carry the sender's write time: "t=<ns since the run's clock base> s=<device>
// k=<n>" and padding up to the body size. Receivers read t back on the same clock.

func appendBody(b []byte, writeNS int64, dev, k int, size int) []byte {
	start := len(b)
	b = append(b, "t="...)
	b = strconv.AppendInt(b, writeNS, 10)
	b = append(b, " s="...)
	b = strconv.AppendInt(b, int64(dev), 10)
	b = append(b, " k="...)
	b = strconv.AppendInt(b, int64(k), 10)
	for len(b)-start < size {
		b = append(b, ' ', 'x')
	}
	return b
}

// bodyTime extracts t from a body written by appendBody.
func bodyTime(body []byte) (int64, bool) {
	if len(body) < 3 || body[0] != 't' || body[1] != '=' {
		return 0, false
	}
	var n int64
	i := 2
	for ; i < len(body) && body[i] >= '0' && body[i] <= '9'; i++ {
		n = n*10 + int64(body[i]-'0')
	}
	return n, i > 2
}

// bodySender extracts s (the sending device) from a body written by appendBody.
func bodySender(body []byte) (int, bool) {
	i := bytes.Index(body, []byte(" s="))
	if i < 0 {
		return 0, false
	}
	n, j := 0, i+3
	for ; j < len(body) && body[j] >= '0' && body[j] <= '9'; j++ {
		n = n*10 + int(body[j]-'0')
	}
	return n, j > i+3
}

// appendSend appends a send frame. threadID and clientMsgID are ours (no escaping
// needed: UUIDs and [a-z0-9]).
func appendSend(b []byte, threadID, clientMsgID string, writeNS int64, dev, k, size int) []byte {
	b = append(b, `{"type":"send","thread_id":"`...)
	b = append(b, threadID...)
	b = append(b, `","client_msg_id":"`...)
	b = append(b, clientMsgID...)
	b = append(b, `","body":"`...)
	b = appendBody(b, writeNS, dev, k, size)
	return append(b, `"}`...)
}

func appendAck(b []byte, threadID string, seq int64) []byte {
	b = append(b, `{"type":"ack","thread_id":"`...)
	b = append(b, threadID...)
	b = append(b, `","seq":`...)
	b = strconv.AppendInt(b, seq, 10)
	return append(b, '}')
}

func appendSync(b []byte, id, threadID string, after int64, limit int) []byte {
	b = append(b, `{"type":"sync","id":"`...)
	b = append(b, id...)
	b = append(b, `","thread_id":"`...)
	b = append(b, threadID...)
	b = append(b, `","after_seq":`...)
	b = strconv.AppendInt(b, after, 10)
	b = append(b, `,"limit":`...)
	b = strconv.AppendInt(b, int64(limit), 10)
	return append(b, '}')
}

// fingerprint is FNV-1a of a message id: receivers XOR the fingerprints of the ids
// they hold, so the verifier can check "same ids as acked" without storing them.
func fingerprint(id []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range id {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}

// contractMessage mirrors the contract's whole message object (PROTOCOL.md section 2;
// wireMessage above is the part a frame is parsed into), field order
// as the server writes it: the tests' frames and the reference encode (report.go).
type contractMessage struct {
	ID          string    `json:"id"`
	ThreadID    string    `json:"thread_id"`
	Seq         int64     `json:"seq"`
	SenderID    string    `json:"sender_id"`
	ClientMsgID string    `json:"client_msg_id"`
	Body        string    `json:"body"`
	CreatedAt   time.Time `json:"created_at"`
}
