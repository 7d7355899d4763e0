package ws

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
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

// TestFrameWireReadByGorilla: frames built by newFrame (header by hand) are read back
// by a gorilla client as the same text, at each of RFC 6455's three length forms.
func TestFrameWireReadByGorilla(t *testing.T) {
	sizes := []int{0, 125, 126, 65535, 65536, 300000}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cw := &corkWriter{ResponseWriter: w}
		up := websocket.Upgrader{}
		if _, err := up.Upgrade(cw, r, nil); err != nil {
			return
		}
		cw.conn.cork()
		for i, n := range sizes {
			if i == 3 {
				_ = cw.conn.uncork() // some corked, some straight through
			}
			if err := cw.conn.writeFrame(newFrame("t", bytes.Repeat([]byte{'a' + byte(i)}, n)).wire); err != nil {
				t.Error(err)
			}
		}
		_ = cw.conn.uncork()
	}))
	defer srv.Close()
	c, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	defer c.Close()
	for i, n := range sizes {
		typ, data, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("frame %d (%d bytes): %v", i, n, err)
		}
		if typ != websocket.TextMessage || !bytes.Equal(data, bytes.Repeat([]byte{'a' + byte(i)}, n)) {
			t.Fatalf("frame %d: type %d, %d bytes, want text of %d", i, typ, len(data), n)
		}
	}
}

// TestSealedRefusesDataFrames: once the close frame is on its way, no data frame
// follows it.
func TestSealedRefusesDataFrames(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	c := &corkConn{Conn: a}
	c.seal()
	if err := c.writeFrame(newFrame("t", []byte("x")).wire); !errors.Is(err, errSealed) {
		t.Fatalf("writeFrame after seal: %v", err)
	}
	go func() { _, _ = c.Write([]byte("close")) }() // gorilla's close frame still goes
	buf := make([]byte, 8)
	if n, _ := b.Read(buf); string(buf[:n]) != "close" {
		t.Fatalf("control write after seal arrived as %q", buf[:n])
	}
}
