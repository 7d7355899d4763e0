// Package host wires one socket host from its parts: stores, the chat service, the
// WebSocket hub, the cluster node and deliverer, and the public and internal HTTP
// listeners. `chatd serve` runs one; `chatd dev` runs three in one process.
package host

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/switchboard-chat/switchboard/pkg/chat"
	"github.com/switchboard-chat/switchboard/pkg/cluster"
	"github.com/switchboard-chat/switchboard/pkg/config"
	"github.com/switchboard-chat/switchboard/pkg/httpapi"
	"github.com/switchboard-chat/switchboard/pkg/internal/rawio"
	"github.com/switchboard-chat/switchboard/pkg/metrics"
	"github.com/switchboard-chat/switchboard/pkg/password"
	"github.com/switchboard-chat/switchboard/pkg/postgres"
	"github.com/switchboard-chat/switchboard/pkg/redis"
	"github.com/switchboard-chat/switchboard/pkg/web"
	"github.com/switchboard-chat/switchboard/pkg/ws"
)

// Options are what a host takes besides its config.
type Options struct {
	DB    *postgres.DB
	Redis *redis.Store
	// Hasher defaults to bcrypt at its default cost.
	Hasher chat.PasswordHasher
	// OwnsStores makes Run close the stores on exit.
	OwnsStores bool
}

// Host is one running socket host.
type Host struct {
	cfg     *config.Config
	opts    Options
	log     *slog.Logger
	Metrics *metrics.Metrics
	Service *chat.Service
	Hub     *ws.Hub
	node    *cluster.Node
	reg     *cluster.Registry
	deliv   *cluster.Deliverer
	acks    *chat.AckBuffer

	publicLn, internalLn net.Listener
	public, internal     *http.Server
}

// New builds a host and binds its listeners; Start joins the cluster, Run serves.
func New(cfg *config.Config, opts Options, log *slog.Logger) (*Host, error) {
	log = log.With("host", cfg.HostID)
	if opts.Hasher == nil {
		if cfg.BcryptCost < password.DefaultCost {
			log.Warn("CHAT_BCRYPT_COST is below the production minimum; use it for load tests only", "cost", cfg.BcryptCost)
		}
		opts.Hasher = password.New(cfg.BcryptCost)
	}
	m := metrics.New()
	if opts.Redis != nil {
		m.WatchRedisPipelines(opts.Redis.PipelineStats)
	}
	if opts.DB != nil {
		m.WatchDBPool(opts.DB.PoolStats)
		m.WatchCommits(opts.DB.CommitStats)
	}
	svc := chat.NewService(chat.ServiceConfig{
		SessionTTL: cfg.SessionTTL,
		Limits: chat.Limits{
			LoginFailures: cfg.LimitLoginFailures, LoginFailureWindow: cfg.LimitLoginFailureWindow,
			AuthPerMinute: cfg.LimitAuthPerMinute, SendRate: cfg.LimitSendRate, SendBurst: cfg.LimitSendBurst,
			ThreadMembers: cfg.LimitThreadMembers, BodyBytes: cfg.LimitBodyBytes,
		},
	}, log)
	svc.Observe = func(stage string, d time.Duration) { m.Stage.WithLabelValues(stage).Observe(d.Seconds()) }
	svc.Users, svc.Store, svc.Sessions, svc.Presence, svc.Limiter, svc.Hasher =
		opts.DB, opts.DB, opts.Redis, opts.Redis, opts.Redis, opts.Hasher

	var trusted []*net.IPNet
	for _, p := range cfg.TrustedProxies {
		n, err := config.ParseCIDR(p)
		if err != nil {
			return nil, err
		}
		trusted = append(trusted, n)
	}
	origins := httpapi.OriginPolicy{Allowed: cfg.AllowedOrigins}

	// Bind first, so that a :0 port is known before the host announces its URL.
	var lc net.ListenConfig
	internalLn, err := lc.Listen(context.Background(), "tcp", cfg.InternalAddr)
	if err != nil {
		return nil, fmt.Errorf("CHAT_INTERNAL_ADDR %s: %w", cfg.InternalAddr, err)
	}
	publicLn, err := lc.Listen(context.Background(), "tcp", cfg.PublicAddr)
	if err != nil {
		_ = internalLn.Close()
		return nil, fmt.Errorf("CHAT_PUBLIC_ADDR %s: %w", cfg.PublicAddr, err)
	}
	// Both listeners' sockets read and write outside the scheduler's syscall path (see
	// package rawio): a host's socket writes are most of its system calls.
	internalLn, publicLn = rawio.Listener{Listener: internalLn}, rawio.Listener{Listener: publicLn}
	if strings.HasSuffix(cfg.InternalURL, ":0") {
		_, port, _ := net.SplitHostPort(internalLn.Addr().String())
		cfg.InternalURL = strings.TrimSuffix(cfg.InternalURL, "0") + port
	}
	self := chat.Host{HostID: cfg.HostID, InternalURL: cfg.InternalURL, Instance: chat.NewID(), StartedAt: time.Now().UTC(), DeliverBatch: true}
	dir := cluster.NewDirectory(self, cfg.HostTTL)
	reg := cluster.NewRegistry(opts.Redis, dir, log)
	acks := chat.NewAckBuffer(opts.DB, 200*time.Millisecond, 0, log)
	hub := ws.NewHub(ws.HubConfig{
		HostID: cfg.HostID, Instance: self.Instance, FrameBytes: cfg.LimitFrameBytes, SendQueue: cfg.LimitSendQueue,
		SocketsPerUser: cfg.LimitSocketsPerUser, TypingRate: cfg.LimitTypingRate,
		PingInterval: cfg.PingInterval, PongTimeout: cfg.PongTimeout,
		CheckOrigin: origins.Allow,
		Authenticate: func(r *http.Request) (chat.Session, error) {
			tok, _ := httpapi.TokenFrom(r)
			return svc.Authenticate(r.Context(), tok)
		},
	}, svc, reg, acks, m, log)
	deliv := cluster.NewDeliverer(cluster.DelivererConfig{HostID: cfg.HostID, Timeout: cfg.DeliverTimeout}, hub, opts.Redis, dir, cluster.NewSigner(cfg.ClusterSecret), m, log)
	svc.Deliverer, svc.Hosts = deliv, dir
	node := cluster.NewNode(cluster.NodeConfig{Self: self, HeartbeatEvery: cfg.HeartbeatEvery, HostTTL: cfg.HostTTL}, opts.Redis, dir, reg, hub, log)

	h := &Host{cfg: cfg, opts: opts, log: log, Metrics: m, Service: svc, Hub: hub, node: node, reg: reg, deliv: deliv, acks: acks,
		publicLn: publicLn, internalLn: internalLn}
	apiCfg := httpapi.Config{
		HostID: cfg.HostID, RequestBytes: cfg.LimitRequestBytes, CookieSecure: cfg.CookieSecure, SessionTTL: cfg.SessionTTL,
		TrustedProxies: trusted, Origins: origins, ServeAPI: cfg.HasRole("api"), Web: web.Handler(), Ready: h.ready,
	}
	if cfg.HasRole("socket") {
		apiCfg.WS = hub
	}
	h.public = &http.Server{Handler: httpapi.New(apiCfg, svc, m, log), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	h.internal = &http.Server{Handler: cluster.NewInternalHandler(hub, cluster.NewSigner(cfg.ClusterSecret), cfg.Pprof, log), ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 120 * time.Second}
	return h, nil
}

// ready backs /readyz: both stores answer, the host is registered, and not draining.
func (h *Host) ready(ctx context.Context) error {
	if h.Hub.Draining() {
		return errors.New("draining")
	}
	if err := h.opts.DB.Ping(ctx); err != nil {
		return errors.New("database unreachable")
	}
	if err := h.opts.Redis.Ping(ctx); err != nil {
		return errors.New("redis unreachable")
	}
	if !h.node.Ready() {
		return errors.New("host not registered")
	}
	return nil
}

// PublicAddr returns the address the public listener is bound to.
func (h *Host) PublicAddr() string { return h.publicLn.Addr().String() }

// InternalAddr returns the address the internal listener is bound to.
func (h *Host) InternalAddr() string { return h.internalLn.Addr().String() }

// Start claims the host id in the registry (the listeners are bound by New); after it
// returns, Run serves.
func (h *Host) Start(ctx context.Context) error {
	if err := h.node.Claim(ctx); err != nil {
		_ = h.internalLn.Close()
		_ = h.publicLn.Close()
		return err
	}
	return nil
}

// Run serves until ctx ends, then drains: /readyz turns 503 and no new sockets are
// taken, every socket is closed with 1012 over a short spread, presence entries and
// the host registration are removed, in-flight deliveries and acks finish, and the
// listeners shut down, all within the drain timeout.
func (h *Host) Run(ctx context.Context) error {
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	start := func(fn func(context.Context)) {
		wg.Add(1)
		go func() { defer wg.Done(); fn(bg) }()
	}
	start(h.reg.Run)
	start(h.Hub.Run)
	start(h.acks.Run)
	start(h.node.Run)

	errc := make(chan error, 2)
	go func() { errc <- serve(h.public, h.publicLn) }()
	go func() { errc <- serve(h.internal, h.internalLn) }()
	h.log.Info("host serving", "public", h.PublicAddr(), "internal", h.InternalAddr(), "internal_url", h.cfg.InternalURL, "roles", strings.Join(h.cfg.Roles, ","))

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
		h.log.Error("listener failed", "err", runErr)
	}

	h.log.Info("draining", "sockets", h.Hub.Count())
	dctx, cancel := context.WithTimeout(context.Background(), h.cfg.DrainTimeout)
	defer cancel()
	spread := min(2*time.Second, h.cfg.DrainTimeout/3)
	h.Hub.Drain(dctx, spread)
	h.node.Leave(dctx)
	// The public listener shuts before the deliverer closes: a send made over HTTP
	// (POST /threads/{id}/messages) is still delivered while its request finishes, and
	// none starts a delivery once the deliverer waits for the last one.
	_ = h.public.Shutdown(dctx)
	h.deliv.Close(dctx)
	_ = h.internal.Shutdown(dctx)
	stopBG()
	wg.Wait()
	if h.opts.OwnsStores {
		_ = h.opts.DB.Close()
		_ = h.opts.Redis.Client().Close()
	}
	h.log.Info("drained")
	return runErr
}

func serve(s *http.Server, ln net.Listener) error {
	if err := s.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
