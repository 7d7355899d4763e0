// Package config loads Switchboard's one Config from flags, environment and a YAML file
// (flags beat env, env beats file) and validates it, so that a bad setting stops the
// process with one line naming the setting and where it came from.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is every setting of chatd. Each field's tags give its env name (the file key
// is the env name lower-cased without CHAT_; the flag is that with '-' for '_'), its
// default, and whether it is a secret that must never be printed.
type Config struct {
	HostID         string        `env:"CHAT_HOST_ID" help:"unique id of this host in the presence table (default: hostname)"`
	PublicAddr     string        `env:"CHAT_PUBLIC_ADDR" default:":8080" help:"public listen address"`
	InternalAddr   string        `env:"CHAT_INTERNAL_ADDR" default:"127.0.0.1:9080" help:"internal listen address, never exposed to clients"`
	InternalURL    string        `env:"CHAT_INTERNAL_URL" help:"URL other hosts use to reach this one (default: http:// + internal addr)"`
	DatabaseURL    string        `env:"CHAT_DATABASE_URL" secret:"true" help:"postgres://... (required by serve)"`
	DBMaxConns     int           `env:"CHAT_DB_MAX_CONNS" default:"20" help:"PostgreSQL connections this host may open; the server's max_connections must exceed the sum over all hosts"`
	RedisURL       string        `env:"CHAT_REDIS_URL" secret:"true" help:"redis://... (required by serve unless CHAT_REDIS_ADDRS)"`
	RedisAddrs     []string      `env:"CHAT_REDIS_ADDRS" help:"host:port,... selects Redis Cluster"`
	RedisPrefix    string        `env:"CHAT_REDIS_PREFIX" help:"prefix of every Redis key (several deployments or test runs on one Redis)"`
	ClusterSecret  string        `env:"CHAT_CLUSTER_SECRET" secret:"true" help:"signs host-to-host calls; at least 32 bytes (required by serve)"`
	Roles          []string      `env:"CHAT_ROLES" default:"api,socket" help:"api serves HTTP, socket serves /ws"`
	AllowedOrigins []string      `env:"CHAT_ALLOWED_ORIGINS" help:"extra origins allowed to open /ws and send cookie-authenticated requests"`
	TrustedProxies []string      `env:"CHAT_TRUSTED_PROXIES" help:"CIDRs whose X-Forwarded-For is believed"`
	SessionTTL     time.Duration `env:"CHAT_SESSION_TTL" default:"744h" help:"session lifetime in Redis"`
	AutoMigrate    bool          `env:"CHAT_AUTO_MIGRATE" default:"true" help:"serve applies migrations at start"`
	CookieSecure   bool          `env:"CHAT_COOKIE_SECURE" default:"false" help:"mark the session cookie Secure (set behind TLS)"`
	LogLevel       string        `env:"CHAT_LOG_LEVEL" default:"info" help:"debug, info, warn or error"`
	LogFormat      string        `env:"CHAT_LOG_FORMAT" default:"text" help:"text or json"`

	InternalPublicOK bool          `env:"CHAT_INTERNAL_PUBLIC_OK" default:"false" help:"allow a non-loopback, non-private internal address"`
	StartupTimeout   time.Duration `env:"CHAT_STARTUP_TIMEOUT" default:"30s" help:"how long start-up retries unreachable stores"`
	DrainTimeout     time.Duration `env:"CHAT_DRAIN_TIMEOUT" default:"10s" help:"how long SIGTERM drains sockets before exit"`
	PingInterval     time.Duration `env:"CHAT_PING_INTERVAL" default:"25s" help:"WebSocket ping interval"`
	PongTimeout      time.Duration `env:"CHAT_PONG_TIMEOUT" default:"60s" help:"close a socket silent for this long"`
	HeartbeatEvery   time.Duration `env:"CHAT_HEARTBEAT_INTERVAL" default:"2s" help:"host heartbeat period"`
	HostTTL          time.Duration `env:"CHAT_HOST_TTL" default:"6s" help:"a host whose heartbeat is older is dead"`
	DeliverTimeout   time.Duration `env:"CHAT_DELIVER_TIMEOUT" default:"2s" help:"total deadline of one host-to-host delivery, retries included"`
	Pprof            bool          `env:"CHAT_PPROF" default:"false" help:"serve /debug/pprof on the internal listener (signed requests only)"`
	DataDir          string        `env:"CHAT_DATA_DIR" default:"data" help:"chatd dev: where the embedded database file lives"`
	BcryptCost       int           `env:"CHAT_BCRYPT_COST" default:"12" help:"bcrypt work factor; below 12 only for load tests, and logged as a warning"`

	LimitLoginFailures      int           `env:"CHAT_LIMIT_LOGIN_FAILURES" default:"5" help:"failed logins per username per window"`
	LimitLoginFailureWindow time.Duration `env:"CHAT_LIMIT_LOGIN_FAILURE_WINDOW" default:"15m" help:"window of the failed-login limit"`
	LimitAuthPerMinute      int           `env:"CHAT_LIMIT_AUTH_PER_MINUTE" default:"30" help:"logins and registrations per client address per minute"`
	LimitSendRate           float64       `env:"CHAT_LIMIT_SEND_RATE" default:"20" help:"messages per second per user"`
	LimitSendBurst          int           `env:"CHAT_LIMIT_SEND_BURST" default:"40" help:"message burst per user"`
	LimitTypingRate         float64       `env:"CHAT_LIMIT_TYPING_RATE" default:"2" help:"typing frames per second per connection"`
	LimitSocketsPerUser     int           `env:"CHAT_LIMIT_SOCKETS_PER_USER" default:"20" help:"open sockets per user"`
	LimitBodyBytes          int           `env:"CHAT_LIMIT_BODY_BYTES" default:"8192" help:"message body bytes"`
	LimitFrameBytes         int           `env:"CHAT_LIMIT_FRAME_BYTES" default:"16384" help:"WebSocket frame bytes"`
	LimitRequestBytes       int           `env:"CHAT_LIMIT_REQUEST_BYTES" default:"1048576" help:"HTTP request body bytes"`
	LimitThreadMembers      int           `env:"CHAT_LIMIT_THREAD_MEMBERS" default:"1000" help:"members of one thread"`
	LimitSendQueue          int           `env:"CHAT_LIMIT_SEND_QUEUE" default:"256" help:"frames queued for one socket before it is closed with 1013"`

	// File is the config file that was read, if any.
	File string `env:"-"`
	// sources maps each setting Load set to where its value came from, for the
	// errors of Validate.
	sources map[string]string
}

// HasRole reports whether this host runs role ("api" or "socket").
func (c *Config) HasRole(role string) bool { return slices.Contains(c.Roles, role) }

// MinSecretBytes is the shortest cluster secret accepted.
const MinSecretBytes = 32

// Error is a configuration error; it names the setting and where its value came from.
type Error struct {
	Setting string // e.g. CHAT_SESSION_TTL
	Source  string // flag, env, file path, or default
	Problem string
}

// Error implements error as the one line a bad configuration stops the process with.
func (e *Error) Error() string {
	if e.Source == "" {
		return fmt.Sprintf("config: %s %s", e.Setting, e.Problem)
	}
	return fmt.Sprintf("config: %s (from %s) %s", e.Setting, e.Source, e.Problem)
}

// FileKey is the YAML key of an env name: CHAT_SESSION_TTL -> session_ttl.
func FileKey(env string) string { return strings.ToLower(strings.TrimPrefix(env, "CHAT_")) }

// FlagName is the flag of an env name: CHAT_SESSION_TTL -> session-ttl.
func FlagName(env string) string { return strings.ReplaceAll(FileKey(env), "_", "-") }

// Load builds a Config from args (flags, without the subcommand), the environment
// (getenv) and the YAML file named by --config or CHAT_CONFIG. It only parses; call
// Validate for the checks a command needs. Flag output (usage) goes to stderr.
func Load(name string, args []string, getenv func(string) string, stderr io.Writer) (*Config, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	cfg := &Config{}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", getenv("CHAT_CONFIG"), "YAML config file (env CHAT_CONFIG)")
	v := reflect.ValueOf(cfg).Elem()
	t := v.Type()
	flagVals := map[string]*string{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		env := f.Tag.Get("env")
		if env == "" || env == "-" {
			continue
		}
		help := f.Tag.Get("help") + " (env " + env + ")"
		if d := f.Tag.Get("default"); d != "" {
			help += " [default " + d + "]"
		}
		flagVals[env] = fs.String(FlagName(env), "", help)
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, &Error{Setting: "arguments", Problem: fmt.Sprintf("unexpected %q", fs.Args())}
	}
	setFlags := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { setFlags[f.Name] = true })

	file := map[string]string{}
	if *configPath != "" {
		var err error
		if file, err = readFile(*configPath, t); err != nil {
			return nil, err
		}
		cfg.File = *configPath
	}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		env := f.Tag.Get("env")
		if env == "" || env == "-" {
			continue
		}
		raw, source, ok := f.Tag.Get("default"), "default", true
		if fv, has := file[FileKey(env)]; has {
			raw, source = fv, *configPath
		}
		if ev := getenv(env); ev != "" {
			raw, source = ev, "env"
		}
		if setFlags[FlagName(env)] {
			raw, source = *flagVals[env], "flag --"+FlagName(env)
		}
		_ = ok
		if err := setField(v.Field(i), raw); err != nil {
			return nil, &Error{Setting: env, Source: source, Problem: err.Error()}
		}
		if source != "default" {
			if cfg.sources == nil {
				cfg.sources = map[string]string{}
			}
			cfg.sources[env] = source
		}
	}
	return cfg, nil
}

// readFile reads the YAML file into key -> raw string, refusing unknown keys so that a
// typo is an error rather than a silently ignored setting.
func readFile(path string, t reflect.Type) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{Setting: "--config", Source: path, Problem: "cannot be read: " + errors.Unwrap(err).Error()}
	}
	// Nodes, not Go values: a value is kept as written, so that `host_id: 0x1F` or a
	// secret made of digits is not read as a number and printed back another way.
	var doc map[string]yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		// yaml.v3 puts each of several problems on a line of its own; a bad config
		// is reported in one line.
		msg := strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", "; ")), " ")
		return nil, &Error{Setting: "--config", Source: path, Problem: "is not valid YAML: " + strings.ReplaceAll(msg, ": ;", ":")}
	}
	known := map[string]bool{}
	for i := 0; i < t.NumField(); i++ {
		if env := t.Field(i).Tag.Get("env"); env != "" && env != "-" {
			known[FileKey(env)] = true
		}
	}
	out := make(map[string]string, len(doc))
	for k, val := range doc {
		if !known[k] {
			return nil, &Error{Setting: k, Source: path, Problem: "is not a known setting"}
		}
		switch val.Kind {
		case yaml.ScalarNode:
			if val.Tag == "!!null" {
				continue
			}
			out[k] = val.Value
		case yaml.SequenceNode:
			parts := make([]string, len(val.Content))
			for i, p := range val.Content {
				if p.Kind != yaml.ScalarNode {
					return nil, &Error{Setting: k, Source: path, Problem: "must be a list of scalars"}
				}
				parts[i] = p.Value
			}
			out[k] = strings.Join(parts, ",")
		default:
			return nil, &Error{Setting: k, Source: path, Problem: "must be a scalar or a list"}
		}
	}
	return out, nil
}

func setField(f reflect.Value, raw string) error {
	raw = strings.TrimSpace(raw)
	switch f.Interface().(type) {
	case string:
		f.SetString(raw)
	case bool:
		if raw == "" {
			f.SetBool(false)
			return nil
		}
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return fmt.Errorf("must be true or false, not %q", raw)
		}
		f.SetBool(b)
	case int:
		n, err := strconv.Atoi(raw)
		if err != nil || n < 0 {
			return fmt.Errorf("must be a whole number >= 0, not %q", raw)
		}
		f.SetInt(int64(n))
	case float64:
		x, err := strconv.ParseFloat(raw, 64)
		if err != nil || x < 0 {
			return fmt.Errorf("must be a number >= 0, not %q", raw)
		}
		f.SetFloat(x)
	case time.Duration:
		d, err := time.ParseDuration(raw)
		if err != nil || d < 0 {
			return fmt.Errorf("must be a duration like 30s or 744h, not %q", raw)
		}
		f.SetInt(int64(d))
	case []string:
		var out []string
		for _, p := range strings.Split(raw, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
		f.Set(reflect.ValueOf(out))
	default:
		return fmt.Errorf("has an unsupported type %s", f.Type())
	}
	return nil
}

// Requirements says which settings a command needs.
type Requirements struct {
	Stores bool // database, Redis and the cluster secret must be set (serve)
	Redis  bool // only Redis
	DB     bool // only the database
}

// Validate checks the settings a command needs and fills derived defaults (host id,
// internal URL). The error names the setting and, when Load read it, where from.
func (c *Config) Validate(req Requirements) error {
	err := c.validate(req)
	// Say where the bad value came from (the file, env or a flag), as Load does.
	var ce *Error
	if errors.As(err, &ce) && ce.Source == "" {
		ce.Source = c.sources[ce.Setting]
	}
	return err
}

func (c *Config) validate(req Requirements) error {
	if c.HostID == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			return &Error{Setting: "CHAT_HOST_ID", Problem: "is not set and the hostname is unknown"}
		}
		c.HostID = h
	}
	if len(c.HostID) > 64 || strings.ContainsAny(c.HostID, " \t\n{}") {
		return &Error{Setting: "CHAT_HOST_ID", Problem: "must be at most 64 characters without spaces or braces"}
	}
	for _, a := range []struct{ name, addr string }{{"CHAT_PUBLIC_ADDR", c.PublicAddr}, {"CHAT_INTERNAL_ADDR", c.InternalAddr}} {
		if _, _, err := net.SplitHostPort(a.addr); err != nil {
			return &Error{Setting: a.name, Problem: fmt.Sprintf("must be host:port, not %q", a.addr)}
		}
	}
	if c.InternalURL == "" {
		host, port, _ := net.SplitHostPort(c.InternalAddr)
		if host == "" || host == "0.0.0.0" || host == "::" {
			host = "127.0.0.1"
		}
		c.InternalURL = "http://" + net.JoinHostPort(host, port)
	}
	if u, err := url.Parse(c.InternalURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return &Error{Setting: "CHAT_INTERNAL_URL", Problem: fmt.Sprintf("must be an http(s) URL, not %q", c.InternalURL)}
	}
	if !c.InternalPublicOK && !privateListen(c.InternalAddr) {
		return &Error{Setting: "CHAT_INTERNAL_ADDR", Problem: fmt.Sprintf("%q listens beyond loopback and private networks; set CHAT_INTERNAL_PUBLIC_OK=true if that is intended", c.InternalAddr)}
	}
	if len(c.Roles) == 0 {
		return &Error{Setting: "CHAT_ROLES", Problem: "must name api, socket or both"}
	}
	for _, r := range c.Roles {
		if r != "api" && r != "socket" {
			return &Error{Setting: "CHAT_ROLES", Problem: fmt.Sprintf("has unknown role %q (want api, socket)", r)}
		}
	}
	for _, o := range c.AllowedOrigins {
		if u, err := url.Parse(o); err != nil || u.Scheme == "" || u.Host == "" {
			return &Error{Setting: "CHAT_ALLOWED_ORIGINS", Problem: fmt.Sprintf("has %q, which is not an origin like https://chat.example.com", o)}
		}
	}
	for _, p := range c.TrustedProxies {
		if _, err := ParseCIDR(p); err != nil {
			return &Error{Setting: "CHAT_TRUSTED_PROXIES", Problem: err.Error()}
		}
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return &Error{Setting: "CHAT_LOG_LEVEL", Problem: fmt.Sprintf("must be debug, info, warn or error, not %q", c.LogLevel)}
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return &Error{Setting: "CHAT_LOG_FORMAT", Problem: fmt.Sprintf("must be text or json, not %q", c.LogFormat)}
	}
	if c.SessionTTL < time.Second {
		return &Error{Setting: "CHAT_SESSION_TTL", Problem: "must be at least 1s"}
	}
	positive := []struct {
		name string
		ok   bool
	}{
		{"CHAT_LIMIT_LOGIN_FAILURES", c.LimitLoginFailures > 0},
		{"CHAT_LIMIT_LOGIN_FAILURE_WINDOW", c.LimitLoginFailureWindow > 0},
		{"CHAT_LIMIT_AUTH_PER_MINUTE", c.LimitAuthPerMinute > 0},
		{"CHAT_LIMIT_SEND_RATE", c.LimitSendRate > 0},
		{"CHAT_LIMIT_SEND_BURST", c.LimitSendBurst > 0},
		{"CHAT_LIMIT_TYPING_RATE", c.LimitTypingRate > 0},
		{"CHAT_LIMIT_SOCKETS_PER_USER", c.LimitSocketsPerUser > 0},
		{"CHAT_LIMIT_BODY_BYTES", c.LimitBodyBytes > 0},
		{"CHAT_LIMIT_FRAME_BYTES", c.LimitFrameBytes >= 1024},
		{"CHAT_LIMIT_REQUEST_BYTES", c.LimitRequestBytes >= 1024},
		{"CHAT_LIMIT_THREAD_MEMBERS", c.LimitThreadMembers > 1},
		{"CHAT_LIMIT_SEND_QUEUE", c.LimitSendQueue > 0},
		{"CHAT_PING_INTERVAL", c.PingInterval > 0},
		{"CHAT_PONG_TIMEOUT", c.PongTimeout > c.PingInterval},
		{"CHAT_HEARTBEAT_INTERVAL", c.HeartbeatEvery > 0},
		{"CHAT_HOST_TTL", c.HostTTL > c.HeartbeatEvery},
		{"CHAT_DELIVER_TIMEOUT", c.DeliverTimeout > 0},
		{"CHAT_BCRYPT_COST", c.BcryptCost >= 4 && c.BcryptCost <= 31},
		// One for the group commit, one for everything else: below that, every read
		// waits for the commit in flight.
		{"CHAT_DB_MAX_CONNS", c.DBMaxConns >= 2},
	}
	for _, p := range positive {
		if !p.ok {
			return &Error{Setting: p.name, Problem: "is out of range (limits must be positive; CHAT_PONG_TIMEOUT > CHAT_PING_INTERVAL; CHAT_HOST_TTL > CHAT_HEARTBEAT_INTERVAL; frame and request limits at least 1024; CHAT_BCRYPT_COST 4..31; CHAT_DB_MAX_CONNS at least 2)"}
		}
	}
	if req.Stores || req.DB {
		if c.DatabaseURL == "" {
			return &Error{Setting: "CHAT_DATABASE_URL", Problem: "is required (postgres://user@host:5432/db)"}
		}
		if u, err := url.Parse(c.DatabaseURL); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			return &Error{Setting: "CHAT_DATABASE_URL", Problem: "must be a postgres:// URL"}
		}
	}
	if req.Stores || req.Redis {
		if c.RedisURL == "" && len(c.RedisAddrs) == 0 {
			return &Error{Setting: "CHAT_REDIS_URL", Problem: "is required (redis://host:6379/0), or CHAT_REDIS_ADDRS for Redis Cluster"}
		}
		if c.RedisURL != "" {
			if u, err := url.Parse(c.RedisURL); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") {
				return &Error{Setting: "CHAT_REDIS_URL", Problem: "must be a redis:// or rediss:// URL"}
			}
		}
	}
	if req.Stores {
		if c.ClusterSecret == "" {
			return &Error{Setting: "CHAT_CLUSTER_SECRET", Problem: fmt.Sprintf("is required (at least %d bytes, e.g. `openssl rand -hex 32`)", MinSecretBytes)}
		}
		if len(c.ClusterSecret) < MinSecretBytes {
			return &Error{Setting: "CHAT_CLUSTER_SECRET", Problem: fmt.Sprintf("must be at least %d bytes", MinSecretBytes)}
		}
	}
	return nil
}

// privateListen reports whether a listen address stays on loopback or a private
// network. An empty host or 0.0.0.0 listens everywhere and is not private.
func privateListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && (ip.IsLoopback() || ip.IsPrivate())
}

// ParseCIDR accepts a CIDR or a bare IP (a /32 or /128).
func ParseCIDR(s string) (*net.IPNet, error) {
	if !strings.Contains(s, "/") {
		ip := net.ParseIP(s)
		if ip == nil {
			return nil, fmt.Errorf("has %q, which is not an IP or CIDR", s)
		}
		bits := 128
		if ip.To4() != nil {
			ip, bits = ip.To4(), 32
		}
		return &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)}, nil
	}
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		return nil, fmt.Errorf("has %q, which is not an IP or CIDR", s)
	}
	return n, nil
}

// Redacted returns the settings as key=value pairs for a start-up log line, with every
// secret masked (a URL keeps its host, loses its password).
func (c *Config) Redacted() []any {
	v := reflect.ValueOf(c).Elem()
	t := v.Type()
	var out []any
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		env := f.Tag.Get("env")
		if env == "" || env == "-" || strings.HasPrefix(env, "CHAT_LIMIT_") {
			continue
		}
		val := fmt.Sprint(v.Field(i).Interface())
		if f.Tag.Get("secret") == "true" && val != "" {
			val = mask(val)
		}
		out = append(out, FileKey(env), val)
	}
	return out
}

func mask(s string) string {
	if u, err := url.Parse(s); err == nil && u.Scheme != "" && u.Host != "" {
		u.User = nil
		u.RawQuery = ""
		return u.Scheme + "://" + u.Host + u.Path
	}
	return "***"
}
