package ws_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/pkg/chat"
	"github.com/switchboard-chat/switchboard/pkg/metrics"
	"github.com/switchboard-chat/switchboard/pkg/ws"
)

// BenchmarkIdleSocketMemory opens idleSockets sockets that get hello and synced and
// then stay quiet, as `chatbench idle` does, and reports what each costs the process
// once the connect burst is over: live heap (after a GC, so garbage is left out),
// goroutine stack, goroutines, and the bytes allocated per connect (the garbage that
// decides how far the heap overshoots its live size between collections). The clients
// are bare TCP connections speaking the handshake by hand, so the figures include
// only a few hundred bytes of client state per socket (a net.TCPConn).
func BenchmarkIdleSocketMemory(b *testing.B) {
	const idleSockets = 2000
	svc := chat.NewService(chat.ServiceConfig{}, nil)
	svc.Store = quietStore{thread: chat.NewID()}
	hub := ws.NewHub(ws.HubConfig{
		HostID: "bench", SocketsPerUser: idleSockets,
		Authenticate: func(r *http.Request) (chat.Session, error) {
			return chat.Session{UserID: strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "), Username: "u"}, nil
		},
	}, svc, nopRegistry{}, chat.NewAckBuffer(nil, time.Hour, 0, slog.New(slog.DiscardHandler)), metrics.New(), slog.New(slog.DiscardHandler))
	srv := httptest.NewServer(hub)
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	users := make([]string, idleSockets/10)
	for i := range users {
		users[i] = chat.NewID()
	}

	var heap, stack, gs, alloc float64
	conns := make([]net.Conn, 0, idleSockets)
	for b.Loop() {
		var before, connected, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		g0 := runtime.NumGoroutine()
		for i := range idleSockets {
			c, err := dialSynced(addr, users[i%len(users)])
			if err != nil {
				b.Fatal(err)
			}
			conns = append(conns, c)
		}
		runtime.ReadMemStats(&connected)
		// Whatever a socket runs only while it has something to do ends first.
		waitFor(b, func() bool { return running(writerFn)+running("ws.(*Hub).start") == 0 }, 10*time.Second)
		runtime.GC()
		runtime.ReadMemStats(&after)
		gs += float64(runtime.NumGoroutine()-g0) / idleSockets
		heap += float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / idleSockets
		stack += float64(int64(after.StackInuse)-int64(before.StackInuse)) / idleSockets
		alloc += float64(connected.TotalAlloc-before.TotalAlloc) / idleSockets
		for _, c := range conns {
			_ = c.Close()
		}
		conns = conns[:0]
		waitFor(b, func() bool { return hub.Count() == 0 }, 10*time.Second)
	}
	n := float64(b.N)
	b.ReportMetric(heap/n, "live-heap-B/socket")
	b.ReportMetric(stack/n, "stack-B/socket")
	b.ReportMetric(gs/n, "goroutines/socket")
	b.ReportMetric(alloc/n, "alloc-B/connect")
	waitFor(b, func() bool { return runtime.NumGoroutine() < 50 }, 10*time.Second)
}

// dialSynced opens a socket with a hand-written handshake and reads until `synced`.
func dialSynced(addr, user string) (net.Conn, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	_, err = fmt.Fprintf(c, "GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer %s\r\n\r\n", addr, user)
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var got []byte
	buf := make([]byte, 512)
	for !bytes.Contains(got, []byte(`"synced"`)) {
		n, err := c.Read(buf)
		if err != nil {
			_ = c.Close()
			return nil, fmt.Errorf("read until synced: %w (got %q)", err, got)
		}
		got = append(got, buf[:n]...)
	}
	_ = c.SetReadDeadline(time.Time{})
	return c, nil
}

func waitFor(tb testing.TB, cond func() bool, limit time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatal("condition not met in time")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
