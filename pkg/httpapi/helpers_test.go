package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/switchboard-chat/switchboard/pkg/hosttest"
)

// testPassword is every test user's password.
const testPassword = "correct horse battery"

// testServer is one in-process socket host (both roles) on a fresh PostgreSQL database
// and a Redis key prefix of its own, reached over real HTTP.
type testServer struct {
	*hosttest.Host
	Redis  goredis.UniversalClient
	Prefix string

	names atomic.Int64
}

// newServer starts a host with hosttest's settings (see hosttest.Stores.Start); env
// overrides any setting. The host is drained and stopped when the test ends.
func newServer(t *testing.T, env map[string]string) *testServer {
	t.Helper()
	h := hosttest.Start(t, hosttest.Options{Env: env})
	return &testServer{Host: h, Redis: h.Stores.Redis, Prefix: h.Stores.Prefix}
}

type (
	// call is one HTTP request of a test.
	call = hosttest.Request
	// reply is a server's answer, fully read.
	reply = hosttest.Reply
	// apiError is the contract's error body.
	apiError = hosttest.APIError
)

// tryJSON is try that expects status and decodes the answer into v.
func (s *testServer) tryJSON(c call, status int, v any) error {
	r, err := s.Try(c)
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

// Wire shapes of the contract.
type (
	apiUser     = hosttest.User
	apiThread   = hosttest.Thread
	apiMessage  = hosttest.Message
	loginAnswer = hosttest.LoginAnswer
	apiPresence struct {
		UserID   string  `json:"user_id"`
		Online   bool    `json:"online"`
		LastSeen *string `json:"last_seen"`
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
	return s.Register(tb, username, testPassword)
}

// login logs username in and returns the answer.
func (s *testServer) login(tb testing.TB, username string) loginAnswer {
	tb.Helper()
	return s.Login(tb, username, testPassword)
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
	return s.NewThread(tb, owner.Token, name, names...)
}

// thread fetches one thread as u sees it.
func (s *testServer) thread(tb testing.TB, u testUser, id string) apiThread {
	tb.Helper()
	r := s.Do(tb, call{Method: "GET", Path: "/api/v1/threads/" + id, Token: u.Token})
	hosttest.WantStatus(tb, r, http.StatusOK)
	var out struct {
		Thread apiThread `json:"thread"`
	}
	r.Decode(tb, &out)
	return out.Thread
}

// send posts a message with a fresh client_msg_id and fails unless it answers 201.
func (s *testServer) send(tb testing.TB, u testUser, threadID, body string) apiMessage {
	tb.Helper()
	return s.Send(tb, u.Token, threadID, body)
}

// history lists messages with query (e.g. "?limit=5") and fails unless it answers 200.
func (s *testServer) history(tb testing.TB, u testUser, threadID, query string) historyAnswer {
	tb.Helper()
	r := s.Do(tb, call{Method: "GET", Path: "/api/v1/threads/" + threadID + "/messages" + query, Token: u.Token})
	hosttest.WantStatus(tb, r, http.StatusOK)
	var out historyAnswer
	r.Decode(tb, &out)
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
	r := s.Do(tb, call{Method: "GET", Path: "/api/v1/threads", Token: u.Token})
	hosttest.WantStatus(tb, r, http.StatusOK)
	var out struct {
		Threads []apiThread `json:"threads"`
	}
	r.Decode(tb, &out)
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
