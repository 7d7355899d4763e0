package ws_test

import (
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard-chat/switchboard/pkg/chat"
	"github.com/switchboard-chat/switchboard/pkg/ws"
)

// TestCloseCodeReachesABusyClient: a client still sending when the host closes its
// socket (an ack on its way as the session ends) reads the close code, 4001 here,
// which tells it to log in again rather than reconnect. Closing the TCP connection
// with the client's frames unread makes the kernel answer with a reset, which can
// discard the close frame before the client reads it: browsers then report 1006.
func TestCloseCodeReachesABusyClient(t *testing.T) {
	for i := range 20 {
		hub, url := startHub(t, quietStore{thread: chat.NewID()}, ws.HubConfig{}, 0)
		user := chat.NewID()
		c, _ := dial(t, url, user)
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				select {
				case <-stop:
					return
				default:
				}
				if c.WriteControl(websocket.PingMessage, []byte("still here"), time.Now().Add(time.Second)) != nil {
					return
				}
			}
		}()
		time.Sleep(20 * time.Millisecond)
		hub.DisconnectUser(user)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		var err error
		for err == nil {
			_, _, err = c.ReadMessage()
		}
		close(stop)
		<-done
		if !websocket.IsCloseError(err, ws.CloseSessionEnded) {
			t.Fatalf("run %d: read after the session ended: %v, want close %d", i, err, ws.CloseSessionEnded)
		}
	}
}

// TestCloseLingerIsBounded: a closed socket waits for its peer's close frame at most
// about a second, even for a peer that never answers it and keeps the connection busy
// with pongs, each of which moves an open socket's read deadline.
func TestCloseLingerIsBounded(t *testing.T) {
	hub, url := startHub(t, quietStore{thread: chat.NewID()}, ws.HubConfig{}, 0)
	user := chat.NewID()
	c, _ := dial(t, url, user)
	c.SetCloseHandler(func(int, string) error { return nil }) // never answers the close
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			if c.WriteControl(websocket.PongMessage, nil, time.Now().Add(time.Second)) != nil {
				return
			}
		}
	}()
	hub.DisconnectUser(user)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := c.ReadMessage(); !websocket.IsCloseError(err, ws.CloseSessionEnded) {
		t.Fatalf("read after the session ended: %v, want close %d", err, ws.CloseSessionEnded)
	}
	closed := time.Now()
	conn := c.NetConn()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := conn.Read(make([]byte, 1))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the host still held the connection 5 s after its close frame, kept open by pongs")
	}
	if err == nil || (!errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET)) {
		t.Fatalf("read after the close frame: %v, want the host to end the connection", err)
	}
	if took := time.Since(closed); took > 3*time.Second {
		t.Fatalf("the host ended the connection %v after its close frame, want about 1 s", took)
	}
}
