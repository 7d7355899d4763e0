//go:build linux && race

package rawio

import (
	"errors"
	"syscall"
)

// Under the race detector reads and writes go through syscall.Read and Write, which
// tell the detector what RawSyscall hides: the buffer read into is written, and a
// write to any socket happens before a read that follows it. Without that edge, a
// test whose client and server share a process sees causality through loopback as
// no order at all, and reports races that cannot happen (a WaitGroup's Add on the
// server, seen by the client's socket, then a Wait the client's next step caused).
// The cost (the scheduler's syscall path) matters only to benchmarks, which do not
// run with -race.

func sysRead(fd uintptr, b []byte) (int, syscall.Errno) {
	n, err := syscall.Read(int(fd), b)
	return n, errnoOf(err)
}

func sysWrite(fd uintptr, b []byte) (int, syscall.Errno) {
	n, err := syscall.Write(int(fd), b)
	return n, errnoOf(err)
}

func errnoOf(err error) syscall.Errno {
	var e syscall.Errno
	if err != nil && !errors.As(err, &e) {
		return syscall.EIO
	}
	return e
}
