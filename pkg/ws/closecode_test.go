package ws_test

import (
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
