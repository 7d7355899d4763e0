package host_test

import (
	"fmt"
	"net/http"
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
				return hosttest.DialStatus("ws://"+h.Addr+"/ws", http.Header{"Authorization": {"Bearer " + token}})
			}

			const tries = 25
			open, refused, failures := hosttest.UpgradeBurst(tries, func(i int) (*websocket.Conn, int, error) { return dial(hosts[i%n]) })
			t.Cleanup(func() {
				for _, c := range open {
					_ = c.Close()
				}
			})
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
