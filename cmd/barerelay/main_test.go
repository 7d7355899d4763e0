package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard-chat/switchboard/pkg/chat"
	"github.com/switchboard-chat/switchboard/pkg/dbtest"
)

// startRelay runs one relay process in-process on loopback and returns its public base
// URL; it stops when the test ends.
func startRelay(t *testing.T, c config) string {
	t.Helper()
	var lc net.ListenConfig
	pub, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	in, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, c, pub, in) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("relay: %v", err)
		}
	})
	return "http://" + pub.Addr().String()
}

func post(t *testing.T, url, token string, in, out any) {
	t.Helper()
	b, _ := json.Marshal(in)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, url, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		t.Fatalf("POST %s: %s", url, resp.Status)
	}
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("POST %s: %v", url, err)
		}
	}
}

func dial(t *testing.T, base, token string) *websocket.Conn {
	t.Helper()
	c, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(base, "http")+"/ws",
		http.Header{"Authorization": {"Bearer " + token}})
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	want(t, c, "synced") // presence is written before synced: sends may go now
	return c
}

type frame struct {
	Type        string       `json:"type"`
	ClientMsgID string       `json:"client_msg_id"`
	Message     chat.Message `json:"message"`
}

func want(t *testing.T, c *websocket.Conn, typ string) frame {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var f frame
	if err := c.ReadJSON(&f); err != nil {
		t.Fatalf("waiting for %s: %v", typ, err)
	}
	if f.Type != typ {
		t.Fatalf("got a %q frame, want %q", f.Type, typ)
	}
	return f
}

// TestRelayHandsAMessageToAnotherProcess is what chatbench relies on: a message sent on
// one process is answered `sent` and pushed to the member on the other, with seq 1, 2,
// ..., and stored in PostgreSQL.
func TestRelayHandsAMessageToAnotherProcess(t *testing.T) {
	_, prefix := dbtest.NewRedis(t)
	redisURL := os.Getenv("TEST_REDIS_URL")
	if redisURL == "" {
		redisURL = dbtest.DefaultRedisURL
	}
	c := config{redisURL: redisURL, prefix: prefix, databaseURL: dbtest.NewEmptyDatabaseURL(t), dbConns: 8}
	a, b := startRelay(t, c), startRelay(t, c)

	var login struct{ Token string }
	post(t, a+"/api/v1/auth/login", "", map[string]string{"username": "alice"}, &login)
	var th struct{ Thread struct{ ID string } }
	post(t, a+"/api/v1/threads", login.Token, map[string]any{"name": "t", "members": []string{"bob"}}, &th)
	alice, bob := dial(t, a, "alice"), dial(t, b, "bob")

	for i, body := range []string{"hello", "again"} {
		send := map[string]string{"type": "send", "thread_id": th.Thread.ID, "client_msg_id": "c" + body, "body": body}
		if err := alice.WriteJSON(send); err != nil {
			t.Fatal(err)
		}
		sent := want(t, alice, "sent")
		got := want(t, bob, "message")
		if sent.ClientMsgID != "c"+body || got.Message != sent.Message || got.Message.CreatedAt.IsZero() || got.Message.Body != body || got.Message.Seq != int64(i+1) {
			t.Fatalf("sent %+v, bob got %+v; want body %q at seq %d", sent, got.Message, body, i+1)
		}
	}
	db, err := sql.Open("pgx", c.databaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM relay_messages WHERE thread_id = $1`, th.Thread.ID).Scan(&n); err != nil || n != 2 {
		t.Fatalf("stored %d messages (%v), want 2", n, err)
	}
}
