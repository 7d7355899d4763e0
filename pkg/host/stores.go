package host

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/switchboard-chat/switchboard/pkg/config"
	"github.com/switchboard-chat/switchboard/pkg/postgres"
	"github.com/switchboard-chat/switchboard/pkg/redis"
)

// ConnectStores opens PostgreSQL and Redis, retrying with exponential backoff until
// cfg.StartupTimeout; then it fails with one line naming the store that did not answer
// (never its password).
func ConnectStores(ctx context.Context, cfg *config.Config, log *slog.Logger) (*postgres.DB, *redis.Store, error) {
	deadline := time.Now().Add(cfg.StartupTimeout)
	db, err := connectDB(ctx, cfg, log, deadline)
	if err != nil {
		return nil, nil, err
	}
	rs, err := connectRedis(ctx, cfg, log, deadline)
	if err != nil {
		_ = db.Close()
		return nil, nil, err
	}
	return db, rs, nil
}

// ConnectDB opens PostgreSQL alone (chatd migrate, chatctl), retrying like
// ConnectStores.
func ConnectDB(ctx context.Context, cfg *config.Config, log *slog.Logger) (*postgres.DB, error) {
	return connectDB(ctx, cfg, log, time.Now().Add(cfg.StartupTimeout))
}

// ConnectRedis opens Redis alone, retrying like ConnectStores.
func ConnectRedis(ctx context.Context, cfg *config.Config, log *slog.Logger) (*redis.Store, error) {
	return connectRedis(ctx, cfg, log, time.Now().Add(cfg.StartupTimeout))
}

func connectDB(ctx context.Context, cfg *config.Config, log *slog.Logger, deadline time.Time) (*postgres.DB, error) {
	var db *postgres.DB
	err := retry(ctx, deadline, log, "database", func(ctx context.Context) error {
		var err error
		db, err = postgres.OpenURL(ctx, cfg.DatabaseURL, postgres.Config{MaxOpenConns: cfg.DBMaxConns}, log)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("CHAT_DATABASE_URL: database at %s unreachable after %s: %w", hostOf(cfg.DatabaseURL), cfg.StartupTimeout, err)
	}
	return db, nil
}

func connectRedis(ctx context.Context, cfg *config.Config, log *slog.Logger, deadline time.Time) (*redis.Store, error) {
	var rs *redis.Store
	err := retry(ctx, deadline, log, "redis", func(ctx context.Context) error {
		client, err := redis.Dial(ctx, cfg.RedisURL, cfg.RedisAddrs)
		if err != nil {
			return err
		}
		rs = redis.New(client, redis.Config{Prefix: cfg.RedisPrefix}, log)
		return nil
	})
	if err != nil {
		setting, where := "CHAT_REDIS_URL", hostOf(cfg.RedisURL)
		if len(cfg.RedisAddrs) > 0 {
			setting, where = "CHAT_REDIS_ADDRS", fmt.Sprint(cfg.RedisAddrs)
		}
		return nil, fmt.Errorf("%s: redis at %s unreachable after %s: %w", setting, where, cfg.StartupTimeout, err)
	}
	return rs, nil
}

func retry(ctx context.Context, deadline time.Time, log *slog.Logger, what string, fn func(context.Context) error) error {
	wait := 100 * time.Millisecond
	for {
		actx, cancel := context.WithTimeout(ctx, 3*time.Second)
		err := fn(actx)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().Add(wait).After(deadline) || ctx.Err() != nil {
			return err
		}
		log.Warn("store not reachable yet, retrying", "store", what, "in", wait, "err", err)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return ctx.Err()
		}
		wait = min(wait*2, 3*time.Second)
	}
}

func hostOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(unparsable URL)"
	}
	return u.Host
}
