package clustertest

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Proxy is a TCP proxy on a loopback port of its own, put in front of a host's
// internal listener, Postgres or Redis to cut the link on demand. The target may be
// set after the proxy listens, so a host can be started with the proxy's URL before
// its own port is known.
type Proxy struct {
	ln net.Listener

	mu     sync.Mutex
	target string
	cut    bool
	// cuts counts Cut calls: a connection accepted before a Cut but still dialing its
	// target when the Cut came is closed when it would start, or the bytes its client
	// wrote before the Cut would go through after Restore.
	cuts  int
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
	// thaw is non-nil while frozen: closed by Unfreeze.
	thaw   chan struct{}
	closed chan struct{} // closed by Close
	// lastUp is when bytes from a client last reached the target (unix nanos);
	// lastDown, when bytes from the target last reached a client.
	lastUp, lastDown atomic.Int64
}

// LastForwarded is when bytes from a client last reached the target: for a socket,
// the last frame or pong the host can have read, from which its read deadline runs.
func (p *Proxy) LastForwarded() time.Time { return time.Unix(0, p.lastUp.Load()) }

// LastReturned is when bytes from the target last reached a client: for a host's
// internal link, the last answer to a deliver call that got through.
func (p *Proxy) LastReturned() time.Time { return time.Unix(0, p.lastDown.Load()) }

// NewProxy listens on a free loopback port and forwards every connection to target
// (which may be empty until SetTarget). It is closed when the test ends.
func NewProxy(tb testing.TB, target string) *Proxy {
	tb.Helper()
	ln, err := new(net.ListenConfig).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("proxy listen: %v", err)
	}
	p := &Proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}, closed: make(chan struct{})}
	p.wg.Add(1)
	go p.accept()
	tb.Cleanup(p.Close)
	return p
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// URL is "http://" + Addr.
func (p *Proxy) URL() string { return "http://" + p.Addr() }

// SetTarget sets where new connections go.
func (p *Proxy) SetTarget(target string) {
	p.mu.Lock()
	p.target = target
	p.mu.Unlock()
}

// Cut closes every open connection and closes new ones as soon as they are accepted,
// until Restore.
func (p *Proxy) Cut() {
	p.mu.Lock()
	p.cut = true
	p.cuts++
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
}

// Restore lets new connections through again.
func (p *Proxy) Restore() {
	p.mu.Lock()
	p.cut = false
	p.mu.Unlock()
}

// Freeze stops forwarding bytes in both directions without closing anything: every
// open connection looks, to both ends, like a peer that vanished without a FIN (a
// half-open connection). New connections are accepted and frozen too. Unfreeze
// resumes.
func (p *Proxy) Freeze() {
	p.mu.Lock()
	if p.thaw == nil {
		p.thaw = make(chan struct{})
	}
	p.mu.Unlock()
}

// Unfreeze forwards again what Freeze held.
func (p *Proxy) Unfreeze() {
	p.mu.Lock()
	if p.thaw != nil {
		close(p.thaw)
		p.thaw = nil
	}
	p.mu.Unlock()
}

// gate blocks while the proxy is frozen; it returns false when done closes first.
func (p *Proxy) gate(done <-chan struct{}) bool {
	for {
		p.mu.Lock()
		thaw := p.thaw
		p.mu.Unlock()
		if thaw == nil {
			return true
		}
		select {
		case <-thaw:
		case <-done:
			return false
		}
	}
}

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() {
	_ = p.ln.Close()
	p.Unfreeze()
	p.Cut()
	close(p.closed)
	p.wg.Wait()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		target, cut, cuts := p.target, p.cut, p.cuts
		p.mu.Unlock()
		if cut || target == "" {
			_ = c.Close()
			continue
		}
		p.wg.Add(1)
		go p.pipe(c, target, cuts)
	}
}

// track adds (or removes) a connection accepted after cuts Cuts; it refuses to add
// while cut, or once a Cut came after the accept.
func (p *Proxy) track(c net.Conn, add bool, cuts int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !add {
		delete(p.conns, c)
		return true
	}
	if p.cut || p.cuts != cuts {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) pipe(client net.Conn, target string, cuts int) {
	defer p.wg.Done()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	server, err := new(net.Dialer).DialContext(ctx, "tcp", target)
	cancel()
	if err != nil {
		_ = client.Close()
		return
	}
	if !p.track(client, true, cuts) {
		_ = client.Close()
		_ = server.Close()
		return
	}
	if !p.track(server, true, cuts) {
		p.track(client, false, cuts)
		_ = client.Close()
		_ = server.Close()
		return
	}
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				// Frozen: hold the bytes read (and stop reading, so TCP backs up).
				if !p.gate(p.closed) {
					break
				}
				if _, werr := dst.Write(buf[:n]); werr != nil {
					break
				}
				if dst == server {
					p.lastUp.Store(time.Now().UnixNano())
				} else {
					p.lastDown.Store(time.Now().UnixNano())
				}
			}
			if err != nil {
				break
			}
		}
		_ = dst.Close()
		_ = src.Close()
		done <- struct{}{}
	}
	go cp(server, client)
	go cp(client, server)
	<-done
	<-done
	p.track(client, false, cuts)
	p.track(server, false, cuts)
}
