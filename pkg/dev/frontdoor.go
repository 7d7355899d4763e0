package dev

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// FrontDoor is the dev cluster's load balancer: round robin over the hosts for every
// request, with a separate counter for /ws so that consecutive sockets land on
// different hosts; no stickiness. It answers /healthz itself and /readyz with 200
// while at least one host is ready, and adds X-Forwarded-For (the hosts trust it).
type FrontDoor struct {
	ln    net.Listener
	srv   *http.Server
	log   *slog.Logger
	next  atomic.Uint64
	nextW atomic.Uint64

	mu       sync.RWMutex
	backends []*backend
}

type backend struct {
	addr  string
	proxy *httputil.ReverseProxy
	up    atomic.Bool
}

// NewFrontDoor listens on addr; SetBackends and Serve follow.
func NewFrontDoor(addr string, log *slog.Logger) (*FrontDoor, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return nil, err
	}
	f := &FrontDoor{ln: ln, log: log}
	f.srv = &http.Server{Handler: f, ReadHeaderTimeout: 10 * time.Second}
	return f, nil
}

// Addr is the bound address.
func (f *FrontDoor) Addr() string { return f.ln.Addr().String() }

// SetBackends sets the hosts' public addresses.
func (f *FrontDoor) SetBackends(addrs []string) {
	bs := make([]*backend, len(addrs))
	for i, a := range addrs {
		target := &url.URL{Scheme: "http", Host: a}
		b := &backend{addr: a}
		b.up.Store(true)
		b.proxy = &httputil.ReverseProxy{
			// The Host header is kept, so a host sees the front door's origin as
			// its own. The front door is the edge: X-Forwarded-For is set to the
			// client's address, replacing whatever the client claimed.
			Rewrite: func(r *httputil.ProxyRequest) {
				r.SetURL(target)
				r.Out.Host = r.In.Host
				r.SetXForwarded()
			},
			ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
				b.up.Store(false)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusBadGateway)
				_, _ = w.Write([]byte(`{"error":{"code":"unavailable","message":"host unreachable, try again"}}`))
			},
		}
		bs[i] = b
	}
	f.mu.Lock()
	f.backends = bs
	f.mu.Unlock()
}

// Serve serves until Shutdown, checking the hosts' readiness every second.
func (f *FrontDoor) Serve() error {
	stop := make(chan struct{})
	defer close(stop)
	go f.check(stop)
	if err := f.srv.Serve(f.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Shutdown stops accepting and waits for plain requests (hijacked sockets are the
// hosts' to close).
func (f *FrontDoor) Shutdown(ctx context.Context) error { return f.srv.Shutdown(ctx) }

// Close stops listening at once.
func (f *FrontDoor) Close() error { return f.srv.Close() }

func (f *FrontDoor) check(stop chan struct{}) {
	client := &http.Client{Timeout: 800 * time.Millisecond}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		f.mu.RLock()
		bs := f.backends
		f.mu.RUnlock()
		for _, b := range bs {
			req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://"+b.addr+"/readyz", nil)
			resp, err := client.Do(req)
			ok := err == nil && resp.StatusCode == http.StatusOK
			if err == nil {
				_ = resp.Body.Close()
			}
			b.up.Store(ok)
		}
	}
}

// pick returns the next live backend in round-robin order.
func (f *FrontDoor) pick(counter *atomic.Uint64) *backend {
	f.mu.RLock()
	bs := f.backends
	f.mu.RUnlock()
	n := uint64(len(bs))
	if n == 0 {
		return nil
	}
	start := counter.Add(1)
	for i := uint64(0); i < n; i++ {
		if b := bs[(start+i)%n]; b.up.Load() {
			return b
		}
	}
	return nil
}

// ServeHTTP answers its own /healthz and /readyz (ready while any host is) and passes
// every other request to the next ready host. Sockets keep a round-robin of their own,
// so they spread evenly over the hosts whatever HTTP calls come between them.
func (f *FrontDoor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/healthz":
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok","front_door":true}`))
		return
	case "/readyz":
		w.Header().Set("Content-Type", "application/json")
		if f.pick(&f.next) == nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"error":{"code":"unavailable","message":"no host is ready"}}`))
			return
		}
		_, _ = w.Write([]byte(`{"status":"ready","front_door":true}`))
		return
	}
	counter := &f.next
	if r.URL.Path == "/ws" {
		counter = &f.nextW
	}
	b := f.pick(counter)
	if b == nil {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"error":{"code":"unavailable","message":"no host is ready"}}`))
		return
	}
	b.proxy.ServeHTTP(w, r)
}
