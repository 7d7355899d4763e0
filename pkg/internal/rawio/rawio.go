// Package rawio makes a host's TCP reads and writes cheaper on Linux by keeping them
// out of the Go scheduler's syscall path.
//
// Why: a host runs with GOMAXPROCS=1 (one CPU per container, or three hosts sharing a
// 2-vCPU machine in scripts/bench.sh). Every read or write through package net enters
// the runtime's syscall path, and a loopback write that wakes its peer takes 10-25 µs
// on a VM. With one P there is never an idle P, so sysmon takes the P back from any
// syscall it sees twice (20 µs apart), hands it to another thread (a futex wake) and
// then keeps polling every 20 µs; and the first syscall after the host idles wakes
// sysmon from its long sleep. At 1,000 msg/s that was about 15 futex and nanosleep
// calls per message across the three hosts, on top of the 7 writes and 7 useful reads.
// A socket in non-blocking mode never blocks in read(2) or write(2), so nothing is
// gained by letting the scheduler run something else meanwhile.
//
// Conn reads and writes with syscall.RawSyscall inside the connection's RawConn, which
// keeps the netpoller's readiness waits, deadlines and close semantics of net.Conn. On
// other systems Wrap returns the connection unchanged. Under the race detector Conn
// calls syscall.Read and syscall.Write instead (sys_race.go), which tell the detector
// what a raw system call hides.
//
// Measured with scripts/bench.sh --vs (8 pairs at 1,000 msg/s, 2026-11-27): the hosts'
// CPU per message fell from 563 to 517 µs, lower in all 8 pairs; one host's futex calls
// halved and its nanosleeps fell by a third. At 4,000 msg/s, where the hosts never
// idle, it changed nothing. Other code's system calls still take the slow path; the
// one that mattered, go-redis's check of each pooled connection it hands out, is kept
// off the hot path by the Redis batcher holding its connection (pkg/redis, batch.go).
// With both, one host's 5 s at 1,000 msg/s made 236 futex calls and 539 nanosleeps
// (12,428 and 12,353 before either), and the hosts used 414 µs per message.
package rawio

import (
	"context"
	"net"
)

// Dial is the shape of a dial function (net.Dialer.DialContext, go-redis's
// Options.Dialer, pgconn's DialFunc, http.Transport.DialContext).
type Dial = func(ctx context.Context, network, addr string) (net.Conn, error)

// WrapDial returns dial with its TCP connections wrapped (Wrap).
func WrapDial(dial Dial) Dial {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return Wrap(c), nil
	}
}

// Listener wraps every TCP connection it accepts (Wrap).
type Listener struct{ net.Listener }

// Accept implements net.Listener.
func (l Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return Wrap(c), nil
}
