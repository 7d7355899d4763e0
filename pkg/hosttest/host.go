// Package hosttest starts real in-process Switchboard hosts (pkg/host) on fresh stores
// from pkg/dbtest and talks to them over real HTTP. It is for tests only: no product
// code may import it.
package hosttest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"golang.org/x/crypto/bcrypt"

	"github.com/switchboard-chat/switchboard/pkg/chat"
	"github.com/switchboard-chat/switchboard/pkg/config"
	"github.com/switchboard-chat/switchboard/pkg/dbtest"
	"github.com/switchboard-chat/switchboard/pkg/host"
	"github.com/switchboard-chat/switchboard/pkg/internal/syncbuf"
	"github.com/switchboard-chat/switchboard/pkg/password"
	"github.com/switchboard-chat/switchboard/pkg/postgres"
	"github.com/switchboard-chat/switchboard/pkg/redis"
)

// Stores are one test's stores: a fresh PostgreSQL database, a Redis key prefix of its
// own and one cluster secret. Every host started on them shares them.
type Stores struct {
	DatabaseURL string
	RedisURL    string
	Redis       goredis.UniversalClient
	Prefix      string
	// Secret is the cluster secret of every host started on the stores.
	Secret string
}

// NewStores creates fresh stores, dropped when the test ends.
func NewStores(tb testing.TB) *Stores {
	tb.Helper()
	rdb, prefix := dbtest.NewRedis(tb)
	dbURL := dbtest.NewDatabaseURL(tb)
	redisURL := os.Getenv("TEST_REDIS_URL")
	if redisURL == "" {
		redisURL = dbtest.DefaultRedisURL
	}
	return &Stores{DatabaseURL: dbURL, RedisURL: redisURL, Redis: rdb, Prefix: prefix, Secret: RandomHex(32)}
}

// Options tune a host.
type Options struct {
	// Name names the host in failure messages; "host" when empty.
	Name string
	// Env overrides any setting of the harness (see Stores.Start).
	Env map[string]string
	// Hasher hashes passwords; nil means bcrypt at its minimum cost.
	Hasher chat.PasswordHasher
}

// Host is one running in-process host (both roles), reached over real TCP.
type Host struct {
	Name        string
	URL         string // http://127.0.0.1:port
	Addr        string // 127.0.0.1:port, the Host a client sends
	InternalURL string // http://127.0.0.1:port of the internal listener
	HostID      string
	Host        *host.Host
	// DB is the host's database handle; closing it simulates PostgreSQL going away.
	DB *postgres.DB
	// Stores are the stores the host runs on.
	Stores *Stores
	// Logs holds the host's log lines; they are printed when the test fails.
	Logs *LogBuffer
	// Client sends the requests of Do and Try; it follows no redirects.
	Client *http.Client
	// Stop drains the host and waits for Run to return (at most once; cleanup calls it).
	Stop func()
}

// Start creates fresh stores and starts one host on them (see Stores.Start).
func Start(tb testing.TB, o Options) *Host {
	tb.Helper()
	return NewStores(tb).Start(tb, o)
}

// Start starts one more host on the stores. Settings are production's except: loopback
// listeners on free ports, bcrypt at its minimum cost, a per-address auth limit high
// enough for the many registrations of one test (tests of that limit set it back), a
// 3 s drain and debug logs (JSON when CHAT_LOG_FORMAT is json). o.Env overrides any of
// them. Start returns once the host is ready; the host is drained and stopped when the
// test ends.
func (s *Stores) Start(tb testing.TB, o Options) *Host {
	tb.Helper()
	vars := map[string]string{
		"CHAT_HOST_ID":               "test-" + RandomHex(6),
		"CHAT_PUBLIC_ADDR":           "127.0.0.1:0",
		"CHAT_INTERNAL_ADDR":         "127.0.0.1:0",
		"CHAT_DATABASE_URL":          s.DatabaseURL,
		"CHAT_REDIS_URL":             s.RedisURL,
		"CHAT_REDIS_PREFIX":          s.Prefix,
		"CHAT_CLUSTER_SECRET":        s.Secret,
		"CHAT_BCRYPT_COST":           "4",
		"CHAT_LIMIT_AUTH_PER_MINUTE": "1000000",
		"CHAT_DRAIN_TIMEOUT":         "3s",
		"CHAT_LOG_LEVEL":             "debug",
	}
	for k, v := range o.Env {
		vars[k] = v
	}
	cfg, err := config.Load("test", nil, func(k string) string { return vars[k] }, io.Discard)
	if err != nil {
		tb.Fatalf("config.Load: %v", err)
	}
	if err := cfg.Validate(config.Requirements{Stores: true}); err != nil {
		tb.Fatalf("config.Validate: %v", err)
	}
	hasher := o.Hasher
	if hasher == nil {
		hasher = password.New(bcrypt.MinCost)
	}
	name := o.Name
	if name == "" {
		name = "host"
	}

	logs := &LogBuffer{}
	var handler slog.Handler = slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})
	if cfg.LogFormat == "json" {
		handler = slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})
	}
	log := slog.New(handler)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := postgres.OpenURL(ctx, s.DatabaseURL, postgres.Config{MaxOpenConns: 10}, log)
	if err != nil {
		tb.Fatalf("open database: %v", err)
	}
	rs := redis.New(s.Redis, redis.Config{Prefix: s.Prefix}, log)
	h, err := host.New(cfg, host.Options{DB: db, Redis: rs, Hasher: hasher}, log)
	if err != nil {
		_ = db.Close()
		tb.Fatalf("host.New: %v", err)
	}
	if err := h.Start(ctx); err != nil {
		_ = db.Close()
		tb.Fatalf("host.Start: %v", err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(runCtx) }()

	n := &Host{
		Name: name, URL: "http://" + h.PublicAddr(), Addr: h.PublicAddr(), InternalURL: "http://" + h.InternalAddr(),
		HostID: cfg.HostID, Host: h, DB: db, Stores: s, Logs: logs,
		Client: &http.Client{
			Transport: &http.Transport{MaxIdleConnsPerHost: 100, MaxConnsPerHost: 100},
			Timeout:   20 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
	}
	var once sync.Once
	n.Stop = func() {
		once.Do(func() {
			stop()
			select {
			case err := <-done:
				if err != nil {
					tb.Errorf("%s: host.Run: %v", n.Name, err)
				}
			case <-time.After(15 * time.Second):
				tb.Errorf("%s: host did not stop within 15s", n.Name)
			}
		})
	}
	// Registered after the stores' cleanups, so it runs before them.
	tb.Cleanup(func() {
		n.Stop()
		n.Client.CloseIdleConnections()
		_ = db.Close()
		if tb.Failed() {
			tb.Logf("%s (%s) log:\n%s", n.Name, n.HostID, logs.String())
		}
	})
	CheckFor(tb, 10*time.Second, 20*time.Millisecond, func() error {
		r, err := n.Try(Request{Method: "GET", Path: "/readyz"})
		if err != nil {
			return err
		}
		if r.Status != http.StatusOK {
			return fmt.Errorf("/readyz answered %d: %s", r.Status, r.Body)
		}
		return nil
	})
	return n
}

// LogBuffer collects a host's log lines while the test reads them.
type LogBuffer = syncbuf.Buffer

// RandomHex returns 2n random hex digits. It takes no testing.TB: crypto/rand.Read
// cannot fail.
func RandomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// CheckFor polls fn every interval until it returns nil, failing the test with fn's
// last error when timeout passes.
func CheckFor(tb testing.TB, timeout, interval time.Duration, fn func() error) {
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
