// Package chat holds Switchboard's domain: users, threads, messages, sessions and
// presence, the interfaces of the stores and deliverers that serve them, the error codes
// of the wire contract, and the Service that implements the use cases on top of them.
//
// It imports nothing but the standard library, so every other package depends on it
// and never the other way round.
package chat

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"time"
)

// User is an account as clients see it.
type User struct {
	ID       string `json:"id"`
	Username string `json:"username"`
}

// Thread is a chat room. Members, LastSeq and Unread are as seen by the member who
// asked: Unread counts messages after that member's read mark that others sent.
type Thread struct {
	ID             string    `json:"id"`
	Name           string    `json:"name"`
	CreatedBy      string    `json:"created_by"`
	Members        []User    `json:"members"`
	LastSeq        int64     `json:"last_seq"`
	Unread         int64     `json:"unread"`
	CreatedAt      time.Time `json:"created_at"`
	LastActivityAt time.Time `json:"last_activity_at"`
}

// Message is one stored chat message. Seq starts at 1 in each thread and has no gaps.
type Message struct {
	ID          string    `json:"id"`
	ThreadID    string    `json:"thread_id"`
	Seq         int64     `json:"seq"`
	SenderID    string    `json:"sender_id"`
	ClientMsgID string    `json:"client_msg_id"`
	Body        string    `json:"body"`
	CreatedAt   time.Time `json:"created_at"`
}

// Session is what a login token stands for. It is kept in Redis under the SHA-256 of
// the token; the token itself is never stored.
type Session struct {
	UserID    string    `json:"user_id"`
	Username  string    `json:"username"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	// Hash is the hex SHA-256 of the token: the session's key, and how a logout names
	// the sockets to close. Not part of the stored value.
	Hash string `json:"-"`
}

// Connection is one entry of the presence table: a live socket of a user on a host.
type Connection struct {
	UserID string    `json:"user_id"`
	HostID string    `json:"host_id"`
	ConnID string    `json:"conn_id"`
	Since  time.Time `json:"since"`
	// Instance is the host process instance that registered it; a restarted host with
	// the same id has a new one, so its predecessor's entries read as stale.
	Instance string `json:"instance,omitempty"`
}

// Host is a socket host as registered in Redis; it is alive while its heartbeat is
// fresh.
type Host struct {
	HostID        string    `json:"host_id"`
	InternalURL   string    `json:"internal_url"`
	Instance      string    `json:"instance"`
	StartedAt     time.Time `json:"started_at"`
	LastHeartbeat time.Time `json:"last_heartbeat"`
	// DeliverBatch: the host takes several messages in one deliver call (the batch
	// form of PROTOCOL.md section 5). Others get one call per message.
	DeliverBatch bool `json:"deliver_batch,omitempty"`
}

// Disconnect names the sockets a host must close with 4001: those of one session, or
// every socket of one user. It is the body of the internal disconnect call, and the
// record a host takes from the presence store when that call could not reach it.
type Disconnect struct {
	SessionHash string `json:"session_hash,omitempty"`
	UserID      string `json:"user_id,omitempty"`
}

// Membership is one member's position in one thread, as catch-up and `chatctl pending`
// need it.
type Membership struct {
	ThreadID   string `json:"thread_id"`
	ThreadName string `json:"name"`
	AckedSeq   int64  `json:"acked_seq"`
	ReadSeq    int64  `json:"read_seq"`
	LastSeq    int64  `json:"last_seq"`
}

// Presence is whether a user is online, as GET /presence answers.
type Presence struct {
	UserID   string     `json:"user_id"`
	Online   bool       `json:"online"`
	LastSeen *time.Time `json:"last_seen"`
}

// NewID returns a fresh UUIDv7 string: opaque to clients, but time-ordered so that
// primary-key indexes stay append-mostly.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	ms := uint64(time.Now().UnixMilli())
	var ts [8]byte
	binary.BigEndian.PutUint64(ts[:], ms)
	copy(b[0:6], ts[2:8])
	b[6] = (b[6] & 0x0f) | 0x70
	b[8] = (b[8] & 0x3f) | 0x80
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:36], b[10:16])
	return string(out[:])
}
