package hosttest

import (
	"net/http"
	"testing"
)

// User is the contract's user.
type User struct {
	ID       string `json:"id"`
	Username string `json:"username"`
}

// Thread is the contract's thread.
type Thread struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	CreatedBy string `json:"created_by"`
	Members   []User `json:"members"`
	LastSeq   int64  `json:"last_seq"`
	Unread    int64  `json:"unread"`
	CreatedAt string `json:"created_at"`
}

// Message is the contract's message.
type Message struct {
	ID          string `json:"id"`
	ThreadID    string `json:"thread_id"`
	Seq         int64  `json:"seq"`
	SenderID    string `json:"sender_id"`
	ClientMsgID string `json:"client_msg_id"`
	Body        string `json:"body"`
	CreatedAt   string `json:"created_at"`
}

// LoginAnswer is the contract's answer to a login.
type LoginAnswer struct {
	Token     string `json:"token"`
	User      User   `json:"user"`
	ExpiresAt string `json:"expires_at"`
}

// Register registers username with password and fails unless that answers 201.
func (h *Host) Register(tb testing.TB, username, password string) User {
	tb.Helper()
	r := h.Do(tb, Request{Method: "POST", Path: "/api/v1/auth/register", Body: map[string]string{"username": username, "password": password}})
	WantStatus(tb, r, http.StatusCreated)
	var out struct {
		User User `json:"user"`
	}
	r.Decode(tb, &out)
	return out.User
}

// Login logs username in with password and fails unless that answers 200.
func (h *Host) Login(tb testing.TB, username, password string) LoginAnswer {
	tb.Helper()
	r := h.Do(tb, Request{Method: "POST", Path: "/api/v1/auth/login", Body: map[string]string{"username": username, "password": password}})
	WantStatus(tb, r, http.StatusOK)
	var out LoginAnswer
	r.Decode(tb, &out)
	return out
}

// NewThread creates, with token, a thread named name with the members of the given
// usernames, and fails unless that answers 201.
func (h *Host) NewThread(tb testing.TB, token, name string, members ...string) Thread {
	tb.Helper()
	if members == nil {
		members = []string{}
	}
	r := h.Do(tb, Request{Method: "POST", Path: "/api/v1/threads", Token: token, Body: map[string]any{"name": name, "members": members}})
	WantStatus(tb, r, http.StatusCreated)
	var out struct {
		Thread Thread `json:"thread"`
	}
	r.Decode(tb, &out)
	return out.Thread
}

// Send posts, with token, a message with a fresh client_msg_id and fails unless that
// answers 201.
func (h *Host) Send(tb testing.TB, token, threadID, body string) Message {
	tb.Helper()
	r := h.Do(tb, Request{Method: "POST", Path: "/api/v1/threads/" + threadID + "/messages", Token: token,
		Body: map[string]string{"client_msg_id": "c-" + RandomHex(8), "body": body}})
	WantStatus(tb, r, http.StatusCreated)
	var out struct {
		Message Message `json:"message"`
	}
	r.Decode(tb, &out)
	return out.Message
}
