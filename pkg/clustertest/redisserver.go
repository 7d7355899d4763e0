package clustertest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// RedisServer is a private redis-server without persistence on a port of its own, for
// the tests that stop and restart Redis: the shared Redis at 6379 serves other
// packages' tests at the same time and is never restarted.
type RedisServer struct {
	Port int

	tb  testing.TB
	dir string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	runs int
}

// StartRedisServer starts redis-server on a free loopback port and waits until it
// answers PING. It is killed when the test ends. The test is skipped when there is no
// redis-server binary (failed when CI=true).
func StartRedisServer(tb testing.TB) *RedisServer {
	tb.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("redis-server not found: %v", err)
		}
		tb.Skipf("redis-server not found: %v", err)
	}
	r := &RedisServer{Port: freePort(tb), tb: tb, dir: tb.TempDir()}
	tb.Cleanup(func() { r.stop(syscall.SIGKILL) })
	r.Start(tb)
	return r
}

// URL is the server's redis:// URL.
func (r *RedisServer) URL() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", r.Port) }

// Start starts the server (again), empty, on the same port, and waits until it
// answers PING.
func (r *RedisServer) Start(tb testing.TB) {
	tb.Helper()
	r.mu.Lock()
	r.runs++
	logPath := filepath.Join(r.dir, fmt.Sprintf("redis.%d.log", r.runs))
	cmd := exec.CommandContext(context.Background(), "redis-server", //nolint:gosec // G204: fixed binary, our own port and temp dir
		"--port", strconv.Itoa(r.Port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", r.dir, "--logfile", logPath)
	if err := cmd.Start(); err != nil {
		r.mu.Unlock()
		tb.Fatalf("start redis-server: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	r.cmd, r.done = cmd, done
	r.mu.Unlock()

	client := goredis.NewClient(&goredis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", r.Port), DialTimeout: 200 * time.Millisecond, MaxRetries: -1})
	defer client.Close()
	CheckFor(tb, 10*time.Second, 20*time.Millisecond, func() error {
		select {
		case <-done:
			b, _ := os.ReadFile(logPath)
			return fmt.Errorf("redis-server exited:\n%s", b)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return client.Ping(ctx).Err()
	})
}

// Stop stops the server (SIGKILL: nothing is saved either way) and waits for it to
// exit; its data is gone.
func (r *RedisServer) Stop(tb testing.TB) {
	tb.Helper()
	r.stop(syscall.SIGKILL)
}

func (r *RedisServer) stop(sig syscall.Signal) {
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	<-done
}
