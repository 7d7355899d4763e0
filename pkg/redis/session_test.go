package redis_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/switchboard-chat/switchboard/pkg/chat"
	"github.com/switchboard-chat/switchboard/pkg/redis"
)

func TestSessions(t *testing.T) {
	t.Parallel()
	const token = "secret-token-Zm9vYmFyYmF6cXV4"
	hash := chat.HashToken(token)

	newSession := func(e env) chat.Session {
		now := e.Clock.Now()
		return chat.Session{UserID: "u1", Username: "alice", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	}

	tests := []struct {
		name string
		run  func(t *testing.T, e env)
	}{
		{"round trip", func(t *testing.T, e env) {
			want := newSession(e)
			if err := e.Store.CreateSession(t.Context(), hash, want, time.Hour); err != nil {
				t.Fatal(err)
			}
			got, err := e.Store.Session(t.Context(), hash)
			if err != nil {
				t.Fatal(err)
			}
			if got.UserID != want.UserID || got.Username != want.Username || got.Hash != hash ||
				!got.CreatedAt.Equal(want.CreatedAt) || !got.ExpiresAt.Equal(want.ExpiresAt) {
				t.Fatalf("got %+v, want %+v with hash", got, want)
			}
			ttl, err := e.Client.PTTL(t.Context(), e.Prefix+"session:"+hash).Result()
			if err != nil || ttl <= 0 || ttl > time.Hour {
				t.Fatalf("ttl %v, %v; want (0, 1h]", ttl, err)
			}
		}},
		{"redis holds only the hash", func(t *testing.T, e env) {
			if err := e.Store.CreateSession(t.Context(), hash, newSession(e), time.Hour); err != nil {
				t.Fatal(err)
			}
			keys, err := e.Client.Keys(t.Context(), e.Prefix+"*").Result()
			if err != nil {
				t.Fatal(err)
			}
			if want := []string{e.Prefix + "session:" + hash}; !slices.Equal(keys, want) {
				t.Fatalf("keys %q, want %q", keys, want)
			}
			val, err := e.Client.Get(t.Context(), keys[0]).Result()
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(val, token) || strings.Contains(val, hash) {
				t.Fatalf("value %s holds the token or its hash", val)
			}
			var fields map[string]any
			if err := json.Unmarshal([]byte(val), &fields); err != nil {
				t.Fatalf("value is not JSON: %v", err)
			}
			got := slices.Sorted(maps.Keys(fields))
			if want := []string{"created_at", "expires_at", "user_id", "username"}; !slices.Equal(got, want) {
				t.Fatalf("value fields %q, want %q", got, want)
			}
		}},
		{"refuses a token in place of its hash", func(t *testing.T, e env) {
			if err := e.Store.CreateSession(t.Context(), token, newSession(e), time.Hour); err == nil {
				t.Fatal("stored a session under a raw token")
			}
			if n, _ := e.Client.Exists(t.Context(), e.Prefix+"session:"+token).Result(); n != 0 {
				t.Fatal("a key named by the token was written")
			}
			if _, err := e.Store.Session(t.Context(), token); chat.ErrorCode(err) != chat.EUnauthenticated {
				t.Fatalf("Session(token) = %v, want %s", err, chat.EUnauthenticated)
			}
		}},
		{"delete", func(t *testing.T, e env) {
			if err := e.Store.CreateSession(t.Context(), hash, newSession(e), time.Hour); err != nil {
				t.Fatal(err)
			}
			for i := range 2 { // deleting a missing session is no error
				if err := e.Store.DeleteSession(t.Context(), hash); err != nil {
					t.Fatalf("delete %d: %v", i, err)
				}
			}
			if _, err := e.Store.Session(t.Context(), hash); chat.ErrorCode(err) != chat.EUnauthenticated {
				t.Fatalf("after delete: %v, want %s", err, chat.EUnauthenticated)
			}
		}},
		{"missing", func(t *testing.T, e env) {
			_, err := e.Store.Session(t.Context(), chat.HashToken("nobody"))
			if chat.ErrorCode(err) != chat.EUnauthenticated {
				t.Fatalf("got %v, want %s", err, chat.EUnauthenticated)
			}
		}},
		{"past expires_at", func(t *testing.T, e env) {
			if err := e.Store.CreateSession(t.Context(), hash, newSession(e), time.Hour); err != nil {
				t.Fatal(err)
			}
			e.Clock.Advance(time.Hour)
			if _, err := e.Store.Session(t.Context(), hash); chat.ErrorCode(err) != chat.EUnauthenticated {
				t.Fatalf("got %v, want %s", err, chat.EUnauthenticated)
			}
		}},
		{"ttl expiry", func(t *testing.T, e env) {
			const ttl = 200 * time.Millisecond
			if err := e.Store.CreateSession(t.Context(), hash, newSession(e), ttl); err != nil {
				t.Fatal(err)
			}
			if _, err := e.Store.Session(t.Context(), hash); err != nil {
				t.Fatal(err)
			}
			if e.Mini != nil {
				e.Mini.FastForward(ttl)
			}
			checkFor(t, 3*time.Second, 20*time.Millisecond, func() error {
				_, err := e.Store.Session(t.Context(), hash)
				if chat.ErrorCode(err) != chat.EUnauthenticated {
					return fmt.Errorf("session still there: %w", err)
				}
				return nil
			})
		}},
		{"bad ttl", func(t *testing.T, e env) {
			if err := e.Store.CreateSession(t.Context(), hash, newSession(e), 0); err == nil {
				t.Fatal("no error for ttl 0")
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			forEachBackend(t, tt.run)
		})
	}
}

// A Redis failure is a plain error (the service reports unavailable), never
// unauthenticated, which would log the user out.
func TestSessionRedisDown(t *testing.T) {
	t.Parallel()
	client := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	t.Cleanup(func() { _ = client.Close() })
	s := redis.New(client, redis.Config{}, testLogger(t))
	_, err := s.Session(t.Context(), chat.HashToken("x"))
	if err == nil || chat.AsError(err) != nil {
		t.Fatalf("got %v, want a plain error", err)
	}
}
