package clustertest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard-chat/switchboard/pkg/chat"
	"github.com/switchboard-chat/switchboard/pkg/cluster"
)

// TestWSFrameRules (section 3): bad input gets an error frame and the socket stays
// open; a binary frame closes it with 1003, a frame over 16 KiB with 1009, invalid
// UTF-8 with 1007, more than 20 bad frames in 10 s with 1008.
func TestWSFrameRules(t *testing.T) {
	t.Parallel()
	c := StartCluster(t, 1, Options{})
	h := c.Hosts[0]
	alice := NewUser(t, h, "alice")
	th := CreateThread(t, h, alice, "frames")

	raw := func(cl *Client, typ int, data []byte) {
		t.Helper()
		cl.wmu.Lock()
		defer cl.wmu.Unlock()
		if err := cl.conn.WriteMessage(typ, data); err != nil {
			t.Fatalf("write: %v", err)
		}
	}
	stillOpen := func(cl *Client) {
		t.Helper()
		raw(cl, websocket.TextMessage, []byte(`{"type":"ping"}`))
		cl.WaitType(t, 5*time.Second, "pong")
		if code, closed := cl.Closed(); closed {
			t.Fatalf("socket closed (%d), want it open", code)
		}
	}
	errorFrame := func(cl *Client) Frame {
		t.Helper()
		return cl.WaitType(t, 5*time.Second, "error")
	}

	t.Run("errors keep the socket open", func(t *testing.T) {
		for _, tc := range []struct {
			name, frame, code, ref string
		}{
			{"invalid JSON", `{"type":`, "invalid_frame", ""},
			{"unknown type", `{"type":"shout","id":"x1"}`, "unknown_type", "x1"},
			{"send without body", `{"type":"send","thread_id":"` + th.ID + `","client_msg_id":"c1"}`, "invalid_request", "c1"},
			{"empty body", `{"type":"send","thread_id":"` + th.ID + `","client_msg_id":"c2","body":""}`, "invalid_request", "c2"},
			{"ack beyond last_seq", `{"type":"ack","thread_id":"` + th.ID + `","seq":5}`, "invalid_request", ""},
			{"send to a thread one is not in", `{"type":"send","thread_id":"` + chat.NewID() + `","client_msg_id":"c3","body":"hi"}`, "not_member", "c3"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				cl := DialSynced(t, h, alice)
				raw(cl, websocket.TextMessage, []byte(tc.frame))
				f := errorFrame(cl)
				if f.Code != tc.code || f.Ref != tc.ref {
					t.Fatalf("error frame %s, want code %s ref %q", f.Raw, tc.code, tc.ref)
				}
				stillOpen(cl)
			})
		}
	})

	t.Run("closes", func(t *testing.T) {
		for _, tc := range []struct {
			name  string
			typ   int
			data  []byte
			close int
		}{
			{"binary frame", websocket.BinaryMessage, []byte(`{"type":"ping"}`), websocket.CloseUnsupportedData},
			{"frame over 16 KiB", websocket.TextMessage, []byte(`{"type":"ping","pad":"` + strings.Repeat("x", 16<<10) + `"}`), websocket.CloseMessageTooBig},
			{"invalid UTF-8", websocket.TextMessage, []byte("{\"type\":\"ping\",\"x\":\"\xff\xfe\"}"), websocket.CloseInvalidFramePayloadData},
		} {
			t.Run(tc.name, func(t *testing.T) {
				cl := DialSynced(t, h, alice)
				raw(cl, tc.typ, tc.data)
				if code := cl.WaitClosed(t, 5*time.Second); code != tc.close {
					t.Fatalf("closed with %d, want %d", code, tc.close)
				}
			})
		}
		t.Run("more than 20 bad frames in 10 s", func(t *testing.T) {
			cl := DialSynced(t, h, alice)
			for i := 0; i < 20; i++ {
				raw(cl, websocket.TextMessage, []byte(`nope`))
			}
			cl.WaitFor(t, 5*time.Second, func(fs []Frame) error {
				n := 0
				for _, f := range fs {
					if f.Type == "error" && f.Code == "invalid_frame" {
						n++
					}
				}
				if n < 20 {
					return fmt.Errorf("%d error frames, want 20", n)
				}
				return nil
			})
			stillOpen(cl) // 20 are tolerated
			raw(cl, websocket.TextMessage, []byte(`nope`))
			if code := cl.WaitClosed(t, 5*time.Second); code != websocket.ClosePolicyViolation {
				t.Fatalf("closed with %d after the 21st bad frame, want 1008", code)
			}
		})
	})
}

// TestSilentSocketClosed (section 3): a socket from which nothing arrives (it does
// not answer pings) is closed after the pong timeout, and its presence entry goes
// with it; a socket that answers pings stays open.
func TestSilentSocketClosed(t *testing.T) {
	t.Parallel()
	const pongTimeout = 2 * time.Second
	c := StartCluster(t, 2, Options{Env: map[string]string{"CHAT_PING_INTERVAL": "300ms", "CHAT_PONG_TIMEOUT": pongTimeout.String()}})
	h1, h2 := c.Hosts[0], c.Hosts[1]
	alice := NewUser(t, h1, "alice")
	bob := NewUser(t, h2, "bob")
	CreateThread(t, h1, alice, "keepalive", "bob")
	a := DialSynced(t, h1, alice) // reads, so it answers pings; opened first

	silent, _, err := DialWith(h2, DialOptions{Token: bob.Token, NoRead: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(silent.Close)
	opened := time.Now()
	store := c.Redis(t)
	CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		entries, err := store.Lookup(ctx, []string{bob.ID})
		if err != nil {
			return err
		}
		if len(entries[bob.ID]) == 0 {
			return fmt.Errorf("bob's socket not registered yet")
		}
		return nil
	})
	CheckFor(t, 5*time.Second, 50*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		entries, err := store.Lookup(ctx, []string{bob.ID})
		if err != nil {
			return err
		}
		if len(entries[bob.ID]) > 0 {
			return fmt.Errorf("bob's silent socket still has its presence entry %v after %v", entries[bob.ID], time.Since(opened).Round(time.Millisecond))
		}
		if Presence(t, h1, alice, bob.ID)[bob.ID] {
			return fmt.Errorf("bob still shown online")
		}
		return nil
	})
	if d := time.Since(opened); d < pongTimeout {
		t.Fatalf("silent socket gone after %v, before the %v pong timeout", d, pongTimeout)
	}
	silent.StartReading()
	silent.WaitClosed(t, 5*time.Second)
	// The socket that answers pings has lived longer than the silent one and is open.
	if code, closed := a.Closed(); closed {
		t.Fatalf("the socket that answers pings was closed too (%d)", code)
	}
}

// TestInternalAPI (section 5): every internal route refuses a call that is unsigned,
// signed with another secret, or stamped more than 30 s off (401 bad_signature) and
// does nothing; correctly signed, deliver writes to the named socket and answers per
// socket, connections lists the host's sockets, disconnect closes them with 4001.
func TestInternalAPI(t *testing.T) {
	t.Parallel()
	c := StartCluster(t, 1, Options{})
	h := c.Hosts[0]
	alice := NewUser(t, h, "alice")
	bob := NewUser(t, h, "bob")
	th := CreateThread(t, h, alice, "internal", "bob")
	b := DialSynced(t, h, bob)
	good := cluster.NewSigner(c.Secret)
	bad := cluster.NewSigner(strings.Repeat("w", 40))

	call := func(s *cluster.Signer, skew time.Duration, method, path string, body []byte) (int, []byte) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, method, h.InternalURL()+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		if s != nil {
			ts := strconv.FormatInt(time.Now().Add(skew).Unix(), 10)
			req.Header.Set(cluster.HeaderTimestamp, ts)
			req.Header.Set(cluster.HeaderSignature, s.Sign(method, path, ts, body))
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, out
	}
	msg := chat.Message{ID: chat.NewID(), ThreadID: th.ID, Seq: 1, SenderID: alice.ID, ClientMsgID: "x", Body: "via internal", CreatedAt: time.Now().UTC()}
	deliver, _ := json.Marshal(map[string]any{"message": msg, "recipients": []chat.Recipient{
		{UserID: bob.ID, ConnIDs: []string{b.Hello.ConnID, "gone-conn"}},
	}})
	disconnect := []byte(`{"user_id":"` + bob.ID + `"}`)

	for _, tc := range []struct {
		name string
		s    *cluster.Signer
		skew time.Duration
	}{
		{"unsigned", nil, 0},
		{"another secret", bad, 0},
		{"31 s old", good, -31 * time.Second},
		{"31 s ahead", good, 31 * time.Second},
	} {
		for _, r := range []struct {
			method, path string
			body         []byte
		}{
			{http.MethodPost, cluster.PathDeliver, deliver},
			{http.MethodPost, cluster.PathDisconnect, disconnect},
			{http.MethodGet, cluster.PathConnections, nil},
			{http.MethodGet, "/internal/v1/nope", nil},
		} {
			st, body := call(tc.s, tc.skew, r.method, r.path, r.body)
			if st != http.StatusUnauthorized || !strings.Contains(string(body), `"bad_signature"`) {
				t.Errorf("%s %s %s: %d %s, want 401 bad_signature", tc.name, r.method, r.path, st, body)
			}
		}
	}

	st, body := call(good, 0, http.MethodGet, cluster.PathConnections, nil)
	if st != http.StatusOK || !strings.Contains(string(body), b.Hello.ConnID) {
		t.Fatalf("connections: %d %s, want bob's socket %s", st, body, b.Hello.ConnID)
	}
	st, body = call(good, 0, http.MethodPost, cluster.PathDeliver, deliver)
	var res struct {
		Results []chat.DeliveryResult `json:"results"`
	}
	if st != http.StatusOK || json.Unmarshal(body, &res) != nil {
		t.Fatalf("deliver: %d %s", st, body)
	}
	want := map[string]string{b.Hello.ConnID: chat.StatusDelivered, "gone-conn": chat.StatusNotConnected}
	if len(res.Results) != 2 {
		t.Fatalf("deliver results %s, want one per socket", body)
	}
	for _, r := range res.Results {
		if want[r.ConnID] != r.Status || r.UserID != bob.ID {
			t.Errorf("deliver result %+v, want %s", r, want[r.ConnID])
		}
	}
	// Exactly the signed delivery reached bob: the refused ones did nothing.
	waitSeqs(t, b, th.ID, 1, 5*time.Second)
	if n := len(b.Messages(th.ID)); n != 1 {
		t.Fatalf("bob got %d messages, want 1", n)
	}
	if code, closed := b.Closed(); closed {
		t.Fatalf("bob's socket closed (%d) by a refused disconnect", code)
	}
	st, body = call(good, 0, http.MethodGet, "/internal/v1/nope", nil)
	if st != http.StatusNotFound || !strings.Contains(string(body), `"not_found"`) {
		t.Errorf("signed unknown route: %d %s, want 404 not_found", st, body)
	}
	st, body = call(good, 0, http.MethodPost, cluster.PathDisconnect, disconnect)
	if st != http.StatusOK || !strings.Contains(string(body), `"closed":1`) {
		t.Fatalf("disconnect: %d %s, want {closed:1}", st, body)
	}
	if code := b.WaitClosed(t, 2*time.Second); code != 4001 {
		t.Fatalf("bob's socket closed with %d, want 4001", code)
	}
}
