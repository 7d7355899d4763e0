package ws_test

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard-chat/switchboard/pkg/chat"
	"github.com/switchboard-chat/switchboard/pkg/ws"
)

// outageStore is a thread store whose reads fail while down is set; pageFails more
// history reads fail after it is back, as a flapping link would.
type outageStore struct {
	chat.ThreadStore
	thread    string
	down      atomic.Bool
	pageFails atomic.Int32
}

var errDown = errors.New("database unreachable")

func (s *outageStore) Memberships(context.Context, string) ([]chat.Membership, error) {
	if s.down.Load() {
		return nil, errDown
	}
	return []chat.Membership{{ThreadID: s.thread, LastSeq: 3}}, nil
}

func (s *outageStore) MessagesAfter(_ context.Context, thread string, after, upTo int64, limit int) ([]chat.Message, bool, error) {
	if s.down.Load() || s.pageFails.Add(-1) >= 0 {
		return nil, false, errDown
	}
	var out []chat.Message
	for seq := after + 1; seq <= upTo && seq <= 3 && len(out) < limit; seq++ {
		out = append(out, chat.Message{ID: chat.NewID(), ThreadID: thread, Seq: seq, SenderID: "someone", Body: "b"})
	}
	return out, false, nil
}

// TestCatchUpWaitsForTheDatabase: a socket that connects while PostgreSQL does not
// answer stays open, as every socket does through an outage. It is told once with
// `error unavailable`, answers its pings meanwhile, and once the database answers it
// gets its backlog, then `synced`, a page that failed after the database came back
// included. It used to be closed at once with 1013, which the contract keeps for a
// client too slow to read, and the error frame queued before the close was dropped.
func TestCatchUpWaitsForTheDatabase(t *testing.T) {
	store := &outageStore{thread: chat.NewID()}
	store.down.Store(true)
	store.pageFails.Store(1)
	_, url := startHub(t, store, ws.HubConfig{}, 0)
	c, resp, err := websocket.DefaultDialer.Dial(url, http.Header{"Authorization": {"Bearer " + chat.NewID()}})
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	defer c.Close()
	if f := readFrame(t, c); f["type"] != "hello" {
		t.Fatalf("first frame %v, want hello", f)
	}
	if f := readFrame(t, c); f["type"] != "error" || f["code"] != chat.EUnavailable || f["ref"] != nil {
		t.Fatalf("frame during the outage %v, want error unavailable with no ref", f)
	}
	// Still open, and served, well past the first retries.
	time.Sleep(1500 * time.Millisecond)
	if err := c.WriteJSON(map[string]any{"type": "ping"}); err != nil {
		t.Fatal(err)
	}
	if f := readFrame(t, c); f["type"] != "pong" {
		t.Fatalf("frame after a ping during the outage %v, want pong and no second error", f)
	}
	store.down.Store(false)
	var seqs []float64
	for {
		f := readFrame(t, c) // fails the test on a close or after 10 s
		if f["type"] == "synced" {
			break
		}
		if f["type"] != "message" {
			t.Fatalf("frame during catch-up %v, want message or synced", f)
		}
		m, _ := f["message"].(map[string]any)
		seq, _ := m["seq"].(float64)
		seqs = append(seqs, seq)
	}
	if len(seqs) != 3 || seqs[0] != 1 || seqs[2] != 3 {
		t.Fatalf("caught up seqs %v, want [1 2 3]", seqs)
	}
}
