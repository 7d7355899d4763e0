package config_test

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/pkg/config"
)

// env returns a getenv over m.
func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// writeFile writes a YAML config file in a temp dir and returns its path.
func writeFile(t testing.TB, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "chatd.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// wantConfigError fails unless err is a *config.Error naming setting (and source,
// when not empty), and its text names them too.
func wantConfigError(t *testing.T, err error, setting, source string) {
	t.Helper()
	var ce *config.Error
	if !errors.As(err, &ce) {
		t.Fatalf("error %v (%T), want a *config.Error naming %s", err, err, setting)
	}
	if ce.Setting != setting || (source != "" && ce.Source != source) {
		t.Fatalf("error names %s (from %q), want %s (from %q): %v", ce.Setting, ce.Source, setting, source, err)
	}
	if !strings.Contains(err.Error(), setting) || (source != "" && !strings.Contains(err.Error(), source)) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("error text %q: want one line naming %s and %s", err, setting, source)
	}
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := config.Load("chatd", nil, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.PublicAddr != ":8080" || cfg.InternalAddr != "127.0.0.1:9080" || cfg.SessionTTL != 744*time.Hour ||
		!cfg.AutoMigrate || cfg.LogLevel != "info" || cfg.LogFormat != "text" || !slices.Equal(cfg.Roles, []string{"api", "socket"}) ||
		cfg.LimitLoginFailures != 5 || cfg.LimitLoginFailureWindow != 15*time.Minute || cfg.LimitAuthPerMinute != 30 ||
		cfg.LimitSendRate != 20 || cfg.LimitSendBurst != 40 || cfg.LimitBodyBytes != 8192 || cfg.LimitFrameBytes != 16384 ||
		cfg.LimitRequestBytes != 1<<20 || cfg.LimitThreadMembers != 1000 || cfg.LimitSendQueue != 256 ||
		cfg.LimitSocketsPerUser != 20 || cfg.LimitTypingRate != 2 {
		t.Fatalf("defaults differ from the contract: %+v", cfg)
	}
	if err := cfg.Validate(config.Requirements{}); err != nil {
		t.Fatalf("the defaults do not validate: %v", err)
	}
	if cfg.InternalURL != "http://127.0.0.1:9080" || cfg.HostID == "" {
		t.Fatalf("derived InternalURL %q HostID %q", cfg.InternalURL, cfg.HostID)
	}
}

func TestPrecedence(t *testing.T) {
	t.Parallel()
	file := writeFile(t, "session_ttl: 1h\nlog_level: debug\nroles: [api]\nlimit_send_burst: 7\n")
	for _, tc := range []struct {
		name   string
		args   []string
		env    map[string]string
		want   time.Duration
		source string
	}{
		{"default", nil, nil, 744 * time.Hour, ""},
		{"file", []string{"--config", file}, nil, time.Hour, file},
		{"file named by CHAT_CONFIG", nil, map[string]string{"CHAT_CONFIG": file}, time.Hour, file},
		{"env beats file", []string{"--config", file}, map[string]string{"CHAT_SESSION_TTL": "2h"}, 2 * time.Hour, "env"},
		{"flag beats env and file", []string{"--config", file, "--session-ttl", "3h"}, map[string]string{"CHAT_SESSION_TTL": "2h"}, 3 * time.Hour, "flag"},
		{"flag beats env", []string{"-session-ttl=4h"}, map[string]string{"CHAT_SESSION_TTL": "2h"}, 4 * time.Hour, "flag"},
		{"an empty env var does not count", []string{"--config", file}, map[string]string{"CHAT_SESSION_TTL": ""}, time.Hour, file},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := config.Load("chatd", tc.args, env(tc.env), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.SessionTTL != tc.want {
				t.Fatalf("SessionTTL %v, want %v", cfg.SessionTTL, tc.want)
			}
		})
	}

	t.Run("each setting is resolved on its own", func(t *testing.T) {
		t.Parallel()
		cfg, err := config.Load("chatd", []string{"--config", file, "--log-level", "warn"},
			env(map[string]string{"CHAT_ROLES": "socket", "CHAT_LOG_LEVEL": "error"}), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.LogLevel != "warn" || !slices.Equal(cfg.Roles, []string{"socket"}) || cfg.SessionTTL != time.Hour || cfg.LimitSendBurst != 7 || cfg.File != file {
			t.Fatalf("got level %q roles %v ttl %v burst %d file %q", cfg.LogLevel, cfg.Roles, cfg.SessionTTL, cfg.LimitSendBurst, cfg.File)
		}
	})

	t.Run("lists from env, file and flag", func(t *testing.T) {
		t.Parallel()
		f := writeFile(t, "allowed_origins:\n  - https://a.example\n  - https://b.example\n")
		cfg, err := config.Load("chatd", []string{"--config", f}, env(nil), io.Discard)
		if err != nil || !slices.Equal(cfg.AllowedOrigins, []string{"https://a.example", "https://b.example"}) {
			t.Fatalf("file list: %v %v", cfg, err)
		}
		cfg, err = config.Load("chatd", nil, env(map[string]string{"CHAT_ALLOWED_ORIGINS": " https://a.example , ,https://c.example "}), io.Discard)
		if err != nil || !slices.Equal(cfg.AllowedOrigins, []string{"https://a.example", "https://c.example"}) {
			t.Fatalf("env list: %v %v", cfg, err)
		}
	})
}

func TestLoadErrors(t *testing.T) {
	t.Parallel()

	t.Run("unknown file key names it", func(t *testing.T) {
		t.Parallel()
		f := writeFile(t, "session_ttl: 1h\nsesion_ttl: 2h\n")
		_, err := config.Load("chatd", []string{"--config", f}, env(nil), io.Discard)
		wantConfigError(t, err, "sesion_ttl", f)
	})

	t.Run("env names are not file keys", func(t *testing.T) {
		t.Parallel()
		f := writeFile(t, "CHAT_SESSION_TTL: 1h\n")
		_, err := config.Load("chatd", []string{"--config", f}, env(nil), io.Discard)
		wantConfigError(t, err, "CHAT_SESSION_TTL", f)
	})

	for _, tc := range []struct {
		name     string
		args     []string
		env      map[string]string
		file     string
		setting  string
		fromFile bool
		source   string
	}{
		{"bad duration from env", nil, map[string]string{"CHAT_SESSION_TTL": "forever"}, "", "CHAT_SESSION_TTL", false, "env"},
		{"duration without unit from env", nil, map[string]string{"CHAT_DRAIN_TIMEOUT": "10"}, "", "CHAT_DRAIN_TIMEOUT", false, "env"},
		{"negative duration from flag", []string{"--pong-timeout", "-5s"}, nil, "", "CHAT_PONG_TIMEOUT", false, "flag --pong-timeout"},
		{"bad duration from file", nil, nil, "host_ttl: soon\n", "CHAT_HOST_TTL", true, ""},
		{"bad bool from env", nil, map[string]string{"CHAT_AUTO_MIGRATE": "yes please"}, "", "CHAT_AUTO_MIGRATE", false, "env"},
		{"bad bool from file", nil, nil, "cookie_secure: maybe\n", "CHAT_COOKIE_SECURE", true, ""},
		{"bad bool from flag", []string{"--pprof=sometimes"}, nil, "", "CHAT_PPROF", false, "flag --pprof"},
		{"bad int from env", nil, map[string]string{"CHAT_LIMIT_SEND_BURST": "lots"}, "", "CHAT_LIMIT_SEND_BURST", false, "env"},
		{"negative int from env", nil, map[string]string{"CHAT_LIMIT_THREAD_MEMBERS": "-1"}, "", "CHAT_LIMIT_THREAD_MEMBERS", false, "env"},
		{"fractional int from file", nil, nil, "limit_body_bytes: 1.5\n", "CHAT_LIMIT_BODY_BYTES", true, ""},
		{"bad int from flag", []string{"--bcrypt-cost", "twelve"}, nil, "", "CHAT_BCRYPT_COST", false, "flag --bcrypt-cost"},
		{"bad float from env", nil, map[string]string{"CHAT_LIMIT_SEND_RATE": "fast"}, "", "CHAT_LIMIT_SEND_RATE", false, "env"},
		{"a map where a scalar belongs", nil, nil, "public_addr:\n  host: x\n", "public_addr", true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			args := tc.args
			source := tc.source
			if tc.file != "" {
				f := writeFile(t, tc.file)
				args = append([]string{"--config", f}, args...)
				if tc.fromFile {
					source = f
				}
			}
			_, err := config.Load("chatd", args, env(tc.env), io.Discard)
			wantConfigError(t, err, tc.setting, source)
		})
	}

	t.Run("missing file", func(t *testing.T) {
		t.Parallel()
		missing := filepath.Join(t.TempDir(), "nope.yaml")
		_, err := config.Load("chatd", []string{"--config", missing}, env(nil), io.Discard)
		wantConfigError(t, err, "--config", missing)
	})

	t.Run("invalid YAML", func(t *testing.T) {
		t.Parallel()
		f := writeFile(t, "session_ttl: [1h\n")
		_, err := config.Load("chatd", []string{"--config", f}, env(nil), io.Discard)
		var ce *config.Error
		if !errors.As(err, &ce) || ce.Setting != "--config" {
			t.Fatalf("got %v, want a *config.Error naming --config", err)
		}
	})

	t.Run("unknown flag", func(t *testing.T) {
		t.Parallel()
		if _, err := config.Load("chatd", []string{"--sesion-ttl", "1h"}, env(nil), io.Discard); err == nil || !strings.Contains(err.Error(), "sesion-ttl") {
			t.Fatalf("got %v, want an error naming the flag", err)
		}
	})

	t.Run("stray argument", func(t *testing.T) {
		t.Parallel()
		if _, err := config.Load("chatd", []string{"extra"}, env(nil), io.Discard); err == nil {
			t.Fatal("a stray argument was accepted")
		}
	})
}

// serveEnv is a valid environment for `chatd serve`.
func serveEnv() map[string]string {
	return map[string]string{
		"CHAT_HOST_ID":        "h1",
		"CHAT_DATABASE_URL":   "postgres://chat@db:5432/chat",
		"CHAT_REDIS_URL":      "redis://redis:6379/0",
		"CHAT_CLUSTER_SECRET": strings.Repeat("s", 32),
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	serve := config.Requirements{Stores: true}
	for _, tc := range []struct {
		name    string
		change  map[string]string
		req     config.Requirements
		setting string // "" for valid
	}{
		{"serve with everything", nil, serve, ""},
		{"serve without CHAT_DATABASE_URL", map[string]string{"CHAT_DATABASE_URL": ""}, serve, "CHAT_DATABASE_URL"},
		{"serve with a mysql URL", map[string]string{"CHAT_DATABASE_URL": "mysql://x@db/chat"}, serve, "CHAT_DATABASE_URL"},
		{"serve without CHAT_REDIS_URL", map[string]string{"CHAT_REDIS_URL": ""}, serve, "CHAT_REDIS_URL"},
		{"serve with CHAT_REDIS_ADDRS instead", map[string]string{"CHAT_REDIS_URL": "", "CHAT_REDIS_ADDRS": "r1:7000,r2:7000"}, serve, ""},
		{"serve with an http redis URL", map[string]string{"CHAT_REDIS_URL": "http://redis:6379"}, serve, "CHAT_REDIS_URL"},
		{"serve without CHAT_CLUSTER_SECRET", map[string]string{"CHAT_CLUSTER_SECRET": ""}, serve, "CHAT_CLUSTER_SECRET"},
		{"secret of 31 bytes", map[string]string{"CHAT_CLUSTER_SECRET": strings.Repeat("s", 31)}, serve, "CHAT_CLUSTER_SECRET"},
		{"secret of 32 bytes", map[string]string{"CHAT_CLUSTER_SECRET": strings.Repeat("s", 32)}, serve, ""},
		{"migrate needs only the database", map[string]string{"CHAT_REDIS_URL": "", "CHAT_CLUSTER_SECRET": ""}, config.Requirements{DB: true}, ""},
		{"migrate without the database", map[string]string{"CHAT_DATABASE_URL": ""}, config.Requirements{DB: true}, "CHAT_DATABASE_URL"},
		{"internal address on every interface", map[string]string{"CHAT_INTERNAL_ADDR": "0.0.0.0:9080"}, serve, "CHAT_INTERNAL_ADDR"},
		{"internal address with no host", map[string]string{"CHAT_INTERNAL_ADDR": ":9080"}, serve, "CHAT_INTERNAL_ADDR"},
		{"internal address public", map[string]string{"CHAT_INTERNAL_ADDR": "203.0.113.5:9080"}, serve, "CHAT_INTERNAL_ADDR"},
		{"internal address IPv6 any", map[string]string{"CHAT_INTERNAL_ADDR": "[::]:9080"}, serve, "CHAT_INTERNAL_ADDR"},
		{"internal address public, allowed", map[string]string{"CHAT_INTERNAL_ADDR": "0.0.0.0:9080", "CHAT_INTERNAL_PUBLIC_OK": "true"}, serve, ""},
		{"internal address private", map[string]string{"CHAT_INTERNAL_ADDR": "10.1.2.3:9080"}, serve, ""},
		{"internal address IPv6 loopback", map[string]string{"CHAT_INTERNAL_ADDR": "[::1]:9080"}, serve, ""},
		{"internal address localhost", map[string]string{"CHAT_INTERNAL_ADDR": "localhost:9080"}, serve, ""},
		{"internal address without port", map[string]string{"CHAT_INTERNAL_ADDR": "127.0.0.1"}, serve, "CHAT_INTERNAL_ADDR"},
		{"public address without port", map[string]string{"CHAT_PUBLIC_ADDR": "8080"}, serve, "CHAT_PUBLIC_ADDR"},
		{"bad role", map[string]string{"CHAT_ROLES": "api,admin"}, serve, "CHAT_ROLES"},
		{"a pool of one connection", map[string]string{"CHAT_DB_MAX_CONNS": "1"}, serve, "CHAT_DB_MAX_CONNS"},
		{"a pool of two connections", map[string]string{"CHAT_DB_MAX_CONNS": "2"}, serve, ""},
		{"no role", map[string]string{"CHAT_ROLES": " , "}, serve, "CHAT_ROLES"},
		{"socket role alone", map[string]string{"CHAT_ROLES": "socket"}, serve, ""},
		{"bad log level", map[string]string{"CHAT_LOG_LEVEL": "loud"}, serve, "CHAT_LOG_LEVEL"},
		{"bad log format", map[string]string{"CHAT_LOG_FORMAT": "xml"}, serve, "CHAT_LOG_FORMAT"},
		{"bad origin", map[string]string{"CHAT_ALLOWED_ORIGINS": "chat.example.com"}, serve, "CHAT_ALLOWED_ORIGINS"},
		{"bad trusted proxy", map[string]string{"CHAT_TRUSTED_PROXIES": "10.0.0.0/33"}, serve, "CHAT_TRUSTED_PROXIES"},
		{"bad internal URL", map[string]string{"CHAT_INTERNAL_URL": "ftp://h:1"}, serve, "CHAT_INTERNAL_URL"},
		{"host id with a space", map[string]string{"CHAT_HOST_ID": "a b"}, serve, "CHAT_HOST_ID"},
		{"host id with a brace", map[string]string{"CHAT_HOST_ID": "a{b}"}, serve, "CHAT_HOST_ID"},
		{"session TTL under a second", map[string]string{"CHAT_SESSION_TTL": "500ms"}, serve, "CHAT_SESSION_TTL"},
		{"zero send burst", map[string]string{"CHAT_LIMIT_SEND_BURST": "0"}, serve, "CHAT_LIMIT_SEND_BURST"},
		{"pong timeout not above ping interval", map[string]string{"CHAT_PONG_TIMEOUT": "25s"}, serve, "CHAT_PONG_TIMEOUT"},
		{"host TTL not above heartbeat", map[string]string{"CHAT_HOST_TTL": "2s"}, serve, "CHAT_HOST_TTL"},
		{"bcrypt cost 3", map[string]string{"CHAT_BCRYPT_COST": "3"}, serve, "CHAT_BCRYPT_COST"},
		{"bcrypt cost 32", map[string]string{"CHAT_BCRYPT_COST": "32"}, serve, "CHAT_BCRYPT_COST"},
		{"request limit under 1024", map[string]string{"CHAT_LIMIT_REQUEST_BYTES": "1023"}, serve, "CHAT_LIMIT_REQUEST_BYTES"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := serveEnv()
			for k, v := range tc.change {
				e[k] = v
			}
			cfg, err := config.Load("chatd", nil, env(e), io.Discard)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			err = cfg.Validate(tc.req)
			if tc.setting == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			wantConfigError(t, err, tc.setting, "")
		})
	}
}

func TestRedactedHidesSecrets(t *testing.T) {
	t.Parallel()
	e := serveEnv()
	e["CHAT_DATABASE_URL"] = "postgres://chat:hunter2@db:5432/chat?sslmode=disable&password=hunter3"
	e["CHAT_REDIS_URL"] = "redis://:hunter4@redis:6379/0"
	e["CHAT_CLUSTER_SECRET"] = "hunter5-" + strings.Repeat("x", 32)
	cfg, err := config.Load("chatd", nil, env(e), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, v := range cfg.Redacted() {
		b.WriteString(strings.TrimSpace(toString(v)))
		b.WriteByte(' ')
	}
	out := b.String()
	for _, secret := range []string{"hunter2", "hunter3", "hunter4", "hunter5"} {
		if strings.Contains(out, secret) {
			t.Errorf("Redacted() shows %s: %s", secret, out)
		}
	}
	if !strings.Contains(out, "db:5432") || !strings.Contains(out, "redis:6379") {
		t.Errorf("Redacted() should keep the store hosts: %s", out)
	}
}

func toString(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return ""
}

// FuzzLoad: any config file body either loads or fails with a *config.Error; it never
// panics.
func FuzzLoad(f *testing.F) {
	for _, seed := range []string{
		"", "session_ttl: 1h\n", "roles: [api, socket]\n", "roles:\n  - api\n", "unknown: 1\n",
		"public_addr:\n  a: b\n", "- a\n- b\n", "just a string", "session_ttl: [1h\n", "1: 2\n",
		"? [a, b]\n: c\n", "auto_migrate: yes\n", "limit_send_rate: .inf\n", "limit_send_burst: 0x10\n",
		"session_ttl: ~\n", "session_ttl: !!binary aGVsbG8=\n", "a: &x 1\nb: *x\n", "\xff\xfe",
		"roles: [[api]]\n", "roles: [{a: b}]\n", "host_id: \"\\u0000\"\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body string) {
		p := writeFile(t, body)
		cfg, err := config.Load("chatd", []string{"--config", p}, env(nil), io.Discard)
		if err != nil {
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %v (%T), want a *config.Error", err, err)
			}
			return
		}
		_ = cfg.Validate(config.Requirements{Stores: true})
	})
}

// TestExampleFileDocumentsEverySetting keeps configs/chatd.yaml in step with Config:
// every setting has its key there, and loading the file gives the built-in defaults.
func TestExampleFileDocumentsEverySetting(t *testing.T) {
	t.Parallel()
	const path = "../../configs/chatd.yaml"
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	typ := reflect.TypeOf(config.Config{})
	for i := 0; i < typ.NumField(); i++ {
		env := typ.Field(i).Tag.Get("env")
		if env == "" || env == "-" {
			continue
		}
		key := config.FileKey(env)
		if !regexp.MustCompile(`(?m)^#?\s*` + regexp.QuoteMeta(key) + `:`).Match(raw) {
			t.Errorf("configs/chatd.yaml does not document %s (%s)", key, env)
		}
	}
	fromFile, err := config.Load("test", []string{"--config", path}, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatalf("load %s: %v", path, err)
	}
	defaults, err := config.Load("test", nil, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	fv, dv := reflect.ValueOf(fromFile).Elem(), reflect.ValueOf(defaults).Elem()
	for i := 0; i < fv.NumField(); i++ {
		f := fv.Type().Field(i)
		if !f.IsExported() || f.Name == "File" {
			continue // where the values came from, not what they are
		}
		if !reflect.DeepEqual(fv.Field(i).Interface(), dv.Field(i).Interface()) {
			t.Errorf("configs/chatd.yaml does not load to the defaults: %s is %v, the default %v", f.Name, fv.Field(i), dv.Field(i))
		}
	}
}

// TestFileValuesAsWritten: a value in the config file is the text written there, not
// what YAML would read it as: `host_id: 0x1F` is the host 0x1F, not 31, and a secret of
// 40 digits is 40 bytes, not a float. Several YAML problems are reported in one line.
func TestFileValuesAsWritten(t *testing.T) {
	t.Parallel()
	secret := strings.Repeat("1234567890", 4)
	f := writeFile(t, "host_id: 0x1F\nredis_prefix: 0123\ndata_dir: 1e3\ncluster_secret: "+secret+"\nallowed_origins: [0x10]\nlog_level:\n")
	cfg, err := config.Load("chatd", []string{"--config", f}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HostID != "0x1F" || cfg.RedisPrefix != "0123" || cfg.DataDir != "1e3" || cfg.ClusterSecret != secret ||
		len(cfg.AllowedOrigins) != 1 || cfg.AllowedOrigins[0] != "0x10" || cfg.LogLevel != "info" {
		t.Fatalf("host_id %q, redis_prefix %q, data_dir %q, secret %q, origins %q, log_level %q: want them as written (an empty value is the default)",
			cfg.HostID, cfg.RedisPrefix, cfg.DataDir, cfg.ClusterSecret, cfg.AllowedOrigins, cfg.LogLevel)
	}

	dup := writeFile(t, "log_level: info\nlog_level: debug\n")
	_, err = config.Load("chatd", []string{"--config", dup}, env(nil), io.Discard)
	if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "log_level") {
		t.Fatalf("duplicate key: %q, want one line naming log_level", err)
	}
}

// TestValidateSaysWhere: a value Validate refuses is reported with where it came from,
// as a value Load cannot parse is: the file's path, env or the flag.
func TestValidateSaysWhere(t *testing.T) {
	t.Parallel()
	file := writeFile(t, "log_level: loud\n")
	for _, tc := range []struct {
		name, want string
		args       []string
		env        map[string]string
	}{
		{"file", "CHAT_LOG_LEVEL (from " + file + ")", []string{"--config", file}, nil},
		{"env", "CHAT_LOG_LEVEL (from env)", nil, map[string]string{"CHAT_LOG_LEVEL": "loud"}},
		{"flag", "CHAT_LOG_LEVEL (from flag --log-level)", []string{"--log-level", "loud"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := config.Load("chatd", tc.args, env(tc.env), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			err = cfg.Validate(config.Requirements{})
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "loud") {
				t.Fatalf("Validate: %v, want it to name %s", err, tc.want)
			}
		})
	}
}
