package ws_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard-chat/switchboard/pkg/chat"
	"github.com/switchboard-chat/switchboard/pkg/internal/syncbuf"
	"github.com/switchboard-chat/switchboard/pkg/metrics"
	"github.com/switchboard-chat/switchboard/pkg/ws"
)

// backlogStore is a chat.ThreadStore in which every user is in one thread of n
// messages, none of them acked: catch-up pushes them all.
type backlogStore struct {
	chat.ThreadStore
	thread string
	n      int64
}

func (s backlogStore) Memberships(context.Context, string) ([]chat.Membership, error) {
	return []chat.Membership{{ThreadID: s.thread, LastSeq: s.n}}, nil
}

func (s backlogStore) MessagesAfter(_ context.Context, _ string, after, upTo int64, limit int) ([]chat.Message, bool, error) {
	var out []chat.Message
	for seq := after + 1; seq <= min(upTo, s.n) && len(out) < limit; seq++ {
		out = append(out, testMessage(s.thread, seq))
	}
	return out, len(out) == limit, nil
}

func testMessage(thread string, seq int64) chat.Message {
	return chat.Message{ID: chat.NewID(), ThreadID: thread, Seq: seq, SenderID: "s", ClientMsgID: "c", Body: "b", CreatedAt: time.Now().UTC()}
}

// startHub serves a hub over store on a test server; the user is the Bearer token
// unless cfg brings its own Authenticate.
// Cleanup drains the hub (closing its sockets) and stops the server.
func startHub(t *testing.T, store chat.ThreadStore, cfg ws.HubConfig, linger time.Duration) (*ws.Hub, string) {
	t.Helper()
	svc := chat.NewService(chat.ServiceConfig{}, nil)
	svc.Store = store
	cfg.HostID = "test"
	if cfg.Authenticate == nil {
		cfg.Authenticate = func(r *http.Request) (chat.Session, error) {
			return chat.Session{UserID: strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "), Username: "u"}, nil
		}
	}
	log := slog.New(slog.DiscardHandler)
	hub := ws.NewHub(cfg, svc, nopRegistry{}, chat.NewAckBuffer(nil, time.Hour, 0, log), metrics.New(), log)
	if linger > 0 {
		hub.SetWriterLinger(linger)
	}
	srv := httptest.NewServer(hub)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		hub.Drain(ctx, 0)
		srv.Close()
	})
	return hub, "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"
}

// dial opens a socket for user and reads up to `synced`, returning the frames before it.
func dial(t *testing.T, url, user string) (*websocket.Conn, []map[string]any) {
	t.Helper()
	c, resp, err := websocket.DefaultDialer.Dial(url, http.Header{"Authorization": {"Bearer " + user}})
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	t.Cleanup(func() { _ = c.Close() })
	var frames []map[string]any
	for {
		f := readFrame(t, c)
		if f["type"] == "synced" {
			return c, frames
		}
		frames = append(frames, f)
	}
}

func readFrame(t *testing.T, c *websocket.Conn) map[string]any {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, data, err := c.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	var f map[string]any
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	return f
}

func seqOf(f map[string]any) int64 {
	m, _ := f["message"].(map[string]any)
	s, _ := m["seq"].(float64)
	return int64(s)
}

// eventually fails the test unless cond holds within limit.
func eventually(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", limit, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// running counts the goroutines that are in fn (a function name as stack traces
// print it).
func running(fn string) int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	k := 0
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, fn+"(") {
			k++
		}
	}
	return k
}

const (
	readerFn = "ws.(*Hub).read"
	writerFn = "ws.(*Conn).writeLoop"
)

// socketGoroutines reports the goroutines of sockets: none once every socket closed.
func socketGoroutines() int {
	return running(readerFn) + running(writerFn) + running("ws.(*Hub).start") + running("ws.(*Conn).ping")
}

// An idle socket costs one goroutine, its reader: the writer ends once `synced` is
// out, and pings need none.
func TestIdleSocketKeepsOnlyItsReader(t *testing.T) {
	_, url := startHub(t, quietStore{thread: chat.NewID()}, ws.HubConfig{}, 0)
	for range 3 {
		dial(t, url, chat.NewID())
	}
	eventually(t, 2*time.Second, "3 idle sockets should run 3 readers and no writer", func() bool {
		return running(readerFn) == 3 && socketGoroutines() == 3
	})
}

// Pings go out every PingInterval whether or not a writer runs, and the pongs keep a
// socket open past PongTimeout.
func TestIdleSocketIsPinged(t *testing.T) {
	_, url := startHub(t, quietStore{thread: chat.NewID()}, ws.HubConfig{PingInterval: 20 * time.Millisecond, PongTimeout: 200 * time.Millisecond}, 0)
	c, _ := dial(t, url, chat.NewID())
	var pings atomic.Int64
	c.SetPingHandler(func(data string) error {
		pings.Add(1)
		return c.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	readErr := make(chan error, 1)
	go func() {
		_ = c.SetReadDeadline(time.Time{})
		_, _, err := c.ReadMessage()
		readErr <- err
	}()
	time.Sleep(600 * time.Millisecond) // three pong timeouts
	select {
	case err := <-readErr:
		t.Fatalf("socket ended while answering pings: %v", err)
	default:
	}
	if n := pings.Load(); n < 10 {
		t.Fatalf("%d pings in 600 ms at a 20 ms interval", n)
	}
	_ = c.Close()
	if err := <-readErr; err == nil {
		t.Fatal("read went on after Close")
	}
}

// A socket that stops answering pings is closed after PongTimeout, and every goroutine
// of it ends.
func TestSilentSocketTimesOut(t *testing.T) {
	hub, url := startHub(t, quietStore{thread: chat.NewID()}, ws.HubConfig{PingInterval: 20 * time.Millisecond, PongTimeout: 100 * time.Millisecond}, 0)
	dial(t, url, chat.NewID()) // and never read again: no pongs
	eventually(t, 2*time.Second, "a socket that sends no pongs should be closed", func() bool { return hub.Count() == 0 })
	eventually(t, 2*time.Second, "the closed socket's goroutines should end", func() bool { return socketGoroutines() == 0 })
}

// The host says in its log when it closes a socket for silence, so that an operator
// (or a test that found a half-open socket removed late) can tell when it noticed.
func TestSilentSocketIsLogged(t *testing.T) {
	var logged syncBuffer
	log := slog.New(slog.NewTextHandler(&logged, nil))
	svc := chat.NewService(chat.ServiceConfig{}, nil)
	svc.Store = quietStore{thread: chat.NewID()}
	cfg := ws.HubConfig{HostID: "test", PingInterval: 20 * time.Millisecond, PongTimeout: 100 * time.Millisecond}
	cfg.Authenticate = func(r *http.Request) (chat.Session, error) {
		return chat.Session{UserID: strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "), Username: "u"}, nil
	}
	hub := ws.NewHub(cfg, svc, nopRegistry{}, chat.NewAckBuffer(nil, time.Hour, 0, log), metrics.New(), log)
	srv := httptest.NewServer(hub)
	t.Cleanup(srv.Close)
	dial(t, "ws"+strings.TrimPrefix(srv.URL, "http")+"/ws", chat.NewID()) // and never read again
	eventually(t, 2*time.Second, "the silent socket should be closed and logged", func() bool {
		return hub.Count() == 0 && strings.Contains(logged.String(), `msg="socket silent, closing"`)
	})
}

// syncBuffer is written by a logger while the test reads.
type syncBuffer = syncbuf.Buffer

// Messages reach a socket in seq order and none is lost while its writer ends and
// starts again many times, with other frames pushed from another goroutine meanwhile.
func TestWriterRestartsKeepOrder(t *testing.T) {
	thread := chat.NewID()
	hub, url := startHub(t, quietStore{thread: thread}, ws.HubConfig{SendQueue: 1 << 12}, time.Millisecond)
	user := chat.NewID()
	c, _ := dial(t, url, user)
	const n = 500
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { // typing notices race the messages for the writer
		for {
			select {
			case <-stop:
				return
			default:
			}
			hub.DeliverTyping(thread, "other", []chat.Recipient{{UserID: user}}, "")
			time.Sleep(time.Duration(rand.IntN(1500)) * time.Microsecond) //nolint:gosec // test jitter
		}
	})
	go func() {
		for seq := int64(1); seq <= n; seq++ {
			m := testMessage(thread, seq)
			hub.DeliverMessage(context.Background(), &m, []chat.Recipient{{UserID: user}}, "")
			if rand.IntN(3) == 0 { //nolint:gosec // test jitter
				time.Sleep(time.Duration(rand.IntN(2500)) * time.Microsecond) //nolint:gosec // test jitter
			}
		}
	}()
	defer wg.Wait()
	defer close(stop)
	want := int64(1)
	for want <= n {
		f := readFrame(t, c)
		if f["type"] != "message" {
			continue
		}
		if got := seqOf(f); got != want {
			t.Fatalf("got seq %d, want %d", got, want)
		}
		want++
	}
}

// Catch-up of a backlog many times the send queue flows at the client's pace: every
// message arrives, in order, then `synced`, and the socket is not closed as too slow.
func TestCatchUpLargerThanQueue(t *testing.T) {
	const n = 450
	_, url := startHub(t, backlogStore{thread: chat.NewID(), n: n}, ws.HubConfig{SendQueue: 8}, time.Millisecond)
	_, frames := dial(t, url, chat.NewID())
	var seqs []int64
	for _, f := range frames {
		if f["type"] == "message" {
			seqs = append(seqs, seqOf(f))
		}
	}
	if len(seqs) != n {
		t.Fatalf("caught up %d messages, want %d", len(seqs), n)
	}
	for i, s := range seqs {
		if s != int64(i+1) {
			t.Fatalf("message %d has seq %d", i, s)
		}
	}
}

// Closing a socket from either side ends every goroutine it had.
func TestCloseEndsEveryGoroutine(t *testing.T) {
	hub, url := startHub(t, quietStore{thread: chat.NewID()}, ws.HubConfig{}, 0)
	byClient, _ := dial(t, url, chat.NewID())
	user := chat.NewID()
	byServer, _ := dial(t, url, user)
	_ = byClient.Close()
	if n := hub.DisconnectUser(user); n != 1 {
		t.Fatalf("DisconnectUser closed %d sockets, want 1", n)
	}
	_ = byServer.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := byServer.ReadMessage(); !websocket.IsCloseError(err, ws.CloseSessionEnded) {
		t.Fatalf("read after DisconnectUser: %v, want close %d", err, ws.CloseSessionEnded)
	}
	eventually(t, 2*time.Second, "both sockets should be gone", func() bool { return hub.Count() == 0 })
	eventually(t, 2*time.Second, "their goroutines should end", func() bool { return socketGoroutines() == 0 })
}

// Closing a socket whose peer stopped reading (a vanished client, its buffers full)
// takes the close frame's 1 s deadline, not the writer's 10 s one: the writer may be
// blocked mid-way through a gathered write when the close comes.
func TestCloseDoesNotWaitForABlockedWrite(t *testing.T) {
	hub, url := startHub(t, backlogStore{thread: chat.NewID(), n: 1 << 30}, ws.HubConfig{}, 0)
	d := websocket.Dialer{NetDialContext: (&net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4<<10)
		})
		return errors.Join(err, serr)
	}}).DialContext}
	user := chat.NewID()
	c, resp, err := d.Dial(url, http.Header{"Authorization": {"Bearer " + user}})
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	defer func() { _ = c.Close() }()
	// The client reads nothing: catch-up of an endless backlog fills the buffers and
	// leaves the writer blocked.
	time.Sleep(2 * time.Second)
	start := time.Now()
	if n := hub.DisconnectUser(user); n != 1 {
		t.Fatalf("DisconnectUser closed %d sockets, want 1", n)
	}
	eventually(t, 12*time.Second, "the socket should be gone", func() bool { return hub.Count() == 0 })
	// 1 s, and slack for a loaded machine; waiting out the writer's deadline takes 8-10.
	if took := time.Since(start); took > 4*time.Second {
		t.Fatalf("closing a socket whose peer stopped reading took %v, want about the close frame's 1 s", took.Round(time.Millisecond))
	}
}

// A socket whose upgrade is under way when the host starts draining is refused with
// 503, not opened and then closed: Drain waits only for sockets admitted before it
// began, and a later one would outlive it.
func TestUpgradeUnderWayWhenDrainBeginsIsRefused(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	hub, url := startHub(t, quietStore{thread: chat.NewID()}, ws.HubConfig{Authenticate: func(*http.Request) (chat.Session, error) {
		close(entered)
		<-release
		return chat.Session{UserID: chat.NewID(), Username: "u"}, nil
	}}, 0)

	type dialed struct {
		status int // 0 when the dial got no response
		err    error
	}
	got := make(chan dialed, 1)
	go func() {
		c, resp, err := websocket.DefaultDialer.Dial(url, nil)
		if c != nil {
			_ = c.Close()
		}
		d := dialed{err: err}
		if resp != nil {
			d.status = resp.StatusCode
			_ = resp.Body.Close()
		}
		got <- d
	}()
	<-entered
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		hub.Drain(ctx, 0)
	}()
	eventually(t, 2*time.Second, "Drain should begin", hub.Draining)
	close(release)
	if d := <-got; d.status != http.StatusServiceUnavailable {
		t.Errorf("upgrade under way when Drain began: status %d (%v), want 503", d.status, d.err)
	}
	<-drained
}
