// Command chatctl is Switchboard's operator CLI: it reads the presence table, the host
// registry and sessions in Redis and the members' positions in PostgreSQL, asks a
// host's internal listener for its sockets, and streams presence changes.
//
//	chatctl presence USER      the user's live connections: host, conn id, since
//	chatctl hosts              live hosts, internal URL, last heartbeat
//	chatctl session TOKEN      the session behind a token (hashed first)
//	chatctl pending USER       per thread, how many messages the user has not acked
//	chatctl connections HOST   the sockets a host holds (signed internal call)
//	chatctl watch              live presence changes until Ctrl-C
//
// It takes the same settings as chatd (flags, CHAT_* environment, --config file) and
// needs only the stores each command reads. --json, before or after the command, prints
// one JSON object (watch: one per line).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"reflect"
	"strings"
	"syscall"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/switchboard-chat/switchboard/pkg/config"
	"github.com/switchboard-chat/switchboard/pkg/host"
	"github.com/switchboard-chat/switchboard/pkg/postgres"
	"github.com/switchboard-chat/switchboard/pkg/redis"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// go-redis logs dial failures of its pool straight to os.Stderr; chatctl reports
	// an unreachable store in one line of its own.
	goredis.SetLogger(silentRedisLog{})
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// silentRedisLog discards go-redis's internal log.
type silentRedisLog struct{}

func (silentRedisLog) Printf(context.Context, string, ...any) {}

const usage = `usage: chatctl [--json] <command> [args] [flags]

commands:
  presence USER      the user's live connections: host, conn id, since
                     (needs CHAT_REDIS_URL and CHAT_DATABASE_URL)
  hosts              registered hosts, live and stale (--json: live ones)
                     (needs CHAT_REDIS_URL)
  session TOKEN      the session behind a token; the token is hashed, never printed
                     (needs CHAT_REDIS_URL)
  pending USER       per thread: acked seq, last seq, messages not acked
                     (needs CHAT_DATABASE_URL)
  connections HOST   the sockets HOST holds, asked from its internal listener;
                     HOST is a host id from the registry or an http(s):// URL
                     (needs CHAT_CLUSTER_SECRET, and CHAT_REDIS_URL for a host id)
  watch              presence changes (connect, disconnect, host_up, host_down)
                     as they happen, until Ctrl-C (needs CHAT_REDIS_URL; names
                     users when CHAT_DATABASE_URL is set)

--json (before or after the command) prints one JSON object; watch prints one per line.
USER is a username (any case). Put "--" before a TOKEN that starts with "-".

Settings are chatd's: CHAT_REDIS_URL or CHAT_REDIS_ADDRS, CHAT_REDIS_PREFIX,
CHAT_DATABASE_URL, CHAT_CLUSTER_SECRET, CHAT_HOST_TTL (default 6s: a host whose
heartbeat is older is dead), each also a flag (--redis-url, --host-ttl, ...) and a key
of the --config YAML file; flags beat env, env beats file. chatctl gives up on an
unreachable store after CHAT_STARTUP_TIMEOUT when set by env or flag, else after 5s.

exit status: 0 ok, 1 no such user/session/host or a store failed, 2 bad usage.
`

// defaultConnectTimeout bounds chatctl's connection retries unless
// CHAT_STARTUP_TIMEOUT is set by env or flag: an operator at a prompt should not wait
// chatd's 30 s to learn a store is down.
const defaultConnectTimeout = 5 * time.Second

// commandTimeout bounds one-shot commands once the stores are connected.
const commandTimeout = 15 * time.Second

// usageError is bad usage: exit status 2, with the usage on stderr.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// notFoundError is a user, session or host that does not exist: exit status 1, like a
// store failure, with the message as the whole line.
type notFoundError struct{ msg string }

func (e *notFoundError) Error() string { return e.msg }

// command is one subcommand: its name, how many arguments it takes (0 or 1), the
// argument's name for messages, and what it needs.
type command struct {
	name string
	arg  string // "" when it takes none
	req  config.Requirements
	run  func(a *app, ctx context.Context, arg string) error
}

var commands = []command{
	{name: "presence", arg: "USER", req: config.Requirements{Redis: true, DB: true}, run: (*app).presence},
	{name: "hosts", req: config.Requirements{Redis: true}, run: (*app).hosts},
	{name: "session", arg: "TOKEN", req: config.Requirements{Redis: true}, run: (*app).session},
	{name: "pending", arg: "USER", req: config.Requirements{DB: true}, run: (*app).pending},
	{name: "connections", arg: "HOST", run: (*app).connections},
	{name: "watch", req: config.Requirements{Redis: true}, run: (*app).watch},
}

// run is main without the process: it returns the exit status (0 ok, 1 not found or
// failure, 2 bad usage), so tests can call it.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if getenv == nil {
		getenv = os.Getenv
	}
	p, err := parseArgs(args)
	if err != nil {
		return usageFail(stderr, err.Error())
	}
	if p.help {
		fmt.Fprint(stdout, usage)
		return 0
	}
	if len(p.positional) == 0 {
		return usageFail(stderr, "missing command")
	}
	name, rest := p.positional[0], p.positional[1:]
	if name == "session" && len(rest) == 0 && len(p.unknown) == 1 {
		// A token is unpadded base64url, so one in 32 starts with "-": the lone
		// unknown "flag" of a session command with no TOKEN is the TOKEN.
		rest, p.unknown = p.unknown, nil
	}
	if len(p.unknown) > 0 {
		if name == "session" {
			// It may be a token that starts with "-": never echo it.
			return usageFail(stderr, "unknown flag (not shown: put -- before a TOKEN that starts with -)")
		}
		return usageFail(stderr, fmt.Sprintf("unknown flag %s", p.unknown[0]))
	}
	if name == "help" {
		fmt.Fprint(stdout, usage)
		return 0
	}
	var cmd *command
	for i := range commands {
		if commands[i].name == name {
			cmd = &commands[i]
		}
	}
	if cmd == nil {
		return usageFail(stderr, fmt.Sprintf("unknown command %q", name))
	}
	var arg string
	switch {
	case cmd.arg == "" && len(rest) > 0:
		return usageFail(stderr, fmt.Sprintf("%s takes no argument, got %d", name, len(rest)))
	case cmd.arg != "" && len(rest) == 0:
		return usageFail(stderr, fmt.Sprintf("%s: missing %s", name, cmd.arg))
	case cmd.arg != "" && len(rest) > 1:
		// Never echo the arguments: one of them may be a token.
		return usageFail(stderr, fmt.Sprintf("%s takes one %s, got %d arguments", name, cmd.arg, len(rest)))
	case cmd.arg != "":
		arg = rest[0]
	}

	// Unknown flags were refused above; the flag package's own report (which lists
	// every chatd flag) is dropped for one line.
	cfg, err := config.Load("chatctl", p.flags, getenv, io.Discard)
	if err != nil {
		fmt.Fprintf(stderr, "chatctl %s: %s\n", name, oneLine(err.Error()))
		return 2
	}
	if err := cfg.Validate(cmd.req); err != nil {
		fmt.Fprintf(stderr, "chatctl %s: %v\n", name, err)
		return 2
	}
	if getenv("CHAT_STARTUP_TIMEOUT") == "" && !p.setFlags["startup-timeout"] {
		cfg.StartupTimeout = defaultConnectTimeout
	}
	a := &app{cfg: cfg, json: p.json, stdout: stdout, stderr: stderr, log: newLogger(cfg, stderr)}
	defer a.close()
	if err := cmd.run(a, ctx, arg); err != nil {
		var ue *usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "chatctl %s: %s\n", name, oneLine(ue.msg))
			return 2
		}
		fmt.Fprintf(stderr, "chatctl %s: %s\n", name, oneLine(err.Error()))
		return 1
	}
	return 0
}

func usageFail(stderr io.Writer, msg string) int {
	fmt.Fprintf(stderr, "chatctl: %s\n\n%s", msg, usage)
	return 2
}

// oneLine keeps an error on one line of stderr.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// parsed is the command line split into chatctl's own switches, config flags (for
// config.Load) and positional arguments (command and its argument).
type parsed struct {
	json       bool
	help       bool
	flags      []string
	setFlags   map[string]bool
	unknown    []string // dash arguments that are no flag of ours
	positional []string
}

// configFlags returns the flags config.Load defines: one per setting, and --config.
func configFlags() map[string]bool {
	known := map[string]bool{"config": true}
	t := reflect.TypeFor[config.Config]()
	for i := 0; i < t.NumField(); i++ {
		if env := t.Field(i).Tag.Get("env"); env != "" && env != "-" {
			known[config.FlagName(env)] = true
		}
	}
	return known
}

// parseArgs lets --json and the config flags stand anywhere: before the command,
// between it and its argument, or after. Every config flag takes a value (as
// --name=value or --name value); "--" ends the flags.
func parseArgs(args []string) (parsed, error) {
	p := parsed{setFlags: map[string]bool{}}
	known := configFlags()
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			p.positional = append(p.positional, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			p.positional = append(p.positional, a)
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		switch name {
		case "json":
			if !hasValue {
				p.json = true
				continue
			}
			switch strings.ToLower(value) {
			case "true", "1", "t":
				p.json = true
			case "false", "0", "f":
				p.json = false
			default:
				return p, fmt.Errorf("--json takes true or false, not %q", value)
			}
			continue
		case "h", "help":
			p.help = true
			continue
		}
		if !known[name] {
			p.unknown = append(p.unknown, a)
			continue
		}
		p.setFlags[name] = true
		if hasValue {
			p.flags = append(p.flags, a)
			continue
		}
		if i+1 >= len(args) {
			return p, fmt.Errorf("flag -%s needs a value", name)
		}
		p.flags = append(p.flags, a, args[i+1])
		i++
	}
	return p, nil
}

// newLogger is silent unless CHAT_LOG_LEVEL=debug: an operator wants one line per
// failure, not the stores' retry warnings.
func newLogger(cfg *config.Config, stderr io.Writer) *slog.Logger {
	if cfg.LogLevel != "debug" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// app is one invocation: settings, output, and the stores opened so far.
type app struct {
	cfg    *config.Config
	json   bool
	stdout io.Writer
	stderr io.Writer
	log    *slog.Logger

	rs *redis.Store
	db *postgres.DB
}

// redisStore connects to Redis on first use.
func (a *app) redisStore(ctx context.Context) (*redis.Store, error) {
	if a.rs != nil {
		return a.rs, nil
	}
	rs, err := host.ConnectRedis(ctx, a.cfg, a.log)
	if err != nil {
		return nil, err
	}
	a.rs = rs
	return rs, nil
}

// database connects to PostgreSQL on first use.
func (a *app) database(ctx context.Context) (*postgres.DB, error) {
	if a.db != nil {
		return a.db, nil
	}
	db, err := host.ConnectDB(ctx, a.cfg, a.log)
	if err != nil {
		return nil, err
	}
	a.db = db
	return db, nil
}

func (a *app) close() {
	if a.rs != nil {
		_ = a.rs.Client().Close()
	}
	if a.db != nil {
		_ = a.db.Close()
	}
}
