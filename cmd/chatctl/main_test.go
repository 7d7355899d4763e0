package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/switchboard-chat/switchboard/pkg/chat"
	"github.com/switchboard-chat/switchboard/pkg/cluster"
	"github.com/switchboard-chat/switchboard/pkg/dbtest"
	"github.com/switchboard-chat/switchboard/pkg/hosttest"
	"github.com/switchboard-chat/switchboard/pkg/postgres"
	"github.com/switchboard-chat/switchboard/pkg/redis"
)

func TestMain(m *testing.M) {
	goredis.SetLogger(silentRedisLog{}) // as main does
	os.Exit(m.Run())
}

// fixture is one test's stores, seeded through the product's own store code, and the
// environment chatctl runs with.
type fixture struct {
	t      *testing.T
	env    map[string]string
	client goredis.UniversalClient
	prefix string
	rs     *redis.Store // real clock, same prefix as chatctl
	db     *postgres.DB // nil without a database
}

// newFixture gives the test a Redis prefix of its own and, with withDB, a fresh
// migrated database.
func newFixture(t *testing.T, withDB bool) *fixture {
	t.Helper()
	client, prefix := dbtest.NewRedis(t)
	redisURL := os.Getenv("TEST_REDIS_URL")
	if redisURL == "" {
		redisURL = dbtest.DefaultRedisURL
	}
	f := &fixture{
		t:      t,
		env:    map[string]string{"CHAT_REDIS_URL": redisURL, "CHAT_REDIS_PREFIX": prefix},
		client: client,
		prefix: prefix,
		rs:     redis.New(client, redis.Config{Prefix: prefix}, nil),
	}
	if withDB {
		dbURL := dbtest.NewDatabaseURL(t)
		db, err := postgres.OpenURL(context.Background(), dbURL, postgres.Config{MaxOpenConns: 4, Now: new(tickClock).Now}, nil)
		if err != nil {
			t.Fatalf("open database: %v", err)
		}
		t.Cleanup(func() { _ = db.Close() })
		f.db = db
		f.env["CHAT_DATABASE_URL"] = dbURL
	}
	return f
}

// tickClock moves 1 ms forward on every reading, so "newest activity first" has one
// right answer.
type tickClock struct{ ticks atomic.Int64 }

func (c *tickClock) Now() time.Time {
	return time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC).Add(time.Duration(c.ticks.Add(1)) * time.Millisecond)
}

// getenv reads only the fixture's environment, never the process's.
func (f *fixture) getenv(name string) string { return f.env[name] }

// run calls chatctl's run and returns its status, stdout and stderr.
func (f *fixture) run(args ...string) (int, string, string) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := run(ctx, args, f.getenv, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// heartbeat registers a host as if its last heartbeat were at `at`.
func (f *fixture) heartbeat(h chat.Host, at time.Time) {
	f.t.Helper()
	if err := f.beat(h, at, time.Second); err != nil {
		f.t.Fatal(err)
	}
}

// beat is heartbeat for any goroutine, with the ttl the heartbeat script judges the
// previous registration by (a refresh by the same instance within ttl publishes
// nothing).
func (f *fixture) beat(h chat.Host, at time.Time, ttl time.Duration) error {
	rs := redis.New(f.client, redis.Config{Prefix: f.prefix, Now: func() time.Time { return at }}, nil)
	if _, err := rs.Heartbeat(context.Background(), h, ttl); err != nil {
		return fmt.Errorf("heartbeat %s: %w", h.HostID, err)
	}
	return nil
}

func (f *fixture) user(name string) chat.User {
	f.t.Helper()
	u, err := f.db.CreateUser(context.Background(), name, "not-a-real-hash")
	if err != nil {
		f.t.Fatalf("create user %s: %v", name, err)
	}
	return u
}

// wantJSON checks that out is exactly one line holding exactly the JSON value want.
func wantJSON(t *testing.T, out, want string) {
	t.Helper()
	if strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\n") {
		t.Fatalf("want exactly one line of JSON, got %q", out)
	}
	var got, exp any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("stdout is not JSON: %v: %q", err, out)
	}
	if err := json.Unmarshal([]byte(want), &exp); err != nil {
		t.Fatalf("bad expectation %q: %v", want, err)
	}
	if !reflect.DeepEqual(got, exp) {
		t.Fatalf("JSON mismatch\n got: %s\nwant: %s", strings.TrimSpace(out), want)
	}
}

// wantOneLine checks stderr is one line containing each of parts.
func wantOneLine(t *testing.T, stderr string, parts ...string) {
	t.Helper()
	if strings.Count(stderr, "\n") != 1 {
		t.Fatalf("want one line on stderr, got %q", stderr)
	}
	for _, p := range parts {
		if !strings.Contains(stderr, p) {
			t.Fatalf("stderr %q lacks %q", stderr, p)
		}
	}
}

func ts(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// checkFor polls f until it returns nil, failing with its last error after timeout.
func checkFor(t testing.TB, timeout, interval time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", timeout, err)
		}
		time.Sleep(interval)
	}
}

func TestUsage(t *testing.T) {
	t.Parallel()
	f := &fixture{t: t, env: map[string]string{}}
	tests := []struct {
		name   string
		args   []string
		code   int
		stderr string // substring
		stdout string // substring
	}{
		{name: "no command", args: nil, code: 2, stderr: "missing command"},
		{name: "unknown command", args: []string{"frobnicate"}, code: 2, stderr: `unknown command "frobnicate"`},
		{name: "unknown command with json", args: []string{"--json", "frobnicate"}, code: 2, stderr: "usage: chatctl"},
		{name: "missing user", args: []string{"presence", "--json"}, code: 2, stderr: "presence: missing USER"},
		{name: "missing token", args: []string{"session"}, code: 2, stderr: "session: missing TOKEN"},
		{name: "missing host", args: []string{"connections"}, code: 2, stderr: "connections: missing HOST"},
		{name: "extra argument", args: []string{"hosts", "h1"}, code: 2, stderr: "hosts takes no argument"},
		{name: "two tokens", args: []string{"session", "tok-one-XYZZY", "tok-two-XYZZY"}, code: 2, stderr: "session takes one TOKEN"},
		{name: "bad json value", args: []string{"--json=maybe", "hosts"}, code: 2, stderr: "--json takes true or false"},
		{name: "flag without value", args: []string{"hosts", "--redis-url"}, code: 2, stderr: "needs a value"},
		{name: "unknown flag", args: []string{"--frob", "hosts"}, code: 2, stderr: "unknown flag --frob"},
		{name: "two tokens as flags", args: []string{"session", "-XYZZY-token", "-XYZZY-other"}, code: 2, stderr: "put -- before a TOKEN"},
		{name: "a token starting with - is the TOKEN", args: []string{"session", "-XYZZY-token"}, code: 2, stderr: "CHAT_REDIS_URL"},
		{name: "bad flag value", args: []string{"hosts", "--host-ttl", "soon"}, code: 2, stderr: "CHAT_HOST_TTL"},
		{name: "redis not configured", args: []string{"hosts"}, code: 2, stderr: "CHAT_REDIS_URL"},
		{name: "database not configured", args: []string{"pending", "alice"}, code: 2, stderr: "CHAT_DATABASE_URL"},
		{name: "secret not configured", args: []string{"connections", "http://127.0.0.1:1"}, code: 2, stderr: "CHAT_CLUSTER_SECRET is required"},
		{name: "help", args: []string{"help"}, code: 0, stdout: "usage: chatctl"},
		{name: "--help", args: []string{"--help"}, code: 0, stdout: "presence USER"},
		{name: "-h after command", args: []string{"presence", "-h"}, code: 0, stdout: "usage: chatctl"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := f.run(tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr %q", code, tc.code, stderr)
			}
			if !strings.Contains(stderr, tc.stderr) || !strings.Contains(stdout, tc.stdout) {
				t.Fatalf("stdout %q / stderr %q, want %q / %q", stdout, stderr, tc.stdout, tc.stderr)
			}
			if strings.Contains(stderr+stdout, "XYZZY") {
				t.Fatalf("a token was printed: %q", stderr)
			}
			if tc.code == 0 && stderr != "" {
				t.Fatalf("stderr on success: %q", stderr)
			}
		})
	}
}

func TestStoreUnreachable(t *testing.T) {
	t.Parallel()
	f := &fixture{t: t, env: map[string]string{
		"CHAT_REDIS_URL":    "redis://:hunter2-password@127.0.0.1:1/0",
		"CHAT_DATABASE_URL": "postgres://postgres:hunter2-password@127.0.0.1:1/none?sslmode=disable",
	}}
	for _, args := range [][]string{
		{"hosts", "--startup-timeout", "200ms"},
		{"--json", "pending", "alice", "--startup-timeout=200ms"},
		{"watch", "--startup-timeout", "200ms"},
	} {
		t.Run(args[0], func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			code, stdout, stderr := f.run(args...)
			if code != 1 || stdout != "" {
				t.Fatalf("exit %d, stdout %q; want 1 and nothing", code, stdout)
			}
			wantOneLine(t, stderr, "unreachable", "127.0.0.1:1")
			if strings.Contains(stderr, "hunter2") {
				t.Fatalf("a password was printed: %q", stderr)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("took %v to give up", d)
			}
		})
	}
}

func TestPresence(t *testing.T) {
	t.Parallel()
	f := newFixture(t, true)
	ctx := context.Background()
	alice, bob := f.user("alice"), f.user("bob")

	now := time.Now().UTC()
	f.heartbeat(chat.Host{HostID: "h1", InternalURL: "http://10.0.0.1:9080", Instance: "i1"}, now)
	// h2 is dead; with a one-minute TTL h1 stays live however slow the test runs.
	f.heartbeat(chat.Host{HostID: "h2", InternalURL: "http://10.0.0.2:9080", Instance: "i2"}, now.Add(-10*time.Minute))
	f.env["CHAT_HOST_TTL"] = "1m"
	t1, t2 := now.Add(-2*time.Hour), now.Add(-time.Hour)
	err := f.rs.AddConnections(ctx, []chat.Connection{
		{UserID: alice.ID, HostID: "h1", ConnID: "c-live-2", Since: t2, Instance: "i1"},
		{UserID: alice.ID, HostID: "h1", ConnID: "c-live-1", Since: t1, Instance: "i1"},
		{UserID: alice.ID, HostID: "h2", ConnID: "c-dead-host", Since: t1, Instance: "i2"},
		{UserID: alice.ID, HostID: "h1", ConnID: "c-old-instance", Since: t1, Instance: "i0"},
		{UserID: alice.ID, HostID: "h9", ConnID: "c-unknown-host", Since: t1, Instance: "i9"},
		{UserID: bob.ID, HostID: "h2", ConnID: "c-bob-dead", Since: t1, Instance: "i2"},
	})
	if err != nil {
		t.Fatal(err)
	}

	aliceJSON := fmt.Sprintf(`{"user":{"id":%q,"username":"alice"},"connections":[`+
		`{"host_id":"h1","conn_id":"c-live-1","since":%q},`+
		`{"host_id":"h1","conn_id":"c-live-2","since":%q}]}`, alice.ID, ts(t1), ts(t2))
	bobJSON := fmt.Sprintf(`{"user":{"id":%q,"username":"bob"},"connections":[]}`, bob.ID)

	tests := []struct {
		name string
		args []string
		want string
	}{
		{"json before", []string{"--json", "presence", "alice"}, aliceJSON},
		{"json after", []string{"presence", "alice", "--json"}, aliceJSON},
		{"json between", []string{"presence", "--json", "ALICE"}, aliceJSON},
		{"single dash json", []string{"-json", "presence", "Alice"}, aliceJSON},
		{"no live connection", []string{"presence", "bob", "--json"}, bobJSON},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := f.run(tc.args...)
			if code != 0 || stderr != "" {
				t.Fatalf("exit %d, stderr %q", code, stderr)
			}
			wantJSON(t, stdout, tc.want)
		})
	}

	t.Run("table", func(t *testing.T) {
		t.Parallel()
		code, stdout, stderr := f.run("presence", "alice")
		if code != 0 || stderr != "" {
			t.Fatalf("exit %d, stderr %q", code, stderr)
		}
		for _, want := range []string{"alice", "2 live connections", "HOST", "CONN ID", "SINCE", "c-live-1", "c-live-2",
			t1.Format(time.RFC3339), "3 stale entries"} {
			if !strings.Contains(stdout, want) {
				t.Errorf("table lacks %q:\n%s", want, stdout)
			}
		}
		for _, stale := range []string{"c-dead-host", "c-old-instance", "c-unknown-host"} {
			if strings.Contains(stdout, stale) {
				t.Errorf("table shows stale entry %s:\n%s", stale, stdout)
			}
		}
	})

	t.Run("unknown user", func(t *testing.T) {
		t.Parallel()
		for _, name := range []string{"nobody", "x"} { // "x" is too short to exist
			code, stdout, stderr := f.run("--json", "presence", name)
			if code != 1 || stdout != "" {
				t.Fatalf("%s: exit %d stdout %q, want 1 and nothing", name, code, stdout)
			}
			wantOneLine(t, stderr, "no such user")
		}
	})

	t.Run("host ttl decides liveness", func(t *testing.T) {
		t.Parallel()
		// With a twenty-minute TTL (the flag beats the env), h2 is alive again.
		code, stdout, _ := f.run("presence", "bob", "--json", "--host-ttl", "20m")
		if code != 0 {
			t.Fatalf("exit %d", code)
		}
		wantJSON(t, stdout, fmt.Sprintf(`{"user":{"id":%q,"username":"bob"},"connections":[{"host_id":"h2","conn_id":"c-bob-dead","since":%q}]}`, bob.ID, ts(t1)))
	})
}

func TestHosts(t *testing.T) {
	t.Parallel()
	f := newFixture(t, false)
	now := time.Now().UTC()
	f.heartbeat(chat.Host{HostID: "h1", InternalURL: "http://10.0.0.1:9080", Instance: "i1"}, now)
	f.heartbeat(chat.Host{HostID: "h0", InternalURL: "http://10.0.0.9:9080", Instance: "i0"}, now.Add(-500*time.Millisecond))
	f.heartbeat(chat.Host{HostID: "h2", InternalURL: "http://10.0.0.2:9080", Instance: "i2"}, now.Add(-10*time.Minute))
	f.env["CHAT_HOST_TTL"] = "1m" // so the live ones stay live however slow the test runs

	want := fmt.Sprintf(`{"hosts":[`+
		`{"host_id":"h0","internal_url":"http://10.0.0.9:9080","last_heartbeat":%q},`+
		`{"host_id":"h1","internal_url":"http://10.0.0.1:9080","last_heartbeat":%q}]}`,
		ts(now.Add(-500*time.Millisecond)), ts(now))

	for _, args := range [][]string{{"--json", "hosts"}, {"hosts", "--json"}, {"hosts", "--json=true"}} {
		code, stdout, stderr := f.run(args...)
		if code != 0 || stderr != "" {
			t.Fatalf("%v: exit %d, stderr %q", args, code, stderr)
		}
		wantJSON(t, stdout, want)
	}

	code, stdout, _ := f.run("hosts", "--json=false")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "HOST") {
		t.Fatalf("want a header and three hosts:\n%s", stdout)
	}
	for i, want := range [][]string{{"h0", "live"}, {"h1", "live", "http://10.0.0.1:9080", now.Format(time.RFC3339)}, {"h2", "STALE"}} {
		for _, w := range want {
			if !strings.Contains(lines[i+1], w) {
				t.Errorf("line %q lacks %q", lines[i+1], w)
			}
		}
	}

	t.Run("config file", func(t *testing.T) {
		// The settings may come from chatd's YAML file too.
		path := filepath.Join(t.TempDir(), "chatd.yaml")
		yaml := fmt.Sprintf("redis_url: %s\nredis_prefix: %q\nhost_ttl: 1m\n", f.env["CHAT_REDIS_URL"], f.prefix)
		if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		g := &fixture{t: t, env: map[string]string{}}
		code, stdout, stderr := g.run("--config", path, "hosts", "--json")
		if code != 0 {
			t.Fatalf("exit %d, stderr %q", code, stderr)
		}
		wantJSON(t, stdout, want)
	})

	t.Run("none live", func(t *testing.T) {
		g := newFixture(t, false)
		g.heartbeat(chat.Host{HostID: "h2", InternalURL: "http://10.0.0.2:9080", Instance: "i2"}, now.Add(-time.Minute))
		code, stdout, _ := g.run("hosts", "--json")
		if code != 0 {
			t.Fatalf("exit %d", code)
		}
		wantJSON(t, stdout, `{"hosts":[]}`)
	})
}

func TestSession(t *testing.T) {
	t.Parallel()
	f := newFixture(t, false)
	ctx := context.Background()
	const token = "tok_XYZZY_0123456789abcdef"
	created := time.Now().UTC().Add(-time.Hour)
	expires := created.Add(744 * time.Hour)
	sess := chat.Session{UserID: chat.NewID(), Username: "alice", CreatedAt: created, ExpiresAt: expires}
	if err := f.rs.CreateSession(ctx, chat.HashToken(token), sess, time.Hour); err != nil {
		t.Fatal(err)
	}
	const dashToken = "-XYZZY-starts-with-a-dash"
	if err := f.rs.CreateSession(ctx, chat.HashToken(dashToken), sess, time.Hour); err != nil {
		t.Fatal(err)
	}
	const expiredToken = "tok_XYZZY_expired"
	old := chat.Session{UserID: sess.UserID, Username: "alice", CreatedAt: created.Add(-800 * time.Hour), ExpiresAt: created.Add(-56 * time.Hour)}
	if err := f.rs.CreateSession(ctx, chat.HashToken(expiredToken), old, time.Hour); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf(`{"session":{"user_id":%q,"username":"alice","created_at":%q,"expires_at":%q}}`, sess.UserID, ts(created), ts(expires))

	for _, args := range [][]string{{"--json", "session", token}, {"session", token, "--json"}, {"session", "--json", "--", dashToken}, {"session", dashToken, "--json"}, {"--json", "session", dashToken}} {
		code, stdout, stderr := f.run(args...)
		if code != 0 || stderr != "" {
			t.Fatalf("exit %d, stderr %q", code, stderr)
		}
		wantJSON(t, stdout, want)
	}

	code, stdout, stderr := f.run("session", token)
	if code != 0 || !strings.Contains(stdout, "alice") || !strings.Contains(stdout, expires.Format(time.RFC3339)) {
		t.Fatalf("exit %d, table %q, stderr %q", code, stdout, stderr)
	}
	if strings.Contains(stdout, "XYZZY") || strings.Contains(stdout, chat.HashToken(token)) {
		t.Fatalf("the token or its hash was printed: %q", stdout)
	}

	for _, missing := range []string{"tok_XYZZY_never_issued", expiredToken} {
		code, stdout, stderr := f.run("--json", "session", missing)
		if code != 1 || stdout != "" {
			t.Fatalf("exit %d, stdout %q; want 1 and nothing", code, stdout)
		}
		wantOneLine(t, stderr, "no such session")
		if strings.Contains(stderr, "XYZZY") {
			t.Fatalf("the token was printed: %q", stderr)
		}
	}
}

func TestPending(t *testing.T) {
	t.Parallel()
	f := newFixture(t, true)
	ctx := context.Background()
	alice, bob, carol := f.user("alice"), f.user("bob"), f.user("carol")
	f.user("dave") // in no thread

	thread := func(name string, members ...chat.User) chat.Thread {
		ids := []string{}
		for _, m := range members {
			ids = append(ids, m.ID)
		}
		th, err := f.db.CreateThread(ctx, chat.NewThread{Name: name, CreatedBy: members[0].ID, MemberIDs: ids})
		if err != nil {
			t.Fatal(err)
		}
		return th
	}
	send := func(th chat.Thread, from chat.User, n int) {
		for i := 0; i < n; i++ {
			if _, err := f.db.CreateMessage(ctx, chat.NewMessage{ThreadID: th.ID, SenderID: from.ID, ClientMsgID: chat.NewID(), Body: "hi"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	quiet := thread("quiet", alice, bob)
	general := thread("general", alice, bob)
	pair := thread("pair", carol, alice)
	send(general, bob, 3)
	send(pair, carol, 2)
	if err := f.db.Ack(ctx, []chat.AckUpdate{{ThreadID: general.ID, UserID: alice.ID, Seq: 2}}); err != nil {
		t.Fatal(err)
	}

	// Newest activity first: pair, general, quiet.
	want := fmt.Sprintf(`{"user":{"id":%q,"username":"alice"},"threads":[`+
		`{"thread_id":%q,"name":"pair","acked_seq":0,"last_seq":2,"pending":2},`+
		`{"thread_id":%q,"name":"general","acked_seq":2,"last_seq":3,"pending":1},`+
		`{"thread_id":%q,"name":"quiet","acked_seq":0,"last_seq":0,"pending":0}]}`,
		alice.ID, pair.ID, general.ID, quiet.ID)
	for _, args := range [][]string{{"--json", "pending", "alice"}, {"pending", "Alice", "--json"}} {
		code, stdout, stderr := f.run(args...)
		if code != 0 || stderr != "" {
			t.Fatalf("exit %d, stderr %q", code, stderr)
		}
		wantJSON(t, stdout, want)
	}

	code, stdout, _ := f.run("pending", "dave", "--json")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	wantJSON(t, stdout, fmt.Sprintf(`{"user":{"id":%q,"username":"dave"},"threads":[]}`, f.mustUser("dave").ID))

	code, stdout, _ = f.run("pending", "alice")
	if code != 0 || !strings.Contains(stdout, "3 messages not acked in 3 threads") || !strings.Contains(stdout, "PENDING") || !strings.Contains(stdout, general.ID) {
		t.Fatalf("exit %d, table:\n%s", code, stdout)
	}

	code, stdout, stderr := f.run("pending", "nobody")
	if code != 1 || stdout != "" {
		t.Fatalf("exit %d stdout %q", code, stdout)
	}
	wantOneLine(t, stderr, `no such user "nobody"`)
}

func (f *fixture) mustUser(name string) chat.User {
	f.t.Helper()
	us, err := f.db.UsersByUsername(context.Background(), []string{name})
	if err != nil || len(us) != 1 {
		f.t.Fatalf("user %s: %v %v", name, us, err)
	}
	return us[0]
}

// fakeHub is the part of a socket hub the internal listener needs; only Connections
// answers anything.
type fakeHub struct{ conns []chat.Connection }

func (h *fakeHub) DeliverMessage(context.Context, *chat.Message, []chat.Recipient, string) []chat.DeliveryResult {
	return nil
}

func (h *fakeHub) DeliverTyping(string, string, []chat.Recipient, string) []chat.DeliveryResult {
	return nil
}
func (h *fakeHub) DisconnectSession(string) int          { return 0 }
func (h *fakeHub) DisconnectUser(string) int             { return 0 }
func (h *fakeHub) Connections() []chat.Connection        { return h.conns }
func (h *fakeHub) Repair(context.Context, string, int64) {}

func TestConnections(t *testing.T) {
	t.Parallel()
	f := newFixture(t, false)
	const secret = "0123456789abcdef0123456789abcdef-cluster-XYZZY"
	t1 := time.Date(2030, 1, 2, 3, 4, 5, 600, time.UTC)
	t2 := t1.Add(time.Minute)
	hub := &fakeHub{conns: []chat.Connection{
		{UserID: "u-bob", HostID: "h1", ConnID: "c2", Since: t2, Instance: "i1"},
		{UserID: "u-alice", HostID: "h1", ConnID: "c1", Since: t1, Instance: "i1"},
	}}
	srv := httptest.NewServer(cluster.NewInternalHandler(hub, cluster.NewSigner(secret), false, slog.New(slog.DiscardHandler)))
	t.Cleanup(srv.Close)
	f.heartbeat(chat.Host{HostID: "h1", InternalURL: srv.URL, Instance: "i1"}, time.Now())
	f.env["CHAT_CLUSTER_SECRET"] = secret
	f.env["CHAT_HOST_TTL"] = "1h" // h1 stays live however slow the test runs

	want := fmt.Sprintf(`{"internal_url":%q,"connections":[`+
		`{"user_id":"u-alice","host_id":"h1","conn_id":"c1","since":%q},`+
		`{"user_id":"u-bob","host_id":"h1","conn_id":"c2","since":%q}]}`, srv.URL, ts(t1), ts(t2))

	t.Run("by host id or url", func(t *testing.T) {
		t.Parallel()
		for _, args := range [][]string{{"connections", "h1", "--json"}, {"--json", "connections", srv.URL + "/"}} {
			code, stdout, stderr := f.run(args...)
			if code != 0 || stderr != "" {
				t.Fatalf("%v: exit %d, stderr %q", args, code, stderr)
			}
			wantJSON(t, stdout, want)
		}
	})

	t.Run("url without redis", func(t *testing.T) {
		t.Parallel()
		g := &fixture{t: t, env: map[string]string{"CHAT_CLUSTER_SECRET": secret}}
		code, stdout, stderr := g.run("connections", srv.URL, "--json")
		if code != 0 {
			t.Fatalf("exit %d, stderr %q", code, stderr)
		}
		wantJSON(t, stdout, want)
		// A host id needs the registry.
		code, _, stderr = g.run("connections", "h1")
		if code != 2 || !strings.Contains(stderr, "CHAT_REDIS_URL") {
			t.Fatalf("exit %d, stderr %q; want 2 naming CHAT_REDIS_URL", code, stderr)
		}
	})

	t.Run("table", func(t *testing.T) {
		t.Parallel()
		code, stdout, _ := f.run("connections", "h1")
		if code != 0 || !strings.Contains(stdout, "2 connections") || !strings.Contains(stdout, "u-alice") || !strings.Contains(stdout, t2.Format(time.RFC3339)) {
			t.Fatalf("exit %d, table:\n%s", code, stdout)
		}
		if strings.Contains(stdout, "XYZZY") {
			t.Fatal("the secret was printed")
		}
	})

	t.Run("unknown host", func(t *testing.T) {
		t.Parallel()
		code, stdout, stderr := f.run("--json", "connections", "h7")
		if code != 1 || stdout != "" {
			t.Fatalf("exit %d stdout %q", code, stdout)
		}
		wantOneLine(t, stderr, `no host "h7"`)
	})

	t.Run("host refuses a wrong secret", func(t *testing.T) {
		t.Parallel()
		g := &fixture{t: t, env: map[string]string{"CHAT_CLUSTER_SECRET": "another-secret-of-at-least-32-bytes-XYZZY"}}
		code, stdout, stderr := g.run("connections", srv.URL)
		if code != 1 || stdout != "" {
			t.Fatalf("exit %d stdout %q", code, stdout)
		}
		wantOneLine(t, stderr, "401", "bad_signature", "CHAT_CLUSTER_SECRET")
		if strings.Contains(stderr, "XYZZY") {
			t.Fatalf("the secret was printed: %q", stderr)
		}
	})

	t.Run("unsigned call refused", func(t *testing.T) {
		t.Parallel()
		req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, srv.URL+cluster.PathConnections, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("unsigned GET answered %d, want 401", resp.StatusCode)
		}
	})

	t.Run("short secret", func(t *testing.T) {
		t.Parallel()
		g := &fixture{t: t, env: map[string]string{"CHAT_CLUSTER_SECRET": "short"}}
		code, _, stderr := g.run("connections", srv.URL)
		if code != 2 || !strings.Contains(stderr, "at least 32 bytes") {
			t.Fatalf("exit %d, stderr %q", code, stderr)
		}
	})

	t.Run("unreachable host", func(t *testing.T) {
		t.Parallel()
		g := &fixture{t: t, env: map[string]string{"CHAT_CLUSTER_SECRET": secret}}
		code, _, stderr := g.run("connections", "http://127.0.0.1:1")
		if code != 1 {
			t.Fatalf("exit %d", code)
		}
		wantOneLine(t, stderr, "127.0.0.1:1")
	})
}

// syncBuffer is written from run's goroutine while the test reads.
type syncBuffer = hosttest.LogBuffer

// watching runs `chatctl args...` in a goroutine until stop is called, which returns
// its exit status. It returns once chatctl is subscribed to the event channel.
func (f *fixture) watching(args ...string) (stdout, stderr *syncBuffer, stop func() int) {
	f.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stdout, stderr = &syncBuffer{}, &syncBuffer{}
	done := make(chan int, 1)
	go func() { done <- run(ctx, args, f.getenv, stdout, stderr) }()
	stopped := false
	stop = func() int {
		f.t.Helper()
		if stopped {
			return 0
		}
		stopped = true
		cancel()
		select {
		case code := <-done:
			return code
		case <-time.After(10 * time.Second):
			f.t.Fatal("watch did not end 10 s after its context")
			return -1
		}
	}
	f.t.Cleanup(func() { stop() })
	channel := f.prefix + "presence-events" // keys.go
	checkFor(f.t, 10*time.Second, 10*time.Millisecond, func() error {
		n, err := f.client.PubSubNumSub(context.Background(), channel).Result()
		if err != nil {
			return err
		}
		if n[channel] != 1 {
			select {
			case code := <-done:
				return fmt.Errorf("watch ended with %d: %s", code, stderr.String())
			default:
			}
			return fmt.Errorf("%d subscribers to %s", n[channel], channel)
		}
		return nil
	})
	return stdout, stderr, stop
}

// lines decodes the JSON lines written so far.
func jsonLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var ls []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %q is not JSON: %v", l, err)
		}
		ls = append(ls, m)
	}
	return ls
}

// count returns how many lines match every key of want.
func count(ls []map[string]any, want map[string]any) int {
	n := 0
	for _, l := range ls {
		ok := true
		for k, v := range want {
			if l[k] != v {
				ok = false
			}
		}
		if ok {
			n++
		}
	}
	return n
}

func TestWatch(t *testing.T) {
	t.Parallel()
	f := newFixture(t, true)
	ctx := context.Background()
	alice := f.user("alice")
	// A short TTL so that hosts go stale within the test; the heartbeat interval
	// must stay below it.
	f.env["CHAT_HOST_TTL"] = "1s"
	f.env["CHAT_HEARTBEAT_INTERVAL"] = "100ms"
	stays := chat.Host{HostID: "h-stays", InternalURL: "http://10.0.0.6:9080", Instance: "i6"}
	back := chat.Host{HostID: "h-back", InternalURL: "http://10.0.0.4:9080", Instance: "i4"}
	// h-back is stale when watch starts; h-stays is live throughout.
	f.heartbeat(back, time.Now().Add(-10*time.Second))
	f.heartbeat(stays, time.Now())

	// Like a host, beat every 100 ms: h-stays always, h-back once revived (with a
	// long script ttl, so that its own instance's refresh publishes no event).
	var (
		beatMu     sync.Mutex
		beatBack   bool
		beatsDone  = make(chan struct{})
		stopBeats  = make(chan struct{})
		beatFailed atomic.Value
	)
	go func() {
		defer close(beatsDone)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopBeats:
				return
			case <-tick.C:
			}
			beatMu.Lock()
			err := f.beat(stays, time.Now(), time.Second)
			if err == nil && beatBack {
				err = f.beat(back, time.Now(), time.Hour)
			}
			beatMu.Unlock()
			if err != nil {
				beatFailed.Store(err)
			}
		}
	}()
	t.Cleanup(func() { close(stopBeats); <-beatsDone })

	stdout, stderr, stop := f.watching("--json", "watch")

	// connect and disconnect, named from the database.
	conn := chat.Connection{UserID: alice.ID, HostID: "h-stays", ConnID: "c1", Instance: "i6"}
	if err := f.rs.AddConnections(ctx, []chat.Connection{conn}); err != nil {
		t.Fatal(err)
	}
	if err := f.rs.RemoveConnections(ctx, []chat.Connection{conn}); err != nil {
		t.Fatal(err)
	}
	// h-new's first heartbeat publishes host_up; nothing beats it again, so it goes
	// stale a second later, which only the registry shows: host_down is derived.
	if _, err := f.rs.Heartbeat(ctx, chat.Host{HostID: "h-new", InternalURL: "http://10.0.0.5:9080", Instance: "i5"}, time.Second); err != nil {
		t.Fatal(err)
	}
	// h-back's own instance beats again: no event is published, yet it is live
	// again: host_up is derived.
	beatMu.Lock()
	beatBack = true
	beatMu.Unlock()

	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		ls := jsonLines(t, stdout.String())
		for _, want := range []map[string]any{
			{"type": "connect", "user_id": alice.ID, "username": "alice", "conn_id": "c1", "host_id": "h-stays"},
			{"type": "disconnect", "user_id": alice.ID, "username": "alice", "conn_id": "c1", "host_id": "h-stays"},
			{"type": "host_up", "host_id": "h-new"},
			{"type": "host_up", "host_id": "h-back"},
			{"type": "host_down", "host_id": "h-new"},
		} {
			if n := count(ls, want); n != 1 {
				return fmt.Errorf("%d lines match %v in:\n%s", n, want, stdout.String())
			}
		}
		return nil
	})
	// A drained host removes itself and publishes host_down; the registry shows it
	// gone too: one line.
	beatMu.Lock()
	beatBack = false
	beatMu.Unlock()
	if err := f.rs.RemoveHost(ctx, "h-back"); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if n := count(jsonLines(t, stdout.String()), map[string]any{"type": "host_down", "host_id": "h-back"}); n != 1 {
			return fmt.Errorf("%d host_down lines for h-back in:\n%s", n, stdout.String())
		}
		return nil
	})
	// Let more than one poll pass: nothing may be printed twice, h-stays never changed.
	time.Sleep(pollEvery + 300*time.Millisecond)

	if code := stop(); code != 0 {
		t.Fatalf("watch exited %d after cancel; stderr %q", code, stderr.String())
	}
	if err, _ := beatFailed.Load().(error); err != nil {
		t.Fatal(err)
	}
	out := stdout.String()
	ls := jsonLines(t, out)
	if len(ls) != 6 {
		t.Fatalf("want 6 lines, got %d:\n%s", len(ls), out)
	}
	for _, l := range ls {
		if l["host_id"] == "h-stays" && strings.HasPrefix(fmt.Sprint(l["type"]), "host_") {
			t.Fatalf("h-stays never changed, yet: %v", l)
		}
		at := fmt.Sprint(l["at"])
		if _, err := time.Parse(time.RFC3339Nano, at); err != nil || !strings.HasSuffix(at, "Z") {
			t.Fatalf("at %q is not RFC 3339 UTC", at)
		}
	}
	if stderr.String() != "" {
		t.Fatalf("stderr: %q", stderr.String())
	}
}

func TestWatchText(t *testing.T) {
	t.Parallel()
	f := newFixture(t, false) // no database: user ids only
	stdout, stderr, stop := f.watching("watch")
	ev := chat.Connection{UserID: "u-123", HostID: "h1", ConnID: "c9", Instance: "i1"}
	if err := f.rs.AddConnections(context.Background(), []chat.Connection{ev}); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		out := stdout.String()
		if !strings.Contains(out, "connect") || !strings.Contains(out, "user u-123") || !strings.Contains(out, "conn c9") || !strings.Contains(out, "host h1") {
			return fmt.Errorf("no connect line in %q", out)
		}
		return nil
	})
	if code := stop(); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if strings.Count(stdout.String(), "\n") != 1 {
		t.Fatalf("want one line, got %q", stdout.String())
	}
	if !strings.Contains(stderr.String(), "Ctrl-C") {
		t.Fatalf("stderr %q", stderr.String())
	}
}
