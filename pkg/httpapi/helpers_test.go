package httpapi_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"golang.org/x/crypto/bcrypt"

	"github.com/switchboard-chat/switchboard/pkg/config"
	"github.com/switchboard-chat/switchboard/pkg/dbtest"
	"github.com/switchboard-chat/switchboard/pkg/host"
	"github.com/switchboard-chat/switchboard/pkg/httpapi"
	"github.com/switchboard-chat/switchboard/pkg/password"
	"github.com/switchboard-chat/switchboard/pkg/postgres"
	"github.com/switchboard-chat/switchboard/pkg/redis"
)

// testPassword is every test user's password.
const testPassword = "correct horse battery"

// testServer is one in-process socket host (both roles) on a fresh PostgreSQL database
// and a Redis key prefix of its own, reached over real HTTP.
type testServer struct {
	URL    string // http://127.0.0.1:port
	Addr   string // 127.0.0.1:port, the Host a client sends
	Redis  goredis.UniversalClient
	Prefix string
	// DB is the host's database handle; closing it simulates PostgreSQL going away.
	DB     *postgres.DB
	HostID string
	// Stop drains the host and waits for Run to return (at most once; cleanup calls it).
	Stop func()

	client *http.Client
	names  atomic.Int64
}

// syncBuffer collects the host's log lines; they are printed only when a test fails.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func randomHex(tb testing.TB, n int) string {
	tb.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		tb.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// newServer starts a host configured like production except: loopback listeners on
// free ports, bcrypt at its minimum cost, and a per-address auth limit high enough for
// the many registrations of one test (tests of that limit set it back). env overrides
// any setting. The host is drained and stopped when the test ends.
func newServer(t *testing.T, env map[string]string) *testServer {
	t.Helper()
	rdb, prefix := dbtest.NewRedis(t)
	dbURL := dbtest.NewDatabaseURL(t)
	redisURL := os.Getenv("TEST_REDIS_URL")
	if redisURL == "" {
		redisURL = dbtest.DefaultRedisURL
	}
	vars := map[string]string{
		"CHAT_HOST_ID":               "test-" + randomHex(t, 6),
		"CHAT_PUBLIC_ADDR":           "127.0.0.1:0",
		"CHAT_INTERNAL_ADDR":         "127.0.0.1:0",
		"CHAT_DATABASE_URL":          dbURL,
		"CHAT_REDIS_URL":             redisURL,
		"CHAT_REDIS_PREFIX":          prefix,
		"CHAT_CLUSTER_SECRET":        randomHex(t, 32),
		"CHAT_BCRYPT_COST":           "4",
		"CHAT_LIMIT_AUTH_PER_MINUTE": "1000000",
		"CHAT_DRAIN_TIMEOUT":         "3s",
		"CHAT_LOG_LEVEL":             "debug",
	}
	for k, v := range env {
		vars[k] = v
	}
	cfg, err := config.Load("test", nil, func(k string) string { return vars[k] }, io.Discard)
	if err != nil {
		t.Fatalf("config.Load: %v", err)
	}
	if err := cfg.Validate(config.Requirements{Stores: true}); err != nil {
		t.Fatalf("config.Validate: %v", err)
	}

	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := postgres.OpenURL(ctx, dbURL, postgres.Config{MaxOpenConns: 10}, log)
	if err != nil {
		t.Fatalf("open database: %v", err)
	}
	rs := redis.New(rdb, redis.Config{Prefix: prefix}, log)

	h, err := host.New(cfg, host.Options{DB: db, Redis: rs, Hasher: password.New(bcrypt.MinCost)}, log)
	if err != nil {
		_ = db.Close()
		t.Fatalf("host.New: %v", err)
	}
	if err := h.Start(ctx); err != nil {
		_ = db.Close()
		t.Fatalf("host.Start: %v", err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(runCtx) }()

	s := &testServer{
		URL:    "http://" + h.PublicAddr(),
		Addr:   h.PublicAddr(),
		Redis:  rdb,
		Prefix: prefix,
		DB:     db,
		HostID: cfg.HostID,
		client: &http.Client{
			Transport: &http.Transport{MaxIdleConnsPerHost: 100, MaxConnsPerHost: 100},
			Timeout:   20 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
	}
	var once sync.Once
	s.Stop = func() {
		once.Do(func() {
			stop()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("host.Run: %v", err)
				}
			case <-time.After(15 * time.Second):
				t.Errorf("host did not stop within 15s")
			}
		})
	}
	// Registered after dbtest's and NewRedis's cleanups, so it runs before them.
	t.Cleanup(func() {
		s.Stop()
		s.client.CloseIdleConnections()
		_ = db.Close()
		if t.Failed() {
			t.Logf("host log:\n%s", logs.String())
		}
	})
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		r := s.do(t, call{Method: "GET", Path: "/readyz"})
		if r.Status != http.StatusOK {
			return fmt.Errorf("/readyz answered %d: %s", r.Status, r.Body)
		}
		return nil
	})
	return s
}

// checkFor polls fn every interval until it returns nil, failing the test with fn's
// last error when timeout passes.
func checkFor(tb testing.TB, timeout, interval time.Duration, fn func() error) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("condition not met within %s: %v", timeout, err)
		}
		time.Sleep(interval)
	}
}

// call is one HTTP request of a test.
type call struct {
	Method string
	Path   string // with the query, e.g. /api/v1/threads/x/messages?limit=5
	// Body is sent as is when a string or []byte, JSON-encoded otherwise; nil sends none.
	Body any
	// ContentType defaults to application/json when there is a body; "none" sends no
	// Content-Type header.
	ContentType string
	Token       string // Authorization: Bearer <Token>
	Cookie      string // chat_session=<Cookie>
	Origin      string
	// Chunked hides the body's length, so the server sees Transfer-Encoding: chunked.
	Chunked bool
	Header  http.Header
}

// reply is a server's answer, fully read.
type reply struct {
	Status  int
	Header  http.Header
	Body    []byte
	Cookies []*http.Cookie
}

func (s *testServer) do(tb testing.TB, c call) reply {
	tb.Helper()
	r, err := s.try(c)
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

// try is do for goroutines other than the test's: it returns what went wrong.
func (s *testServer) try(c call) (reply, error) {
	var body io.Reader
	if c.Body != nil {
		var b []byte
		switch v := c.Body.(type) {
		case string:
			b = []byte(v)
		case []byte:
			b = v
		default:
			var err error
			if b, err = json.Marshal(v); err != nil {
				return reply{}, fmt.Errorf("encode request body: %w", err)
			}
		}
		if c.Chunked {
			body = io.MultiReader(bytes.NewReader(b)) // hides the length
		} else {
			body = bytes.NewReader(b)
		}
	}
	req, err := http.NewRequest(c.Method, s.URL+c.Path, body)
	if err != nil {
		return reply{}, fmt.Errorf("new request: %w", err)
	}
	for k, vs := range c.Header {
		req.Header[k] = vs
	}
	switch {
	case c.ContentType == "none":
	case c.ContentType != "":
		req.Header.Set("Content-Type", c.ContentType)
	case c.Body != nil:
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	if c.Cookie != "" {
		req.AddCookie(&http.Cookie{Name: httpapi.CookieName, Value: c.Cookie})
	}
	if c.Origin != "" {
		req.Header.Set("Origin", c.Origin)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return reply{}, fmt.Errorf("%s %s: %w", c.Method, c.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{}, fmt.Errorf("%s %s: read answer: %w", c.Method, c.Path, err)
	}
	return reply{Status: resp.StatusCode, Header: resp.Header, Body: b, Cookies: resp.Cookies()}, nil
}

// tryJSON is try that expects status and decodes the answer into v.
func (s *testServer) tryJSON(c call, status int, v any) error {
	r, err := s.try(c)
	if err != nil {
		return err
	}
	if r.Status != status {
		return fmt.Errorf("%s %s: status %d, want %d; body %s", c.Method, c.Path, r.Status, status, r.Body)
	}
	if err := json.Unmarshal(r.Body, v); err != nil {
		return fmt.Errorf("%s %s: decode %s: %w", c.Method, c.Path, r.Body, err)
	}
	return nil
}

// decode unmarshals the answer's JSON body into v.
func (r reply) decode(tb testing.TB, v any) {
	tb.Helper()
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		tb.Fatalf("Content-Type %q, want application/json; body %s", ct, r.Body)
	}
	if err := json.Unmarshal(r.Body, v); err != nil {
		tb.Fatalf("decode %s: %v", r.Body, err)
	}
}

// wantStatus fails unless the answer has status.
func wantStatus(tb testing.TB, r reply, status int) {
	tb.Helper()
	if r.Status != status {
		tb.Fatalf("status %d, want %d; body %s", r.Status, status, r.Body)
	}
}

// apiError is the contract's error body.
type apiError struct {
	Code    string         `json:"code"`
	Message string         `json:"message"`
	Details map[string]any `json:"details"`
}

// wantError fails unless the answer has status and is exactly
// {"error":{"code":code,"message":"...non-empty..."[,"details":{...}]}}, and returns it.
func wantError(tb testing.TB, r reply, status int, code string) apiError {
	tb.Helper()
	if r.Status != status {
		tb.Fatalf("status %d, want %d (%s); body %s", r.Status, status, code, r.Body)
	}
	var outer map[string]json.RawMessage
	r.decode(tb, &outer)
	if len(outer) != 1 || outer["error"] == nil {
		tb.Fatalf("error body %s: want exactly one key, error", r.Body)
	}
	var inner map[string]json.RawMessage
	if err := json.Unmarshal(outer["error"], &inner); err != nil {
		tb.Fatalf("error body %s: error is not an object: %v", r.Body, err)
	}
	for k := range inner {
		if k != "code" && k != "message" && k != "details" {
			tb.Fatalf("error body %s: unexpected key %q", r.Body, k)
		}
	}
	var e apiError
	dec := json.NewDecoder(bytes.NewReader(outer["error"]))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		tb.Fatalf("error body %s: %v", r.Body, err)
	}
	if e.Code != code {
		tb.Fatalf("error code %q, want %q; body %s", e.Code, code, r.Body)
	}
	if e.Message == "" {
		tb.Fatalf("error body %s: empty message", r.Body)
	}
	if raw, ok := inner["details"]; ok && (len(raw) == 0 || raw[0] != '{') {
		tb.Fatalf("error body %s: details must be an object", r.Body)
	}
	return e
}

// Wire shapes of the contract.
type (
	apiUser struct {
		ID       string `json:"id"`
		Username string `json:"username"`
	}
	apiThread struct {
		ID        string    `json:"id"`
		Name      string    `json:"name"`
		CreatedBy string    `json:"created_by"`
		Members   []apiUser `json:"members"`
		LastSeq   int64     `json:"last_seq"`
		Unread    int64     `json:"unread"`
		CreatedAt string    `json:"created_at"`
	}
	apiMessage struct {
		ID          string `json:"id"`
		ThreadID    string `json:"thread_id"`
		Seq         int64  `json:"seq"`
		SenderID    string `json:"sender_id"`
		ClientMsgID string `json:"client_msg_id"`
		Body        string `json:"body"`
		CreatedAt   string `json:"created_at"`
	}
	apiPresence struct {
		UserID   string  `json:"user_id"`
		Online   bool    `json:"online"`
		LastSeen *string `json:"last_seen"`
	}
	loginAnswer struct {
		Token     string  `json:"token"`
		User      apiUser `json:"user"`
		ExpiresAt string  `json:"expires_at"`
	}
	historyAnswer struct {
		Messages []apiMessage `json:"messages"`
		HasMore  *bool        `json:"has_more"`
	}
)

// wantUTC fails unless s is an RFC 3339 time in UTC.
func wantUTC(tb testing.TB, what, s string) time.Time {
	tb.Helper()
	ts, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || !strings.HasSuffix(s, "Z") {
		tb.Fatalf("%s = %q: want an RFC 3339 time in UTC (err %v)", what, s, err)
	}
	return ts
}

// testUser is a registered, logged-in user.
type testUser struct {
	ID       string
	Username string
	Token    string
}

// name returns a username unique on this server, starting with prefix.
func (s *testServer) name(prefix string) string {
	return fmt.Sprintf("%s_%d", prefix, s.names.Add(1))
}

// register registers username and fails the test unless that answers 201.
func (s *testServer) register(tb testing.TB, username string) apiUser {
	tb.Helper()
	r := s.do(tb, call{Method: "POST", Path: "/api/v1/auth/register", Body: map[string]string{"username": username, "password": testPassword}})
	wantStatus(tb, r, http.StatusCreated)
	var out struct {
		User apiUser `json:"user"`
	}
	r.decode(tb, &out)
	return out.User
}

// login logs username in and returns the answer.
func (s *testServer) login(tb testing.TB, username string) loginAnswer {
	tb.Helper()
	r := s.do(tb, call{Method: "POST", Path: "/api/v1/auth/login", Body: map[string]string{"username": username, "password": testPassword}})
	wantStatus(tb, r, http.StatusOK)
	var out loginAnswer
	r.decode(tb, &out)
	return out
}

// newUser registers and logs in a fresh user whose name starts with prefix.
func (s *testServer) newUser(tb testing.TB, prefix string) testUser {
	tb.Helper()
	name := s.name(prefix)
	u := s.register(tb, name)
	l := s.login(tb, name)
	return testUser{ID: u.ID, Username: u.Username, Token: l.Token}
}

// newThread creates a thread of owner with members and returns it.
func (s *testServer) newThread(tb testing.TB, owner testUser, name string, members ...testUser) apiThread {
	tb.Helper()
	names := []string{}
	for _, m := range members {
		names = append(names, m.Username)
	}
	r := s.do(tb, call{Method: "POST", Path: "/api/v1/threads", Token: owner.Token, Body: map[string]any{"name": name, "members": names}})
	wantStatus(tb, r, http.StatusCreated)
	var out struct {
		Thread apiThread `json:"thread"`
	}
	r.decode(tb, &out)
	return out.Thread
}

// thread fetches one thread as u sees it.
func (s *testServer) thread(tb testing.TB, u testUser, id string) apiThread {
	tb.Helper()
	r := s.do(tb, call{Method: "GET", Path: "/api/v1/threads/" + id, Token: u.Token})
	wantStatus(tb, r, http.StatusOK)
	var out struct {
		Thread apiThread `json:"thread"`
	}
	r.decode(tb, &out)
	return out.Thread
}

// send posts a message with a fresh client_msg_id and fails unless it answers 201.
func (s *testServer) send(tb testing.TB, u testUser, threadID, body string) apiMessage {
	tb.Helper()
	r := s.do(tb, call{Method: "POST", Path: "/api/v1/threads/" + threadID + "/messages", Token: u.Token,
		Body: map[string]string{"client_msg_id": "c-" + randomHex(tb, 8), "body": body}})
	wantStatus(tb, r, http.StatusCreated)
	var out struct {
		Message apiMessage `json:"message"`
	}
	r.decode(tb, &out)
	return out.Message
}

// history lists messages with query (e.g. "?limit=5") and fails unless it answers 200.
func (s *testServer) history(tb testing.TB, u testUser, threadID, query string) historyAnswer {
	tb.Helper()
	r := s.do(tb, call{Method: "GET", Path: "/api/v1/threads/" + threadID + "/messages" + query, Token: u.Token})
	wantStatus(tb, r, http.StatusOK)
	var out historyAnswer
	r.decode(tb, &out)
	if out.Messages == nil || out.HasMore == nil {
		tb.Fatalf("history %s: want messages (an array) and has_more", r.Body)
	}
	return out
}

// seqs lists the seq of each message.
func seqs(ms []apiMessage) []int64 {
	out := make([]int64, len(ms))
	for i, m := range ms {
		out[i] = m.Seq
	}
	return out
}

// seqRange returns from..to inclusive.
func seqRange(from, to int64) []int64 {
	out := []int64{}
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

// threadIDs lists the ids of ts in order.
func threadIDs(ts []apiThread) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.ID
	}
	return out
}

// listThreads returns GET /threads as u sees it.
func (s *testServer) listThreads(tb testing.TB, u testUser) []apiThread {
	tb.Helper()
	r := s.do(tb, call{Method: "GET", Path: "/api/v1/threads", Token: u.Token})
	wantStatus(tb, r, http.StatusOK)
	var out struct {
		Threads []apiThread `json:"threads"`
	}
	r.decode(tb, &out)
	if out.Threads == nil {
		tb.Fatalf("threads %s: want an array", r.Body)
	}
	return out.Threads
}

// redisDump returns every key under the server's prefix with its value(s) flattened
// to strings.
func (s *testServer) redisDump(tb testing.TB) map[string][]string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out := map[string][]string{}
	iter := s.Redis.Scan(ctx, 0, s.Prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		typ, err := s.Redis.Type(ctx, k).Result()
		if err != nil {
			tb.Fatalf("TYPE %s: %v", k, err)
		}
		var vals []string
		switch typ {
		case "string":
			v, err := s.Redis.Get(ctx, k).Result()
			if err != nil && !errors.Is(err, goredis.Nil) {
				tb.Fatalf("GET %s: %v", k, err)
			}
			vals = []string{v}
		case "hash":
			m, err := s.Redis.HGetAll(ctx, k).Result()
			if err != nil {
				tb.Fatalf("HGETALL %s: %v", k, err)
			}
			for f, v := range m {
				vals = append(vals, f, v)
			}
		case "set":
			vals, err = s.Redis.SMembers(ctx, k).Result()
		case "zset":
			vals, err = s.Redis.ZRange(ctx, k, 0, -1).Result()
		case "list":
			vals, err = s.Redis.LRange(ctx, k, 0, -1).Result()
		case "none": // expired meanwhile
			continue
		default:
			tb.Fatalf("key %s has unexpected type %s", k, typ)
		}
		if err != nil {
			tb.Fatalf("read %s: %v", k, err)
		}
		out[k] = vals
	}
	if err := iter.Err(); err != nil {
		tb.Fatalf("SCAN: %v", err)
	}
	return out
}
