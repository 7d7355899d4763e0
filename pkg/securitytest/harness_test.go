package securitytest

import (
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx" for the state snapshots
	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
	"golang.org/x/crypto/bcrypt"

	"github.com/switchboard-chat/switchboard/pkg/chat"
	"github.com/switchboard-chat/switchboard/pkg/hosttest"
)

// testPassword is every test user's password; random per run so that the log sweep
// can look for it.
var testPassword = "pw" + hosttest.RandomHex(10)

// chatdBin is the chatd binary TestMain builds, for the tests that exec it.
var chatdBin string

// TestMain builds chatd once, runs the tests, then sweeps every log line every host of
// every test wrote for the secrets the tests handled (tokens, passwords, cluster
// secrets, session hashes), and finally checks that no goroutine outlived the tests.
func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "securitytest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "securitytest:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	chatdBin = filepath.Join(dir, "chatd")
	build := exec.CommandContext(ctx, "go", "build", "-o", chatdBin, "../../cmd/chatd")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	err = build.Run()
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "securitytest: build chatd:", err)
		return 1
	}

	code := m.Run()
	if leaks := watch.sweep(); len(leaks) > 0 {
		fmt.Fprintf(os.Stderr, "securitytest: secrets found in log lines of this run:\n%s\n", strings.Join(leaks, "\n"))
		code = 1
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "securitytest: goroutines outlived the tests: %v\n", err)
			code = 1
		}
	}
	return code
}

// secretWatch collects every secret the tests see and every log the hosts write, for
// the sweep at the end of the run.
type secretWatch struct {
	mu      sync.Mutex
	secrets map[string]string // value -> what it is
	logs    []namedLogs
}

var watch = &secretWatch{secrets: map[string]string{}}

// secret records s (a token, password, secret or hash) as never to be logged.
func (w *secretWatch) secret(what, s string) {
	if len(s) < 8 { // too short to search for without false hits
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.secrets[s] = what
}

// namedLogs is one host's log, named for the sweep's report.
type namedLogs struct {
	name string
	logs *hosttest.LogBuffer
}

// sink adds the log of one host, named name, to those the sweep reads.
func (w *secretWatch) sink(name string, logs *hosttest.LogBuffer) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.logs = append(w.logs, namedLogs{name: name, logs: logs})
}

// sweep returns every log line that holds a recorded secret.
func (w *secretWatch) sweep() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, l := range w.logs {
		out = append(out, findSecrets(l.logs.String(), w.secrets, l.name)...)
	}
	return out
}

// findSecrets returns the lines of text that hold any of secrets, naming the secret.
func findSecrets(text string, secrets map[string]string, where string) []string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		for s, what := range secrets {
			if strings.Contains(line, s) {
				out = append(out, fmt.Sprintf("%s: %s in %q", where, what, line))
			}
		}
	}
	return out
}

// ---- a cluster of in-process hosts on shared stores ------------------------------------

// stack is one test's stores (a fresh database, a fresh Redis prefix, one cluster
// secret) and the hosts started on them, each reached over real TCP.
type stack struct {
	*hosttest.Stores
	sql   *sql.DB
	hosts []*node
	names atomic.Int64
}

// node is one running host.
type node struct {
	*hosttest.Host
	s *stack
}

// newStack creates the stores and starts n hosts with the same settings (env over the
// harness defaults; see addHost).
func newStack(t *testing.T, n int, env map[string]string) *stack {
	t.Helper()
	s := newStores(t)
	for i := 0; i < n; i++ {
		s.addHost(t, env, nil)
	}
	return s
}

// newStores creates the stores of a stack without hosts.
func newStores(t *testing.T) *stack {
	t.Helper()
	stores := hosttest.NewStores(t)
	db, err := sql.Open("pgx", stores.DatabaseURL)
	if err != nil {
		t.Fatalf("open database for snapshots: %v", err)
	}
	db.SetMaxOpenConns(2)
	t.Cleanup(func() { _ = db.Close() })
	s := &stack{Stores: stores, sql: db}
	watch.secret("cluster secret", s.Secret)
	return s
}

// addHost starts one more host on the stack's stores, with hosttest's settings (see
// hosttest.Stores.Start) but for logs as JSON, which the secret sweep reads, and
// passwords hashed by hasher when not nil. env overrides any setting.
func (s *stack) addHost(t *testing.T, env map[string]string, hasher chat.PasswordHasher) *node {
	t.Helper()
	vars := map[string]string{"CHAT_LOG_FORMAT": "json"}
	for k, v := range env {
		vars[k] = v
	}
	h := s.Start(t, hosttest.Options{Name: fmt.Sprintf("host%d", len(s.hosts)+1), Env: vars, Hasher: hasher})
	watch.sink(t.Name()+"/"+h.HostID, h.Logs)
	n := &node{Host: h, s: s}
	s.hosts = append(s.hosts, n)
	return n
}

// h returns the stack's first host.
func (s *stack) h() *node { return s.hosts[0] }

// name returns a username unique in the stack, starting with prefix.
func (s *stack) name(prefix string) string {
	return fmt.Sprintf("%s_%d", prefix, s.names.Add(1))
}

// ---- HTTP ------------------------------------------------------------------------------

type (
	// req is one HTTP request of a test.
	req = hosttest.Request
	// reply is a server's answer, fully read.
	reply = hosttest.Reply
)

func (n *node) do(tb testing.TB, r req) reply {
	tb.Helper()
	rep, err := n.try(r)
	if err != nil {
		tb.Fatal(err)
	}
	return rep
}

// try is do for goroutines other than the test's.
func (n *node) try(r req) (reply, error) {
	return doHTTP(n.Client, n.URL, r)
}

// doHTTP is hosttest.Do that adds every token any test is given to the secrets the
// log sweep looks for.
func doHTTP(client *http.Client, base string, r req) (reply, error) {
	rep, err := hosttest.Do(client, base, r)
	if err != nil {
		return rep, err
	}
	var login struct {
		Token string `json:"token"`
	}
	if json.Unmarshal(rep.Body, &login) == nil && login.Token != "" {
		watch.secret("token", login.Token)
		watch.secret("session hash", chat.HashToken(login.Token))
	}
	return rep, nil
}

// Wire shapes of the contract.
type (
	apiUser     = hosttest.User
	apiThread   = hosttest.Thread
	apiMessage  = hosttest.Message
	loginAnswer = hosttest.LoginAnswer
)

// user is a registered, logged-in user.
type user struct {
	ID       string
	Username string
	Token    string
}

// register registers username with the test password and fails unless that answers 201.
func (n *node) register(tb testing.TB, username string) apiUser {
	tb.Helper()
	return n.Register(tb, username, testPassword)
}

// login logs username in and returns the answer; the token is recorded for the sweep.
func (n *node) login(tb testing.TB, username string) loginAnswer {
	tb.Helper()
	out := n.Login(tb, username, testPassword)
	watch.secret("token", out.Token)
	watch.secret("session hash", chat.HashToken(out.Token))
	return out
}

// newUser registers and logs in a fresh user whose name starts with prefix.
func (n *node) newUser(tb testing.TB, prefix string) user {
	tb.Helper()
	name := n.s.name(prefix)
	u := n.register(tb, name)
	l := n.login(tb, name)
	return user{ID: u.ID, Username: u.Username, Token: l.Token}
}

// session returns u with a fresh token of its own (another login).
func (n *node) session(tb testing.TB, u user) user {
	tb.Helper()
	u.Token = n.login(tb, u.Username).Token
	return u
}

// newThread creates a thread of owner with members.
func (n *node) newThread(tb testing.TB, owner user, name string, members ...user) apiThread {
	tb.Helper()
	names := []string{}
	for _, m := range members {
		names = append(names, m.Username)
	}
	return n.NewThread(tb, owner.Token, name, names...)
}

// send posts a message with a fresh client_msg_id and fails unless it answers 201.
func (n *node) send(tb testing.TB, u user, threadID, body string) apiMessage {
	tb.Helper()
	return n.Send(tb, u.Token, threadID, body)
}

// ---- state snapshots -------------------------------------------------------------------

// state is everything a request could change: every row of every table (by primary
// key, as JSON), the list of tables, and every Redis key under the test's prefix (hash
// fields one entry each) except rate-limit buckets and the hosts' heartbeat times.
type state map[string]string

// snapshot reads the stack's state.
func (s *stack) snapshot(tb testing.TB) state {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st := state{}
	var tables string
	if err := s.sql.QueryRowContext(ctx, `SELECT string_agg(table_name, ',' ORDER BY table_name) FROM information_schema.tables WHERE table_schema = 'public'`).Scan(&tables); err != nil {
		tb.Fatalf("snapshot: list tables: %v", err)
	}
	st["pg/tables"] = tables
	for _, q := range []struct{ table, key string }{
		{"users", "id::text"},
		{"threads", "id::text"},
		{"thread_members", "thread_id::text || '/' || user_id::text"},
		{"messages", "id::text"},
	} {
		rows, err := s.sql.QueryContext(ctx, `SELECT `+q.key+`, row_to_json(t)::text FROM `+q.table+` t`) //nolint:gosec // names from the list above
		if err != nil {
			tb.Fatalf("snapshot %s: %v", q.table, err)
		}
		n := 0
		for rows.Next() {
			var k, v string
			if err := rows.Scan(&k, &v); err != nil {
				tb.Fatalf("snapshot %s: %v", q.table, err)
			}
			st["pg/"+q.table+"/"+k] = v
			n++
		}
		if err := rows.Err(); err != nil {
			tb.Fatalf("snapshot %s: %v", q.table, err)
		}
		_ = rows.Close()
		st["pg/"+q.table+"#count"] = fmt.Sprint(n)
	}

	iter := s.Redis.Scan(ctx, 0, s.Prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		short := strings.TrimPrefix(k, s.Prefix)
		if strings.HasPrefix(short, "ratelimit:") {
			continue
		}
		typ, err := s.Redis.Type(ctx, k).Result()
		if err != nil {
			tb.Fatalf("snapshot: TYPE %s: %v", k, err)
		}
		switch typ {
		case "string":
			v, err := s.Redis.Get(ctx, k).Result()
			if errors.Is(err, goredis.Nil) {
				continue
			} else if err != nil {
				tb.Fatalf("snapshot: GET %s: %v", k, err)
			}
			st["redis/"+short] = v
		case "hash":
			m, err := s.Redis.HGetAll(ctx, k).Result()
			if err != nil {
				tb.Fatalf("snapshot: HGETALL %s: %v", k, err)
			}
			for f, v := range m {
				if short == "hosts" {
					v = withoutHeartbeat(v)
				}
				st["redis/"+short+"/"+f] = v
			}
		case "none":
		default:
			vals, err := s.Redis.Dump(ctx, k).Result()
			if err != nil {
				tb.Fatalf("snapshot: DUMP %s: %v", k, err)
			}
			st["redis/"+short] = typ + ":" + hex.EncodeToString([]byte(vals))
		}
	}
	if err := iter.Err(); err != nil {
		tb.Fatalf("snapshot: SCAN: %v", err)
	}
	return st
}

// withoutHeartbeat drops the fields of a hosts entry that change with every heartbeat.
func withoutHeartbeat(v string) string {
	var m map[string]any
	if json.Unmarshal([]byte(v), &m) != nil {
		return v
	}
	delete(m, "last_heartbeat")
	delete(m, "hb_ms")
	b, _ := json.Marshal(m)
	return string(b)
}

// without returns a copy of st without the entries for which drop is true.
func (st state) without(drop func(k string) bool) state {
	out := make(state, len(st))
	for k, v := range st {
		if !drop(k) {
			out[k] = v
		}
	}
	return out
}

// withoutSocket drops what a socket's own opening and closing change: its presence
// entry and its user's last-seen time.
func (st state) withoutSocket(userID, connID string) state {
	return st.without(func(k string) bool {
		return k == "redis/presence:{"+userID+"}/"+connID || k == "redis/lastseen:{"+userID+"}"
	})
}

// diff lists what changed from before to st.
func (st state) diff(before state) []string {
	var out []string
	for k, v := range before {
		if w, ok := st[k]; !ok {
			out = append(out, "removed "+k+" = "+v)
		} else if w != v {
			out = append(out, "changed "+k+": "+v+" -> "+w)
		}
	}
	for k, v := range st {
		if _, ok := before[k]; !ok {
			out = append(out, "added "+k+" = "+v)
		}
	}
	sort.Strings(out)
	return out
}

// wantUnchanged fails when the state differs from before.
func wantUnchanged(tb testing.TB, before, after state) {
	tb.Helper()
	if d := after.diff(before); len(d) > 0 {
		tb.Errorf("state changed:\n  %s", strings.Join(d, "\n  "))
	}
}

// ---- WebSocket -------------------------------------------------------------------------

// frame is one server frame, decoded.
type frame map[string]any

func (f frame) typ() string { s, _ := f["type"].(string); return s }

func (f frame) str(k string) string { s, _ := f[k].(string); return s }

// wsConn is a test's socket.
type wsConn struct {
	c      *websocket.Conn
	ConnID string
	UserID string
}

// dialOpts tune a dial.
type dialOpts struct {
	Header http.Header
	// RecvBuf sets the client socket's SO_RCVBUF (0: the system's), to make a client
	// that does not read fill up quickly.
	RecvBuf int
}

// tryDial opens /ws on n with token; on a refused upgrade it returns the HTTP answer.
func (n *node) tryDial(token string, o dialOpts) (*websocket.Conn, reply, error) {
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	if o.RecvBuf > 0 {
		nd := &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, o.RecvBuf)
			})
			if err != nil {
				return err
			}
			return serr
		}}
		d.NetDialContext = nd.DialContext
	}
	h := http.Header{}
	for k, v := range o.Header {
		h[k] = v
	}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	c, resp, err := d.Dial("ws://"+n.Addr+"/ws", h)
	var r reply
	if resp != nil {
		r.Status, r.Header = resp.StatusCode, resp.Header
		if resp.Body != nil {
			r.Body, _ = io.ReadAll(resp.Body)
			_ = resp.Body.Close()
		}
	}
	return c, r, err
}

// dial opens /ws as u, reads hello and everything up to synced, and closes the socket
// when the test ends.
func (n *node) dial(tb testing.TB, u user) *wsConn {
	tb.Helper()
	return n.dialWith(tb, u, dialOpts{})
}

func (n *node) dialWith(tb testing.TB, u user, o dialOpts) *wsConn {
	tb.Helper()
	c, r, err := n.tryDial(u.Token, o)
	if err != nil {
		tb.Fatalf("dial /ws on %s: %v (status %d %s)", n.Name, err, r.Status, r.Body)
	}
	tb.Cleanup(func() { _ = c.Close() })
	w := &wsConn{c: c, UserID: u.ID}
	f := w.next(tb)
	if f.typ() != "hello" {
		tb.Fatalf("first frame %v: want hello", f)
	}
	w.ConnID = f.str("conn_id")
	w.until(tb, "synced")
	return w
}

// read returns the next frame, or the error that ended the socket.
func (w *wsConn) read(timeout time.Duration) (frame, error) {
	_ = w.c.SetReadDeadline(time.Now().Add(timeout))
	typ, data, err := w.c.ReadMessage()
	if err != nil {
		return nil, err
	}
	if typ != websocket.TextMessage {
		return nil, fmt.Errorf("server sent a frame of type %d", typ)
	}
	var f frame
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("server frame %q: %w", data, err)
	}
	return f, nil
}

// next returns the next frame or fails.
func (w *wsConn) next(tb testing.TB) frame {
	tb.Helper()
	f, err := w.read(5 * time.Second)
	if err != nil {
		tb.Fatalf("read frame: %v", err)
	}
	return f
}

// until reads frames until one of type typ arrives, and returns it.
func (w *wsConn) until(tb testing.TB, typ string) frame {
	tb.Helper()
	for {
		f := w.next(tb)
		if f.typ() == typ {
			return f
		}
	}
}

// write sends v as a text frame (a string or []byte as is, anything else as JSON).
func (w *wsConn) write(tb testing.TB, v any) {
	tb.Helper()
	var b []byte
	switch x := v.(type) {
	case string:
		b = []byte(x)
	case []byte:
		b = x
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			tb.Fatal(err)
		}
	}
	_ = w.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := w.c.WriteMessage(websocket.TextMessage, b); err != nil {
		tb.Fatalf("write frame: %v", err)
	}
}

// roundTrip sends a ping and returns every frame that arrives before its pong: with
// frames of one socket handled in order, what a previous frame caused.
func (w *wsConn) roundTrip(tb testing.TB) []frame {
	tb.Helper()
	w.write(tb, `{"type":"ping"}`)
	var out []frame
	for {
		f := w.next(tb)
		if f.typ() == "pong" {
			return out
		}
		out = append(out, f)
	}
}

// closeCode reads until the socket ends and returns its close code (-1 when it ended
// without a close frame) and when.
func (w *wsConn) closeCode(timeout time.Duration) (int, time.Time, error) {
	deadline := time.Now().Add(timeout)
	for {
		_ = w.c.SetReadDeadline(deadline)
		_, _, err := w.c.ReadMessage()
		if err == nil {
			continue
		}
		at := time.Now()
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return ce.Code, at, nil
		}
		if time.Now().After(deadline) {
			return 0, at, fmt.Errorf("socket still open after %s", timeout)
		}
		return -1, at, err
	}
}

// wantClose fails unless the socket ends with close code within timeout.
func (w *wsConn) wantClose(tb testing.TB, code int, timeout time.Duration) time.Time {
	tb.Helper()
	got, at, err := w.closeCode(timeout)
	if err != nil || got != code {
		tb.Fatalf("socket ended with code %d (%v), want close %d", got, err, code)
	}
	return at
}

// checkErrorFrame reports how f differs from the error frame with code and ref:
// exactly {type, code, message[, ref]} with a non-empty message.
func checkErrorFrame(f frame, code, ref string) error {
	if f.typ() != "error" {
		return fmt.Errorf("frame %v, want an error frame %s", f, code)
	}
	for k := range f {
		if k != "type" && k != "code" && k != "message" && k != "ref" {
			return fmt.Errorf("error frame %v: unexpected key %q", f, k)
		}
	}
	if f.str("code") != code || f.str("message") == "" || f.str("ref") != ref {
		return fmt.Errorf("error frame %v, want code %q, ref %q and a message", f, code, ref)
	}
	return nil
}

// presenceGone polls until the socket's presence entry is gone from Redis.
func (s *stack) presenceGone(tb testing.TB, w *wsConn) {
	tb.Helper()
	hosttest.CheckFor(tb, 5*time.Second, 10*time.Millisecond, func() error {
		ok, err := s.Redis.HExists(context.Background(), s.Prefix+"presence:{"+w.UserID+"}", w.ConnID).Result()
		if err != nil {
			return err
		}
		if ok {
			return errors.New("presence entry still there")
		}
		return nil
	})
}

// ---- misc ------------------------------------------------------------------------------

// metric returns the value of one Prometheus sample line of n's /metrics, e.g.
// `switchboard_ws_closes_total{code="1013"}` (0 when absent).
func (n *node) metric(tb testing.TB, sample string) float64 {
	tb.Helper()
	r := n.do(tb, req{Method: "GET", Path: "/metrics"})
	for _, line := range strings.Split(string(r.Body), "\n") {
		if rest, ok := strings.CutPrefix(line, sample+" "); ok {
			var v float64
			_, _ = fmt.Sscan(rest, &v)
			return v
		}
	}
	return 0
}

// createUsers inserts n users named prefix_0.. straight into the database (fast: one
// statement), all with the test password at bcrypt's minimum cost, and returns their
// usernames.
func (s *stack) createUsers(tb testing.TB, prefix string, n int) []string {
	tb.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte(testPassword), bcrypt.MinCost)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.sql.ExecContext(ctx, `INSERT INTO users (id, username, password_hash, created_at)
		SELECT gen_random_uuid(), $1 || '_' || i, $2, now() FROM generate_series(0, $3 - 1) AS i`, prefix, string(hash), n); err != nil {
		tb.Fatalf("insert %d users: %v", n, err)
	}
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("%s_%d", prefix, i)
	}
	return names
}
