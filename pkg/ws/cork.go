package ws

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
)

// corking is on outside benchmarks that measure what it saves.
var corking atomic.Bool

func init() { corking.Store(true) }

// corkConn lets the writer hand several frames to the kernel in one write. gorilla
// writes each frame straight to the connection, one syscall per frame; under load a
// socket's writer wakes up to several queued frames (a busy thread's messages, acks'
// answers), and one write per frame made the socket writes the largest share of a
// host's CPU when fanning out. While corked, frames gather in a pooled buffer that
// uncork writes at once; uncorked, writes go straight through, so a lone frame is not
// copied and an idle socket holds no buffer.
//
// gorilla serialises its writes (data and control frames) under its own lock, so the
// buffer sees one writer at a time; mu only keeps cork, uncork and Close consistent
// with a control frame written from another goroutine meanwhile.
type corkConn struct {
	net.Conn
	mu     sync.Mutex
	corked bool
	sealed bool // a close frame is on its way: writeFrame refuses data frames
	buf    *[]byte
}

// errSealed: the socket is closing and no data frame may follow its close frame.
var errSealed = errors.New("ws: socket closing")

// writeFrame writes one whole data frame built by newFrame, bypassing gorilla's
// message writer. It is safe beside gorilla's own writes (pings, the close frame):
// each frame is one Write under mu, so frames never interleave.
func (c *corkConn) writeFrame(p []byte) error {
	c.mu.Lock()
	if c.sealed {
		c.mu.Unlock()
		return errSealed
	}
	if !c.corked {
		c.mu.Unlock()
		_, err := c.Conn.Write(p)
		return err
	}
	defer c.mu.Unlock()
	return c.gatherLocked(p)
}

// seal makes writeFrame refuse from now on.
func (c *corkConn) seal() {
	c.mu.Lock()
	c.sealed = true
	c.mu.Unlock()
}

// corkLimit is how much a corked socket gathers before it writes anyway.
const corkLimit = 64 << 10

var corkBufs = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

// Write implements net.Conn.
func (c *corkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if !c.corked {
		c.mu.Unlock()
		return c.Conn.Write(p)
	}
	defer c.mu.Unlock()
	if err := c.gatherLocked(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// gatherLocked adds p to the corked buffer, writing first if it would pass corkLimit.
func (c *corkConn) gatherLocked(p []byte) error {
	if len(*c.buf)+len(p) > corkLimit {
		if err := c.flushLocked(); err != nil {
			return err
		}
		if len(p) > corkLimit {
			_, err := c.Conn.Write(p)
			return err
		}
	}
	*c.buf = append(*c.buf, p...)
	return nil
}

// appendFrameHeader appends the header of an unmasked, final text frame of n bytes
// (RFC 6455 5.2): what a server sends.
func appendFrameHeader(dst []byte, n int) []byte {
	dst = append(dst, 0x81) // FIN, opcode 1 (text)
	switch {
	case n < 126:
		return append(dst, byte(n))
	case n <= 0xffff:
		return append(dst, 126, byte(n>>8), byte(n))
	default:
		return append(dst, 127, byte(uint64(n)>>56), byte(uint64(n)>>48), byte(uint64(n)>>40), byte(uint64(n)>>32),
			byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
}

// cork starts gathering writes.
func (c *corkConn) cork() {
	c.mu.Lock()
	if !c.corked {
		c.corked = true
		b, ok := corkBufs.Get().(*[]byte)
		if !ok {
			nb := make([]byte, 0, 16<<10)
			b = &nb
		}
		c.buf = b
	}
	c.mu.Unlock()
}

// uncork writes what was gathered, under the write deadline last set, and goes back to
// writing straight through.
func (c *corkConn) uncork() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.corked {
		return nil
	}
	err := c.flushLocked()
	c.corked = false
	if cap(*c.buf) <= corkLimit {
		corkBufs.Put(c.buf)
	}
	c.buf = nil
	return err
}

func (c *corkConn) flushLocked() error {
	if len(*c.buf) == 0 {
		return nil
	}
	_, err := c.Conn.Write(*c.buf)
	*c.buf = (*c.buf)[:0]
	return err
}

// Close writes what is gathered (a close frame written while corked among it), then
// closes the connection.
func (c *corkConn) Close() error {
	_ = c.uncork()
	return c.Conn.Close()
}

// corkWriter hands the upgrader a corkConn instead of the bare hijacked connection.
type corkWriter struct {
	http.ResponseWriter
	conn *corkConn
	// beforeError, when set, runs once before the upgrader answers an upgrade it
	// refuses (a plain HTTP response): what the upgrade claimed is given back before
	// the client can see the answer.
	beforeError func()
}

// WriteHeader implements http.ResponseWriter.
func (w *corkWriter) WriteHeader(status int) {
	if f := w.beforeError; f != nil {
		w.beforeError = nil
		f()
	}
	w.ResponseWriter.WriteHeader(status)
}

// Hijack implements http.Hijacker.
func (w *corkWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, http.ErrNotSupported
	}
	conn, brw, err := h.Hijack()
	if err != nil {
		return nil, nil, err
	}
	w.conn = &corkConn{Conn: conn}
	return w.conn, brw, nil
}
