package ws_test

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard-chat/switchboard/pkg/chat"
	"github.com/switchboard-chat/switchboard/pkg/ws"
)

// serviceBadSends are `send` frames that decode but that the service answers
// invalid_request: an empty body, a NUL in the body, a bad client_msg_id.
func serviceBadSends(thread string) []string {
	return []string{
		`{"type":"send","thread_id":"` + thread + `","client_msg_id":"c1","body":""}`,
		`{"type":"send","thread_id":"` + thread + `","client_msg_id":"c2","body":"a\u0000b"}`,
		`{"type":"send","thread_id":"` + thread + `","client_msg_id":"a\u0001b","body":"hi"}`,
		`{"type":"send","thread_id":"` + thread + `","client_msg_id":"` + strings.Repeat("x", 65) + `","body":"hi"}`,
	}
}

// readUntilClose reads frames until the socket ends, returning the data frames read
// and the error that ended the read.
func readUntilClose(t *testing.T, c *websocket.Conn, limit time.Duration) ([]map[string]any, error) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(limit))
	var frames []map[string]any
	for {
		_, data, err := c.ReadMessage()
		if err != nil {
			return frames, err
		}
		var f map[string]any
		if err := json.Unmarshal(data, &f); err != nil {
			t.Fatal(err)
		}
		frames = append(frames, f)
	}
}

// Contract §3: a bad field found by the service (not by the frame decoder) is a bad
// frame too. 20 of them are answered invalid_request and leave the socket open; the
// 21st closes it with 1008.
func TestServiceBadFieldsCountTowardPolicyClose(t *testing.T) {
	thread := chat.NewID()
	_, url := startHub(t, quietStore{thread: thread}, ws.HubConfig{}, 0)
	c, _ := dial(t, url, chat.NewID())
	bad := serviceBadSends(thread)
	for i := range 20 {
		if err := c.WriteMessage(websocket.TextMessage, []byte(bad[i%len(bad)])); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.WriteMessage(websocket.TextMessage, []byte(`{"type":"ping"}`)); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		f := readFrame(t, c)
		if f["type"] != "error" || f["code"] != chat.EInvalid {
			t.Fatalf("answer %d to a bad send: %v, want error invalid_request", i, f)
		}
	}
	if f := readFrame(t, c); f["type"] != "pong" {
		t.Fatalf("after 20 bad frames: %v, want pong (the socket stays open)", f)
	}
	if err := c.WriteMessage(websocket.TextMessage, []byte(bad[0])); err != nil {
		t.Fatal(err)
	}
	frames, err := readUntilClose(t, c, 5*time.Second)
	if !websocket.IsCloseError(err, websocket.ClosePolicyViolation) {
		t.Fatalf("after the 21st bad send: frames %v, then %v; want close 1008", frames, err)
	}
	if len(frames) != 0 {
		t.Fatalf("the 21st bad send was answered %v before the close, want nothing", frames)
	}
}

// Every bad frame is owed its error frame: when the 21st bad frame closes the socket
// with 1008, the 20 error frames queued before it are written first, then the close.
func TestPolicyCloseWritesQueuedErrorsFirst(t *testing.T) {
	thread := chat.NewID()
	_, url := startHub(t, quietStore{thread: thread}, ws.HubConfig{}, 0)
	bad := append(serviceBadSends(thread), `not json`, `{"type":"nope"}`, `{"type":"ack","thread_id":"x"}`)
	for round := range 10 {
		c, _ := dial(t, url, chat.NewID())
		var burst []byte
		for i := range 21 {
			// One TCP write for all 21 frames, so that they arrive back to back.
			msg := []byte(bad[(i+round)%len(bad)])
			burst = append(burst, maskedFrame(msg)...)
		}
		if _, err := c.NetConn().Write(burst); err != nil {
			t.Fatal(err)
		}
		frames, err := readUntilClose(t, c, 10*time.Second)
		if !websocket.IsCloseError(err, websocket.ClosePolicyViolation) {
			t.Fatalf("round %d: read %d frames, then %v; want close 1008", round, len(frames), err)
		}
		if len(frames) != 20 {
			t.Fatalf("round %d: %d error frames before close 1008, want 20: %v", round, len(frames), frames)
		}
		for i, f := range frames {
			if f["type"] != "error" {
				t.Fatalf("round %d: frame %d is %v, want an error", round, i, f)
			}
		}
	}
}

// maskedFrame builds a client text frame (masked, as RFC 6455 requires of a client)
// with a zero mask key, so the payload goes as is.
func maskedFrame(p []byte) []byte {
	var out []byte
	switch {
	case len(p) < 126:
		out = []byte{0x81, 0x80 | byte(len(p))}
	case len(p) <= 0xffff:
		out = []byte{0x81, 0x80 | 126, byte(len(p) >> 8), byte(len(p))}
	default:
		panic("maskedFrame: payload of " + strconv.Itoa(len(p)) + " bytes")
	}
	out = append(out, 0, 0, 0, 0)
	return append(out, p...)
}

// A binary frame (1003) or invalid UTF-8 (1007) right behind a bad frame: the bad
// frame's error frame goes out before the close.
func TestUnsupportedDataCloseWritesQueuedErrorsFirst(t *testing.T) {
	_, url := startHub(t, quietStore{thread: chat.NewID()}, ws.HubConfig{}, 0)
	for _, tc := range []struct {
		last []byte
		code int
	}{
		{append([]byte{0x82, 0x80 | 3, 0, 0, 0, 0}, "bin"...), websocket.CloseUnsupportedData},
		{maskedFrame([]byte{'"', 0xff, '"'}), websocket.CloseInvalidFramePayloadData},
	} {
		c, _ := dial(t, url, chat.NewID())
		burst := append(maskedFrame([]byte(`not json`)), tc.last...)
		if _, err := c.NetConn().Write(burst); err != nil {
			t.Fatal(err)
		}
		frames, err := readUntilClose(t, c, 10*time.Second)
		if !websocket.IsCloseError(err, tc.code) || len(frames) != 1 || frames[0]["code"] != "invalid_frame" {
			t.Fatalf("got %v, then %v; want one invalid_frame error, then close %d", frames, err, tc.code)
		}
	}
}
