package redis_test

import (
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	goredis "github.com/redis/go-redis/v9"

	"github.com/switchboard-chat/switchboard/pkg/chat"
	"github.com/switchboard-chat/switchboard/pkg/redis"
)

// limitStep is one limiter call after advancing the clock.
type limitStep struct {
	advance   time.Duration
	peek      bool
	n         int
	wantOK    bool
	wantRetry time.Duration
}

// limiterCases run on Redis, on miniredis and on the local fallback alike. The
// bucket refills 0.5 tokens a second (one every 2 s) and holds 3.
var limiterCases = []struct {
	name  string
	steps []limitStep
}{
	{"burst then refusal", []limitStep{
		{n: 1, wantOK: true}, {n: 1, wantOK: true}, {n: 1, wantOK: true},
		{n: 1, wantRetry: 2 * time.Second},
		{n: 1, wantRetry: 2 * time.Second}, // a refusal takes nothing
	}},
	{"refill over time", []limitStep{
		{n: 3, wantOK: true},
		{advance: time.Second, n: 1, wantRetry: time.Second},
		{advance: time.Second, n: 1, wantOK: true},
		{n: 1, wantRetry: 2 * time.Second},
		{advance: 500 * time.Millisecond, n: 2, wantRetry: 3500 * time.Millisecond},
	}},
	{"refill stops at burst", []limitStep{
		{n: 3, wantOK: true},
		{advance: time.Hour, n: 3, wantOK: true},
		{n: 1, wantRetry: 2 * time.Second},
	}},
	{"peek does not consume", []limitStep{
		{peek: true, n: 3, wantOK: true}, {peek: true, n: 3, wantOK: true},
		{n: 2, wantOK: true},
		{peek: true, n: 1, wantOK: true}, {peek: true, n: 1, wantOK: true},
		{peek: true, n: 2, wantRetry: 2 * time.Second},
		{n: 1, wantOK: true},
		{peek: true, n: 1, wantRetry: 2 * time.Second},
	}},
	{"more than burst never fits", []limitStep{
		{n: 4, wantRetry: 2 * time.Second},
		{n: 3, wantOK: true},
	}},
}

const (
	testRate  = 0.5
	testBurst = 3
)

func runLimitSteps(t *testing.T, s *redis.Store, clk *clock, key string, steps []limitStep) {
	t.Helper()
	for i, st := range steps {
		clk.Advance(st.advance)
		call := s.Allow
		if st.peek {
			call = s.Peek
		}
		ok, retry, err := call(t.Context(), key, testRate, testBurst, st.n)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if ok != st.wantOK || retry != st.wantRetry {
			t.Fatalf("step %d (%+v): ok %v retry %v; want ok %v retry %v", i, st, ok, retry, st.wantOK, st.wantRetry)
		}
	}
}

func TestLimiter(t *testing.T) {
	t.Parallel()
	for _, tt := range limiterCases {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			forEachBackend(t, func(t *testing.T, e env) {
				runLimitSteps(t, e.Store, e.Clock, "send:u1", tt.steps)
				// Another key is another bucket.
				runLimitSteps(t, e.Store, e.Clock, "send:u2", tt.steps[:1])
			})
		})
	}
}

func TestLimiterKey(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, e env) {
		if ok, _, err := e.Store.Peek(t.Context(), "auth:1.2.3.4", testRate, testBurst, 1); err != nil || !ok {
			t.Fatalf("peek: %v, %v", ok, err)
		}
		if n, _ := e.Client.Exists(t.Context(), e.Prefix+"ratelimit:auth:1.2.3.4").Result(); n != 0 {
			t.Fatal("peek wrote the bucket")
		}
		if ok, _, err := e.Store.Allow(t.Context(), "auth:1.2.3.4", testRate, testBurst, 1); err != nil || !ok {
			t.Fatalf("allow: %v, %v", ok, err)
		}
		key := e.Prefix + "ratelimit:auth:1.2.3.4"
		ttl, err := e.Client.PTTL(t.Context(), key).Result()
		if full := time.Duration(testBurst/testRate) * time.Second; err != nil || ttl <= 0 || ttl > full {
			t.Fatalf("ttl %v, %v; want (0, %v]", ttl, err, full)
		}
		state, err := e.Client.HGetAll(t.Context(), key).Result()
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprint(epoch.UnixMilli()); state["tokens"] != "2" || state["ts_ms"] != want {
			t.Fatalf("state %v, want tokens 2, ts_ms %s", state, want)
		}
		for _, bad := range []struct {
			rate     float64
			burst, n int
		}{{0, 1, 1}, {1, 0, 1}, {1, 1, 0}} {
			if _, _, err := e.Store.Allow(t.Context(), "k", bad.rate, bad.burst, bad.n); err == nil {
				t.Fatalf("no error for %+v", bad)
			}
		}
	})
}

// downStore is a store whose client points at a closed port.
func downStore(t *testing.T, cfg redis.Config) (*redis.Store, *clock, *atomic.Int64) {
	client := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: time.Second})
	t.Cleanup(func() { _ = client.Close() })
	clk := newClock()
	cfg.Now = clk.Now
	warns := new(atomic.Int64)
	log := slog.New(countingHandler{Handler: testLogger(t).Handler(), warns: warns})
	return redis.New(client, cfg, log), clk, warns
}

func TestLimiterFallback(t *testing.T) {
	t.Parallel()
	for _, tt := range limiterCases {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, clk, warns := downStore(t, redis.Config{})
			runLimitSteps(t, s, clk, "send:u1", tt.steps)
			runLimitSteps(t, s, clk, "send:u2", tt.steps[:1])
			if n := warns.Load(); n != 1 {
				t.Fatalf("%d warnings, want 1", n)
			}
		})
	}

	t.Run("one warning for many calls", func(t *testing.T) {
		t.Parallel()
		s, _, warns := downStore(t, redis.Config{})
		for i := range 1000 {
			if _, _, err := s.Allow(t.Context(), fmt.Sprint("k", i%10), 20, 40, 1); err != nil {
				t.Fatal(err)
			}
		}
		if n := warns.Load(); n != 1 {
			t.Fatalf("%d warnings, want 1", n)
		}
	})

	t.Run("bounded", func(t *testing.T) {
		t.Parallel()
		s, _, _ := downStore(t, redis.Config{LocalMaxKeys: 100})
		for i := range 1000 {
			if _, _, err := s.Allow(t.Context(), fmt.Sprint("k", i), 1, 5, 1); err != nil {
				t.Fatal(err)
			}
		}
		if n := s.LocalBuckets(); n > 100 {
			t.Fatalf("%d local buckets, want at most 100", n)
		}
	})

	t.Run("disabled", func(t *testing.T) {
		t.Parallel()
		s, _, _ := downStore(t, redis.Config{DisableLocalFallback: true})
		_, _, err := s.Allow(t.Context(), "k", 1, 1, 1)
		if err == nil || chat.AsError(err) != nil {
			t.Fatalf("got %v, want a plain error", err)
		}
	})
}

// A Redis that takes connections and never answers costs the senders one timeout,
// the first: after it the limiter answers from local buckets while a probe off the
// send path waits for Redis, where retrying on a caller's request made one send a
// second (and every send sharing its pipeline) wait out another timeout.
func TestLimiterDoesNotWaitForAHungRedis(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c) // read nothing, answer nothing
			mu.Unlock()
		}
	}()
	// As the hosts open theirs (redis.Open): context deadlines bound every call.
	client := goredis.NewClient(&goredis.Options{Addr: ln.Addr().String(), MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: 2 * time.Second, ContextTimeoutEnabled: true})
	t.Cleanup(func() {
		_ = client.Close()
		_ = ln.Close()
		mu.Lock()
		for _, c := range held {
			_ = c.Close()
		}
		mu.Unlock()
	})
	s := redis.New(client, redis.Config{}, testLogger(t))
	start := time.Now()
	if _, _, err := s.Allow(t.Context(), "send:u", 20, 40, 1); err != nil {
		t.Fatal(err)
	}
	t.Logf("first call, which found Redis hung: %v", time.Since(start).Round(time.Millisecond))
	var worst time.Duration
	for end := time.Now().Add(2500 * time.Millisecond); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		t0 := time.Now()
		if _, _, err := s.Allow(t.Context(), "send:u", 1000, 1000, 1); err != nil {
			t.Fatal(err)
		}
		worst = max(worst, time.Since(t0))
	}
	if worst > 300*time.Millisecond {
		t.Fatalf("a call waited %v while Redis was hung, want local answers at once", worst.Round(time.Millisecond))
	}
}

// Once Redis answers again, the limiter goes back to it by itself; after a single
// failed call (a blip) the first probe goes out with the next call, so the limits are
// back in Redis at once, not a second later.
func TestLimiterBackOnRedis(t *testing.T) {
	t.Parallel()
	m := miniredis.RunT(t)
	client := goredis.NewClient(&goredis.Options{Addr: m.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = client.Close() })
	s := redis.New(client, redis.Config{}, testLogger(t))
	m.SetError("LOADING down for the test")
	if _, _, err := s.Allow(t.Context(), "send:u", 20, 40, 1); err != nil {
		t.Fatal(err)
	}
	if n := len(m.Keys()); n != 0 {
		t.Fatalf("%d keys in a Redis that refused every command", n)
	}
	m.SetError("")
	start := time.Now()
	for len(m.Keys()) == 0 {
		if time.Since(start) > 500*time.Millisecond {
			t.Fatalf("the limiter still answered from local buckets %v after one error with Redis well", time.Since(start))
		}
		if _, _, err := s.Allow(t.Context(), "send:u", 20, 40, 1); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestLimiterRefund: tokens given back can be taken again, never past the burst.
func TestLimiterRefund(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, e env) {
		ctx, key := t.Context(), "loginfail:alice"
		allow := func() bool {
			ok, _, err := e.Store.Allow(ctx, key, testRate, testBurst, 1)
			if err != nil {
				t.Fatal(err)
			}
			return ok
		}
		for range testBurst {
			if !allow() {
				t.Fatal("a full bucket refused a token")
			}
		}
		if allow() {
			t.Fatal("an empty bucket gave a token")
		}
		if err := e.Store.Refund(ctx, key, testRate, testBurst, 1); err != nil {
			t.Fatal(err)
		}
		if !allow() || allow() {
			t.Fatal("a refunded token should be taken once, and only once")
		}
		if err := e.Store.Refund(ctx, key, testRate, testBurst, 10); err != nil {
			t.Fatal(err)
		}
		for i := range testBurst + 1 {
			if got, want := allow(), i < testBurst; got != want {
				t.Fatalf("after a refund of 10 into a bucket of %d, take %d: %v, want %v", testBurst, i+1, got, want)
			}
		}
	})
}
