package chat

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"log/slog"
	"slices"
	"time"
)

// Limits are the rate and size limits of section 8 of the contract.
type Limits struct {
	LoginFailures      int           // failed logins per username per LoginFailureWindow
	LoginFailureWindow time.Duration //
	AuthPerMinute      int           // logins and registrations per client address
	SendRate           float64       // messages per second per user
	SendBurst          int           //
	ThreadMembers      int           // members of one thread
	BodyBytes          int           // message body
}

// DefaultLimits are the contract's defaults.
func DefaultLimits() Limits {
	return Limits{
		LoginFailures: 5, LoginFailureWindow: 15 * time.Minute, AuthPerMinute: 30,
		SendRate: 20, SendBurst: 40, ThreadMembers: 1000, BodyBytes: 8192,
	}
}

// HostDirectory tells whether a presence entry is current: its host's heartbeat is
// fresh and the host has not restarted since the entry was written (a restart has a
// new instance). The cluster package keeps that view in memory, refreshed every second,
// so asking is free.
type HostDirectory interface {
	AliveInstance(hostID, instance string) bool
}

// ServiceConfig configures a Service. Zero values get the contract's defaults.
type ServiceConfig struct {
	SessionTTL time.Duration
	Limits     Limits
	// StoreTimeout bounds every store call made for a request, so that a store that
	// hangs turns into `unavailable` well within the contract's 5 s.
	StoreTimeout time.Duration
	// Now lets tests fix the clock.
	Now func() time.Time
}

// Service implements Switchboard's use cases on top of the stores. Transports (HTTP,
// WebSocket) call it; it never knows about them.
type Service struct {
	Users     UserStore
	Store     ThreadStore
	Sessions  SessionStore
	Presence  PresenceStore
	Limiter   Limiter
	Hasher    PasswordHasher
	Deliverer Deliverer
	Hosts     HostDirectory
	// Observe, when set, is told how long each stage of Send took ("validate": checks
	// and the rate limit; "store": the durable write), for the per-stage histograms.
	Observe func(stage string, d time.Duration)

	cfg ServiceConfig
	log *slog.Logger
}

// NewService wires a Service; the stores are set on the returned value's fields.
func NewService(cfg ServiceConfig, log *slog.Logger) *Service {
	d := DefaultLimits()
	l := &cfg.Limits
	if l.LoginFailures == 0 {
		l.LoginFailures = d.LoginFailures
	}
	if l.LoginFailureWindow == 0 {
		l.LoginFailureWindow = d.LoginFailureWindow
	}
	if l.AuthPerMinute == 0 {
		l.AuthPerMinute = d.AuthPerMinute
	}
	if l.SendRate == 0 {
		l.SendRate = d.SendRate
	}
	if l.SendBurst == 0 {
		l.SendBurst = d.SendBurst
	}
	if l.ThreadMembers == 0 {
		l.ThreadMembers = d.ThreadMembers
	}
	if l.BodyBytes == 0 {
		l.BodyBytes = d.BodyBytes
	}
	if cfg.SessionTTL == 0 {
		cfg.SessionTTL = 744 * time.Hour
	}
	if cfg.StoreTimeout == 0 {
		cfg.StoreTimeout = 4 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{cfg: cfg, log: log}
}

// Limits returns the limits in force.
func (s *Service) Limits() Limits { return s.cfg.Limits }

// HashToken returns the hex SHA-256 of a session token: the only form of it that is
// ever stored or logged.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// unavailable turns a store failure into the contract's `unavailable`, keeping the
// cause for the log; errors that already carry a code pass through.
func unavailable(err error, what string) error {
	if err == nil || AsError(err) != nil {
		return err
	}
	return &wrapped{err: &Error{Code: EUnavailable, Message: what + " is unavailable, try again"}, cause: err}
}

// wrapped is an *Error that still unwraps to its cause for logs and errors.Is.
type wrapped struct {
	err   *Error
	cause error
}

func (w *wrapped) Error() string   { return w.err.Error() + ": " + w.cause.Error() }
func (w *wrapped) Unwrap() []error { return []error{w.err, w.cause} }

// Register creates an account.
func (s *Service) Register(ctx context.Context, clientAddr, username, password string) (User, error) {
	name, err := NormalizeUsername(username)
	if err != nil {
		return User{}, err
	}
	if err := ValidatePassword(password); err != nil {
		return User{}, err
	}
	if err := s.allowAuth(ctx, clientAddr); err != nil {
		return User{}, err
	}
	hash, err := s.Hasher.Hash(password)
	if err != nil {
		return User{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.StoreTimeout)
	defer cancel()
	u, err := s.Users.CreateUser(ctx, name, hash)
	return u, unavailable(err, "database")
}

// allowAuth applies the per-client-address limit on logins and registrations.
func (s *Service) allowAuth(ctx context.Context, clientAddr string) error {
	per := s.cfg.Limits.AuthPerMinute
	ok, retry, err := s.Limiter.Allow(ctx, "auth:"+clientAddr, float64(per)/60, per, 1)
	if err != nil {
		s.log.Warn("auth limiter", "err", err)
		return nil
	}
	if !ok {
		return RateLimited(retry)
	}
	return nil
}

// LoginResult is what a successful login returns. Token is shown to the client once.
type LoginResult struct {
	Token   string
	User    User
	Session Session
}

// Login checks credentials and opens a session. Unknown users and wrong passwords
// get the same error and cost the same time (a dummy hash comparison).
func (s *Service) Login(ctx context.Context, clientAddr, username, password string) (LoginResult, error) {
	if len(password) > MaxPasswordBytes {
		return LoginResult{}, Errorf(EInvalid, "password must be at most %d bytes", MaxPasswordBytes)
	}
	if err := s.allowAuth(ctx, clientAddr); err != nil {
		return LoginResult{}, err
	}
	badCreds := Errorf(EInvalidCredentials, "wrong username or password")
	name, nerr := NormalizeUsername(username)
	if nerr != nil {
		s.Hasher.Dummy(password)
		return LoginResult{}, badCreds
	}
	l := s.cfg.Limits
	failKey, failRate := "loginfail:"+name, float64(l.LoginFailures)/l.LoginFailureWindow.Seconds()
	// Each attempt takes a failure token before its password is compared, and gets
	// it back unless the password was wrong: taking it only after a failure let every
	// attempt that arrived during a comparison (bcrypt takes a while) have its guess.
	ok, retry, err := s.Limiter.Allow(ctx, failKey, failRate, l.LoginFailures, 1)
	if err == nil && !ok {
		return LoginResult{}, RateLimited(retry)
	}
	refund := func() {
		if err != nil {
			return // the limiter did not answer: nothing was taken
		}
		if rerr := s.Limiter.Refund(ctx, failKey, failRate, l.LoginFailures, 1); rerr != nil {
			s.log.Warn("login failure limiter: give back", "err", rerr)
		}
	}
	sctx, cancel := context.WithTimeout(ctx, s.cfg.StoreTimeout)
	defer cancel()
	u, hash, cerr := s.Users.UserCredentials(sctx, name)
	if cerr != nil && ErrorCode(cerr) != ENotFound {
		refund()
		return LoginResult{}, unavailable(cerr, "database")
	}
	if cerr != nil {
		s.Hasher.Dummy(password)
	} else if s.Hasher.Compare(hash, password) == nil {
		refund()
		return s.openSession(ctx, u)
	}
	if err != nil {
		s.log.Warn("login failure limiter", "err", err)
	}
	return LoginResult{}, badCreds
}

func (s *Service) openSession(ctx context.Context, u User) (LoginResult, error) {
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return LoginResult{}, err
	}
	token := base64.RawURLEncoding.EncodeToString(raw[:])
	now := s.cfg.Now().UTC().Truncate(time.Second)
	sess := Session{UserID: u.ID, Username: u.Username, CreatedAt: now, ExpiresAt: now.Add(s.cfg.SessionTTL), Hash: HashToken(token)}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.StoreTimeout)
	defer cancel()
	if err := s.Sessions.CreateSession(ctx, sess.Hash, sess, s.cfg.SessionTTL); err != nil {
		return LoginResult{}, unavailable(err, "session store")
	}
	return LoginResult{Token: token, User: u, Session: sess}, nil
}

// Authenticate returns the live session behind token. Returns EUnauthenticated.
func (s *Service) Authenticate(ctx context.Context, token string) (Session, error) {
	if token == "" || len(token) > 128 {
		return Session{}, Errorf(EUnauthenticated, "a valid session is required")
	}
	hash := HashToken(token)
	ctx, cancel := context.WithTimeout(ctx, s.cfg.StoreTimeout)
	defer cancel()
	sess, err := s.Sessions.Session(ctx, hash)
	if err != nil {
		return Session{}, unavailable(err, "session store")
	}
	if !sess.ExpiresAt.IsZero() && !s.cfg.Now().Before(sess.ExpiresAt) {
		return Session{}, Errorf(EUnauthenticated, "the session has expired")
	}
	sess.Hash = hash
	return sess, nil
}

// Logout ends the session and closes its sockets on every host.
func (s *Service) Logout(ctx context.Context, sess Session) error {
	sctx, cancel := context.WithTimeout(ctx, s.cfg.StoreTimeout)
	defer cancel()
	if err := s.Sessions.DeleteSession(sctx, sess.Hash); err != nil {
		return unavailable(err, "session store")
	}
	if err := s.Deliverer.DisconnectSession(ctx, sess.Hash); err != nil {
		s.log.Warn("logout: disconnect sockets", "user_id", sess.UserID, "err", err)
	}
	return nil
}

// Me returns the session's user.
func (s *Service) Me(ctx context.Context, sess Session) (User, error) {
	return User{ID: sess.UserID, Username: sess.Username}, nil
}

// resolveUsernames maps usernames to users, failing with EUnknownUser listing every
// name that does not exist.
func (s *Service) resolveUsernames(ctx context.Context, names []string) ([]User, error) {
	norm := make([]string, 0, len(names))
	var unknown []string
	for _, n := range names {
		u, err := NormalizeUsername(n)
		if err != nil {
			unknown = append(unknown, n)
			continue
		}
		if !slices.Contains(norm, u) {
			norm = append(norm, u)
		}
	}
	users, err := s.Users.UsersByUsername(ctx, norm)
	if err != nil {
		return nil, unavailable(err, "database")
	}
	found := make(map[string]User, len(users))
	for _, u := range users {
		found[u.Username] = u
	}
	out := make([]User, 0, len(norm))
	for _, n := range norm {
		if u, ok := found[n]; ok {
			out = append(out, u)
		} else {
			unknown = append(unknown, n)
		}
	}
	if len(unknown) > 0 {
		return nil, &Error{Code: EUnknownUser, Message: "unknown users", Details: map[string]any{"usernames": unknown}}
	}
	return out, nil
}

// CreateThread creates a thread whose members are the creator and the named users.
func (s *Service) CreateThread(ctx context.Context, sess Session, name string, members []string) (Thread, error) {
	if err := ValidateThreadName(name); err != nil {
		return Thread{}, err
	}
	// Repeats and the creator's own name are not members of their own (section 8
	// counts members): count distinct names before asking the store, so that a long
	// list is refused without a query. A name that is not valid counts as itself.
	distinct := make(map[string]struct{}, min(len(members), s.cfg.Limits.ThreadMembers+1))
	for _, m := range members {
		if n, err := NormalizeUsername(m); err == nil {
			m = n
		}
		if m != sess.Username {
			distinct[m] = struct{}{}
		}
		if len(distinct)+1 > s.cfg.Limits.ThreadMembers {
			return Thread{}, Errorf(EInvalid, "a thread has at most %d members", s.cfg.Limits.ThreadMembers)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.StoreTimeout)
	defer cancel()
	users, err := s.resolveUsernames(ctx, members)
	if err != nil {
		return Thread{}, err
	}
	ids := []string{sess.UserID}
	for _, u := range users {
		if u.ID != sess.UserID {
			ids = append(ids, u.ID)
		}
	}
	if len(ids) > s.cfg.Limits.ThreadMembers {
		return Thread{}, Errorf(EInvalid, "a thread has at most %d members", s.cfg.Limits.ThreadMembers)
	}
	t, err := s.Store.CreateThread(ctx, NewThread{Name: name, CreatedBy: sess.UserID, MemberIDs: ids})
	return t, unavailable(err, "database")
}

// Threads lists the session user's threads, newest activity first.
func (s *Service) ListThreads(ctx context.Context, sess Session) ([]Thread, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.StoreTimeout)
	defer cancel()
	ts, err := s.Store.ThreadsForUser(ctx, sess.UserID)
	return ts, unavailable(err, "database")
}

// Thread returns one thread the user is a member of. Returns ENotFound.
func (s *Service) Thread(ctx context.Context, sess Session, threadID string) (Thread, error) {
	if !ValidID(threadID) {
		return Thread{}, Errorf(ENotFound, "no such thread")
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.StoreTimeout)
	defer cancel()
	t, err := s.Store.ThreadForMember(ctx, threadID, sess.UserID)
	return t, unavailable(err, "database")
}

// AddMember adds a user to a thread. Only the creator manages membership: other
// members get EForbidden, non-members ENotFound.
func (s *Service) AddMember(ctx context.Context, sess Session, threadID, username string) (Thread, error) {
	t, err := s.Thread(ctx, sess, threadID)
	if err != nil {
		return Thread{}, err
	}
	if t.CreatedBy != sess.UserID {
		return Thread{}, Errorf(EForbidden, "only the thread's creator can add members")
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.StoreTimeout)
	defer cancel()
	users, err := s.resolveUsernames(ctx, []string{username})
	if err != nil {
		return Thread{}, err
	}
	if err := s.Store.AddMember(ctx, threadID, users[0].ID, s.cfg.Limits.ThreadMembers); err != nil {
		return Thread{}, unavailable(err, "database")
	}
	t, err = s.Store.ThreadForMember(ctx, threadID, sess.UserID)
	return t, unavailable(err, "database")
}

// RemoveMember removes userID from a thread: anyone may leave, only the creator may
// remove others.
func (s *Service) RemoveMember(ctx context.Context, sess Session, threadID, userID string) error {
	t, err := s.Thread(ctx, sess, threadID)
	if err != nil {
		return err
	}
	if userID != sess.UserID && t.CreatedBy != sess.UserID {
		return Errorf(EForbidden, "only the thread's creator can remove other members")
	}
	if !slices.ContainsFunc(t.Members, func(u User) bool { return u.ID == userID }) {
		return Errorf(ENotFound, "no such member")
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.StoreTimeout)
	defer cancel()
	return unavailable(s.Store.RemoveMember(ctx, threadID, userID), "database")
}

// HistoryQuery selects a page of a thread's history: after AfterSeq, or the newest page
// below BeforeSeq when BeforeSeq > 0.
type HistoryQuery struct {
	AfterSeq  int64
	BeforeSeq int64
	Limit     int
}

// MaxPage is the largest page of history served at once.
const MaxPage = 200

// History returns a page of messages in ascending seq and whether more follow in the
// direction asked.
func (s *Service) History(ctx context.Context, sess Session, threadID string, q HistoryQuery) ([]Message, bool, error) {
	if q.Limit == 0 {
		q.Limit = 50
	}
	if q.Limit < 1 || q.Limit > MaxPage {
		return nil, false, Errorf(EInvalid, "limit must be 1 to %d", MaxPage)
	}
	if q.AfterSeq < 0 || q.BeforeSeq < 0 {
		return nil, false, Errorf(EInvalid, "after_seq and before_seq must not be negative")
	}
	if q.AfterSeq > 0 && q.BeforeSeq > 0 {
		return nil, false, Errorf(EInvalid, "give after_seq or before_seq, not both")
	}
	if !ValidID(threadID) {
		return nil, false, Errorf(ENotFound, "no such thread")
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.StoreTimeout)
	defer cancel()
	if _, err := s.Store.Membership(ctx, threadID, sess.UserID); err != nil {
		return nil, false, unavailable(err, "database")
	}
	var (
		msgs []Message
		more bool
		err  error
	)
	if q.BeforeSeq > 0 {
		msgs, more, err = s.Store.MessagesBefore(ctx, threadID, q.BeforeSeq, q.Limit)
	} else {
		msgs, more, err = s.Store.MessagesAfter(ctx, threadID, q.AfterSeq, 0, q.Limit)
	}
	return msgs, more, unavailable(err, "database")
}

// SendRequest is one message to store.
type SendRequest struct {
	ThreadID    string
	ClientMsgID string
	Body        string
}

// Send validates, rate-limits and durably stores a message. It does not deliver:
// the transport answers the sender first and then calls Deliver, so the sender's `sent`
// never waits on other hosts. Errors: EInvalid, ETooLarge, ENotMember, ERateLimited,
// EUnavailable.
func (s *Service) Send(ctx context.Context, sess Session, req SendRequest) (Stored, error) {
	start := time.Now()
	if err := ValidateClientMsgID(req.ClientMsgID); err != nil {
		return Stored{}, err
	}
	if err := ValidateBody(req.Body, s.cfg.Limits.BodyBytes); err != nil {
		return Stored{}, err
	}
	if !ValidID(req.ThreadID) {
		return Stored{}, Errorf(ENotMember, "you are not a member of that thread")
	}
	l := s.cfg.Limits
	ok, retry, err := s.Limiter.Allow(ctx, "send:"+sess.UserID, l.SendRate, l.SendBurst, 1)
	if err != nil {
		s.log.Warn("send limiter", "err", err)
	} else if !ok {
		return Stored{}, RateLimited(retry)
	}
	stored := time.Now()
	if s.Observe != nil {
		s.Observe("validate", stored.Sub(start))
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.StoreTimeout)
	defer cancel()
	st, err := s.Store.CreateMessage(ctx, NewMessage{ThreadID: req.ThreadID, SenderID: sess.UserID, ClientMsgID: req.ClientMsgID, Body: req.Body})
	if s.Observe != nil && err == nil {
		s.Observe("store", time.Since(stored))
	}
	if err == nil && !st.Created && st.Message.ThreadID != req.ThreadID {
		// The client_msg_id was first used in another thread, whose message this is;
		// st.Members are the members of req's thread, who must not be sent it.
		st.Members = nil
	}
	return st, unavailable(err, "database")
}

// StoreContext bounds a store call made for a client's frame by StoreTimeout, so that
// a database that answers nothing turns into `unavailable` rather than a socket whose
// later frames all wait behind the call.
func (s *Service) StoreContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.cfg.StoreTimeout)
}

// Deliver hands a stored message to every member's live sockets except the sending
// connection. An idempotent repeat is delivered again: its first send may have
// committed and never fanned out (its host killed, or the answer lost with the
// database link), and the repeat's `sent` promises delivery like any other. A socket
// that has the message already drops the copy by seq, and clients dedupe by id.
func (s *Service) Deliver(ctx context.Context, st Stored, exceptConnID string) {
	if len(st.Members) == 0 {
		return
	}
	s.Deliverer.DeliverMessage(ctx, st, exceptConnID)
}

// MarkRead moves the user's read mark in a thread forward.
func (s *Service) MarkRead(ctx context.Context, sess Session, threadID string, seq int64) error {
	if seq < 0 {
		return Errorf(EInvalid, "seq must not be negative")
	}
	if !ValidID(threadID) {
		return Errorf(ENotFound, "no such thread")
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.StoreTimeout)
	defer cancel()
	return unavailable(s.Store.MarkRead(ctx, threadID, sess.UserID, seq), "database")
}

// MaxPresenceIDs bounds one presence query.
const MaxPresenceIDs = 200

// PresenceOf answers GET /presence: ids the user shares no thread with are left out,
// as unknown ids are; entries on hosts whose heartbeat expired do not count.
func (s *Service) PresenceOf(ctx context.Context, sess Session, ids []string) ([]Presence, error) {
	if len(ids) > MaxPresenceIDs {
		return nil, Errorf(EInvalid, "at most %d user_id values", MaxPresenceIDs)
	}
	var want []string
	for _, id := range ids {
		if ValidID(id) && !slices.Contains(want, id) {
			want = append(want, id)
		}
	}
	out := []Presence{}
	if len(want) == 0 {
		return out, nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.StoreTimeout)
	defer cancel()
	shared, err := s.Store.SharedWith(ctx, sess.UserID, want)
	if err != nil {
		return nil, unavailable(err, "database")
	}
	if len(shared) == 0 {
		return out, nil
	}
	conns, err := s.Presence.Lookup(ctx, shared)
	if err != nil {
		return nil, unavailable(err, "presence store")
	}
	seen, err := s.Presence.LastSeen(ctx, shared)
	if err != nil {
		return nil, unavailable(err, "presence store")
	}
	for _, id := range want {
		if !slices.Contains(shared, id) {
			continue
		}
		p := Presence{UserID: id}
		for _, c := range conns[id] {
			if s.Hosts == nil || s.Hosts.AliveInstance(c.HostID, c.Instance) {
				p.Online = true
				break
			}
		}
		if t, ok := seen[id]; ok {
			t := t.UTC()
			p.LastSeen = &t
		}
		out = append(out, p)
	}
	return out, nil
}
