package hosttest

import (
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// DialStatus opens a WebSocket at url with header and also returns the handshake's
// HTTP status (0 when none came back), which tells a refusal (429) from a failure.
func DialStatus(url string, header http.Header) (*websocket.Conn, int, error) {
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	c, resp, err := d.Dial(url, header)
	status := 0
	if resp != nil {
		status = resp.StatusCode
		_ = resp.Body.Close()
	}
	return c, status, err
}

// UpgradeBurst starts n upgrades at the same instant, dial(i) making the i-th, as the
// per-user socket limit's tests need: the limit must hold however upgrades race. It
// returns the sockets that opened (the caller closes them), how many were refused
// with 429, and every other failure.
func UpgradeBurst(n int, dial func(i int) (*websocket.Conn, int, error)) (open []*websocket.Conn, refused int, failures []string) {
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			c, status, err := dial(i)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				open = append(open, c)
			case status == http.StatusTooManyRequests:
				refused++
			default:
				failures = append(failures, fmt.Sprintf("status %d: %v", status, err))
			}
		})
	}
	close(start)
	wg.Wait()
	return open, refused, failures
}
