// Package clustertest runs real `chatd serve` processes on loopback against the real
// PostgreSQL and Redis, and drives them with real WebSocket clients, to prove the
// delivery guarantees of section 4 of the wire contract end to end: what a user
// would notice, through SIGKILL, SIGTERM, a Redis restart and a cut internal link.
//
// The helpers here are used by the tests of this package. StartCluster starts n
// hosts (h1..hn) sharing a fresh database and a Redis key prefix of their own; Dial
// opens a recording WebSocket client; Proxy cuts TCP links; RedisServer is a private
// redis-server that a test may restart (never the shared one). Every wait polls with
// CheckFor: no test sleeps for a fixed time hoping a condition holds.
//
// The stores are those of the other packages' tests: TEST_DATABASE_URL (default
// postgres://postgres@127.0.0.1:5432/postgres) where each cluster creates and drops a
// database of its own, and TEST_REDIS_URL (default redis://127.0.0.1:6379/0) where
// each cluster uses a key prefix of its own; tests that restart Redis start a private
// redis-server. TestMain builds chatd once; CLUSTERTEST_CHATD runs a given binary
// instead, and CLUSTERTEST_LOGS=1 prints every host's log even when a test passes.
//
//	go test -race ./pkg/clustertest/
//	go test -run '^$' -bench . -benchtime 2000x ./pkg/clustertest/   # latency, store costs
package clustertest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/switchboard-chat/switchboard/pkg/dbtest"
	"github.com/switchboard-chat/switchboard/pkg/postgres"
	"github.com/switchboard-chat/switchboard/pkg/redis"
)

// BinaryEnv names the environment variable holding the chatd executable that
// StartCluster runs. TestMain builds it once and sets it; set it yourself to test a
// prebuilt binary.
const BinaryEnv = "CLUSTERTEST_CHATD"

// ChatctlEnv names the environment variable holding the chatctl executable that
// Cluster.Chatctl runs; TestMain builds it once and sets it.
const ChatctlEnv = "CLUSTERTEST_CHATCTL"

// LogsEnv, when set to anything, prints every host's log at the end of each test, not
// only of failed ones.
const LogsEnv = "CLUSTERTEST_LOGS"

// BuildChatd builds cmd/chatd into dir and returns the executable's path.
func BuildChatd(ctx context.Context, dir string) (string, error) {
	return buildCmd(ctx, dir, "chatd")
}

// BuildChatctl builds cmd/chatctl into dir and returns the executable's path.
func BuildChatctl(ctx context.Context, dir string) (string, error) {
	return buildCmd(ctx, dir, "chatctl")
}

func buildCmd(ctx context.Context, dir, name string) (string, error) {
	out := filepath.Join(dir, name)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "github.com/switchboard-chat/switchboard/cmd/"+name) //nolint:gosec // G204: a fixed package of this module
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build cmd/%s: %w\n%s", name, err, b)
	}
	return out, nil
}

// Chatctl runs chatctl with args against the cluster's stores (its database, Redis
// and prefix) and secret (for `connections`) and returns its standard output; a
// non-zero exit fails the test.
func (c *Cluster) Chatctl(tb testing.TB, args ...string) []byte {
	tb.Helper()
	bin := os.Getenv(ChatctlEnv)
	if bin == "" {
		tb.Fatalf("clustertest: %s is not set; TestMain builds chatctl and sets it", ChatctlEnv)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...) //nolint:gosec // G204: the chatctl TestMain built
	cmd.Env = environ(map[string]string{
		"CHAT_DATABASE_URL": c.DatabaseURL, "CHAT_REDIS_URL": c.RedisURL, "CHAT_REDIS_PREFIX": c.RedisPrefix,
		"CHAT_HOST_TTL": c.hostTTL, "CHAT_CLUSTER_SECRET": c.Secret,
	})
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		tb.Fatalf("chatctl %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return stdout.Bytes()
}

// CheckFor calls f every `every` until it returns nil, and fails the test with f's
// last error when total has passed (in the manner of nats-server's checkFor).
func CheckFor(tb testing.TB, total, every time.Duration, f func() error) {
	tb.Helper()
	if err := poll(total, every, f); err != nil {
		tb.Fatalf("after %v: %v", total, err)
	}
}

// poll is CheckFor returning the last error instead of failing, for goroutines that
// must not call Fatal.
func poll(total, every time.Duration, f func() error) error {
	deadline := time.Now().Add(total)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(every)
	}
}

// Options configure StartCluster. Zero values give a plain cluster.
type Options struct {
	// Env is added to every host's environment, after the harness's defaults.
	Env map[string]string
	// HostEnv is added to one host's environment after Env, by index (0 is h1): a
	// CHAT_INTERNAL_URL through a Proxy, a short CHAT_PING_INTERVAL, a small
	// CHAT_LIMIT_SEND_QUEUE, a CHAT_DATABASE_URL through a Proxy...
	HostEnv map[int]map[string]string
	// RedisURL replaces TEST_REDIS_URL, e.g. a private RedisServer's URL.
	RedisURL string
	// Setup, when set, may edit each host's final environment (index 0 is h1), e.g. to
	// send its CHAT_DATABASE_URL through a Proxy.
	Setup func(host int, env map[string]string)
}

// Cluster is a set of running chatd hosts sharing one database and one Redis prefix.
type Cluster struct {
	Hosts       []*Host
	DatabaseURL string
	RedisURL    string
	RedisPrefix string
	Secret      string

	tb      testing.TB
	hostTTL string // CHAT_HOST_TTL of the hosts, for chatctl's view of who is alive

	storeOnce sync.Once
	store     *redis.Store
}

// Host is one chatd serve process. Its methods are safe for concurrent use.
type Host struct {
	ID string

	tb     testing.TB
	bin    string
	env    []string
	logDir string

	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan struct{} // closed when the current process has exited
	exitCode int
	public   string // host:port of the public listener
	internal string // host:port of the internal listener (not the advertised URL)
	starts   int
	logs     []string // every log file this host wrote, oldest first
}

// StartCluster starts n hosts h1..hn as separate processes with free loopback ports,
// a fresh migrated database, a Redis key prefix of their own (deleted at the end), a
// random cluster secret and fast bcrypt, and waits until every /readyz answers 200.
// Each host's output goes to a file under tb.TempDir(), printed when the test fails.
// Every process is killed when the test ends.
func StartCluster(tb testing.TB, n int, opts Options) *Cluster {
	tb.Helper()
	bin := os.Getenv(BinaryEnv)
	if bin == "" {
		tb.Fatalf("clustertest: %s is not set; TestMain builds chatd and sets it", BinaryEnv)
	}
	dbURL := dbtest.NewDatabaseURL(tb)
	redisURL := opts.RedisURL
	if redisURL == "" {
		redisURL = os.Getenv("TEST_REDIS_URL")
		if redisURL == "" {
			redisURL = dbtest.DefaultRedisURL
		}
	}
	prefix := "ct" + randomHex(6) + ":"
	c := &Cluster{DatabaseURL: dbURL, RedisURL: redisURL, RedisPrefix: prefix, Secret: randomHex(32), tb: tb}
	tb.Cleanup(func() { c.deletePrefix() }) // after the hosts are gone (cleanups run last-in first-out)

	base := map[string]string{
		"CHAT_PUBLIC_ADDR":     "127.0.0.1:0",
		"CHAT_INTERNAL_ADDR":   "127.0.0.1:0",
		"CHAT_DATABASE_URL":    dbURL,
		"CHAT_REDIS_URL":       redisURL,
		"CHAT_REDIS_PREFIX":    prefix,
		"CHAT_CLUSTER_SECRET":  c.Secret,
		"CHAT_BCRYPT_COST":     "4",
		"CHAT_LOG_FORMAT":      "json",
		"CHAT_AUTO_MIGRATE":    "false", // dbtest migrated it; three hosts need not race to
		"CHAT_STARTUP_TIMEOUT": "15s",
		// The tests stream hundreds of messages from one user and log in many times from
		// 127.0.0.1; the rate limits have their own tests.
		"CHAT_LIMIT_SEND_RATE":       "100000",
		"CHAT_LIMIT_SEND_BURST":      "100000",
		"CHAT_LIMIT_AUTH_PER_MINUTE": "100000",
	}
	for k, v := range opts.Env {
		base[k] = v
	}
	c.hostTTL = base["CHAT_HOST_TTL"]
	if c.hostTTL == "" {
		c.hostTTL = "6s"
	}
	logDir := tb.TempDir()
	for i := 0; i < n; i++ {
		env := map[string]string{}
		for k, v := range base {
			env[k] = v
		}
		for k, v := range opts.HostEnv[i] {
			env[k] = v
		}
		id := fmt.Sprintf("h%d", i+1)
		env["CHAT_HOST_ID"] = id
		if opts.Setup != nil {
			opts.Setup(i, env)
		}
		h := &Host{ID: id, tb: tb, bin: bin, env: environ(env), logDir: logDir}
		c.Hosts = append(c.Hosts, h)
		tb.Cleanup(func() {
			h.stop(syscall.SIGKILL)
			if tb.Failed() || os.Getenv(LogsEnv) != "" {
				h.dumpLogs()
			}
		})
	}
	// Start them together: each waits for its stores and claims its id.
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, h := range c.Hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = h.start()
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			tb.Fatal(err)
		}
	}
	return c
}

// environ returns the process environment without any CHAT_ setting of the caller,
// plus env.
func environ(env map[string]string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CHAT_") {
			out = append(out, kv)
		}
	}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		out = append(out, k+"="+env[k])
	}
	return out
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// deletePrefix removes the cluster's Redis keys (best effort: a private Redis may be
// stopped by now).
func (c *Cluster) deletePrefix() {
	opt, err := goredis.ParseURL(c.RedisURL)
	if err != nil {
		return
	}
	opt.DialTimeout = time.Second
	client := goredis.NewClient(opt)
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	iter := client.Scan(ctx, 0, c.RedisPrefix+"*", 1000).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	for len(keys) > 0 {
		n := min(len(keys), 1000)
		_ = client.Unlink(ctx, keys[:n]...).Err()
		keys = keys[n:]
	}
}

// Redis returns a store on the cluster's Redis and prefix, to look at what the hosts
// wrote (presence entries, hosts). It is closed when the test ends.
func (c *Cluster) Redis(tb testing.TB) *redis.Store {
	tb.Helper()
	return redis.New(c.RawRedis(tb), redis.Config{Prefix: c.RedisPrefix}, nil)
}

// RawRedis is a plain client on the cluster's Redis, for reading keys by the names
// the contract gives them (prefix included), as an operator's `redis-cli` would. It is
// closed when the test ends.
func (c *Cluster) RawRedis(tb testing.TB) *goredis.Client {
	tb.Helper()
	opt, err := goredis.ParseURL(c.RedisURL)
	if err != nil {
		tb.Fatalf("redis url: %v", err)
	}
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = time.Second, time.Second, time.Second
	client := goredis.NewClient(opt)
	tb.Cleanup(func() { _ = client.Close() })
	return client
}

// redisStore is one shared store on the cluster's Redis and prefix (as Redis), for
// helpers that must not fail a test; it is closed when the test ends.
func (c *Cluster) redisStore() *redis.Store {
	c.storeOnce.Do(func() {
		opt, err := goredis.ParseURL(c.RedisURL)
		if err != nil {
			panic(fmt.Sprintf("redis url %q: %v", c.RedisURL, err)) // StartCluster parsed it already
		}
		opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = time.Second, time.Second, time.Second
		client := goredis.NewClient(opt)
		c.tb.Cleanup(func() { _ = client.Close() })
		c.store = redis.New(client, redis.Config{Prefix: c.RedisPrefix}, nil)
	})
	return c.store
}

// DB opens the cluster's database, to look at what the hosts stored. It is closed
// when the test ends.
func (c *Cluster) DB(tb testing.TB) *postgres.DB {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	db, err := postgres.OpenURL(ctx, c.DatabaseURL, postgres.Config{MaxOpenConns: 2}, nil)
	if err != nil {
		tb.Fatalf("open cluster database: %v", err)
	}
	tb.Cleanup(func() { _ = db.Close() })
	return db
}

// start launches the process and waits until it serves and /readyz answers 200.
func (h *Host) start() error {
	h.mu.Lock()
	if h.cmd != nil && !h.exited() {
		h.mu.Unlock()
		return fmt.Errorf("%s: already running", h.ID)
	}
	h.starts++
	logPath := filepath.Join(h.logDir, fmt.Sprintf("%s.%d.log", h.ID, h.starts))
	f, err := os.Create(logPath)
	if err != nil {
		h.mu.Unlock()
		return err
	}
	// Not tied to a context: the harness signals the process itself (Kill, Term).
	cmd := exec.CommandContext(context.Background(), h.bin, "serve") //nolint:gosec // G204: the chatd TestMain built (or CLUSTERTEST_CHATD names)
	cmd.Env = h.env
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		h.mu.Unlock()
		_ = f.Close()
		return fmt.Errorf("%s: start chatd: %w", h.ID, err)
	}
	done := make(chan struct{})
	h.cmd, h.done, h.public, h.internal, h.exitCode = cmd, done, "", "", 0
	h.logs = append(h.logs, logPath)
	h.mu.Unlock()
	go func() {
		err := cmd.Wait()
		_ = f.Close()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode() // -1 when killed by a signal
		}
		h.mu.Lock()
		h.exitCode = code
		h.mu.Unlock()
		close(done)
	}()

	// The host logs its bound addresses once it listens (the ports are :0).
	var public, internal string
	err = poll(30*time.Second, 20*time.Millisecond, func() error {
		select {
		case <-done:
			return errExited
		default:
		}
		public, internal = serving(logPath)
		if public == "" {
			return fmt.Errorf("%s: no \"host serving\" line in its log yet", h.ID)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s did not start: %w\n%s", h.ID, err, tail(logPath, 40))
	}
	h.mu.Lock()
	h.public, h.internal = public, internal
	h.mu.Unlock()
	err = poll(30*time.Second, 20*time.Millisecond, func() error {
		select {
		case <-done:
			return errExited
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+public+"/readyz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz answered %d", resp.StatusCode)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s not ready: %w\n%s", h.ID, err, tail(logPath, 40))
	}
	return nil
}

var errExited = errors.New("the process exited")

// serving finds the "host serving" log line and returns the bound addresses.
func serving(logPath string) (public, internal string) {
	f, err := os.Open(logPath)
	if err != nil {
		return "", ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.Contains(line, []byte(`"host serving"`)) {
			continue
		}
		var rec struct {
			Public   string `json:"public"`
			Internal string `json:"internal"`
		}
		if json.Unmarshal(line, &rec) == nil && rec.Public != "" {
			return rec.Public, rec.Internal
		}
	}
	return "", ""
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (h *Host) exited() bool {
	select {
	case <-h.done:
		return true
	default:
		return false
	}
}

// dumpLogs prints the end of every log of this host into the test's output.
func (h *Host) dumpLogs() {
	h.mu.Lock()
	logs := append([]string(nil), h.logs...)
	h.mu.Unlock()
	for _, p := range logs {
		h.tb.Logf("---- %s (last 150 lines) ----\n%s", filepath.Base(p), tail(p, 150))
	}
}

// stop signals the process (if running) and waits for it to exit.
func (h *Host) stop(sig syscall.Signal) (code int, took time.Duration) {
	h.mu.Lock()
	cmd, done := h.cmd, h.done
	h.mu.Unlock()
	if cmd == nil {
		return 0, 0
	}
	start := time.Now()
	select {
	case <-done:
		return h.ExitCode(), 0
	default:
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
	return h.ExitCode(), time.Since(start)
}

// Kill ends the process with SIGKILL, as a crash would: no drain, no clean-up in Redis.
func (h *Host) Kill(tb testing.TB) {
	tb.Helper()
	h.stop(syscall.SIGKILL)
}

// Term sends SIGTERM and waits for the process to exit; it returns the exit code and
// the time from the signal to the exit. A process still running after 30 s is killed
// (and reported with code -1).
func (h *Host) Term(tb testing.TB) (exitCode int, took time.Duration) {
	tb.Helper()
	return h.stop(syscall.SIGTERM)
}

// Restart starts the host again with the same id and settings (new ports), killing it
// first if it still runs, and waits until it is ready.
func (h *Host) Restart(tb testing.TB) {
	tb.Helper()
	h.stop(syscall.SIGKILL)
	if err := h.start(); err != nil {
		tb.Fatal(err)
	}
}

// Exited reports whether the current process has exited.
func (h *Host) Exited() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.done != nil && h.exited()
}

// ExitCode is the exit code of the last process (-1 when a signal killed it).
func (h *Host) ExitCode() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.exitCode
}

// PID is the process id of the current process.
func (h *Host) PID() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cmd == nil || h.cmd.Process == nil {
		return 0
	}
	return h.cmd.Process.Pid
}

// PublicURL is the base URL of the public listener, e.g. http://127.0.0.1:40123.
func (h *Host) PublicURL() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return "http://" + h.public
}

// WSURL is the URL of the host's /ws.
func (h *Host) WSURL() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return "ws://" + h.public + "/ws"
}

// InternalURL is the base URL of the internal listener as bound (a Proxy in front of
// it is what the other hosts use, when CHAT_INTERNAL_URL names one).
func (h *Host) InternalURL() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return "http://" + h.internal
}

// InternalAddr is the host:port of the internal listener as bound.
func (h *Host) InternalAddr() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.internal
}

// LogContains reports whether the current process's log has a line containing s.
func (h *Host) LogContains(s string) bool {
	h.mu.Lock()
	p := h.logs[len(h.logs)-1]
	h.mu.Unlock()
	b, _ := os.ReadFile(p)
	return bytes.Contains(b, []byte(s))
}

// Metric reads the host's /metrics and returns the value of series (the exact text
// before the value, e.g. `switchboard_ws_closes_total{code="1013"}`), 0 when absent.
func (h *Host) Metric(tb testing.TB, series string) float64 {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.PublicURL()+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("%s /metrics: %v", h.ID, err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil {
				tb.Fatalf("%s metric %s: %q", h.ID, series, line)
			}
			return v
		}
	}
	return 0
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(tb testing.TB) int {
	tb.Helper()
	ln, err := new(net.ListenConfig).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("free port: %v", err)
	}
	defer ln.Close()
	addr, ok := ln.Addr().(*net.TCPAddr)
	if !ok {
		tb.Fatalf("free port: %v is not TCP", ln.Addr())
	}
	return addr.Port
}
