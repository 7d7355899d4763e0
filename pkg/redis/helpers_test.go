package redis_test

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	goredis "github.com/redis/go-redis/v9"

	"github.com/switchboard-chat/switchboard/pkg/dbtest"
	"github.com/switchboard-chat/switchboard/pkg/redis"
)

// epoch is where test clocks start: recent enough for real Redis TTL arithmetic.
var epoch = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: epoch} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// env is one store under test with what tests need to look behind it.
type env struct {
	Store  *redis.Store
	Client goredis.UniversalClient
	Prefix string
	Clock  *clock
	Mini   *miniredis.Miniredis // nil on real Redis
}

// backend opens a client and a prefix of its own for one test.
type backend struct {
	name string
	open func(t *testing.T) (goredis.UniversalClient, string, *miniredis.Miniredis)
}

var backends = []backend{
	{"redis", func(t *testing.T) (goredis.UniversalClient, string, *miniredis.Miniredis) {
		c, p := dbtest.NewRedis(t)
		return c, p, nil
	}},
	{"miniredis", func(t *testing.T) (goredis.UniversalClient, string, *miniredis.Miniredis) {
		m := miniredis.RunT(t)
		c := goredis.NewClient(&goredis.Options{Addr: m.Addr()})
		t.Cleanup(func() { _ = c.Close() })
		return c, "t:", m
	}},
}

// forEachBackend runs f, in parallel, on real Redis (skipped when it is not there)
// and on miniredis, each with a fresh store and clock.
func forEachBackend(t *testing.T, f func(t *testing.T, e env)) {
	t.Helper()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f(t, newEnv(t, b, redis.Config{}))
		})
	}
}

func newEnv(t *testing.T, b backend, cfg redis.Config) env {
	t.Helper()
	client, prefix, mini := b.open(t)
	clk := newClock()
	cfg.Prefix, cfg.Now = prefix, clk.Now
	return env{Store: redis.New(client, cfg, testLogger(t)), Client: client, Prefix: prefix, Clock: clk, Mini: mini}
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// countingHandler counts records by level.
type countingHandler struct {
	slog.Handler
	warns *atomic.Int64
}

func (h countingHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level == slog.LevelWarn {
		h.warns.Add(1)
	}
	return h.Handler.Handle(ctx, r)
}

// checkFor polls f every interval until it returns nil, failing with its last error
// after timeout.
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
