package ws

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"
)

// TestCorkGathersUntilUncork: corked writes reach the peer only at uncork, in one
// piece and in order; uncorked writes go straight through.
func TestCorkGathersUntilUncork(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	c := &corkConn{Conn: a}
	got := make(chan []byte, 4)
	go func() {
		buf := make([]byte, 1<<16)
		for {
			n, err := b.Read(buf)
			if err != nil {
				close(got)
				return
			}
			got <- bytes.Clone(buf[:n])
		}
	}()
	if _, err := c.Write([]byte("direct")); err != nil {
		t.Fatal(err)
	}
	if s := string(<-got); s != "direct" {
		t.Fatalf("uncorked write arrived as %q", s)
	}
	c.cork()
	for _, p := range []string{"one,", "two,", "three"} {
		if _, err := c.Write([]byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case p := <-got:
		t.Fatalf("%q arrived while corked", p)
	case <-time.After(50 * time.Millisecond):
	}
	if err := c.uncork(); err != nil {
		t.Fatal(err)
	}
	if s := string(<-got); s != "one,two,three" {
		t.Fatalf("corked writes arrived as %q, want one write of all three", s)
	}
	// Close while corked still delivers what was gathered (a close frame, say).
	c.cork()
	_, _ = c.Write([]byte("bye"))
	go func() { _ = c.Close() }()
	if s := string(<-got); s != "bye" {
		t.Fatalf("gathered bytes at close arrived as %q", s)
	}
	if _, ok := <-got; ok {
		t.Fatal("connection still open after Close")
	}
}

// TestCorkLimit: a corked socket never holds more than corkLimit; past it, writes go out.
func TestCorkLimit(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	c := &corkConn{Conn: a}
	total := make(chan int)
	go func() {
		n, _ := io.Copy(io.Discard, b)
		total <- int(n)
	}()
	c.cork()
	chunk := bytes.Repeat([]byte("x"), 10<<10)
	for i := 0; i < 10; i++ {
		if _, err := c.Write(chunk); err != nil {
			t.Fatal(err)
		}
		if held := len(*c.buf); held > corkLimit {
			t.Fatalf("holding %d bytes, limit %d", held, corkLimit)
		}
	}
	big := bytes.Repeat([]byte("y"), corkLimit+1)
	if _, err := c.Write(big); err != nil {
		t.Fatal(err)
	}
	if err := c.uncork(); err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	if n := <-total; n != 10*len(chunk)+len(big) {
		t.Fatalf("peer got %d bytes, want %d", n, 10*len(chunk)+len(big))
	}
}
