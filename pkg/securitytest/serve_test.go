package securitytest

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/pkg/hosttest"
)

// chatdResult is what one run of the chatd binary did.
type chatdResult struct {
	Code   int
	Stdout string
	Stderr string
}

// runChatd runs the chatd binary TestMain built with args and exactly env (no other
// environment), and waits at most 30 s.
func runChatd(tb testing.TB, env map[string]string, args ...string) chatdResult {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, chatdBin, args...)
	cmd.Env = []string{}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := chatdResult{Stdout: stdout.String(), Stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		res.Code = ee.ExitCode()
	default:
		tb.Fatalf("run chatd: %v", err)
	}
	return res
}

// serveEnv is a complete `chatd serve` environment whose stores do not answer (so a
// run that passes validation fails fast with status 1), with over applied.
func serveEnv(over map[string]string) map[string]string {
	env := map[string]string{
		"CHAT_HOST_ID":         "serve-test",
		"CHAT_PUBLIC_ADDR":     "127.0.0.1:0",
		"CHAT_INTERNAL_ADDR":   "127.0.0.1:0",
		"CHAT_DATABASE_URL":    "postgres://chat@127.0.0.1:1/chat?sslmode=disable",
		"CHAT_REDIS_URL":       "redis://127.0.0.1:1/0",
		"CHAT_CLUSTER_SECRET":  strings.Repeat("s", 32),
		"CHAT_STARTUP_TIMEOUT": "1s",
	}
	for k, v := range over {
		if v == "" {
			delete(env, k)
		} else {
			env[k] = v
		}
	}
	return env
}

// TestServeRefusesUnsafeConfig: `chatd serve` refuses a cluster secret under 32 bytes
// and an internal listener beyond loopback and private networks (unless
// CHAT_INTERNAL_PUBLIC_OK=true) with exit status 2 and one line naming the setting;
// at the limit (32 bytes; a private or loopback address; the override) it passes
// validation and fails only later, on the unreachable stores, with status 1.
func TestServeRefusesUnsafeConfig(t *testing.T) {
	t.Parallel()
	short := "x" + hosttest.RandomHex(15) // 31 bytes
	watch.secret("short cluster secret", short)
	rows := []struct {
		name    string
		env     map[string]string
		code    int
		setting string // named by the one line of a refusal
	}{
		{"secret of 31 bytes", map[string]string{"CHAT_CLUSTER_SECRET": short}, 2, "CHAT_CLUSTER_SECRET"},
		{"secret of 1 byte", map[string]string{"CHAT_CLUSTER_SECRET": "x"}, 2, "CHAT_CLUSTER_SECRET"},
		{"no secret", map[string]string{"CHAT_CLUSTER_SECRET": ""}, 2, "CHAT_CLUSTER_SECRET"},
		{"secret of 32 bytes passes", map[string]string{"CHAT_CLUSTER_SECRET": short + "y"}, 1, ""},
		{"internal on 0.0.0.0", map[string]string{"CHAT_INTERNAL_ADDR": "0.0.0.0:0"}, 2, "CHAT_INTERNAL_ADDR"},
		{"internal on every interface (empty host)", map[string]string{"CHAT_INTERNAL_ADDR": ":0"}, 2, "CHAT_INTERNAL_ADDR"},
		{"internal on [::]", map[string]string{"CHAT_INTERNAL_ADDR": "[::]:0"}, 2, "CHAT_INTERNAL_ADDR"},
		{"internal on a public address", map[string]string{"CHAT_INTERNAL_ADDR": "8.8.8.8:9080"}, 2, "CHAT_INTERNAL_ADDR"},
		{"internal on a host name", map[string]string{"CHAT_INTERNAL_ADDR": "chat.example.com:9080"}, 2, "CHAT_INTERNAL_ADDR"},
		{"internal public with CHAT_INTERNAL_PUBLIC_OK=false", map[string]string{"CHAT_INTERNAL_ADDR": "0.0.0.0:0", "CHAT_INTERNAL_PUBLIC_OK": "false"}, 2, "CHAT_INTERNAL_ADDR"},
		{"internal public with CHAT_INTERNAL_PUBLIC_OK=true passes", map[string]string{"CHAT_INTERNAL_ADDR": "0.0.0.0:0", "CHAT_INTERNAL_PUBLIC_OK": "true"}, 1, ""},
		{"internal on a private address passes", map[string]string{"CHAT_INTERNAL_ADDR": "10.1.2.3:9080"}, 1, ""},
		{"internal on loopback passes", map[string]string{"CHAT_INTERNAL_ADDR": "127.0.0.1:0"}, 1, ""},
	}
	for _, tc := range rows {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res := runChatd(t, serveEnv(tc.env), "serve")
			if res.Code != tc.code {
				t.Fatalf("exit status %d, want %d; stderr:\n%s", res.Code, tc.code, res.Stderr)
			}
			if strings.Contains(res.Stdout+res.Stderr, short) {
				t.Errorf("the secret is in the output:\n%s", res.Stderr)
			}
			if tc.code != 2 {
				if strings.Contains(res.Stderr, "CHAT_CLUSTER_SECRET") || strings.Contains(res.Stderr, "CHAT_INTERNAL_ADDR") {
					t.Errorf("refused on a setting that is at the limit:\n%s", res.Stderr)
				}
				return
			}
			lines := strings.Split(strings.TrimRight(res.Stderr, "\n"), "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], tc.setting) || res.Stdout != "" {
				t.Errorf("output %q / %q: want one line on stderr naming %s", res.Stdout, res.Stderr, tc.setting)
			}
		})
	}
}

// TestServeBadFlagOrFileIsOneLine: a misspelt flag, a flag without its value and a
// config file YAML cannot read each stop `chatd serve` with exit status 2 and one line
// on stderr naming what is wrong, not the flag package's listing of every setting.
func TestServeBadFlagOrFileIsOneLine(t *testing.T) {
	t.Parallel()
	dup := filepath.Join(t.TempDir(), "chatd.yaml")
	if err := os.WriteFile(dup, []byte("log_level: info\nlog_level: debug\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, want string
		args       []string
	}{
		{"misspelt flag", "-sesion-ttl", []string{"serve", "--sesion-ttl", "1h"}},
		{"flag without its value", "-session-ttl", []string{"serve", "--session-ttl"}},
		{"duplicate key in the file", "log_level", []string{"serve", "--config", dup}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res := runChatd(t, serveEnv(nil), tc.args...)
			lines := strings.Split(strings.TrimRight(res.Stderr, "\n"), "\n")
			if res.Code != 2 || len(lines) != 1 || !strings.Contains(lines[0], tc.want) || res.Stdout != "" {
				t.Errorf("exit %d, output %q / %q: want status 2 and one line on stderr naming %s", res.Code, res.Stdout, res.Stderr, tc.want)
			}
		})
	}
}
