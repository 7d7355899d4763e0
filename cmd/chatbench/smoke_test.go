package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/pkg/config"
	"github.com/switchboard-chat/switchboard/pkg/dbtest"
	"github.com/switchboard-chat/switchboard/pkg/dev"
)

// startCluster runs three hosts in-process (the chatd dev wiring) on random loopback
// ports against the real test stores, with the bench settings of scripts/bench.sh.
// chatbench itself only sees their public URLs.
func startCluster(t *testing.T) []string {
	t.Helper()
	redisURL := os.Getenv("TEST_REDIS_URL")
	if redisURL == "" {
		redisURL = dbtest.DefaultRedisURL
	}
	_, prefix := dbtest.NewRedis(t) // skips (or fails in CI) without Redis; cleans the prefix
	env := map[string]string{
		"CHAT_PUBLIC_ADDR":            "127.0.0.1:0",
		"CHAT_INTERNAL_ADDR":          "127.0.0.1:0",
		"CHAT_DATABASE_URL":           dbtest.NewDatabaseURL(t),
		"CHAT_REDIS_URL":              redisURL,
		"CHAT_REDIS_PREFIX":           prefix,
		"CHAT_BCRYPT_COST":            "4",
		"CHAT_LIMIT_AUTH_PER_MINUTE":  "100000",
		"CHAT_LIMIT_SOCKETS_PER_USER": "1000",
		"CHAT_LOG_LEVEL":              "warn",
	}
	cfg, err := config.Load("test", nil, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(config.Requirements{}); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, cancel := context.WithCancel(context.Background())
	c, err := dev.Start(ctx, cfg, log)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Logf("cluster stopped: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("cluster did not stop within 20 s")
		}
	})
	return c.HostURLs()
}

// TestSmoke is the short chatbench run CI can afford (issue 6 item 6): each scenario
// but storm at a small size against a real three-host cluster, checking delivery
// (zero loss, order, no errors), never latency.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	hosts := strings.Join(startCluster(t), ",")
	cases := []struct {
		name  string
		args  []string
		check func(t *testing.T, r *Result)
	}{
		{"oneone", []string{"oneone", "--rate", "100", "--duration", "2s", "--warmup", "1s"}, func(t *testing.T, r *Result) {
			// Verification covers every message so far, the warm-up's 100 too; the
			// measured phase's counts and latencies are its own 200.
			if r.Load == nil || r.Load.Acked != 200 || r.Load.Verify.Received != 300 || r.Load.Latency.Count != 200 {
				t.Errorf("load %+v", r.Load)
			}
			if r.Warmup == nil || r.Warmup.Acked != 100 || r.Warmup.Verify.Received != 100 || !r.Warmup.Verify.Pass {
				t.Errorf("warm-up %+v", r.Warmup)
			}
			if r.Server == nil || len(r.Server.Stages) == 0 {
				t.Errorf("no send stages from /metrics: %+v", r.Server)
			}
			if r.Load != nil {
				if cdf := r.Load.Latency.CDF; len(cdf) < 2 || cdf[0].Q != 0 || cdf[len(cdf)-1].Q != 1 {
					t.Errorf("latency CDF %+v: want points from q 0 to the max at q 1", cdf)
				}
			}
		}},
		{"fanout", []string{"fanout", "--members", "6", "--rate", "40", "--duration", "1s", "--warmup", "0"}, func(t *testing.T, r *Result) {
			if r.Warmup != nil {
				t.Errorf("--warmup 0 ran a warm-up: %+v", r.Warmup)
			}
			if r.Load == nil || r.Load.Verify.Received != 40*5 || r.Load.LastMember == nil || r.Load.LastMember.Count != 40 {
				t.Errorf("load %+v", r.Load)
			} else if len(r.Load.LastMember.CDF) == 0 {
				t.Error("no latency CDF to the last member")
			}
		}},
		{"catchup", []string{"catchup", "--backlog", "150", "--threads", "3", "--rate", "150"}, func(t *testing.T, r *Result) {
			if r.Catchup == nil || r.Catchup.Backlog != 150 || r.Catchup.BeforeSynced != 150 || r.Catchup.Verify.Received != 150 {
				t.Errorf("catchup %+v", r.Catchup)
			}
		}},
		{"idle", []string{"idle", "--conns", "30", "--sockets-per-user", "10", "--settle", "0s"}, func(t *testing.T, r *Result) {
			if r.Idle == nil || r.Idle.Connected != 30 || len(r.Idle.Hosts) != 3 {
				t.Errorf("idle %+v", r.Idle)
			}
		}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "r.json")
			args := append(tc.args, "--hosts", hosts, "--quiet", "--json", path, "--grace", "15s",
				"--prefix", "smoke"+strconv.Itoa(i)+strconv.FormatInt(time.Now().UnixNano()%1e6, 36))
			var stdout, stderr bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if code := run(ctx, args, &stdout, &stderr); code != 0 {
				t.Fatalf("chatbench %s: exit %d\n%s\n%s", tc.name, code, stdout.String(), stderr.String())
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var r Result
			if err := json.Unmarshal(data, &r); err != nil {
				t.Fatal(err)
			}
			if !r.Pass || r.Machine.CPUs == 0 {
				t.Fatalf("result %+v", r)
			}
			tc.check(t, &r)
			if t.Failed() {
				t.Log(stdout.String())
			}
		})
	}
}

func TestUsage(t *testing.T) {
	t.Parallel()
	var out, errw bytes.Buffer
	if code := run(context.Background(), nil, &out, &errw); code != 2 {
		t.Fatalf("no scenario: exit %d", code)
	}
	if code := run(context.Background(), []string{"nope"}, &out, &errw); code != 2 {
		t.Fatalf("unknown scenario: exit %d", code)
	}
	if code := run(context.Background(), []string{"oneone", "--rate", "0"}, &out, &errw); code != 2 {
		t.Fatalf("bad rate: exit %d", code)
	}
	if code := run(context.Background(), []string{"storm", "--hosts", "http://127.0.0.1:1", "--quiet", "--metrics=false"}, &out, &errw); code != 1 {
		t.Fatalf("storm with one host: exit %d", code)
	}
}
