package redis

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"
)

// limiterRetryAfter spaces the probes (probeLimiter) that put the limiter back on
// Redis after an error; until one answers, it answers from local buckets.
const limiterRetryAfter = time.Second

// limiterWarnEvery spaces the fallback warnings.
const limiterWarnEvery = 10 * time.Second

// Allow takes n tokens from the bucket key (capacity burst, refilled at perSecond; a
// new bucket is full) when it holds n, else takes nothing and returns false
// and the time until n are there. The bucket lives in Redis (ratelimit.lua) so limits
// hold across hosts. When Redis fails it answers from a per-process bucket with the
// same parameters and returns a nil error (contract §4.5), logging a warning at most
// every 10 s, unless Config.DisableLocalFallback is set.
func (s *Store) Allow(ctx context.Context, key string, perSecond float64, burst int, n int) (bool, time.Duration, error) {
	return s.bucket(ctx, key, perSecond, burst, n, true)
}

// Peek reports, like Allow, whether n tokens are there and otherwise how long until
// they are, but never takes any or writes anything.
func (s *Store) Peek(ctx context.Context, key string, perSecond float64, burst int, n int) (bool, time.Duration, error) {
	return s.bucket(ctx, key, perSecond, burst, n, false)
}

// Refund gives back n tokens that Allow took from the bucket key, never filling it past
// burst. While the limiter answers from local buckets it gives nothing back: the only
// caller, a login, cannot succeed without Redis anyway (its session lives there).
func (s *Store) Refund(ctx context.Context, key string, perSecond float64, burst int, n int) error {
	if !(perSecond > 0) || math.IsInf(perSecond, 0) || burst <= 0 || n <= 0 {
		return fmt.Errorf("redis: limiter %q: rate %v, burst %d and n %d must be positive", key, perSecond, burst, n)
	}
	if s.limiterOutage.Down() {
		return nil
	}
	keys, args := []string{s.rateLimitKey(key)}, []any{perSecond, burst, n, s.cfg.Now().UnixMilli(), "r"}
	err := s.scripts.rateLimit.Run(ctx, s.rdb, keys, args...).Err()
	if err != nil {
		return fmt.Errorf("rate limit %q: give back: %w", key, err)
	}
	return nil
}

func (s *Store) bucket(ctx context.Context, key string, r float64, burst, n int, take bool) (bool, time.Duration, error) {
	if !(r > 0) || math.IsInf(r, 0) || burst <= 0 || n <= 0 {
		return false, 0, fmt.Errorf("redis: limiter %q: rate %v, burst %d and n %d must be positive", key, r, burst, n)
	}
	now := s.cfg.Now()
	if s.limiterOutage.Down() {
		// Redis failed a moment ago: a probe off the send path finds out when it is
		// back, so no caller waits out a Redis that may still hang.
		s.probeLimiter()
	} else {
		takeArg := "0"
		if take {
			takeArg = "1"
		}
		keys, args := []string{s.rateLimitKey(key)}, []any{r, burst, n, now.UnixMilli(), takeArg}
		var cmd *goredis.Cmd
		err := s.batch.do(ctx, 1, func(p goredis.Pipeliner) { cmd = s.scripts.rateLimit.EvalSha(ctx, p, keys, args...) })
		if err == nil && noScript(cmd.Err()) {
			// Redis lost its script cache (a restart): EVAL loads it again, once.
			cmd = s.scripts.rateLimit.Eval(ctx, s.rdb, keys, args...)
		}
		var res []int64
		if err == nil {
			res, err = cmd.Int64Slice()
		}
		if err == nil && len(res) != 2 {
			err = fmt.Errorf("ratelimit.lua answered %d values", len(res))
		}
		if err == nil {
			return res[0] == 1, time.Duration(res[1]) * time.Millisecond, nil
		}
		if s.cfg.DisableLocalFallback {
			return false, 0, fmt.Errorf("rate limit %q: %w", key, err)
		}
		s.limiterFailed(ctx, err)
	}
	ok, retry := s.local.bucket(key, r, burst, n, take, now)
	return ok, retry, nil
}

// limiterFailed notes a Redis error of the limiter: unless it was only the caller's
// context ending, the limiter answers from local buckets until a probe finds Redis
// back (probeLimiter), and a warning is logged at most every limiterWarnEvery.
func (s *Store) limiterFailed(ctx context.Context, err error) {
	if ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return
	}
	s.limiterOutage.Fail() // the first probe goes out with the next call
	wall := time.Now()
	last := s.limiterWarnedAt.Load()
	if wall.UnixNano()-last >= int64(limiterWarnEvery) && s.limiterWarnedAt.CompareAndSwap(last, wall.UnixNano()) {
		s.log.Warn("rate limiter cannot reach redis; limits are per host until it can", "err", err)
	}
}

// probeLimiter pings Redis on a goroutine of its own, at most once every
// limiterRetryAfter, and puts the limiter back on Redis when it answers. Retrying on a
// caller's request instead made, once a second, every send of the host that shared the
// pipeline wait up to batchMaxWait for a Redis that did not answer, for as long as it
// was unreachable (a 10 s cut in TestFaultRedisUnreachable: 49-81 sends answered a
// second against 61-94 before it, on a loaded machine). The deliverer's presence
// lookups keep their own outage.State (cluster.Deliverer.probeRedis), as they go to
// Redis through another interface.
func (s *Store) probeLimiter() {
	if !s.limiterOutage.ProbeDue(limiterRetryAfter) {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), limiterRetryAfter)
		defer cancel()
		if s.rdb.Ping(ctx).Err() == nil && s.limiterOutage.Recover() {
			s.log.Info("rate limiter back on redis")
		}
	}()
}

// localLimiter is the per-process fallback: token buckets (golang.org/x/time/rate) by
// key, at most max of them. When full it first drops buckets that have refilled
// (they read the same as absent), then arbitrary ones, down to 90%.
type localLimiter struct {
	mu      sync.Mutex
	max     int
	buckets map[string]*rate.Limiter
}

func newLocalLimiter(max int) *localLimiter {
	return &localLimiter{max: max, buckets: make(map[string]*rate.Limiter)}
}

func (l *localLimiter) bucket(key string, r float64, burst, n int, take bool, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= l.max {
			l.evict(now)
		}
		lim = rate.NewLimiter(rate.Limit(r), burst)
		l.buckets[key] = lim
	} else {
		if lim.Limit() != rate.Limit(r) {
			lim.SetLimitAt(now, rate.Limit(r))
		}
		if lim.Burst() != burst {
			lim.SetBurstAt(now, burst)
		}
	}
	tokens := lim.TokensAt(now)
	if tokens >= float64(n) {
		if take {
			lim.AllowN(now, n)
		}
		return true, 0
	}
	return false, time.Duration(math.Ceil((float64(n)-tokens)*1000/r)) * time.Millisecond
}

func (l *localLimiter) evict(now time.Time) {
	for k, lim := range l.buckets {
		if lim.TokensAt(now) >= float64(lim.Burst()) {
			delete(l.buckets, k)
		}
	}
	target := l.max * 9 / 10
	for k := range l.buckets {
		if len(l.buckets) <= target {
			break
		}
		delete(l.buckets, k)
	}
}
