package redis_test

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	goredis "github.com/redis/go-redis/v9"

	"github.com/switchboard-chat/switchboard/pkg/chat"
	"github.com/switchboard-chat/switchboard/pkg/dbtest"
	"github.com/switchboard-chat/switchboard/pkg/redis"
)

func TestDial(t *testing.T) {
	t.Parallel()
	m := miniredis.RunT(t)
	tests := []struct {
		name    string
		url     string
		addrs   []string
		wantErr string // substring; "" for success
		notIn   string // must not appear in the error
	}{
		{"single server", "redis://" + m.Addr() + "/0", nil, "", ""},
		{"unreachable", "redis://127.0.0.1:1/0", nil, "ping redis", ""},
		{"cluster unreachable", "", []string{"127.0.0.1:1"}, "ping redis", ""},
		{"bad scheme", "http://" + m.Addr(), nil, "invalid URL", ""},
		{"bad URL keeps its password", "redis://user:hunter2@host:port:x/0", nil, "invalid URL", "hunter2"},
		{"nothing", "", nil, "no URL", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			client, err := redis.Dial(ctx, tt.url, tt.addrs)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				_ = client.Close()
				return
			}
			if err == nil {
				_ = client.Close()
				t.Fatalf("no error, want %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) || (tt.notIn != "" && strings.Contains(err.Error(), tt.notIn)) {
				t.Fatalf("error %q: want %q in it and not %q", err, tt.wantErr, tt.notIn)
			}
		})
	}
}

func TestPing(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, e env) {
		if err := e.Store.Ping(t.Context()); err != nil {
			t.Fatal(err)
		}
	})
}

// A server without the scripts cached (a fresh miniredis, or Redis after a restart or
// SCRIPT FLUSH) still runs them, in pipelines too.
func TestScriptsNotCached(t *testing.T) {
	t.Parallel()
	e := newEnv(t, backends[1], redis.Config{})
	src, err := os.ReadFile("lua/presence_remove.lua")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha1.Sum(src)
	sha := hex.EncodeToString(sum[:])

	for round := range 2 {
		if err := e.Client.ScriptFlush(t.Context()).Err(); err != nil {
			t.Fatal(err)
		}
		c := conn("alice", "h1", "c1", e.Clock.Now())
		if err := e.Store.AddConnections(t.Context(), []chat.Connection{c}); err != nil {
			t.Fatal(err)
		}
		if err := e.Store.RemoveConnections(t.Context(), []chat.Connection{c}); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		seen, err := e.Store.LastSeen(t.Context(), []string{"alice"})
		if err != nil || len(seen) != 1 {
			t.Fatalf("round %d: last seen %v, %v", round, seen, err)
		}
		cached, err := e.Client.ScriptExists(t.Context(), sha).Result()
		if err != nil || !cached[0] {
			t.Fatalf("round %d: script cached %v, %v", round, cached, err)
		}
	}
}

// The limiter falls back while Redis is down and returns to it within a second or so
// of Redis coming back.
func TestLimiterRecovers(t *testing.T) {
	t.Parallel()
	e := newEnv(t, backends[1], redis.Config{})
	key := e.Prefix + "ratelimit:k"
	if ok, _, err := e.Store.Allow(t.Context(), "k", 1, 10, 1); err != nil || !ok {
		t.Fatalf("allow: %v, %v", ok, err)
	}
	e.Mini.Close()
	if ok, _, err := e.Store.Allow(t.Context(), "k", 1, 10, 1); err != nil || !ok {
		t.Fatalf("allow with redis down: %v, %v", ok, err)
	}
	if err := e.Mini.Restart(); err != nil {
		t.Fatal(err)
	}
	e.Mini.Del(key)
	checkFor(t, 5*time.Second, 50*time.Millisecond, func() error {
		if _, _, err := e.Store.Allow(t.Context(), "k", 1, 10, 1); err != nil {
			return err
		}
		if !e.Mini.Exists(key) {
			return errors.New("limiter still local")
		}
		return nil
	})
}

func TestSubscribeEventsStopsWithContext(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, e env) {
		ctx, cancel := context.WithCancel(t.Context())
		events, stop := e.Store.SubscribeEvents(ctx)
		defer stop()
		if err := e.Store.PublishEvent(t.Context(), redis.Event{Type: redis.EventHostUp, HostID: "h1"}); err != nil {
			t.Fatal(err)
		}
		select {
		case ev := <-events:
			if ev.Type != redis.EventHostUp || ev.HostID != "h1" || !ev.At.Equal(e.Clock.Now()) {
				t.Fatalf("got %+v", ev)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no event")
		}
		cancel()
		select {
		case _, ok := <-events:
			if ok {
				t.Fatal("event after cancel")
			}
		case <-time.After(5 * time.Second):
			t.Fatal("channel not closed after cancel")
		}
	})
}

func TestDBTestStore(t *testing.T) {
	t.Parallel()
	s := dbtest.NewRedisStore(t)
	if err := s.Ping(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// roundTrips counts what a client sends: single commands and pipelines.
type roundTrips struct {
	single, pipelines atomic.Int64
}

func (r *roundTrips) DialHook(next goredis.DialHook) goredis.DialHook { return next }

func (r *roundTrips) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		r.single.Add(1)
		return next(ctx, cmd)
	}
}

func (r *roundTrips) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		r.pipelines.Add(1)
		return next(ctx, cmds)
	}
}

func (r *roundTrips) take() (single, pipelines int64) {
	return r.single.Swap(0), r.pipelines.Swap(0)
}

// The presence calls for many users are one round trip each.
func TestPresenceRoundTrips(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, e env) {
		var users []string
		var conns []chat.Connection
		for i := range 100 {
			u := fmt.Sprint("u", i)
			users = append(users, u)
			conns = append(conns, conn(u, "h1", "a"+u, e.Clock.Now()), conn(u, "h2", "b"+u, e.Clock.Now()))
		}
		// Load the scripts and open the batcher's connection first, so that no NOSCRIPT
		// retry and no connection handshake is counted.
		if err := e.Store.RemoveConnections(t.Context(), conns[:1]); err != nil {
			t.Fatal(err)
		}
		if _, err := e.Store.Lookup(t.Context(), users[:1]); err != nil {
			t.Fatal(err)
		}
		rt := new(roundTrips)
		e.Client.AddHook(rt)
		for _, step := range []struct {
			name    string
			batched bool // through the hot path's batcher, which counts its own pipelines
			call    func() error
		}{
			{"AddConnections", false, func() error { return e.Store.AddConnections(t.Context(), conns) }},
			{"Lookup", true, func() error {
				got, err := e.Store.Lookup(t.Context(), users)
				if err == nil && len(got) != len(users) {
					err = fmt.Errorf("%d users online, want %d", len(got), len(users))
				}
				return err
			}},
			{"RemoveConnections", false, func() error { return e.Store.RemoveConnections(t.Context(), conns) }},
			{"LastSeen", false, func() error {
				got, err := e.Store.LastSeen(t.Context(), users)
				if err == nil && len(got) != len(users) {
					err = fmt.Errorf("%d users seen, want %d", len(got), len(users))
				}
				return err
			}},
		} {
			p0, _ := e.Store.PipelineStats()
			if err := step.call(); err != nil {
				t.Fatalf("%s: %v", step.name, err)
			}
			single, pipes := rt.take()
			if step.batched {
				// The batcher's pipelines go over a connection it holds, which the
				// client's hooks added since do not see.
				p1, _ := e.Store.PipelineStats()
				pipes = max(pipes, p1-p0)
			}
			if single != 0 || pipes != 1 {
				t.Fatalf("%s: %d commands and %d pipelines, want one pipeline", step.name, single, pipes)
			}
		}
	})
}
