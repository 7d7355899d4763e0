package redis_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	goredis "github.com/redis/go-redis/v9"

	"github.com/switchboard-chat/switchboard/pkg/chat"
	"github.com/switchboard-chat/switchboard/pkg/redis"
)

// Concurrent sends' rate-limit scripts and presence lookups share pipelines, and each
// caller still gets exactly its own answers.
func TestConcurrentCallsShareRoundTrips(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, e env) {
		const users, rounds = 48, 20
		var conns []chat.Connection
		for i := range users {
			conns = append(conns, chat.Connection{UserID: fmt.Sprintf("u%d", i), HostID: fmt.Sprintf("h%d", i%3),
				ConnID: fmt.Sprintf("c%d", i), Since: epoch, Instance: "i"})
		}
		if err := e.Store.AddConnections(t.Context(), conns); err != nil {
			t.Fatal(err)
		}
		p0, c0 := e.Store.PipelineStats()
		var wg sync.WaitGroup
		errs := make(chan error, users)
		for i := range users {
			wg.Go(func() {
				me, peer := fmt.Sprintf("u%d", i), fmt.Sprintf("u%d", (i+1)%users)
				for range rounds {
					ok, _, err := e.Store.Allow(t.Context(), "send:"+me, 1, rounds, 1)
					if err != nil {
						errs <- err
						return
					}
					if !ok {
						errs <- fmt.Errorf("%s: refused within its burst of %d", me, rounds)
						return
					}
					got, err := e.Store.Lookup(t.Context(), []string{me, peer, "nobody"})
					if err != nil {
						errs <- err
						return
					}
					if len(got) != 2 || len(got[me]) != 1 || got[me][0].ConnID != "c"+me[1:] ||
						len(got[peer]) != 1 || got[peer][0].ConnID != "c"+peer[1:] {
						errs <- fmt.Errorf("lookup of %s and %s answered %v", me, peer, got)
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		p1, c1 := e.Store.PipelineStats()
		pipelines, commands := p1-p0, c1-c0
		if want := int64(users * rounds * 4); commands != want {
			t.Errorf("%d commands sent, want %d (1 script + 3 HVALS per round)", commands, want)
		}
		if pipelines >= int64(users*rounds*2) {
			t.Errorf("%d pipelines for %d calls by %d concurrent callers: none shared a round trip", pipelines, users*rounds*2, users)
		}
		t.Logf("%d calls in %d pipelines", users*rounds*2, pipelines)
	})
}

// Batched scripts still run one at a time in Redis: a burst is exact across callers.
func TestBatchedLimitIsExact(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, e env) {
		const callers, burst = 100, 40
		var mu sync.Mutex
		allowed := 0
		var wg sync.WaitGroup
		for range callers {
			wg.Go(func() {
				ok, _, err := e.Store.Allow(t.Context(), "send:one", 0.001, burst, 1)
				if err != nil {
					t.Error(err)
				}
				if ok {
					mu.Lock()
					allowed++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if allowed != burst {
			t.Errorf("%d of %d concurrent sends allowed, want exactly the burst of %d", allowed, callers, burst)
		}
	})
}

// blackHole is a Redis that accepts connections and never answers.
func blackHole(t *testing.T) goredis.UniversalClient {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(io.Discard, c) }()
			t.Cleanup(func() { _ = c.Close() })
		}
	}()
	c := goredis.NewClient(&goredis.Options{Addr: ln.Addr().String(), MaxRetries: -1, ReadTimeout: 5 * time.Second, DialTimeout: time.Second,
		ContextTimeoutEnabled: true}) // as Dial makes it
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// A caller queued behind a hung pipeline leaves at its own deadline instead of waiting
// for the pipeline ahead, and the batcher is not left stuck afterwards.
func TestQueuedCallerLeavesAtItsDeadline(t *testing.T) {
	t.Parallel()
	s := redis.New(blackHole(t), redis.Config{DisableLocalFallback: true}, testLogger(t))

	slow, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	leaderDone := make(chan error, 1)
	go func() {
		_, err := s.Lookup(slow, []string{"a"})
		leaderDone <- err
	}()
	time.Sleep(100 * time.Millisecond) // the leader's pipeline is out and unanswered

	quick, cancel2 := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel2()
	_, err := s.Lookup(quick, []string{"b"})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("queued lookup: %v, want its own deadline", err)
	}
	select {
	case err := <-leaderDone:
		t.Fatalf("the leader (deadline 3 s) returned (%v) before the queued caller (100 ms) did: the caller waited for it", err)
	default:
	}
	if err := <-leaderDone; err == nil {
		t.Fatal("leader: a lookup answered by a server that never answers")
	}
	// Idle again: the next caller leads at once and meets its own deadline.
	next, cancel3 := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel3()
	start := time.Now()
	if _, _, err := s.Allow(next, "send:x", 1, 1, 1); err == nil {
		t.Fatal("after the hang: a rate-limit call answered by a server that never answers")
	}
	if waited := time.Since(start); waited > 2*time.Second {
		t.Fatalf("after the hang, a call with a 200 ms deadline took %v: the batcher is stuck", waited)
	}
}

// A restart of Redis kills the connection the batcher holds: the next send's limit and
// lookup are still answered (their pipeline goes again through the pool, which dials
// afresh), and so are the ones after, over a new held connection.
func TestBatcherOutlivesARedisRestart(t *testing.T) {
	t.Parallel()
	m := miniredis.RunT(t)
	client := goredis.NewClient(&goredis.Options{Addr: m.Addr()})
	t.Cleanup(func() { _ = client.Close() })
	open := func(*testing.T) (goredis.UniversalClient, string, *miniredis.Miniredis) { return client, "t:", m }
	// Without the local fallback, a Redis error would reach the caller.
	e := newEnv(t, backend{"miniredis", open}, redis.Config{DisableLocalFallback: true})
	if err := e.Store.AddConnections(t.Context(), []chat.Connection{{UserID: "u1", HostID: "h1", ConnID: "c1", Since: epoch, Instance: "i"}}); err != nil {
		t.Fatal(err)
	}
	send := func(when string) {
		t.Helper()
		if ok, _, err := e.Store.Allow(t.Context(), "send:u1", 1, 10, 1); err != nil || !ok {
			t.Fatalf("%s: Allow = %v, %v; want true, nil", when, ok, err)
		}
		got, err := e.Store.Lookup(t.Context(), []string{"u1"})
		if err != nil || len(got["u1"]) != 1 || got["u1"][0].ConnID != "c1" {
			t.Fatalf("%s: Lookup = %v, %v; want u1 on c1", when, got, err)
		}
	}
	send("before the restart")
	m.Close()
	if err := m.Restart(); err != nil {
		t.Fatal(err)
	}
	p0, _ := e.Store.PipelineStats()
	for i := range 3 {
		send(fmt.Sprintf("send %d after the restart", i+1))
	}
	// Six calls: one pipeline each, and one more for the call that found the held
	// connection dead. A dead connection kept would fail every call once first.
	if p1, _ := e.Store.PipelineStats(); p1-p0 != 7 {
		t.Fatalf("%d pipelines for 6 calls after the restart; want 7", p1-p0)
	}
}
