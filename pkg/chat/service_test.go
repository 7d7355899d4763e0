package chat_test

import (
	"context"
	"encoding/base64"
	"errors"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/pkg/chat"
)

// Func-field fakes of the stores the Service uses. A nil field fails the test when
// called, so each test states exactly which calls it expects.

type fakeUsers struct {
	t               *testing.T
	CreateUserFn    func(ctx context.Context, username, hash string) (chat.User, error)
	CredentialsFn   func(ctx context.Context, username string) (chat.User, string, error)
	ByUsernameFn    func(ctx context.Context, usernames []string) ([]chat.User, error)
	ByIDFn          func(ctx context.Context, id string) (chat.User, error)
	credentialCalls int
}

var _ chat.UserStore = (*fakeUsers)(nil)

func (f *fakeUsers) CreateUser(ctx context.Context, username, hash string) (chat.User, error) {
	if f.CreateUserFn == nil {
		f.t.Fatalf("unexpected CreateUser(%q)", username)
	}
	return f.CreateUserFn(ctx, username, hash)
}

func (f *fakeUsers) UserCredentials(ctx context.Context, username string) (chat.User, string, error) {
	f.credentialCalls++
	if f.CredentialsFn == nil {
		f.t.Fatalf("unexpected UserCredentials(%q)", username)
	}
	return f.CredentialsFn(ctx, username)
}

func (f *fakeUsers) UsersByUsername(ctx context.Context, usernames []string) ([]chat.User, error) {
	if f.ByUsernameFn == nil {
		f.t.Fatalf("unexpected UsersByUsername(%v)", usernames)
	}
	return f.ByUsernameFn(ctx, usernames)
}

func (f *fakeUsers) UserByID(ctx context.Context, id string) (chat.User, error) {
	if f.ByIDFn == nil {
		f.t.Fatalf("unexpected UserByID(%q)", id)
	}
	return f.ByIDFn(ctx, id)
}

// fakeThreads implements chat.ThreadStore; only the methods a test sets may be called.
type fakeThreads struct {
	t                 *testing.T
	CreateThreadFn    func(ctx context.Context, nt chat.NewThread) (chat.Thread, error)
	ThreadForMemberFn func(ctx context.Context, threadID, userID string) (chat.Thread, error)
	AddMemberFn       func(ctx context.Context, threadID, userID string, max int) error
	RemoveMemberFn    func(ctx context.Context, threadID, userID string) error
	MarkReadFn        func(ctx context.Context, threadID, userID string, seq int64) error
	MembershipFn      func(ctx context.Context, threadID, userID string) (chat.Membership, error)
	CreateMessageFn   func(ctx context.Context, m chat.NewMessage) (chat.Stored, error)
	MessagesAfterFn   func(ctx context.Context, threadID string, after, upTo int64, limit int) ([]chat.Message, bool, error)
	MessagesBeforeFn  func(ctx context.Context, threadID string, before int64, limit int) ([]chat.Message, bool, error)
}

var _ chat.ThreadStore = (*fakeThreads)(nil)

func (f *fakeThreads) unexpected(name string) { f.t.Fatalf("unexpected ThreadStore.%s", name) }

func (f *fakeThreads) CreateThread(ctx context.Context, nt chat.NewThread) (chat.Thread, error) {
	if f.CreateThreadFn == nil {
		f.unexpected("CreateThread")
	}
	return f.CreateThreadFn(ctx, nt)
}

func (f *fakeThreads) ThreadsForUser(context.Context, string) ([]chat.Thread, error) {
	f.unexpected("ThreadsForUser")
	return nil, nil
}

func (f *fakeThreads) ThreadForMember(ctx context.Context, threadID, userID string) (chat.Thread, error) {
	if f.ThreadForMemberFn == nil {
		f.unexpected("ThreadForMember")
	}
	return f.ThreadForMemberFn(ctx, threadID, userID)
}

func (f *fakeThreads) MemberIDs(context.Context, string) ([]string, error) {
	f.unexpected("MemberIDs")
	return nil, nil
}

func (f *fakeThreads) AddMember(ctx context.Context, threadID, userID string, max int) error {
	if f.AddMemberFn == nil {
		f.unexpected("AddMember")
	}
	return f.AddMemberFn(ctx, threadID, userID, max)
}

func (f *fakeThreads) RemoveMember(ctx context.Context, threadID, userID string) error {
	if f.RemoveMemberFn == nil {
		f.unexpected("RemoveMember")
	}
	return f.RemoveMemberFn(ctx, threadID, userID)
}

func (f *fakeThreads) MarkRead(ctx context.Context, threadID, userID string, seq int64) error {
	if f.MarkReadFn == nil {
		f.unexpected("MarkRead")
	}
	return f.MarkReadFn(ctx, threadID, userID, seq)
}

func (f *fakeThreads) Ack(context.Context, []chat.AckUpdate) error {
	f.unexpected("Ack")
	return nil
}

func (f *fakeThreads) Memberships(context.Context, string) ([]chat.Membership, error) {
	f.unexpected("Memberships")
	return nil, nil
}

func (f *fakeThreads) MembershipsOf(context.Context, []string) (map[string][]chat.Membership, error) {
	f.unexpected("MembershipsOf")
	return nil, nil
}

func (f *fakeThreads) Membership(ctx context.Context, threadID, userID string) (chat.Membership, error) {
	if f.MembershipFn == nil {
		f.unexpected("Membership")
	}
	return f.MembershipFn(ctx, threadID, userID)
}

func (f *fakeThreads) SharedWith(context.Context, string, []string) ([]string, error) {
	f.unexpected("SharedWith")
	return nil, nil
}

func (f *fakeThreads) CreateMessage(ctx context.Context, m chat.NewMessage) (chat.Stored, error) {
	if f.CreateMessageFn == nil {
		f.unexpected("CreateMessage")
	}
	return f.CreateMessageFn(ctx, m)
}

func (f *fakeThreads) MessagesAfter(ctx context.Context, threadID string, after, upTo int64, limit int) ([]chat.Message, bool, error) {
	if f.MessagesAfterFn == nil {
		f.unexpected("MessagesAfter")
	}
	return f.MessagesAfterFn(ctx, threadID, after, upTo, limit)
}

func (f *fakeThreads) MessagesBefore(ctx context.Context, threadID string, before int64, limit int) ([]chat.Message, bool, error) {
	if f.MessagesBeforeFn == nil {
		f.unexpected("MessagesBefore")
	}
	return f.MessagesBeforeFn(ctx, threadID, before, limit)
}

func (f *fakeThreads) Ping(context.Context) error { return nil }

type fakeSessions struct {
	t        *testing.T
	CreateFn func(ctx context.Context, hash string, s chat.Session, ttl time.Duration) error
	GetFn    func(ctx context.Context, hash string) (chat.Session, error)
	DeleteFn func(ctx context.Context, hash string) error
}

var _ chat.SessionStore = (*fakeSessions)(nil)

func (f *fakeSessions) CreateSession(ctx context.Context, hash string, s chat.Session, ttl time.Duration) error {
	if f.CreateFn == nil {
		f.t.Fatal("unexpected CreateSession")
	}
	return f.CreateFn(ctx, hash, s, ttl)
}

func (f *fakeSessions) Session(ctx context.Context, hash string) (chat.Session, error) {
	if f.GetFn == nil {
		f.t.Fatal("unexpected Session")
	}
	return f.GetFn(ctx, hash)
}

func (f *fakeSessions) DeleteSession(ctx context.Context, hash string) error {
	if f.DeleteFn == nil {
		f.t.Fatal("unexpected DeleteSession")
	}
	return f.DeleteFn(ctx, hash)
}

// fakeLimiter records every call; AllowFn defaults to "allowed".
type fakeLimiter struct {
	mu      sync.Mutex
	calls   []string // "allow key" / "refund key"
	AllowFn func(key string) (bool, time.Duration, error)
}

var _ chat.Limiter = (*fakeLimiter)(nil)

func (f *fakeLimiter) Allow(_ context.Context, key string, _ float64, _ int, _ int) (bool, time.Duration, error) {
	f.mu.Lock()
	f.calls = append(f.calls, "allow "+key)
	f.mu.Unlock()
	if f.AllowFn != nil {
		return f.AllowFn(key)
	}
	return true, 0, nil
}

func (f *fakeLimiter) Refund(_ context.Context, key string, _ float64, _ int, _ int) error {
	f.mu.Lock()
	f.calls = append(f.calls, "refund "+key)
	f.mu.Unlock()
	return nil
}

func (f *fakeLimiter) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// fakeHasher: the hash of p is "hash:"+p; it counts Compare and Dummy calls.
type fakeHasher struct {
	hashes, compares, dummies int
}

var _ chat.PasswordHasher = (*fakeHasher)(nil)

func (f *fakeHasher) Hash(p string) (string, error) { f.hashes++; return "hash:" + p, nil }

func (f *fakeHasher) Compare(hash, p string) error {
	f.compares++
	if hash != "hash:"+p {
		return errors.New("mismatch")
	}
	return nil
}

func (f *fakeHasher) Dummy(string) { f.dummies++ }

type fakeDeliverer struct {
	mu         sync.Mutex
	delivered  []chat.Message
	recipients [][]string
	disconnect []string
	DisconnErr error
}

var _ chat.Deliverer = (*fakeDeliverer)(nil)

func (f *fakeDeliverer) DeliverMessage(_ context.Context, st chat.Stored, _ string) {
	m, recipients := st.Message, st.Members
	f.mu.Lock()
	defer f.mu.Unlock()
	f.delivered = append(f.delivered, m)
	f.recipients = append(f.recipients, recipients)
}

func (f *fakeDeliverer) DeliverTyping(context.Context, string, string, []string, string) {}

func (f *fakeDeliverer) DisconnectSession(_ context.Context, hash string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.disconnect = append(f.disconnect, hash)
	return f.DisconnErr
}

var fixedNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// fixture is a Service on fakes with a fixed clock.
type fixture struct {
	svc      *chat.Service
	users    *fakeUsers
	threads  *fakeThreads
	sessions *fakeSessions
	limiter  *fakeLimiter
	hasher   *fakeHasher
	deliv    *fakeDeliverer
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{
		users:    &fakeUsers{t: t},
		threads:  &fakeThreads{t: t},
		sessions: &fakeSessions{t: t},
		limiter:  &fakeLimiter{},
		hasher:   &fakeHasher{},
		deliv:    &fakeDeliverer{},
	}
	f.svc = chat.NewService(chat.ServiceConfig{SessionTTL: time.Hour, Now: func() time.Time { return fixedNow }}, nil)
	f.svc.Users, f.svc.Store, f.svc.Sessions, f.svc.Limiter, f.svc.Hasher, f.svc.Deliverer =
		f.users, f.threads, f.sessions, f.limiter, f.hasher, f.deliv
	return f
}

var (
	aliceUser = chat.User{ID: "01890000-0000-7000-8000-00000000000a", Username: "alice"}
	bobUser   = chat.User{ID: "01890000-0000-7000-8000-00000000000b", Username: "bob"}
	threadID  = "01890000-0000-7000-8000-0000000000f1"
	aliceSess = chat.Session{UserID: aliceUser.ID, Username: aliceUser.Username, Hash: strings.Repeat("a", 64)}
)

// withAlice makes the users store know alice with password "alice-password".
func (f *fixture) withAlice() {
	f.users.CredentialsFn = func(_ context.Context, name string) (chat.User, string, error) {
		if name == "alice" {
			return aliceUser, "hash:alice-password", nil
		}
		return chat.User{}, "", chat.Errorf(chat.ENotFound, "no such user")
	}
}

func TestLoginFailuresAreIndistinguishable(t *testing.T) {
	t.Parallel()
	type outcome struct {
		err               error
		compares, dummies int
		limiterCalls      []string
	}
	attempt := func(t *testing.T, username, password string) outcome {
		f := newFixture(t)
		f.withAlice()
		_, err := f.svc.Login(context.Background(), "192.0.2.1", username, password)
		return outcome{err, f.hasher.compares, f.hasher.dummies, f.limiter.Calls()}
	}

	wrong := attempt(t, "alice", "wrong-password")
	unknown := attempt(t, "nobody", "alice-password")
	invalid := attempt(t, "not a valid name!", "alice-password")
	for name, o := range map[string]outcome{"wrong password": wrong, "unknown user": unknown, "invalid name": invalid} {
		e := chat.AsError(o.err)
		if e == nil || e.Code != chat.EInvalidCredentials {
			t.Fatalf("%s: %v, want invalid_credentials", name, o.err)
		}
		// One bcrypt-cost operation each: a real comparison or the dummy.
		if o.compares+o.dummies != 1 {
			t.Errorf("%s: %d compares + %d dummies, want exactly one hashing operation", name, o.compares, o.dummies)
		}
	}
	if wrong.err.Error() != unknown.err.Error() || wrong.err.Error() != invalid.err.Error() {
		t.Errorf("errors differ: %q, %q, %q", wrong.err, unknown.err, invalid.err)
	}
	if wrong.compares != 1 || unknown.dummies != 1 || invalid.dummies != 1 {
		t.Errorf("wrong password should Compare, unknown and invalid users should Dummy: %+v %+v %+v", wrong, unknown, invalid)
	}
	// Both failures count against the username.
	if !slices.Contains(wrong.limiterCalls, "allow loginfail:alice") || !slices.Contains(unknown.limiterCalls, "allow loginfail:nobody") {
		t.Errorf("failures not counted: %v / %v", wrong.limiterCalls, unknown.limiterCalls)
	}
}

func TestLoginSuccess(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.withAlice()
	var (
		storedHash string
		stored     chat.Session
		storedTTL  time.Duration
	)
	f.sessions.CreateFn = func(_ context.Context, hash string, s chat.Session, ttl time.Duration) error {
		storedHash, stored, storedTTL = hash, s, ttl
		return nil
	}
	res, err := f.svc.Login(context.Background(), "192.0.2.1", "ALICE", "alice-password")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.RawURLEncoding.DecodeString(res.Token)
	if err != nil || len(raw) != 32 {
		t.Fatalf("token %q: want 32 bytes of unpadded base64url (%v)", res.Token, err)
	}
	if storedHash != chat.HashToken(res.Token) || stored.Hash != storedHash {
		t.Errorf("session stored under %q, want the token's hash", storedHash)
	}
	if storedTTL != time.Hour || !stored.ExpiresAt.Equal(fixedNow.Add(time.Hour)) || !stored.CreatedAt.Equal(fixedNow) {
		t.Errorf("session %+v ttl %v, want created now and expiring in 1h", stored, storedTTL)
	}
	if stored.UserID != aliceUser.ID || stored.Username != "alice" || res.User != aliceUser {
		t.Errorf("session %+v user %+v", stored, res.User)
	}
	if f.hasher.dummies != 0 || f.hasher.compares != 1 {
		t.Errorf("%d compares, %d dummies", f.hasher.compares, f.hasher.dummies)
	}
	if calls := f.limiter.Calls(); !slices.Equal(calls, []string{"allow auth:192.0.2.1", "allow loginfail:alice", "refund loginfail:alice"}) {
		t.Errorf("limiter calls %v: a successful login must give back the failure token it took", calls)
	}
}

func TestLoginRefusals(t *testing.T) {
	t.Parallel()

	t.Run("locked out before the store is asked", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		f.withAlice()
		f.limiter.AllowFn = func(key string) (bool, time.Duration, error) {
			return key != "loginfail:alice", 3 * time.Minute, nil
		}
		_, err := f.svc.Login(context.Background(), "192.0.2.1", "alice", "alice-password")
		e := chat.AsError(err)
		if e == nil || e.Code != chat.ERateLimited || e.RetryAfter != 3*time.Minute {
			t.Fatalf("got %v, want rate_limited retrying in 3m", err)
		}
		if f.users.credentialCalls != 0 || f.hasher.compares+f.hasher.dummies != 0 {
			t.Errorf("a locked-out login still reached the store or the hasher")
		}
	})

	t.Run("per-address limit first", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		f.limiter.AllowFn = func(key string) (bool, time.Duration, error) { return key != "auth:192.0.2.9", time.Second, nil }
		_, err := f.svc.Login(context.Background(), "192.0.2.9", "alice", "alice-password")
		if chat.ErrorCode(err) != chat.ERateLimited {
			t.Fatalf("got %v, want rate_limited", err)
		}
	})

	t.Run("password over 72 bytes", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		_, err := f.svc.Login(context.Background(), "192.0.2.1", "alice", strings.Repeat("p", 73))
		if chat.ErrorCode(err) != chat.EInvalid {
			t.Fatalf("got %v, want invalid_request", err)
		}
		if len(f.limiter.Calls()) != 0 {
			t.Errorf("limiter consulted: %v", f.limiter.Calls())
		}
	})

	t.Run("a store failure is unavailable, not invalid_credentials", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		cause := errors.New("connection refused")
		f.users.CredentialsFn = func(context.Context, string) (chat.User, string, error) { return chat.User{}, "", cause }
		_, err := f.svc.Login(context.Background(), "192.0.2.1", "alice", "alice-password")
		if chat.ErrorCode(err) != chat.EUnavailable || !errors.Is(err, cause) {
			t.Fatalf("got %v, want unavailable wrapping the cause", err)
		}
		if strings.Contains(chat.ErrorMessage(err), "refused") {
			t.Errorf("the client-facing message leaks the cause: %q", chat.ErrorMessage(err))
		}
	})

	t.Run("a limiter failure does not lock anyone out", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		f.withAlice()
		f.sessions.CreateFn = func(context.Context, string, chat.Session, time.Duration) error { return nil }
		broken := func(string) (bool, time.Duration, error) { return false, 0, errors.New("redis down") }
		f.limiter.AllowFn = broken
		if _, err := f.svc.Login(context.Background(), "192.0.2.1", "alice", "alice-password"); err != nil {
			t.Fatalf("got %v, want a session", err)
		}
	})
}

func TestRegister(t *testing.T) {
	t.Parallel()

	t.Run("folds the name and hashes the password", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		f.users.CreateUserFn = func(_ context.Context, name, hash string) (chat.User, error) {
			if name != "alice" || hash != "hash:alice-password" {
				t.Errorf("CreateUser(%q, %q)", name, hash)
			}
			return aliceUser, nil
		}
		if u, err := f.svc.Register(context.Background(), "192.0.2.1", "Alice", "alice-password"); err != nil || u != aliceUser {
			t.Fatalf("Register = %+v, %v", u, err)
		}
	})

	for name, tc := range map[string]struct{ username, password string }{
		"bad name":          {"a b", "alice-password"},
		"look-alike name":   {"\u212Aate", "alice-password"},
		"short password":    {"alice", "short"},
		"password too long": {"alice", strings.Repeat("x", 73)},
	} {
		t.Run(name+" is refused before any work", func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			_, err := f.svc.Register(context.Background(), "192.0.2.1", tc.username, tc.password)
			if chat.ErrorCode(err) != chat.EInvalid {
				t.Fatalf("got %v, want invalid_request", err)
			}
			if f.hasher.hashes != 0 || len(f.limiter.Calls()) != 0 {
				t.Errorf("hashed %d times, limiter calls %v", f.hasher.hashes, f.limiter.Calls())
			}
		})
	}

	t.Run("taken passes through", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		f.users.CreateUserFn = func(context.Context, string, string) (chat.User, error) {
			return chat.User{}, chat.Errorf(chat.EUsernameTaken, "taken")
		}
		if _, err := f.svc.Register(context.Background(), "192.0.2.1", "alice", "alice-password"); chat.ErrorCode(err) != chat.EUsernameTaken {
			t.Fatalf("got %v, want username_taken", err)
		}
	})
}

func TestAuthenticate(t *testing.T) {
	t.Parallel()
	const token = "tok"
	for name, tc := range map[string]struct {
		token string
		get   func(context.Context, string) (chat.Session, error)
		code  string
	}{
		"ok": {token, func(_ context.Context, h string) (chat.Session, error) {
			return chat.Session{UserID: aliceUser.ID, ExpiresAt: fixedNow.Add(time.Second)}, nil
		}, ""},
		"empty token":     {"", nil, chat.EUnauthenticated},
		"oversized token": {strings.Repeat("t", 129), nil, chat.EUnauthenticated},
		"unknown": {token, func(context.Context, string) (chat.Session, error) {
			return chat.Session{}, chat.Errorf(chat.EUnauthenticated, "no such session")
		}, chat.EUnauthenticated},
		"expired now": {token, func(context.Context, string) (chat.Session, error) {
			return chat.Session{UserID: aliceUser.ID, ExpiresAt: fixedNow}, nil
		}, chat.EUnauthenticated},
		"store down": {token, func(context.Context, string) (chat.Session, error) {
			return chat.Session{}, errors.New("i/o timeout")
		}, chat.EUnavailable},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			var asked string
			if tc.get != nil {
				f.sessions.GetFn = func(ctx context.Context, h string) (chat.Session, error) { asked = h; return tc.get(ctx, h) }
			}
			s, err := f.svc.Authenticate(context.Background(), tc.token)
			if got := chat.ErrorCode(err); got != tc.code {
				t.Fatalf("got %v, want %q", err, tc.code)
			}
			if tc.get != nil && asked != chat.HashToken(tc.token) {
				t.Errorf("looked up %q, want the token's hash", asked)
			}
			if err == nil && s.Hash != chat.HashToken(token) {
				t.Errorf("session hash %q", s.Hash)
			}
		})
	}
}

func TestLogout(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var deleted string
	f.sessions.DeleteFn = func(_ context.Context, h string) error { deleted = h; return nil }
	f.deliv.DisconnErr = errors.New("a host is unreachable")
	if err := f.svc.Logout(context.Background(), aliceSess); err != nil {
		t.Fatalf("Logout: %v (closing sockets is best effort once the session is gone)", err)
	}
	if deleted != aliceSess.Hash || !slices.Equal(f.deliv.disconnect, []string{aliceSess.Hash}) {
		t.Errorf("deleted %q, disconnected %v", deleted, f.deliv.disconnect)
	}
}

func TestSendValidationOrder(t *testing.T) {
	t.Parallel()
	okID, okBody := "c1", "hello"
	cases := []struct {
		name string
		req  chat.SendRequest
		code string
	}{
		{"bad client_msg_id beats a too-large body", chat.SendRequest{ThreadID: threadID, ClientMsgID: "", Body: strings.Repeat("x", 9000)}, chat.EInvalid},
		{"bad client_msg_id beats a bad thread", chat.SendRequest{ThreadID: "nope", ClientMsgID: "\t", Body: okBody}, chat.EInvalid},
		{"too-large body beats a bad thread", chat.SendRequest{ThreadID: "nope", ClientMsgID: okID, Body: strings.Repeat("x", 8193)}, chat.ETooLarge},
		{"empty body", chat.SendRequest{ThreadID: threadID, ClientMsgID: okID, Body: ""}, chat.EInvalid},
		{"NUL body", chat.SendRequest{ThreadID: threadID, ClientMsgID: okID, Body: "\x00"}, chat.EInvalid},
		{"malformed thread is not_member", chat.SendRequest{ThreadID: "nope", ClientMsgID: okID, Body: okBody}, chat.ENotMember},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t) // CreateMessageFn unset: the store must not be called
			_, err := f.svc.Send(context.Background(), aliceSess, tc.req)
			if got := chat.ErrorCode(err); got != tc.code {
				t.Fatalf("got %v, want %s", err, tc.code)
			}
			if calls := f.limiter.Calls(); len(calls) != 0 {
				t.Errorf("an invalid send took rate-limit tokens: %v", calls)
			}
		})
	}

	t.Run("rate limited: nothing stored", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		f.limiter.AllowFn = func(key string) (bool, time.Duration, error) {
			if key != "send:"+aliceUser.ID {
				t.Errorf("limiter key %q", key)
			}
			return false, 50 * time.Millisecond, nil
		}
		_, err := f.svc.Send(context.Background(), aliceSess, chat.SendRequest{ThreadID: threadID, ClientMsgID: okID, Body: okBody})
		if chat.ErrorCode(err) != chat.ERateLimited {
			t.Fatalf("got %v, want rate_limited", err)
		}
	})

	t.Run("stored after validation and the limiter", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		f.threads.CreateMessageFn = func(_ context.Context, m chat.NewMessage) (chat.Stored, error) {
			want := chat.NewMessage{ThreadID: threadID, SenderID: aliceUser.ID, ClientMsgID: okID, Body: okBody}
			if m != want {
				t.Errorf("CreateMessage(%+v), want %+v", m, want)
			}
			if calls := f.limiter.Calls(); !slices.Equal(calls, []string{"allow send:" + aliceUser.ID}) {
				t.Errorf("limiter calls before storing: %v", calls)
			}
			return chat.Stored{Message: chat.Message{ID: "m1", Seq: 1}, Created: true, Members: []string{aliceUser.ID, bobUser.ID}}, nil
		}
		st, err := f.svc.Send(context.Background(), aliceSess, chat.SendRequest{ThreadID: threadID, ClientMsgID: okID, Body: okBody})
		if err != nil || !st.Created {
			t.Fatalf("Send = %+v, %v", st, err)
		}
	})

	t.Run("store errors", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct {
			err  error
			code string
		}{
			{chat.Errorf(chat.ENotMember, "not a member"), chat.ENotMember},
			{errors.New("pq: deadlock detected"), chat.EUnavailable},
			{context.DeadlineExceeded, chat.EUnavailable},
		} {
			f := newFixture(t)
			f.threads.CreateMessageFn = func(context.Context, chat.NewMessage) (chat.Stored, error) { return chat.Stored{}, tc.err }
			_, err := f.svc.Send(context.Background(), aliceSess, chat.SendRequest{ThreadID: threadID, ClientMsgID: okID, Body: okBody})
			if chat.ErrorCode(err) != tc.code {
				t.Errorf("store error %v became %v, want %s", tc.err, err, tc.code)
			}
		}
	})
}

// TestDeliverRepeats: a repeat's first send may have committed without its fan-out (a
// killed host, an answer lost with the database link), so the repeat is delivered
// again; sockets drop what they have by seq. A client_msg_id first used in another
// thread answers with that thread's message, which must not go to this thread's
// members.
func TestDeliverRepeats(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	m := chat.Message{ID: "m1", ThreadID: threadID, Seq: 1}
	f.threads.CreateMessageFn = func(context.Context, chat.NewMessage) (chat.Stored, error) {
		return chat.Stored{Message: m, Created: false, Members: []string{aliceUser.ID, bobUser.ID}}, nil
	}
	st, err := f.svc.Send(context.Background(), aliceSess, chat.SendRequest{ThreadID: threadID, ClientMsgID: "c1", Body: "hello"})
	if err != nil {
		t.Fatal(err)
	}
	f.svc.Deliver(context.Background(), st, "conn")
	if len(f.deliv.delivered) != 1 || !slices.Equal(f.deliv.recipients[0], []string{aliceUser.ID, bobUser.ID}) {
		t.Fatalf("a repeat in its own thread: delivered %+v to %v, want m1 to alice and bob", f.deliv.delivered, f.deliv.recipients)
	}

	other := chat.Message{ID: "m0", ThreadID: "01890000-0000-7000-8000-0000000000f2", Seq: 4}
	f.threads.CreateMessageFn = func(context.Context, chat.NewMessage) (chat.Stored, error) {
		return chat.Stored{Message: other, Created: false, Members: []string{aliceUser.ID, bobUser.ID}}, nil
	}
	st, err = f.svc.Send(context.Background(), aliceSess, chat.SendRequest{ThreadID: threadID, ClientMsgID: "c1", Body: "hello"})
	if err != nil || st.Message.ID != other.ID {
		t.Fatalf("repeat of another thread's id answered %+v, %v; want its first message", st.Message, err)
	}
	f.svc.Deliver(context.Background(), st, "conn")
	if len(f.deliv.delivered) != 1 {
		t.Fatalf("another thread's message went to this thread's members: %+v to %v", f.deliv.delivered[1:], f.deliv.recipients[1:])
	}
}

func TestCreateThreadUnknownUsers(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.users.ByUsernameFn = func(_ context.Context, names []string) ([]chat.User, error) {
		var out []chat.User
		for _, n := range names {
			switch n {
			case "alice":
				out = append(out, aliceUser)
			case "bob":
				out = append(out, bobUser)
			}
		}
		return out, nil
	}
	_, err := f.svc.CreateThread(context.Background(), aliceSess, "t", []string{"ghost", "BOB", "not valid!", "Ghost2", "ghost"})
	e := chat.AsError(err)
	if e == nil || e.Code != chat.EUnknownUser {
		t.Fatalf("got %v, want unknown_user", err)
	}
	names, _ := e.Details["usernames"].([]string)
	sort.Strings(names)
	if want := []string{"ghost", "ghost2", "not valid!"}; !slices.Equal(names, want) {
		t.Errorf("details.usernames %v, want %v (each unknown once)", names, want)
	}

	f.threads.CreateThreadFn = func(_ context.Context, nt chat.NewThread) (chat.Thread, error) {
		if !slices.Equal(nt.MemberIDs, []string{aliceUser.ID, bobUser.ID}) || nt.CreatedBy != aliceUser.ID {
			t.Errorf("CreateThread(%+v): want the creator first, then bob once", nt)
		}
		return chat.Thread{ID: threadID}, nil
	}
	if _, err := f.svc.CreateThread(context.Background(), aliceSess, "t", []string{"bob", "Bob", "alice"}); err != nil {
		t.Fatalf("CreateThread: %v", err)
	}
}

func TestHistoryValidation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		id   string
		q    chat.HistoryQuery
		code string
	}{
		{"limit over 200", threadID, chat.HistoryQuery{Limit: 201}, chat.EInvalid},
		{"negative limit", threadID, chat.HistoryQuery{Limit: -1}, chat.EInvalid},
		{"negative after", threadID, chat.HistoryQuery{AfterSeq: -1}, chat.EInvalid},
		{"negative before", threadID, chat.HistoryQuery{BeforeSeq: -1}, chat.EInvalid},
		{"both", threadID, chat.HistoryQuery{AfterSeq: 1, BeforeSeq: 5}, chat.EInvalid},
		{"malformed thread", "x", chat.HistoryQuery{}, chat.ENotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t) // no store call allowed
			if _, _, err := f.svc.History(context.Background(), aliceSess, tc.id, tc.q); chat.ErrorCode(err) != tc.code {
				t.Fatalf("got %v, want %s", err, tc.code)
			}
		})
	}

	t.Run("default limit 50, non-member is not found", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		member := true
		f.threads.MembershipFn = func(context.Context, string, string) (chat.Membership, error) {
			if !member {
				return chat.Membership{}, chat.Errorf(chat.ENotFound, "no such thread")
			}
			return chat.Membership{}, nil
		}
		f.threads.MessagesAfterFn = func(_ context.Context, _ string, after, upTo int64, limit int) ([]chat.Message, bool, error) {
			if after != 0 || upTo != 0 || limit != 50 {
				t.Errorf("MessagesAfter(after %d, upTo %d, limit %d)", after, upTo, limit)
			}
			return nil, false, nil
		}
		f.threads.MessagesBeforeFn = func(_ context.Context, _ string, before int64, limit int) ([]chat.Message, bool, error) {
			if before != 7 || limit != 3 {
				t.Errorf("MessagesBefore(before %d, limit %d)", before, limit)
			}
			return nil, false, nil
		}
		if _, _, err := f.svc.History(context.Background(), aliceSess, threadID, chat.HistoryQuery{}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := f.svc.History(context.Background(), aliceSess, threadID, chat.HistoryQuery{BeforeSeq: 7, Limit: 3}); err != nil {
			t.Fatal(err)
		}
		member = false
		if _, _, err := f.svc.History(context.Background(), aliceSess, threadID, chat.HistoryQuery{}); chat.ErrorCode(err) != chat.ENotFound {
			t.Fatalf("non-member: %v, want not_found", err)
		}
	})
}

func TestMembershipRules(t *testing.T) {
	t.Parallel()
	th := chat.Thread{ID: threadID, CreatedBy: aliceUser.ID, Members: []chat.User{aliceUser, bobUser}}
	bobSess := chat.Session{UserID: bobUser.ID, Username: "bob"}
	carol := chat.User{ID: "01890000-0000-7000-8000-00000000000c", Username: "carol"}
	newF := func(t *testing.T) *fixture {
		f := newFixture(t)
		f.threads.ThreadForMemberFn = func(_ context.Context, id, userID string) (chat.Thread, error) {
			if userID == aliceUser.ID || userID == bobUser.ID {
				return th, nil
			}
			return chat.Thread{}, chat.Errorf(chat.ENotFound, "no such thread")
		}
		return f
	}
	outsider := chat.Session{UserID: carol.ID, Username: "carol"}

	t.Run("add", func(t *testing.T) {
		t.Parallel()
		f := newF(t)
		if _, err := f.svc.AddMember(context.Background(), bobSess, threadID, "carol"); chat.ErrorCode(err) != chat.EForbidden {
			t.Errorf("member adds: %v, want forbidden", err)
		}
		if _, err := f.svc.AddMember(context.Background(), outsider, threadID, "carol"); chat.ErrorCode(err) != chat.ENotFound {
			t.Errorf("outsider adds: %v, want not_found", err)
		}
		f.users.ByUsernameFn = func(context.Context, []string) ([]chat.User, error) { return nil, nil }
		if _, err := f.svc.AddMember(context.Background(), aliceSess, threadID, "ghost"); chat.ErrorCode(err) != chat.EUnknownUser {
			t.Errorf("unknown user: %v, want unknown_user", err)
		}
	})

	t.Run("remove", func(t *testing.T) {
		t.Parallel()
		f := newF(t)
		var removed []string
		f.threads.RemoveMemberFn = func(_ context.Context, _, userID string) error { removed = append(removed, userID); return nil }
		if err := f.svc.RemoveMember(context.Background(), bobSess, threadID, aliceUser.ID); chat.ErrorCode(err) != chat.EForbidden {
			t.Errorf("member removes the creator: %v, want forbidden", err)
		}
		if err := f.svc.RemoveMember(context.Background(), outsider, threadID, bobUser.ID); chat.ErrorCode(err) != chat.ENotFound {
			t.Errorf("outsider removes: %v, want not_found", err)
		}
		if err := f.svc.RemoveMember(context.Background(), aliceSess, threadID, carol.ID); chat.ErrorCode(err) != chat.ENotFound {
			t.Errorf("creator removes a non-member: %v, want not_found", err)
		}
		if err := f.svc.RemoveMember(context.Background(), bobSess, threadID, bobUser.ID); err != nil {
			t.Errorf("bob leaves: %v", err)
		}
		if err := f.svc.RemoveMember(context.Background(), aliceSess, threadID, bobUser.ID); err != nil {
			t.Errorf("creator removes bob: %v", err)
		}
		if !slices.Equal(removed, []string{bobUser.ID, bobUser.ID}) {
			t.Errorf("removed %v", removed)
		}
	})
}

// bucketLimiter is a token bucket per key with no refill, as the failed-login limit
// behaves within its window.
type bucketLimiter struct {
	mu     sync.Mutex
	burst  int
	tokens map[string]int
}

func (b *bucketLimiter) Allow(_ context.Context, key string, _ float64, _ int, n int) (bool, time.Duration, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.tokens[key]; !ok {
		b.tokens[key] = b.burst
	}
	if b.tokens[key] < n {
		return false, time.Minute, nil
	}
	b.tokens[key] -= n
	return true, 0, nil
}

func (b *bucketLimiter) Refund(_ context.Context, key string, _ float64, _ int, n int) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.tokens[key] = min(b.burst, b.tokens[key]+n)
	return nil
}

// aliceOnly knows alice, with password "alice-password", and may be asked concurrently.
type aliceOnly struct{ chat.UserStore }

func (aliceOnly) UserCredentials(context.Context, string) (chat.User, string, error) {
	return aliceUser, "hash:alice-password", nil
}

// slowHasher compares like fakeHasher, taking as long as bcrypt would.
type slowHasher struct {
	fakeHasher
	compares atomic.Int32
}

func (h *slowHasher) Compare(hash, p string) error {
	h.compares.Add(1)
	time.Sleep(50 * time.Millisecond)
	if hash != "hash:"+p {
		return errors.New("mismatch")
	}
	return nil
}

// TestLoginFailuresCappedUnderConcurrency: 20 wrong passwords for one username at once
// get at most 5 guesses compared (contract section 8: 5 failed logins per 15 minutes);
// the rest are answered rate_limited. The failure used to be counted only after the
// comparison, so every attempt that arrived during one was compared.
func TestLoginFailuresCappedUnderConcurrency(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.svc.Users = aliceOnly{}
	hasher := &slowHasher{}
	f.svc.Hasher = hasher
	f.svc.Limiter = &bucketLimiter{burst: 5, tokens: map[string]int{"auth:192.0.2.1": 1000}}
	var wg sync.WaitGroup
	codes := make([]string, 20)
	for i := range codes {
		wg.Go(func() {
			_, err := f.svc.Login(context.Background(), "192.0.2.1", "alice", "wrong-password")
			codes[i] = chat.ErrorCode(err)
		})
	}
	wg.Wait()
	if n := hasher.compares.Load(); n > 5 {
		t.Errorf("%d passwords compared for 20 concurrent attempts, want at most 5", n)
	}
	limited := 0
	for _, c := range codes {
		if c == chat.ERateLimited {
			limited++
		}
	}
	if limited < 15 {
		t.Errorf("%d of 20 answered rate_limited, want at least 15: %v", limited, codes)
	}
	// The right password is still refused now: the five failures are spent.
	if _, err := f.svc.Login(context.Background(), "192.0.2.1", "alice", "alice-password"); chat.ErrorCode(err) != chat.ERateLimited {
		t.Errorf("right password after five failures: %v, want rate_limited", err)
	}
}
