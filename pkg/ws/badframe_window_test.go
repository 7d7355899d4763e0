package ws_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard-chat/switchboard/pkg/chat"
	"github.com/switchboard-chat/switchboard/pkg/metrics"
	"github.com/switchboard-chat/switchboard/pkg/ws"
)

// The 1008 rule counts bad frames over 10 s of wall-clock time, read from time.Now
// inside the package. Waiting out real windows would cost over 10 s a test, so these
// tests run the hub and its client in a synctest bubble, whose fake clock jumps ahead
// when every goroutine waits. A bubble's time only moves while nothing runs, so the
// hub's socket must be in memory (net.Pipe): a goroutine blocked on a real socket
// would keep the clock still.

// pipeListener is a net.Listener whose connections are net.Pipe pairs, made by dial.
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

func (l *pipeListener) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	srv, cli := net.Pipe()
	select {
	case l.conns <- srv:
		return cli, nil
	case <-l.done:
		return nil, net.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

// startPipeHub is startHub over in-memory connections; call it inside a bubble. The
// hub is drained and the server closed before the bubble ends, as a bubble may not
// end with goroutines left.
func startPipeHub(t *testing.T, store chat.ThreadStore) *pipeListener {
	t.Helper()
	svc := chat.NewService(chat.ServiceConfig{}, nil)
	svc.Store = store
	log := slog.New(slog.DiscardHandler)
	hub := ws.NewHub(ws.HubConfig{HostID: "test", Authenticate: func(r *http.Request) (chat.Session, error) {
		return chat.Session{UserID: strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "), Username: "u"}, nil
	}}, svc, nopRegistry{}, chat.NewAckBuffer(nil, time.Hour, 0, log), metrics.New(), log)
	l := newPipeListener()
	srv := &http.Server{Handler: hub, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		hub.Drain(ctx, 0)
		_ = srv.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	return l
}

// pipeClient is a socket whose frames a goroutine of its own reads as they come, so
// that the hub's writer never waits on it while the fake clock jumps (its write
// deadline would pass), and the test reads them without blocking after synctest.Wait.
type pipeClient struct {
	c      *websocket.Conn
	frames chan map[string]any
	ended  chan error // the error that ended the reads: a *websocket.CloseError on a close
}

// dialPipe opens a socket for user and reads up to `synced`.
func dialPipe(t *testing.T, l *pipeListener, user string) *pipeClient {
	t.Helper()
	d := websocket.Dialer{NetDialContext: l.dial}
	c, resp, err := d.Dial("ws://pipe/ws", http.Header{"Authorization": {"Bearer " + user}})
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	t.Cleanup(func() { _ = c.Close() })
	pc := &pipeClient{c: c, frames: make(chan map[string]any, 1024), ended: make(chan error, 1)}
	go func() {
		for {
			var f map[string]any
			if err := c.ReadJSON(&f); err != nil {
				pc.ended <- err
				return
			}
			pc.frames <- f
		}
	}()
	for {
		select {
		case f := <-pc.frames:
			if f["type"] == "synced" {
				return pc
			}
		case err := <-pc.ended:
			t.Fatalf("socket ended before synced: %v", err)
		}
	}
}

// write sends one text frame and waits until the hub has handled it and every frame it
// answered has been read.
func (pc *pipeClient) write(t *testing.T, frame string) {
	t.Helper()
	if err := pc.c.WriteMessage(websocket.TextMessage, []byte(frame)); err != nil {
		synctest.Wait()
		select {
		case end := <-pc.ended:
			t.Fatalf("write %s: %v: the socket had ended: %v", frame, err, end)
		default:
			t.Fatalf("write %s: %v", frame, err)
		}
	}
	synctest.Wait()
}

// received returns the frames read so far.
func (pc *pipeClient) received() []map[string]any {
	var out []map[string]any
	for {
		select {
		case f := <-pc.frames:
			out = append(out, f)
		default:
			return out
		}
	}
}

// bad sends n frames that are not JSON, at once, and fails unless each is answered
// invalid_frame and the socket is still open.
func (pc *pipeClient) bad(t *testing.T, n int, when string) {
	t.Helper()
	for range n {
		pc.write(t, `not json`)
	}
	got := pc.received()
	ok := len(got) == n
	for _, f := range got {
		ok = ok && f["type"] == "error" && f["code"] == "invalid_frame"
	}
	if !ok {
		t.Fatalf("%s: %d bad frames answered %v, want %d invalid_frame errors", when, n, got, n)
	}
	pc.wantOpen(t, when)
}

// wantOpen fails unless the socket still answers a ping.
func (pc *pipeClient) wantOpen(t *testing.T, when string) {
	t.Helper()
	select {
	case err := <-pc.ended:
		t.Fatalf("%s: socket ended (%v), want it open", when, err)
	default:
	}
	pc.write(t, `{"type":"ping"}`)
	if got := pc.received(); len(got) != 1 || got[0]["type"] != "pong" {
		t.Fatalf("%s: ping answered %v, want a pong (the socket open)", when, got)
	}
}

// want1008 fails unless the socket has been closed with 1008, with no frame before the
// close frame (the bad frame too many is not answered).
func (pc *pipeClient) want1008(t *testing.T, when string) {
	t.Helper()
	got := pc.received()
	select {
	case err := <-pc.ended:
		if !websocket.IsCloseError(err, websocket.ClosePolicyViolation) || len(got) != 0 {
			t.Fatalf("%s: frames %v, then %v; want close 1008", when, got, err)
		}
	default:
		t.Fatalf("%s: frames %v and the socket still open; want close 1008", when, got)
	}
}

// Contract §3: more than 20 bad frames in 10 s close the socket with 1008. The 21
// frames need not come in a burst: spread over 9.99 s they are still "in 10 s", and
// 20 of them are still tolerated. Fails if the window were shorter than 9.99 s or the
// limit other than 20.
func TestPolicyCloseCountsBadFramesSpreadOverTheWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := startPipeHub(t, quietStore{thread: chat.NewID()})
		c := dialPipe(t, l, chat.NewID())
		start := time.Now()
		const step = 9990 * time.Millisecond / 20
		for i := range 20 {
			if i > 0 {
				time.Sleep(step)
			}
			c.bad(t, 1, "bad frame "+strconv.Itoa(i+1))
		}
		time.Sleep(step)
		if d := time.Since(start); d != 9990*time.Millisecond {
			t.Fatalf("the 21st bad frame goes %s after the first, want 9.99 s", d)
		}
		c.write(t, `not json`)
		c.want1008(t, "the 21st bad frame, 9.99 s after the first")
	})
}

// Contract §3 counts bad frames in any 10 s, a window that slides: frames older than
// 10 s stop counting one by one, not all at once when some period ends. 10 frames at
// 0 s, 10 at 5 s and 10 at 10.01 s never put more than 20 in one 10 s window, so the
// socket stays open; one more at 10.01 s is the 21st since 0.01 s and closes it. A
// counter that never forgets closes on the third batch; one that is reset every 10 s
// (or from the first bad frame) lets the 31st through; a window longer than 10.01 s
// closes early.
func TestPolicyCloseWindowSlides(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := startPipeHub(t, quietStore{thread: chat.NewID()})
		c := dialPipe(t, l, chat.NewID())
		start := time.Now()
		c.bad(t, 10, "10 bad frames at 0 s")
		time.Sleep(5*time.Second - time.Since(start))
		c.bad(t, 10, "10 more at 5 s (20 in the window)")
		time.Sleep(10010*time.Millisecond - time.Since(start))
		c.bad(t, 10, "10 more at 10.01 s (those of 0 s have left the window: 20 in it)")
		if d := time.Since(start); d >= 15*time.Second {
			t.Fatalf("the batch of 5 s left the window too (now %s): the test proves nothing", d)
		}
		c.write(t, `not json`)
		c.want1008(t, "a 21st bad frame within 10 s at 10.01 s")
	})
}

// Bad frames count for 10 s only, so a client that once sent a burst of them (a buggy
// build, since fixed) is not closed for its next slip much later: 20 at once, then
// 10.01 s later 20 at once again, leave the socket open; the 21st of the second burst
// closes it, so the second burst was counted afresh, not ignored.
func TestPolicyCloseForgetsFramesOlderThanTheWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := startPipeHub(t, quietStore{thread: chat.NewID()})
		c := dialPipe(t, l, chat.NewID())
		c.bad(t, 20, "20 bad frames at 0 s")
		time.Sleep(10010 * time.Millisecond)
		c.bad(t, 20, "20 bad frames at 10.01 s")
		c.write(t, `not json`)
		c.want1008(t, "a 21st at 10.01 s")
	})
}
