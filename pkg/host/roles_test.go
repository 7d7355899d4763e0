package host_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/pkg/hosttest"
)

// TestRolesSplitTheListener: CHAT_ROLES lets the HTTP API and the sockets scale apart
// (contract section 1), so the balancer routes /api and /ws to two pools and a route
// sent to the wrong pool must fail plainly, not be half-served: an `api` host answers
// an upgrade of /ws with 404 not_found, a `socket` host every /api/v1 route with 404
// not_found. Both answer /healthz and /readyz, which the balancer probes, and together
// they are one cluster: a message sent over the API host reaches a socket on the
// socket host.
func TestRolesSplitTheListener(t *testing.T) {
	stores := hosttest.NewStores(t)
	api := stores.Start(t, hosttest.Options{Name: "api", Env: map[string]string{"CHAT_ROLES": "api"}})
	sock := stores.Start(t, hosttest.Options{Name: "socket", Env: map[string]string{"CHAT_ROLES": "socket"}})

	const password = "long enough password"
	name := "roles" + hosttest.RandomHex(4)
	alice := api.Register(t, name, password)
	token := api.Login(t, name, password).Token
	th := api.NewThread(t, token, "roles")

	for _, h := range []*hosttest.Host{api, sock} {
		for _, path := range []string{"/healthz", "/readyz"} {
			if r := h.Do(t, hosttest.Request{Method: "GET", Path: path}); r.Status != http.StatusOK {
				t.Errorf("%s host: GET %s answered %d, want 200; body %s", h.Name, path, r.Status, r.Body)
			}
		}
	}

	t.Run("api host has no /ws", func(t *testing.T) {
		c, status, err := hosttest.DialStatus("ws://"+api.Addr+"/ws", http.Header{"Authorization": {"Bearer " + token}})
		if err == nil {
			_ = c.Close()
			t.Fatal("the api host upgraded /ws")
		}
		if status != http.StatusNotFound {
			t.Errorf("the api host answered an upgrade of /ws with %d (%v), want 404", status, err)
		}
		upgrade := http.Header{
			"Connection": {"Upgrade"}, "Upgrade": {"websocket"},
			"Sec-Websocket-Version": {"13"}, "Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="},
		}
		hosttest.WantError(t, api.Do(t, hosttest.Request{Method: "GET", Path: "/ws", Token: token, Header: upgrade}), http.StatusNotFound, "not_found")
	})

	t.Run("socket host has no /api/v1", func(t *testing.T) {
		body := map[string]any{"username": name, "password": password}
		for _, r := range []hosttest.Request{
			{Method: "POST", Path: "/api/v1/auth/register", Body: map[string]any{"username": "other" + hosttest.RandomHex(4), "password": password}},
			{Method: "POST", Path: "/api/v1/auth/login", Body: body},
			{Method: "GET", Path: "/api/v1/me", Token: token},
			{Method: "POST", Path: "/api/v1/threads", Token: token, Body: map[string]any{"name": "x", "members": []string{}}},
			{Method: "GET", Path: "/api/v1/threads", Token: token},
			{Method: "GET", Path: "/api/v1/threads/" + th.ID, Token: token},
			{Method: "POST", Path: "/api/v1/threads/" + th.ID + "/members", Token: token, Body: map[string]any{"username": name}},
			{Method: "DELETE", Path: "/api/v1/threads/" + th.ID + "/members/" + alice.ID, Token: token},
			{Method: "GET", Path: "/api/v1/threads/" + th.ID + "/messages", Token: token},
			{Method: "POST", Path: "/api/v1/threads/" + th.ID + "/messages", Token: token, Body: map[string]any{"client_msg_id": "c1", "body": "x"}},
			{Method: "POST", Path: "/api/v1/threads/" + th.ID + "/read", Token: token, Body: map[string]any{"seq": 0}},
			{Method: "GET", Path: "/api/v1/presence?user_id=" + alice.ID, Token: token},
			{Method: "POST", Path: "/api/v1/auth/logout", Token: token},
		} {
			rep := sock.Do(t, r)
			if _, err := hosttest.CheckError(rep, http.StatusNotFound, "not_found"); err != nil {
				t.Errorf("socket host, %s %s: %v", r.Method, r.Path, err)
			}
		}
		// The socket host changed nothing: the session still works on the API host
		// and the thread kept its one member and no message.
		hosttest.WantStatus(t, api.Do(t, hosttest.Request{Method: "GET", Path: "/api/v1/me", Token: token}), http.StatusOK)
		r := api.Do(t, hosttest.Request{Method: "GET", Path: "/api/v1/threads/" + th.ID, Token: token})
		hosttest.WantStatus(t, r, http.StatusOK)
		var got struct{ Thread hosttest.Thread }
		r.Decode(t, &got)
		if len(got.Thread.Members) != 1 || got.Thread.LastSeq != 0 {
			t.Errorf("after the socket host's refusals the thread is %+v, want one member and no message", got.Thread)
		}
	})

	t.Run("socket host serves /ws for the api host's session", func(t *testing.T) {
		c, status, err := hosttest.DialStatus("ws://"+sock.Addr+"/ws", http.Header{"Authorization": {"Bearer " + token}})
		if err != nil {
			t.Fatalf("upgrade of /ws on the socket host: %d %v", status, err)
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		var hello struct {
			Type   string `json:"type"`
			HostID string `json:"host_id"`
		}
		if err := c.ReadJSON(&hello); err != nil || hello.Type != "hello" || hello.HostID != sock.HostID {
			t.Fatalf("first frame %+v (%v), want hello from %s", hello, err, sock.HostID)
		}
		sent := api.Send(t, token, th.ID, "across the roles")
		for {
			var f struct {
				Type    string           `json:"type"`
				Message hosttest.Message `json:"message"`
			}
			_, raw, err := c.ReadMessage()
			if err != nil {
				t.Fatalf("waiting for the message sent over the api host: %v", err)
			}
			if err := json.Unmarshal(raw, &f); err != nil {
				t.Fatalf("frame %s: %v", raw, err)
			}
			if f.Type == "message" && f.Message.ID == sent.ID {
				break
			}
		}
	})
}
