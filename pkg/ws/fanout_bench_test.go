package ws_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard-chat/switchboard/pkg/chat"
	"github.com/switchboard-chat/switchboard/pkg/metrics"
	"github.com/switchboard-chat/switchboard/pkg/ws"
)

// quietStore is a chat.ThreadStore in which every user is in one empty thread: enough
// for a socket's catch-up to finish at once. Only what the hub calls is implemented.
type quietStore struct {
	chat.ThreadStore
	thread string
}

func (s quietStore) Memberships(context.Context, string) ([]chat.Membership, error) {
	return []chat.Membership{{ThreadID: s.thread}}, nil
}

// nopRegistry is a presence registry that remembers nothing.
type nopRegistry struct{}

func (nopRegistry) Register(context.Context, chat.Connection) error { return nil }
func (nopRegistry) Unregister(chat.Connection)                      {}
func (nopRegistry) ReserveSocket(context.Context, string, string, int) (bool, error) {
	return true, nil
}
func (nopRegistry) ReleaseSocket(string, string) {}

// BenchmarkFanout delivers one message to N live sockets on one host, as the hub does
// for the members of a thread: the frame is encoded once and shared, every socket's
// writer puts it on the wire, and the op ends when every client has read it. Reported
// per op (one message); allocs/op divided by N is the cost per delivered message.
func BenchmarkFanout(b *testing.B) {
	for _, n := range []int{10, 100} {
		b.Run(strconv.Itoa(n)+"-sockets", func(b *testing.B) { benchFanout(b, n, 1) })
	}
	// A burst of 16 messages before the writers drain: each socket's writer finds
	// several frames waiting, as under load, and writes them at once (corked) or one
	// syscall each.
	for _, on := range []bool{true, false} {
		b.Run("100-sockets-burst16-cork-"+strconv.FormatBool(on), func(b *testing.B) {
			ws.SetCorking(on)
			defer ws.SetCorking(true)
			benchFanout(b, 100, 16)
		})
	}
}

func benchFanout(b *testing.B, n, burst int) {
	threadID := chat.NewID()
	svc := chat.NewService(chat.ServiceConfig{}, nil)
	svc.Store = quietStore{thread: threadID}
	users := make([]string, n)
	for i := range users {
		users[i] = chat.NewID()
	}
	hub := ws.NewHub(ws.HubConfig{
		HostID: "bench", SendQueue: 1 << 16,
		Authenticate: func(r *http.Request) (chat.Session, error) {
			id := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
			return chat.Session{UserID: id, Username: "u"}, nil
		},
	}, svc, nopRegistry{}, chat.NewAckBuffer(nil, time.Hour, 0, slog.New(slog.DiscardHandler)), metrics.New(), slog.New(slog.DiscardHandler))
	srv := httptest.NewServer(hub)
	defer srv.Close()

	var got atomic.Int64
	var wg sync.WaitGroup
	conns := make([]*websocket.Conn, n)
	for i, u := range users {
		c, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http")+"/ws", http.Header{"Authorization": {"Bearer " + u}})
		if err != nil {
			b.Fatal(err)
		}
		_ = resp.Body.Close()
		conns[i] = c
		for { // hello, then synced
			_, data, err := c.ReadMessage()
			if err != nil {
				b.Fatal(err)
			}
			if strings.Contains(string(data), `"synced"`) {
				break
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				_, r, err := c.NextReader()
				if err != nil {
					return
				}
				_, _ = io.Copy(io.Discard, r)
				got.Add(1)
			}
		}()
	}
	recipients := make([]chat.Recipient, n)
	for i, u := range users {
		recipients[i] = chat.Recipient{UserID: u}
	}
	ctx := context.Background()
	msg := chat.Message{ID: chat.NewID(), ThreadID: threadID, SenderID: users[0], ClientMsgID: "c",
		Body: "a message of a typical length, some sixty bytes or so, ok?", CreatedAt: time.Now().UTC()}
	b.ReportAllocs()
	b.ResetTimer()
	seq := int64(0)
	for b.Loop() {
		for range burst {
			seq++
			msg.Seq = seq
			hub.DeliverMessage(ctx, &msg, recipients, "")
		}
		// Let the writers drain before the next burst, so the queues stay bounded.
		want := seq * int64(n)
		for got.Load() < want {
			time.Sleep(20 * time.Microsecond)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(n*burst), "deliveries/op")
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	hub.Drain(dctx, 0)
	cancel()
	for _, c := range conns {
		_ = c.Close()
	}
	wg.Wait()
}
