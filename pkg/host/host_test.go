package host_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"
	"golang.org/x/crypto/bcrypt"

	"github.com/switchboard-chat/switchboard/pkg/config"
	"github.com/switchboard-chat/switchboard/pkg/dbtest"
	"github.com/switchboard-chat/switchboard/pkg/host"
	"github.com/switchboard-chat/switchboard/pkg/password"
	"github.com/switchboard-chat/switchboard/pkg/postgres"
	"github.com/switchboard-chat/switchboard/pkg/redis"
)

// TestMain fails the package's tests when a goroutine of a host outlives its Run.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testHost is a host on real stores, configured from vars over a working base, and
// running; stop cancels Run, whose result arrives on done.
type testHost struct {
	h    *host.Host
	db   *postgres.DB
	stop context.CancelFunc
	done chan error
}

func startTestHost(ctx context.Context, t *testing.T, extra map[string]string) *testHost {
	t.Helper()
	rdb, prefix := dbtest.NewRedis(t)
	redisURL := os.Getenv("TEST_REDIS_URL")
	if redisURL == "" {
		redisURL = dbtest.DefaultRedisURL
	}
	vars := map[string]string{
		"CHAT_HOST_ID": "host-test", "CHAT_PUBLIC_ADDR": "127.0.0.1:0", "CHAT_INTERNAL_ADDR": "127.0.0.1:0",
		"CHAT_DATABASE_URL": dbtest.NewDatabaseURL(t), "CHAT_REDIS_URL": redisURL, "CHAT_REDIS_PREFIX": prefix,
		"CHAT_CLUSTER_SECRET": strings.Repeat("k", 32), "CHAT_DRAIN_TIMEOUT": "3s",
	}
	maps.Copy(vars, extra)
	cfg, err := config.Load("test", nil, func(k string) string { return vars[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(config.Requirements{Stores: true}); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	db, err := host.ConnectDB(ctx, cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	h, err := host.New(cfg, host.Options{DB: db, Redis: redis.New(rdb, redis.Config{Prefix: prefix}, nil), Hasher: password.New(bcrypt.MinCost)}, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Start(ctx); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	th := &testHost{h: h, db: db, stop: stop, done: make(chan error, 1)}
	go func() { th.done <- h.Run(runCtx) }()
	return th
}

// waitStopped stops the host and waits for Run to return nil.
func (th *testHost) waitStopped(t *testing.T) {
	t.Helper()
	th.stop()
	select {
	case err := <-th.done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return within 15s")
	}
}

// TestDBMaxConnsBoundsThePool: CHAT_DB_MAX_CONNS is the host's PostgreSQL pool size,
// which operators size against the server's max_connections, and /metrics shows it.
func TestDBMaxConnsBoundsThePool(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	th := startTestHost(ctx, t, map[string]string{"CHAT_DB_MAX_CONNS": "3"})
	defer th.waitStopped(t)
	if got := th.db.PoolStats().MaxOpenConnections; got != 3 {
		t.Errorf("the pool may open %d connections, want CHAT_DB_MAX_CONNS = 3", got)
	}
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+th.h.PublicAddr()+"/metrics", nil)
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"\nswitchboard_db_connections_max 3\n", "\nswitchboard_db_connection_waits_total ", "\nswitchboard_commit_batches_total ", "\nswitchboard_committed_messages_total "} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", strings.TrimSpace(want))
		}
	}
}

// TestRunDrainsAndStops starts a host on real stores, opens a socket, and cancels Run:
// the socket gets 1012, Run returns nil, and (TestMain checks) no goroutine is left.
func TestRunDrainsAndStops(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	th := startTestHost(ctx, t, nil)
	h := th.h

	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	post := func(path, body string) *http.Response {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+h.PublicAddr()+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp := post("/api/v1/auth/register", `{"username":"drained","password":"long enough"}`)
	_ = resp.Body.Close()
	resp = post("/api/v1/auth/login", `{"username":"drained","password":"long enough"}`)
	var tok struct {
		Token string `json:"token"`
	}
	if err := jsonDecode(resp.Body, &tok); err != nil || tok.Token == "" {
		t.Fatalf("login: %v %+v", err, tok)
	}
	_ = resp.Body.Close()
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	ws, resp, err := d.Dial("ws://"+h.PublicAddr()+"/ws", http.Header{"Authorization": {"Bearer " + tok.Token}})
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	defer ws.Close()
	if _, _, err := ws.ReadMessage(); err != nil { // hello
		t.Fatal(err)
	}

	th.stop()
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, _, err := ws.ReadMessage()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.CloseServiceRestart {
			t.Errorf("socket ended with %v, want close 1012", err)
		}
		break
	}
	th.waitStopped(t)
}

func jsonDecode(r io.Reader, v any) error { return json.NewDecoder(r).Decode(v) }
