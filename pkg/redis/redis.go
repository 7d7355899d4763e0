// Package redis keeps Switchboard's short-lived, cluster-wide state in Redis: sessions,
// the presence table and host registry, missed hand-offs, rate-limit buckets and the
// presence event stream. keys.go lists every key family.
//
// The same code runs on a single Redis, on Redis Cluster (no command or script spans
// two slots) and on miniredis (`chatd dev`). Multi-key atomic steps are Lua scripts
// embedded from lua/*.lua, each starting with a header that lists its KEYS and ARGV.
package redis

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	neturl "net/url"
	"runtime"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/switchboard-chat/switchboard/pkg/chat"
	"github.com/switchboard-chat/switchboard/pkg/internal/outage"
	"github.com/switchboard-chat/switchboard/pkg/internal/rawio"
)

var (
	_ chat.SessionStore  = (*Store)(nil)
	_ chat.PresenceStore = (*Store)(nil)
	_ chat.Limiter       = (*Store)(nil)
)

//go:embed lua/*.lua
var luaFS embed.FS

// Config configures a Store. Zero values get defaults in New.
type Config struct {
	// Prefix is prepended to every key and to the event channel, so that tests and
	// tenants sharing one Redis stay apart. It should not contain '{' or '}': a hash
	// tag in the prefix would put every key in one Cluster slot.
	Prefix string
	// Now is the clock used for heartbeats, last seen, rate-limit refills and session
	// expiry; tests fix it. Default time.Now.
	Now func() time.Time
	// DisableLocalFallback makes the limiter return Redis errors instead of answering
	// from per-process buckets. By default (false) it falls back, as the contract asks
	// (rate limits become per host while Redis is down).
	DisableLocalFallback bool
	// LocalMaxKeys bounds the fallback limiter's buckets. Default 100,000.
	LocalMaxKeys int
}

// LastSeenTTL is how long a user's last-seen time is kept after their last
// connection closed.
const LastSeenTTL = 30 * 24 * time.Hour

// HandoffTTL is how long missed hand-offs for a host are kept after the latest one;
// a host that has not taken them by then is dead and will catch up on reconnect.
const HandoffTTL = 120 * time.Second

// maxPipeline bounds the commands of one pipeline, so that re-registering every
// connection of a big host does not build one unbounded buffer.
const maxPipeline = 1000

// scripts are the Lua scripts of lua/*.lua, run with EVALSHA and falling back to EVAL.
type scripts struct {
	heartbeat      *goredis.Script
	pruneHosts     *goredis.Script
	presenceRemove *goredis.Script
	handoffAdd     *goredis.Script
	handoffTake    *goredis.Script
	rateLimit      *goredis.Script
	socketReserve  *goredis.Script
}

func loadScripts() scripts {
	load := func(name string) *goredis.Script {
		src, err := luaFS.ReadFile("lua/" + name)
		if err != nil {
			panic("redis: missing embedded script " + name) // a build error, not a runtime one
		}
		return goredis.NewScript(string(src))
	}
	return scripts{
		heartbeat:      load("heartbeat.lua"),
		pruneHosts:     load("prune_hosts.lua"),
		presenceRemove: load("presence_remove.lua"),
		handoffAdd:     load("handoff_add.lua"),
		handoffTake:    load("handoff_take.lua"),
		rateLimit:      load("ratelimit.lua"),
		socketReserve:  load("socket_reserve.lua"),
	}
}

// Store implements chat.SessionStore, chat.PresenceStore and chat.Limiter on one
// Redis client, and publishes and subscribes to presence events. It is safe for
// concurrent use. It does not own the client: whoever made it closes it.
type Store struct {
	rdb     goredis.UniversalClient
	cfg     Config
	log     *slog.Logger
	scripts scripts

	// batch carries the per-send commands (rate limit, presence lookup) of concurrent
	// callers in shared pipelines.
	batch *batcher

	local *localLimiter
	// limiterOutage is begun by a Redis error in the limiter: it answers from local
	// buckets without asking Redis until a probe (probeLimiter) finds Redis back, so a
	// hung Redis costs the senders no timeout at all.
	limiterOutage   outage.State
	limiterWarnedAt atomic.Int64 // unix ns of the last fallback warning
}

// New returns a Store using client. A nil log discards.
func New(client goredis.UniversalClient, cfg Config, log *slog.Logger) *Store {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.LocalMaxKeys <= 0 {
		cfg.LocalMaxKeys = 100_000
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Store{
		rdb:     client,
		cfg:     cfg,
		log:     log,
		scripts: loadScripts(),
		batch:   newBatcher(client, maxPipeline),
		local:   newLocalLimiter(cfg.LocalMaxKeys),
	}
}

// Client returns the client the Store was made with, for its owner to close and for
// callers that need a raw command.
func (s *Store) Client() goredis.UniversalClient { return s.rdb }

// Ping checks Redis answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("ping redis: %w", err)
	}
	return nil
}

// Dial connects to Redis and checks it answers. With addrs it returns a Redis Cluster
// client over those seed nodes (taking credentials and TLS from url, if given);
// otherwise url (redis://, rediss:// or unix://) names a single server. The pool is
// sized for a busy host and every call honours its context's deadline. Errors never
// contain the URL, which may hold a password. The caller closes the client.
func Dial(ctx context.Context, url string, addrs []string) (goredis.UniversalClient, error) {
	var client goredis.UniversalClient
	switch {
	case len(addrs) > 0:
		opt := &goredis.ClusterOptions{Addrs: addrs}
		if url != "" {
			u, err := parseURL(url)
			if err != nil {
				return nil, err
			}
			opt.Username, opt.Password, opt.TLSConfig = u.Username, u.Password, u.TLSConfig
		}
		opt.PoolSize, opt.MinIdleConns, opt.PoolTimeout = poolSize(), 4, 2*time.Second
		opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = 2*time.Second, 2*time.Second, 2*time.Second
		opt.ContextTimeoutEnabled = true
		opt.Protocol = respVersion
		opt.Dialer = rawio.WrapDial(goredis.NewDialer(&goredis.Options{DialTimeout: opt.DialTimeout, TLSConfig: opt.TLSConfig}))
		client = goredis.NewClusterClient(opt)
	case url != "":
		opt, err := parseURL(url)
		if err != nil {
			return nil, err
		}
		if opt.PoolSize == 0 {
			opt.PoolSize = poolSize()
		}
		if opt.MinIdleConns == 0 {
			opt.MinIdleConns = 4
		}
		if opt.PoolTimeout == 0 {
			opt.PoolTimeout = 2 * time.Second
		}
		if opt.DialTimeout == 0 {
			opt.DialTimeout = 2 * time.Second
		}
		if opt.ReadTimeout == 0 {
			opt.ReadTimeout = 2 * time.Second
		}
		if opt.WriteTimeout == 0 {
			opt.WriteTimeout = 2 * time.Second
		}
		opt.ContextTimeoutEnabled = true
		if opt.Protocol == 0 { // the URL may ask for one (?protocol=3)
			opt.Protocol = respVersion
		}
		opt.Dialer = rawio.WrapDial(goredis.NewDialer(opt)) // TLS connections stay as they are
		client = goredis.NewClient(opt)
	default:
		return nil, errors.New("redis: no URL and no cluster addresses")
	}
	if err := client.Ping(ctx).Err(); err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("ping redis: %w", err)
	}
	return client, nil
}

// respVersion is RESP2: we use no RESP3 feature, and with RESP3 go-redis looks for
// server push notifications on every reply it reads, which was a tenth of the CPU of a
// 100-member presence lookup.
const respVersion = 2

// poolSize is the connections per server: every request of a busy host makes a few
// short Redis calls (session, rate limit, presence lookup) and they should not queue.
func poolSize() int { return max(64, 20*runtime.GOMAXPROCS(0)) }

// parseURL parses a Redis URL without letting the URL (and its password) into errors.
func parseURL(url string) (*goredis.Options, error) {
	opt, err := goredis.ParseURL(url)
	if err != nil {
		var ue *neturl.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("redis: invalid URL: %w", err)
	}
	return opt, nil
}

// noScript reports whether err says the server does not have the script cached.
func noScript(err error) bool { return goredis.HasErrorPrefix(err, "NOSCRIPT") }

// execPipeline runs pipe and re-runs with EVAL (which also caches the script) every
// queued EVALSHA that failed with NOSCRIPT, as Script.Run does for single calls. A
// pipeline cannot fall back by itself because errors arrive only at Exec.
func (s *Store) execPipeline(ctx context.Context, pipe goredis.Pipeliner, evals []pipedEval) error {
	cmds, _ := pipe.Exec(ctx) // errors are read per command below
	var retry []int
	for i, e := range evals {
		if noScript(e.cmd.Err()) {
			retry = append(retry, i)
		}
	}
	if len(retry) > 0 {
		again := s.rdb.Pipeline()
		for _, i := range retry {
			e := &evals[i]
			e.cmd = e.script.Eval(ctx, again, e.keys, e.args...)
		}
		_, _ = again.Exec(ctx)
		for _, i := range retry {
			if err := evals[i].cmd.Err(); err != nil && !errors.Is(err, goredis.Nil) {
				return err
			}
		}
	}
	for _, c := range cmds {
		if err := c.Err(); err != nil && !noScript(err) && !errors.Is(err, goredis.Nil) {
			return err
		}
	}
	return nil
}

// pipedEval is one script run queued in a pipeline.
type pipedEval struct {
	script *goredis.Script
	keys   []string
	args   []any
	cmd    *goredis.Cmd
}

// LibraryLog adapts log for go-redis's own messages (pool and dial retries), which
// it otherwise prints unstructured to stderr. They go out at debug level: the store's
// own errors already say what failed, once, with fields.
func LibraryLog(log *slog.Logger) interface {
	Printf(ctx context.Context, format string, v ...any)
} {
	return libraryLog{log}
}

type libraryLog struct{ log *slog.Logger }

func (l libraryLog) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, "go-redis", "msg", fmt.Sprintf(format, v...))
}
