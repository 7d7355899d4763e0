package host_test

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard-chat/switchboard/pkg/hosttest"
)

// Contract §8: a user has at most 20 open sockets, cluster-wide, and the 21st upgrade
// gets 429, however the upgrades race: 25 started at once, on one host or spread over
// two, open exactly 20 sockets and answer 429 to the other 5. Closing a socket frees
// its slot (and only one).
func TestSocketLimitHoldsUnderConcurrentUpgrades(t *testing.T) {
	for _, n := range []int{1, 2} {
		t.Run(fmt.Sprintf("%d hosts", n), func(t *testing.T) {
			stores := hosttest.NewStores(t)
			var hosts []*hosttest.Host
			for i := range n {
				hosts = append(hosts, stores.Start(t, hosttest.Options{Name: fmt.Sprintf("h%d", i+1)}))
			}
			name := "many" + hosttest.RandomHex(4)
			hosts[0].Register(t, name, "long enough password")
			token := hosts[0].Login(t, name, "long enough password").Token

			dial := func(h *hosttest.Host) (*websocket.Conn, int, error) {
				d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
				c, resp, err := d.Dial("ws://"+h.Addr+"/ws", http.Header{"Authorization": {"Bearer " + token}})
				status := 0
				if resp != nil {
					status = resp.StatusCode
					_ = resp.Body.Close()
				}
				return c, status, err
			}

			const tries = 25
			var (
				mu       sync.Mutex
				open     []*websocket.Conn
				refused  int
				failures []string
				wg       sync.WaitGroup
			)
			t.Cleanup(func() {
				for _, c := range open {
					_ = c.Close()
				}
			})
			start := make(chan struct{})
			for i := range tries {
				wg.Go(func() {
					<-start
					c, status, err := dial(hosts[i%n])
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
			if len(failures) > 0 {
				t.Fatalf("upgrades failed otherwise than 429: %v", failures)
			}
			if len(open) != 20 || refused != tries-20 {
				t.Fatalf("%d concurrent upgrades of one user opened %d sockets and were refused %d times, want 20 and %d", tries, len(open), refused, tries-20)
			}

			// One socket closed frees one slot, once its presence entry is gone.
			_ = open[0].Close()
			open = open[1:]
			deadline := time.Now().Add(10 * time.Second)
			for {
				c, status, err := dial(hosts[len(open)%n])
				if err == nil {
					open = append(open, c)
					break
				}
				if status != http.StatusTooManyRequests || time.Now().After(deadline) {
					t.Fatalf("after a socket closed, an upgrade answered %d (%v), want 101 within 10 s", status, err)
				}
				time.Sleep(20 * time.Millisecond)
			}
			for _, h := range hosts {
				if c, status, err := dial(h); err == nil {
					_ = c.Close()
					t.Fatalf("a 21st socket was opened on %s", h.Name)
				} else if status != http.StatusTooManyRequests {
					t.Fatalf("the 21st upgrade on %s answered %d (%v), want 429", h.Name, status, err)
				}
			}
		})
	}
}
