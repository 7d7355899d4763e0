// Package httpapi serves the public HTTP half of the contract with gin: /api/v1 (auth,
// threads, messages, presence), /healthz, /readyz, /metrics, and mounts /ws and the web
// client that other packages provide.
package httpapi

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/switchboard-chat/switchboard/pkg/chat"
	"github.com/switchboard-chat/switchboard/pkg/metrics"
)

func init() {
	// gin's mode is process-wide; set it once, before any engine exists.
	gin.SetMode(gin.ReleaseMode)
}

// CookieName is the session cookie.
const CookieName = "chat_session"

// Config configures the API.
type Config struct {
	HostID         string
	RequestBytes   int
	CookieSecure   bool
	SessionTTL     time.Duration
	TrustedProxies []*net.IPNet
	Origins        OriginPolicy
	// ServeAPI mounts /api/v1 (role api); WS, when set, mounts /ws (role socket).
	ServeAPI bool
	WS       http.Handler
	// Web serves the web client at / (optional).
	Web http.Handler
	// Ready reports whether the stores answer and the host is registered.
	Ready func(ctx context.Context) error
}

// API holds the handlers' dependencies.
type API struct {
	cfg     Config
	svc     *chat.Service
	metrics *metrics.Metrics
	log     *slog.Logger
}

const sessionKey = "session"

// New returns the public handler.
func New(cfg Config, svc *chat.Service, m *metrics.Metrics, log *slog.Logger) http.Handler {
	if cfg.RequestBytes == 0 {
		cfg.RequestBytes = 1 << 20
	}
	a := &API{cfg: cfg, svc: svc, metrics: m, log: log}
	r := gin.New()
	r.HandleMethodNotAllowed = true
	// No 301/307 to the path without its trailing slash: /api/v1/me/ is an unknown
	// route and answers 404 not_found in the contract's shape, not an HTML redirect.
	r.RedirectTrailingSlash = false
	r.ContextWithFallback = true
	r.Use(a.observe, gin.CustomRecoveryWithWriter(nil, func(c *gin.Context, err any) {
		a.log.Error("panic", "route", c.FullPath(), "err", err)
		a.writeError(c, chat.Errorf(chat.EInternal, "internal error"))
	}), a.errorMiddleware)
	r.NoRoute(func(c *gin.Context) {
		p := c.Request.URL.Path
		if cfg.Web != nil && (c.Request.Method == http.MethodGet || c.Request.Method == http.MethodHead) && !strings.HasPrefix(p, "/api/") && p != "/ws" {
			cfg.Web.ServeHTTP(c.Writer, c.Request)
			return
		}
		a.writeError(c, chat.Errorf(chat.ENotFound, "no such route"))
	})
	r.NoMethod(func(c *gin.Context) {
		a.writeError(c, chat.Errorf(chat.EMethodNotAllowed, "method %s not allowed here", c.Request.Method))
	})

	r.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok", "host_id": cfg.HostID}) })
	r.GET("/readyz", a.readyz)
	// Some load balancers health-check with HEAD.
	r.HEAD("/healthz", func(c *gin.Context) { c.Status(http.StatusOK) })
	r.HEAD("/readyz", a.readyz)
	r.GET("/metrics", gin.WrapH(m.Handler()))
	if cfg.WS != nil {
		r.GET("/ws", gin.WrapH(cfg.WS))
	}
	if cfg.ServeAPI {
		v1 := r.Group("/api/v1", a.limitBody)
		v1.POST("/auth/register", a.register)
		v1.POST("/auth/login", a.login)
		authed := v1.Group("", a.authenticate)
		authed.POST("/auth/logout", a.logout)
		authed.GET("/me", a.me)
		authed.POST("/threads", a.createThread)
		authed.GET("/threads", a.listThreads)
		authed.GET("/threads/:id", a.getThread)
		authed.POST("/threads/:id/members", a.addMember)
		authed.DELETE("/threads/:id/members/:user_id", a.removeMember)
		authed.GET("/threads/:id/messages", a.listMessages)
		authed.POST("/threads/:id/messages", a.sendMessage)
		authed.POST("/threads/:id/read", a.markRead)
		authed.GET("/presence", a.presence)
	}
	return r
}

// observe records request metrics by route template (not raw path, which would
// explode the label set) and logs failures.
func (a *API) observe(c *gin.Context) {
	start := time.Now()
	c.Next()
	route := c.FullPath()
	if route == "" {
		route = "unmatched"
	}
	status := c.Writer.Status()
	a.metrics.HTTPRequests.WithLabelValues(route, c.Request.Method, strconv.Itoa(status)).Inc()
	a.metrics.HTTPDuration.WithLabelValues(route, c.Request.Method).Observe(time.Since(start).Seconds())
	if status >= 500 {
		a.log.Warn("http", "method", c.Request.Method, "route", route, "status", status, "ms", time.Since(start).Milliseconds())
	} else {
		a.log.Debug("http", "method", c.Request.Method, "route", route, "status", status, "ms", time.Since(start).Milliseconds())
	}
}

func (a *API) readyz(c *gin.Context) {
	if a.cfg.Ready == nil {
		c.JSON(http.StatusOK, gin.H{"status": "ready"})
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), 2*time.Second)
	defer cancel()
	if err := a.cfg.Ready(ctx); err != nil {
		c.JSON(http.StatusServiceUnavailable, errorBody{Error: errorDetail{Code: chat.EUnavailable, Message: err.Error()}})
		return
	}
	c.JSON(http.StatusOK, gin.H{"status": "ready", "host_id": a.cfg.HostID})
}

// authenticate requires a session (cookie or Bearer). A state-changing request that
// the cookie authenticates must come from an allowed Origin: that, with SameSite=Lax,
// is the CSRF defence. Bearer requests carry no ambient credential and are not checked.
func (a *API) authenticate(c *gin.Context) {
	token, fromCookie := TokenFrom(c.Request)
	if token == "" {
		a.writeError(c, chat.Errorf(chat.EUnauthenticated, "a valid session is required"))
		return
	}
	sess, err := a.svc.Authenticate(c.Request.Context(), token)
	if err != nil {
		a.writeError(c, err)
		return
	}
	if fromCookie && (c.Request.Method == http.MethodPost || c.Request.Method == http.MethodDelete) && !a.cfg.Origins.Allow(c.Request) {
		a.writeError(c, chat.Errorf(chat.EForbiddenOrigin, "requests from this origin are not allowed"))
		return
	}
	c.Set(sessionKey, sess)
	c.Next()
}

func session(c *gin.Context) chat.Session {
	v, _ := c.Get(sessionKey)
	s, _ := v.(chat.Session)
	return s
}
