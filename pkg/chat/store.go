package chat

import (
	"context"
	"time"
)

// UserStore keeps accounts and their password hashes (PostgreSQL).
type UserStore interface {
	// CreateUser stores a new user. Returns EUsernameTaken if the (normalized)
	// username exists.
	CreateUser(ctx context.Context, username, passwordHash string) (User, error)
	// UserCredentials returns the user and password hash. Returns ENotFound.
	UserCredentials(ctx context.Context, username string) (User, string, error)
	// UsersByUsername returns the users that exist among usernames, in no order.
	UsersByUsername(ctx context.Context, usernames []string) ([]User, error)
	// UserByID returns one user. Returns ENotFound.
	UserByID(ctx context.Context, id string) (User, error)
}

// NewThread is what CreateThread needs: MemberIDs includes the creator.
type NewThread struct {
	Name      string
	CreatedBy string
	MemberIDs []string
}

// NewMessage is what CreateMessage needs.
type NewMessage struct {
	ThreadID    string
	SenderID    string
	ClientMsgID string
	Body        string
}

// Stored is the outcome of CreateMessage: the message, whether this call created it
// (false for an idempotent repeat), and the thread's member ids at commit time, which
// the sender's host needs for fan-out.
type Stored struct {
	Message Message
	Created bool
	Members []string
	// Committed is a time at which the message was already durable (taken as soon as
	// the store's commit returned). The deliverer lets messages share a presence lookup
	// only if it began after this instant; zero means "when delivery starts".
	Committed time.Time
}

// AckUpdate moves one member's acked seq forward in one thread.
type AckUpdate struct {
	ThreadID string
	UserID   string
	Seq      int64
}

// ThreadStore keeps threads, members and messages (PostgreSQL). Every read that
// takes a userID answers ENotFound for a thread the user is not a member of, so
// that a non-member learns nothing.
type ThreadStore interface {
	// CreateThread stores a thread and its members and returns it as the creator sees it.
	CreateThread(ctx context.Context, t NewThread) (Thread, error)
	// ThreadsForUser lists the user's threads, newest activity first.
	ThreadsForUser(ctx context.Context, userID string) ([]Thread, error)
	// ThreadForMember returns one thread as userID sees it. Returns ENotFound.
	ThreadForMember(ctx context.Context, threadID, userID string) (Thread, error)
	// MemberIDs returns the ids of a thread's members. Returns ENotFound.
	MemberIDs(ctx context.Context, threadID string) ([]string, error)
	// AddMember adds userID to the thread (no-op when already a member); a new member
	// starts with acked and read seq at the thread's last seq. Returns EInvalid when
	// the thread would pass maxMembers.
	AddMember(ctx context.Context, threadID, userID string, maxMembers int) error
	// RemoveMember removes userID from the thread. Returns ENotFound.
	RemoveMember(ctx context.Context, threadID, userID string) error
	// MarkRead moves the member's read mark forward (never back). Returns ENotFound
	// for a non-member, EInvalid past the thread's last seq.
	MarkRead(ctx context.Context, threadID, userID string, seq int64) error
	// Ack moves acked seqs forward (never back), many at once.
	Ack(ctx context.Context, acks []AckUpdate) error
	// Memberships lists the user's position in each of its threads.
	Memberships(ctx context.Context, userID string) ([]Membership, error)
	// MembershipsOf lists, by user id, each user's position in each of its threads, in
	// as few queries as it can; users in no thread are absent.
	MembershipsOf(ctx context.Context, userIDs []string) (map[string][]Membership, error)
	// Membership returns the user's position in one thread. Returns ENotFound.
	Membership(ctx context.Context, threadID, userID string) (Membership, error)
	// SharedWith returns those of candidates who share at least one thread with userID
	// (userID itself included when among candidates).
	SharedWith(ctx context.Context, userID string, candidates []string) ([]string, error)

	// CreateMessage stores a message with the thread's next seq in one transaction.
	// A repeated (sender, client_msg_id) returns the first message with Created false
	// and stores nothing. Returns ENotMember if the sender is not a member (ENotFound
	// if the thread does not exist is reported as ENotMember too, to leak nothing).
	CreateMessage(ctx context.Context, m NewMessage) (Stored, error)
	// MessagesAfter returns up to limit messages with seq > afterSeq (and <= upTo when
	// upTo > 0), ascending, and whether more follow.
	MessagesAfter(ctx context.Context, threadID string, afterSeq, upTo int64, limit int) ([]Message, bool, error)
	// MessagesBefore returns the newest up to limit messages with seq < beforeSeq,
	// ascending, and whether older ones exist.
	MessagesBefore(ctx context.Context, threadID string, beforeSeq int64, limit int) ([]Message, bool, error)
	// Ping checks the database answers.
	Ping(ctx context.Context) error
}

// SessionStore keeps sessions (Redis) under the hash of their token, with a TTL.
type SessionStore interface {
	// CreateSession stores s under hash for ttl.
	CreateSession(ctx context.Context, hash string, s Session, ttl time.Duration) error
	// Session returns the session stored under hash. Returns EUnauthenticated.
	Session(ctx context.Context, hash string) (Session, error)
	// DeleteSession removes it; deleting a missing session is not an error.
	DeleteSession(ctx context.Context, hash string) error
}

// PresenceStore is the presence table and host registry (Redis). Entries are raw:
// callers decide liveness from the hosts' heartbeats.
type PresenceStore interface {
	// AddConnections registers live connections (one round trip for many).
	AddConnections(ctx context.Context, conns []Connection) error
	// RemoveConnections deletes entries and, for users left with none, records
	// last seen.
	RemoveConnections(ctx context.Context, conns []Connection) error
	// Lookup returns the entries of every user in userIDs in one round trip.
	Lookup(ctx context.Context, userIDs []string) (map[string][]Connection, error)
	// LastSeen returns when each user's last connection closed, where known.
	LastSeen(ctx context.Context, userIDs []string) (map[string]time.Time, error)
	// Heartbeat claims or refreshes the host's registration. Returns EHostIDTaken when
	// another live instance (a different Instance) holds HostID. fresh is true when the
	// registration was absent (first start, or Redis lost its data), which tells the
	// host to re-register its live connections.
	Heartbeat(ctx context.Context, h Host, ttl time.Duration) (fresh bool, err error)
	// RemoveHost deletes the host's registration (on drain).
	RemoveHost(ctx context.Context, hostID string) error
	// Hosts lists registered hosts, live or not.
	Hosts(ctx context.Context) ([]Host, error)
	// AddHandoff records that a message of threadID up to seq could not be handed to
	// hostID, which reads its records with TakeHandoffs.
	AddHandoff(ctx context.Context, hostID, threadID string, seq int64) error
	// TakeHandoffs returns and clears the records left for hostID: thread -> max seq.
	TakeHandoffs(ctx context.Context, hostID string) (map[string]int64, error)
	// AddDisconnect records that hostID must still close the sockets d names: the
	// disconnect call to it failed. It reads its records with TakeDisconnects.
	AddDisconnect(ctx context.Context, hostID string, d Disconnect) error
	// TakeDisconnects returns and clears the records left for hostID.
	TakeDisconnects(ctx context.Context, hostID string) ([]Disconnect, error)
	// Ping checks Redis answers.
	Ping(ctx context.Context) error
}

// SocketClaim is the outcome of claiming one of a user's socket slots (the per-user
// socket limit of the contract's section 8), which the presence store counts across
// hosts: it lives here so that the transports that claim and the store that counts
// agree on it without importing each other.
type SocketClaim int

const (
	// SocketClaimFull: the user's live sockets and claims already reach the limit;
	// nothing was written.
	SocketClaimFull SocketClaim = iota
	// SocketClaimReserved: a slot is claimed for the socket.
	SocketClaimReserved
	// SocketClaimUnsure: only entries of hosts missing from the caller's list of live
	// hosts could reach the limit; nothing was written. Refresh the list of hosts and
	// ask again, counting unknown hosts as dead.
	SocketClaimUnsure
)

// Limiter counts token buckets; in production in Redis, so limits hold cluster-wide.
type Limiter interface {
	// Allow takes n tokens from the bucket key (capacity burst, refilled at rate per
	// second). When the bucket has too few, it takes nothing and returns ok false
	// and the time until n tokens are there.
	Allow(ctx context.Context, key string, rate float64, burst int, n int) (ok bool, retryAfter time.Duration, err error)
	// Refund gives back n tokens taken by Allow (never past burst): an attempt that
	// is only counted when it fails takes its token first, so concurrent attempts
	// cannot all pass, and returns it when it succeeds.
	Refund(ctx context.Context, key string, rate float64, burst int, n int) error
}

// PasswordHasher hashes and checks passwords (bcrypt in production).
type PasswordHasher interface {
	Hash(password string) (string, error)
	// Compare returns nil when password matches hash.
	Compare(hash, password string) error
	// Dummy spends the time of one Compare so that an unknown user costs as much as
	// a wrong password.
	Dummy(password string)
}

// Deliverer hands stored messages and other events to the members' live sockets,
// wherever in the cluster they are (pkg/cluster).
type Deliverer interface {
	// DeliverMessage pushes st.Message to every live connection of st.Members except
	// the connection exceptConnID (the sender's, which got `sent`). It returns once
	// every host answered or the deliver deadline passed; failures are recorded for
	// repair, never returned to the sender, whose message is already durable.
	DeliverMessage(ctx context.Context, st Stored, exceptConnID string)
	// DeliverTyping relays a typing notice; best effort.
	DeliverTyping(ctx context.Context, threadID, userID string, recipients []string, exceptConnID string)
	// DisconnectSession closes every socket of the session on every host (code 4001).
	DisconnectSession(ctx context.Context, sessionHash string) error
}
