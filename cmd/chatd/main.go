// Command chatd is the Switchboard socket host.
//
//	chatd serve     one socket host (public listener + internal listener)
//	chatd migrate   apply the database migrations and exit
//	chatd dev       a whole cluster in one process with embedded stores
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	goredis "github.com/redis/go-redis/v9"

	"github.com/switchboard-chat/switchboard/pkg/config"
	"github.com/switchboard-chat/switchboard/pkg/host"
	"github.com/switchboard-chat/switchboard/pkg/redis"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

const usage = `usage: chatd <command> [flags]

commands:
  serve     run one socket host (needs CHAT_DATABASE_URL, CHAT_REDIS_URL, CHAT_CLUSTER_SECRET)
  migrate   apply the database migrations and exit
  dev       run a three-host cluster with embedded stores on :8080 (no setup)

Run 'chatd <command> -h' for its flags. Every flag also has an environment variable
(CHAT_...) and a key in the --config YAML file; flags beat env, env beats file.
`

// run is main without the process: it returns the exit status (0 ok, 1 failure, 2 bad
// usage or configuration), so tests can call it.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve", "migrate", "dev":
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "chatd: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	// The flag package prints its error and every flag; a bad flag is reported in one
	// line like any other bad setting, and the listing kept for -h.
	var flagOut bytes.Buffer
	cfg, err := config.Load("chatd "+cmd, rest, getenv, &flagOut)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			_, _ = io.Copy(stdout, &flagOut)
			return 0
		}
		fmt.Fprintf(stderr, "chatd: %s (chatd %s -h lists the settings)\n", strings.Join(strings.Fields(err.Error()), " "), cmd)
		return 2
	}
	var req config.Requirements
	switch cmd {
	case "serve":
		req.Stores = true
	case "migrate":
		req.DB = true
	}
	if err := cfg.Validate(req); err != nil {
		fmt.Fprintf(stderr, "chatd: %v\n", err)
		return 2
	}
	log := newLogger(cfg, stderr)
	goredis.SetLogger(redis.LibraryLog(log))
	switch cmd {
	case "serve":
		err = serve(ctx, cfg, log)
	case "migrate":
		err = migrate(ctx, cfg, log)
	case "dev":
		err = dev(ctx, cfg, log, stdout)
	}
	if err != nil {
		log.Error("chatd "+cmd+" failed", "err", err)
		fmt.Fprintf(stderr, "chatd: %v\n", err)
		return 1
	}
	return 0
}

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: lvl}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func serve(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	log.Info("starting", append([]any{"cmd", "serve"}, cfg.Redacted()...)...)
	db, rs, err := host.ConnectStores(ctx, cfg, log)
	if err != nil {
		return err
	}
	if cfg.AutoMigrate {
		if err := db.Migrate(ctx); err != nil {
			_ = db.Close()
			return fmt.Errorf("migrate: %w", err)
		}
	}
	h, err := host.New(cfg, host.Options{DB: db, Redis: rs, OwnsStores: true}, log)
	if err != nil {
		return err
	}
	if err := h.Start(ctx); err != nil {
		_ = db.Close()
		_ = rs.Client().Close()
		return err
	}
	return h.Run(ctx)
}

func migrate(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	db, err := host.ConnectDB(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.Migrate(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	log.Info("migrations applied")
	return nil
}
