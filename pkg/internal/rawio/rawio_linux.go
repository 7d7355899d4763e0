package rawio

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
)

// Conn is a *net.TCPConn whose Read and Write call read(2) and write(2) on its
// non-blocking socket through syscall.RawSyscall (see the package comment), and wait
// in the netpoller, with the connection's deadlines, when the socket is not ready.
// Every other method is the TCPConn's.
type Conn struct {
	*net.TCPConn
	rc syscall.RawConn
}

// Wrap returns c as a *Conn when it is a *net.TCPConn, else c itself (TLS, Unix
// sockets, pipes).
func Wrap(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	return &Conn{TCPConn: tc, rc: rc}
}

// Read implements net.Conn.
func (c *Conn) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	var n int
	var serr syscall.Errno
	err := c.rc.Read(func(fd uintptr) bool {
		for {
			r, e := sysRead(fd, b)
			switch e {
			case 0:
				n = r
				return true
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				return false
			default:
				serr = e
				return true
			}
		}
	})
	if err == nil && serr != 0 {
		err = os.NewSyscallError("read", serr) // as package net reports it
	}
	if err != nil {
		return 0, c.opErr("read", err)
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

// Write implements net.Conn.
func (c *Conn) Write(b []byte) (int, error) {
	var n int
	var serr syscall.Errno
	err := c.rc.Write(func(fd uintptr) bool {
		for n < len(b) {
			r, e := sysWrite(fd, b[n:])
			switch e {
			case 0:
				n += r
			case syscall.EINTR:
			case syscall.EAGAIN:
				return false
			default:
				serr = e
				return true
			}
		}
		return true
	})
	if err == nil && serr != 0 {
		err = os.NewSyscallError("write", serr)
	}
	if err != nil {
		return n, c.opErr("write", err)
	}
	return n, nil
}

// opErr wraps err as package net does, so that callers' checks (net.ErrClosed, a
// timeout, ECONNRESET) see what they would on a plain TCPConn.
func (c *Conn) opErr(op string, err error) error {
	if errors.Is(err, net.ErrClosed) {
		err = net.ErrClosed
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
