package ws_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard-chat/switchboard/pkg/chat"
	"github.com/switchboard-chat/switchboard/pkg/ws"
)

// TestLogoutDuringUpgrade: a logout that lands between an upgrade's authentication
// and its socket joining the hub still ends that socket with 4001. The session was
// valid when the upgrade read it, and the logout's scan of the hub came before the
// socket was there, so without a memory of ended sessions the socket stayed open,
// able to send and receive, until the session would have expired. Another session of
// the same user is not touched.
func TestLogoutDuringUpgrade(t *testing.T) {
	var hub *ws.Hub
	cfg := ws.HubConfig{Authenticate: func(r *http.Request) (chat.Session, error) {
		token := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		user, session, _ := strings.Cut(token, "/")
		if session == "ended" {
			hub.DisconnectSession(session) // the logout, after this upgrade read the session
		}
		return chat.Session{UserID: user, Username: "u", Hash: session}, nil
	}}
	hub, url := startHub(t, quietStore{thread: chat.NewID()}, cfg, 0)
	user := chat.NewID()

	kept, _ := dial(t, url, user+"/kept")
	c, resp, err := websocket.DefaultDialer.Dial(url, http.Header{"Authorization": {"Bearer " + user + "/ended"}})
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	for err == nil {
		_, _, err = c.ReadMessage()
	}
	if !websocket.IsCloseError(err, ws.CloseSessionEnded) {
		t.Fatalf("socket of a session logged out during its upgrade: %v, want close %d", err, ws.CloseSessionEnded)
	}

	// The other session's socket is still open and served.
	if err := kept.WriteJSON(map[string]any{"type": "ping"}); err != nil {
		t.Fatal(err)
	}
	if f := readFrame(t, kept); f["type"] != "pong" {
		t.Fatalf("other session's socket answered %v, want pong", f)
	}
}
