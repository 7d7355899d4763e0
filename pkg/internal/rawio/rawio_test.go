//go:build linux

package rawio

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

// pair returns a wrapped client and the wrapped server side of one loopback connection.
func pair(t testing.TB) (client, server net.Conn) {
	t.Helper()
	var lc net.ListenConfig
	inner, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := Listener{Listener: inner}
	t.Cleanup(func() { _ = ln.Close() })
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		accepted <- c
	}()
	client, err = WrapDial((&net.Dialer{Timeout: time.Second}).DialContext)(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	for _, c := range []net.Conn{client, server} {
		if _, ok := c.(*Conn); !ok {
			t.Fatalf("%T is not wrapped", c)
		}
		t.Cleanup(func() { _ = c.Close() })
	}
	return client, server
}

// A payload far larger than the socket buffers makes both sides wait for the poller
// (EAGAIN) many times; every byte must still arrive, in order.
func TestLargeTransferArrivesWhole(t *testing.T) {
	client, server := pair(t)
	want := make([]byte, 8<<20)
	_, _ = rand.Read(want)
	errc := make(chan error, 1)
	go func() {
		n, err := client.Write(want)
		if err == nil && n != len(want) {
			err = io.ErrShortWrite
		}
		errc <- err
	}()
	got := make([]byte, 0, len(want))
	buf := make([]byte, 64<<10)
	for len(got) < len(want) {
		n, err := server.Read(buf)
		if err != nil {
			t.Fatalf("read after %d bytes: %v", len(got), err)
		}
		got = append(got, buf[:n]...)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("the bytes read differ from those written")
	}
}

func TestPeerCloseIsEOF(t *testing.T) {
	client, server := pair(t)
	if _, err := client.Write([]byte("bye")); err != nil {
		t.Fatal(err)
	}
	_ = client.Close()
	got, err := io.ReadAll(server)
	if err != nil || string(got) != "bye" {
		t.Fatalf("ReadAll = %q, %v; want \"bye\", nil (EOF ends it)", got, err)
	}
}

// Deadlines are the netpoller's, as for any net.Conn: gorilla/websocket and net/http
// rely on a timeout error that says so.
func TestReadDeadlineTimesOut(t *testing.T) {
	_, server := pair(t)
	_ = server.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, err := server.Read(make([]byte, 16))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past the deadline = %v; want a timeout net.Error", err)
	}
}

func TestWriteDeadlineTimesOutWhenThePeerDoesNotRead(t *testing.T) {
	client, _ := pair(t)
	// Allocated before the deadline is set: zeroing 64 MiB (with -race, and its shadow)
	// on a busy machine can take longer than the deadline, and a write that starts past
	// its deadline takes nothing.
	big := make([]byte, 64<<20) // more than loopback buffers hold
	_ = client.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
	n, err := client.Write(big)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Write = %d, %v; want a deadline error", n, err)
	}
	if n <= 0 || n >= 64<<20 {
		t.Fatalf("Write reported %d bytes written; want the part the kernel took", n)
	}
}

func TestClosedConnSaysClosed(t *testing.T) {
	client, _ := pair(t)
	_ = client.Close()
	if _, err := client.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Read after Close = %v; want net.ErrClosed", err)
	}
	if _, err := client.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write after Close = %v; want net.ErrClosed", err)
	}
}

// A Read blocked in the poller returns when another goroutine closes the connection.
func TestCloseUnblocksRead(t *testing.T) {
	_, server := pair(t)
	errc := make(chan error, 1)
	go func() {
		_, err := server.Read(make([]byte, 1))
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	_ = server.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Read = %v; want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read still blocked 5 s after Close")
	}
}

func TestWriteToResetPeerFails(t *testing.T) {
	client, server := pair(t)
	if sc, ok := server.(*Conn); ok {
		_ = sc.SetLinger(0) // close sends RST
	}
	_ = server.Close()
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		_, err = client.Write(make([]byte, 1024))
		time.Sleep(time.Millisecond)
	}
	if err == nil {
		t.Fatal("writes to a reset connection kept succeeding")
	}
	var oe *net.OpError
	var se *os.SyscallError
	if !errors.As(err, &oe) || oe.Op != "write" || !errors.As(err, &se) ||
		(!errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE)) {
		t.Fatalf("err = %#v; want a *net.OpError for write around the syscall's ECONNRESET or EPIPE", err)
	}
}

func TestWrapLeavesOtherConnsAlone(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if Wrap(a) != a {
		t.Fatal("Wrap changed a non-TCP conn")
	}
}

// TestWriteHappensBeforePeerRead: what a goroutine did before writing to a socket is
// seen by the one that reads it, as with package net. Under -race this is what keeps
// a test whose client and server share a process free of reports of races that
// cannot happen; without -race it always passes.
func TestWriteHappensBeforePeerRead(t *testing.T) {
	client, server := pair(t)
	var before int
	go func() {
		before = 1
		_, _ = server.Write([]byte{1})
	}()
	b := make([]byte, 1)
	if _, err := io.ReadFull(client, b); err != nil {
		t.Fatal(err)
	}
	if before != 1 {
		t.Fatal("the read did not see what preceded the write")
	}
}

// Writes from several goroutines at once each arrive whole and uninterrupted, and
// reads from two goroutines at once share the stream without losing or repeating a
// byte, as on a plain TCPConn (net.Conn allows both).
func TestConcurrentWritesStayWholeAndReadsShareTheStream(t *testing.T) {
	client, server := pair(t)
	const writers, records, size = 4, 300, 256
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			rec := bytes.Repeat([]byte{byte('a' + w)}, size)
			for range records {
				if _, err := client.Write(rec); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	got := make([]byte, writers*records*size)
	if _, err := io.ReadFull(server, got); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for i := 0; i < len(got); i += size {
		if rec := got[i : i+size]; !bytes.Equal(rec, bytes.Repeat(rec[:1], size)) {
			t.Fatalf("record at %d mixes writers: %q", i, rec)
		}
	}

	const total = 1 << 20
	go func() {
		_, _ = server.Write(bytes.Repeat([]byte{1}, total))
		_ = server.Close()
	}()
	var sum [2]int
	var rg sync.WaitGroup
	for r := range sum {
		rg.Go(func() {
			b := make([]byte, 1000+r*333)
			for {
				n, err := client.Read(b)
				for _, c := range b[:n] {
					sum[r] += int(c)
				}
				if err != nil {
					if !errors.Is(err, io.EOF) {
						t.Error(err)
					}
					return
				}
			}
		})
	}
	rg.Wait()
	if sum[0]+sum[1] != total {
		t.Fatalf("the two readers got %d+%d bytes of %d", sum[0], sum[1], total)
	}
}

// BenchmarkWriteRead is one small write and the peer's read of it, the shape of most
// of a host's I/O (frames, Redis and PostgreSQL calls): 0 allocations, where a
// closure made per call cost 4.
func BenchmarkWriteRead(b *testing.B) {
	client, server := pair(b)
	msg := make([]byte, 64)
	buf := make([]byte, 64)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := client.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(server, buf); err != nil {
			b.Fatal(err)
		}
	}
}
