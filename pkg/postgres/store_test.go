package postgres_test

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/pkg/chat"
	"github.com/switchboard-chat/switchboard/pkg/dbtest"
	"github.com/switchboard-chat/switchboard/pkg/postgres"
)

// clock is a test clock that moves 1 ms forward on every reading, so that every write
// gets a distinct time and "newest first" has one right answer.
type clock struct{ ticks atomic.Int64 }

var clockStart = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func (c *clock) Now() time.Time {
	return clockStart.Add(time.Duration(c.ticks.Add(1)) * time.Millisecond)
}

// backend opens a fresh, migrated store of one dialect for one test.
type backend struct {
	name string
	open func(tb testing.TB) *postgres.DB
}

var backends = []backend{
	{"postgres", openPostgres},
	{"sqlite", openSQLite},
}

// forEachBackend runs test once per dialect, in parallel, each on its own database:
// the same store code must behave the same on PostgreSQL and on `chatd dev`'s SQLite.
func forEachBackend(t *testing.T, test func(t *testing.T, db *postgres.DB)) {
	t.Helper()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			test(t, b.open(t))
		})
	}
}

func openPostgres(tb testing.TB) *postgres.DB {
	tb.Helper()
	dbURL := dbtest.NewDatabaseURL(tb)
	db, err := postgres.OpenURL(context.Background(), dbURL, postgres.Config{MaxOpenConns: 10, Now: new(clock).Now}, nil)
	if err != nil {
		tb.Fatalf("open postgres: %v", err)
	}
	tb.Cleanup(func() { _ = db.Close() })
	return db
}

func openSQLite(tb testing.TB) *postgres.DB {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "chat.db")
	db, err := postgres.OpenSQLite(context.Background(), path, postgres.Config{Now: new(clock).Now}, nil)
	if err != nil {
		tb.Fatalf("open sqlite: %v", err)
	}
	tb.Cleanup(func() { _ = db.Close() })
	if err := db.Migrate(context.Background()); err != nil {
		tb.Fatalf("migrate sqlite: %v", err)
	}
	return db
}

func mustUser(tb testing.TB, db *postgres.DB, name string) chat.User {
	tb.Helper()
	u, err := db.CreateUser(context.Background(), name, "hash-of-"+name)
	if err != nil {
		tb.Fatalf("create user %s: %v", name, err)
	}
	return u
}

func mustThread(tb testing.TB, db *postgres.DB, name string, creator chat.User, members ...chat.User) chat.Thread {
	tb.Helper()
	ids := make([]string, 0, len(members))
	for _, m := range members {
		ids = append(ids, m.ID)
	}
	th, err := db.CreateThread(context.Background(), chat.NewThread{Name: name, CreatedBy: creator.ID, MemberIDs: ids})
	if err != nil {
		tb.Fatalf("create thread %s: %v", name, err)
	}
	return th
}

func mustSend(tb testing.TB, db *postgres.DB, threadID string, sender chat.User, body string) chat.Message {
	tb.Helper()
	st, err := db.CreateMessage(context.Background(), chat.NewMessage{
		ThreadID: threadID, SenderID: sender.ID, ClientMsgID: chat.NewID(), Body: body,
	})
	if err != nil {
		tb.Fatalf("send %q: %v", body, err)
	}
	if !st.Created {
		tb.Fatalf("send %q: Created is false for a new client_msg_id", body)
	}
	return st.Message
}

func mustMembership(tb testing.TB, db *postgres.DB, threadID string, u chat.User) chat.Membership {
	tb.Helper()
	m, err := db.Membership(context.Background(), threadID, u.ID)
	if err != nil {
		tb.Fatalf("membership of %s: %v", u.Username, err)
	}
	return m
}

// wantCode fails unless err carries the chat error code want.
func wantCode(tb testing.TB, err error, want string) {
	tb.Helper()
	if got := chat.ErrorCode(err); got != want {
		tb.Fatalf("error code = %q (%v), want %q", got, err, want)
	}
}

func usernames(us []chat.User) []string {
	out := make([]string, 0, len(us))
	for _, u := range us {
		out = append(out, u.Username)
	}
	return out
}
