package dbtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"os"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/switchboard-chat/switchboard/pkg/redis"
)

// DefaultRedisURL is the Redis the tests use when TEST_REDIS_URL is not set: the one
// scripts/test.sh and docker-compose.yml start.
const DefaultRedisURL = "redis://127.0.0.1:6379/0"

// NewRedis returns a client to the test Redis (TEST_REDIS_URL, default
// DefaultRedisURL) and a key prefix of its own for this test ("t<random hex>:"), so
// tests run in parallel on one Redis. At cleanup it deletes every key under the prefix
// and closes the client. When Redis does not answer it skips the test, or fails it
// when CI=true, since there a missing Redis is a broken build.
func NewRedis(tb testing.TB) (goredis.UniversalClient, string) {
	tb.Helper()
	url := os.Getenv("TEST_REDIS_URL")
	if url == "" {
		url = DefaultRedisURL
	}
	opt, err := goredis.ParseURL(url)
	if err != nil {
		tb.Fatalf("dbtest: TEST_REDIS_URL is not a Redis URL: %v", err)
	}
	opt.PoolSize = 16
	opt.DialTimeout = 2 * time.Second
	opt.ContextTimeoutEnabled = true
	client := goredis.NewClient(opt)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := client.Ping(ctx).Err(); err != nil {
		_ = client.Close()
		const msg = "dbtest: no Redis at TEST_REDIS_URL (%s): %v; start one with scripts/test.sh or point TEST_REDIS_URL at one"
		if os.Getenv("CI") == "true" {
			tb.Fatalf(msg, opt.Addr, err)
		}
		tb.Skipf(msg, opt.Addr, err)
	}

	var b [6]byte
	_, _ = rand.Read(b[:])
	prefix := "t" + hex.EncodeToString(b[:]) + ":"
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := redisDeletePrefix(ctx, client, prefix); err != nil {
			tb.Errorf("dbtest: delete keys %s*: %v", prefix, err)
		}
		_ = client.Close()
	})
	return client, prefix
}

// NewRedisStore returns a redis.Store on NewRedis's client and prefix, logging to
// the test's output, with the default configuration otherwise.
func NewRedisStore(tb testing.TB) *redis.Store {
	tb.Helper()
	client, prefix := NewRedis(tb)
	log := slog.New(slog.NewTextHandler(tb.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	return redis.New(client, redis.Config{Prefix: prefix}, log)
}

// redisDeletePrefix deletes every key that starts with prefix (which holds no glob
// characters).
func redisDeletePrefix(ctx context.Context, client goredis.UniversalClient, prefix string) error {
	iter := client.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	batch := make([]string, 0, 1000)
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == cap(batch) {
			if err := client.Unlink(ctx, batch...).Err(); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	if err := iter.Err(); err != nil {
		return err
	}
	if len(batch) > 0 {
		return client.Unlink(ctx, batch...).Err()
	}
	return nil
}
