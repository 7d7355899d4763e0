// Package dev runs `chatd dev`: a whole Switchboard cluster in one process for a
// newcomer's first look. Three socket hosts, a round-robin front door that serves the
// web client and spreads /api and /ws over them without stickiness, presence and
// sessions in an embedded Redis-protocol server (miniredis) and data in an embedded
// SQLite file, all through the same host and store code as production.
package dev

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/switchboard-chat/switchboard/pkg/chat"
	"github.com/switchboard-chat/switchboard/pkg/config"
	"github.com/switchboard-chat/switchboard/pkg/host"
	"github.com/switchboard-chat/switchboard/pkg/postgres"
	"github.com/switchboard-chat/switchboard/pkg/redis"
)

// Hosts is how many socket hosts the dev cluster runs.
const Hosts = 3

// Cluster is a running dev cluster.
type Cluster struct {
	log   *slog.Logger
	hosts []*host.Host
	front *FrontDoor
	mini  *miniredis.Miniredis
	db    *postgres.DB
	rs    *redis.Store
}

// URL is the front door's address as a browser would use it.
func (c *Cluster) URL() string { return "http://" + browserAddr(c.front.Addr()) }

// HostURLs are the hosts' own public addresses.
func (c *Cluster) HostURLs() []string {
	out := make([]string, len(c.hosts))
	for i, h := range c.hosts {
		out[i] = "http://" + browserAddr(h.PublicAddr())
	}
	return out
}

// Hosts returns the running hosts (tests look inside).
func (c *Cluster) Hosts() []*host.Host { return c.hosts }

// Run starts the cluster, prints where to find it on stdout, serves until ctx ends and
// then drains every host.
func Run(ctx context.Context, cfg *config.Config, log *slog.Logger, stdout io.Writer) error {
	c, err := Start(ctx, cfg, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Switchboard dev cluster is up: open %s in two browsers (hosts %s).\n", c.URL(), joinURLs(c.HostURLs()))
	fmt.Fprintf(stdout, "Register two users, create a thread, and chat; Ctrl-C stops it. Data stays in %s.\n", dataDirNote(cfg))
	return c.Wait(ctx)
}

func joinURLs(us []string) string {
	s := ""
	for i, u := range us {
		if i > 0 {
			s += ", "
		}
		s += u
	}
	return s
}

func dataDirNote(cfg *config.Config) string {
	if cfg.DatabaseURL != "" {
		return "your PostgreSQL"
	}
	return filepath.Join(cfg.DataDir, "switchboard.db")
}

// Start brings the stores, the hosts and the front door up.
func Start(ctx context.Context, cfg *config.Config, log *slog.Logger) (c *Cluster, err error) {
	c = &Cluster{log: log}
	defer func() {
		if err != nil {
			c.closeStores()
		}
	}()
	if err := c.openStores(ctx, cfg); err != nil {
		return nil, err
	}
	frontHost, frontPort, err := net.SplitHostPort(cfg.PublicAddr)
	if err != nil {
		return nil, fmt.Errorf("CHAT_PUBLIC_ADDR: %w", err)
	}
	internalHost, internalPort, err := net.SplitHostPort(cfg.InternalAddr)
	if err != nil {
		return nil, fmt.Errorf("CHAT_INTERNAL_ADDR: %w", err)
	}
	fp, _ := strconv.Atoi(frontPort)
	ip, _ := strconv.Atoi(internalPort)
	secret := cfg.ClusterSecret
	if secret == "" {
		secret = chat.NewID() + chat.NewID() // fresh per run: only these hosts talk
	}

	// The front door listens first so that every host's allowed origins can name it.
	front, err := NewFrontDoor(net.JoinHostPort(frontHost, frontPort), log)
	if err != nil {
		return nil, fmt.Errorf("CHAT_PUBLIC_ADDR %s: %w", cfg.PublicAddr, err)
	}
	c.front = front
	_, actualFront, _ := net.SplitHostPort(front.Addr())
	origins := append([]string{}, cfg.AllowedOrigins...)
	origins = append(origins, "http://localhost:"+actualFront, "http://127.0.0.1:"+actualFront)
	for i := 1; i <= Hosts; i++ {
		if fp != 0 {
			p := strconv.Itoa(fp + i)
			origins = append(origins, "http://localhost:"+p, "http://127.0.0.1:"+p)
		}
	}
	for i := 1; i <= Hosts; i++ {
		hc := *cfg
		hc.HostID = fmt.Sprintf("dev%d", i)
		hc.ClusterSecret = secret
		hc.PublicAddr = net.JoinHostPort(frontHost, portPlus(fp, i))
		hc.InternalAddr = net.JoinHostPort(internalHost, portPlus(ip, i))
		ih := internalHost
		if ih == "" || ih == "0.0.0.0" || ih == "::" {
			ih = "127.0.0.1"
		}
		hc.InternalURL = "http://" + net.JoinHostPort(ih, portPlus(ip, i))
		hc.AllowedOrigins = origins
		// The front door is on loopback: trust its X-Forwarded-For.
		hc.TrustedProxies = append(append([]string{}, cfg.TrustedProxies...), "127.0.0.1/32", "::1/128")
		h, err := host.New(&hc, host.Options{DB: c.db, Redis: c.rs}, log)
		if err != nil {
			return nil, err
		}
		if err := h.Start(ctx); err != nil {
			return nil, err
		}
		c.hosts = append(c.hosts, h)
	}
	var backends []string
	for _, h := range c.hosts {
		backends = append(backends, h.PublicAddr())
	}
	front.SetBackends(backends)
	return c, nil
}

func portPlus(base, i int) string {
	if base == 0 {
		return "0"
	}
	return strconv.Itoa(base + i)
}

func browserAddr(addr string) string {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if h == "" || h == "0.0.0.0" || h == "::" {
		h = "localhost"
	}
	return net.JoinHostPort(h, p)
}

// openStores uses the configured real stores, or the embedded ones.
func (c *Cluster) openStores(ctx context.Context, cfg *config.Config) error {
	if cfg.DatabaseURL != "" {
		db, err := host.ConnectDB(ctx, cfg, c.log)
		if err != nil {
			return err
		}
		c.db = db
	} else {
		if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
			return fmt.Errorf("CHAT_DATA_DIR %s: %w", cfg.DataDir, err)
		}
		db, err := postgres.OpenSQLite(ctx, filepath.Join(cfg.DataDir, "switchboard.db"), postgres.Config{}, c.log)
		if err != nil {
			return err
		}
		c.db = db
	}
	if err := c.db.Migrate(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if cfg.RedisURL != "" || len(cfg.RedisAddrs) > 0 {
		rs, err := host.ConnectRedis(ctx, cfg, c.log)
		if err != nil {
			return err
		}
		c.rs = rs
		return nil
	}
	c.mini = miniredis.NewMiniRedis()
	if err := c.mini.StartAddr("127.0.0.1:0"); err != nil {
		return fmt.Errorf("embedded redis: %w", err)
	}
	client, err := redis.Dial(ctx, "redis://"+c.mini.Addr()+"/0", nil)
	if err != nil {
		return fmt.Errorf("embedded redis: %w", err)
	}
	c.rs = redis.New(client, redis.Config{Prefix: cfg.RedisPrefix}, c.log)
	return nil
}

func (c *Cluster) closeStores() {
	if c.rs != nil {
		_ = c.rs.Client().Close()
	}
	if c.mini != nil {
		c.mini.Close()
	}
	if c.db != nil {
		_ = c.db.Close()
	}
	if c.front != nil {
		_ = c.front.Close()
	}
}

// Wait serves until ctx ends, then drains every host in parallel (1012 to each
// socket, through the front door too), stops the front door and closes the stores.
func (c *Cluster) Wait(ctx context.Context) error {
	hostCtx, cancelHosts := context.WithCancel(context.Background())
	defer cancelHosts()
	var wg sync.WaitGroup
	errs := make([]error, len(c.hosts))
	for i, h := range c.hosts {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = h.Run(hostCtx) }()
	}
	frontErr := make(chan error, 1)
	go func() { frontErr <- c.front.Serve() }()
	stopClock := c.tickClock()
	var err error
	select {
	case <-ctx.Done():
	case err = <-frontErr:
	}
	c.log.Info("dev cluster stopping")
	cancelHosts()
	wg.Wait()
	stopClock()
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = c.front.Shutdown(sctx)
	c.closeStores()
	return errors.Join(append(errs, err)...)
}

// tickClock moves miniredis's clock with the wall clock, so that TTLs (sessions, host
// heartbeats) expire in real time as they do in Redis.
func (c *Cluster) tickClock() func() {
	if c.mini == nil {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		last := time.Now()
		for {
			select {
			case now := <-t.C:
				c.mini.SetTime(now)
				c.mini.FastForward(now.Sub(last))
				last = now
			case <-done:
				return
			}
		}
	}()
	return func() { close(done) }
}
