package securitytest

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/pkg/hosttest"
)

// TestServeRefusesALiveHostID: a second `chatd serve` given the CHAT_HOST_ID of a live
// host exits with status 1 and a last line naming the setting and the id, within its
// claim timeout (CHAT_HOST_TTL + 2 s), and the first host keeps its registration and
// answers /readyz 200 throughout. Two processes beating one id would each overwrite
// the other's internal URL and instance, and deliveries to that id's sockets would
// land on whichever wrote last (contract section 1; docs/operations.md, rolling
// upgrades).
func TestServeRefusesALiveHostID(t *testing.T) {
	t.Parallel()
	const ttl, claimTimeout = time.Second, 3 * time.Second // the claim waits CHAT_HOST_TTL + 2 s
	timing := map[string]string{"CHAT_HEARTBEAT_INTERVAL": "200ms", "CHAT_HOST_TTL": ttl.String()}
	s := newStores(t)
	first := s.addHost(t, timing, nil)
	hosts := s.Prefix + "hosts"
	registration := func() (instance string, hbMs int64) {
		t.Helper()
		raw, err := s.Redis.HGet(t.Context(), hosts, first.HostID).Result()
		if err != nil {
			t.Fatalf("registration of %s in %s: %v", first.HostID, hosts, err)
		}
		var v struct {
			Instance string `json:"instance"`
			HBMs     int64  `json:"hb_ms"`
		}
		if err := json.Unmarshal([]byte(raw), &v); err != nil || v.Instance == "" {
			t.Fatalf("registration %s: %v", raw, err)
		}
		return v.Instance, v.HBMs
	}
	instance, _ := registration()

	// The first host is probed all the while the second tries to start, as a
	// balancer would, and its registration read: the second must not take it even
	// for a moment.
	stop := make(chan struct{})
	var probes sync.WaitGroup
	var notReady, taken []string
	probes.Go(func() {
		for {
			r, err := first.try(req{Method: "GET", Path: "/readyz"})
			if err != nil || r.Status != http.StatusOK {
				notReady = append(notReady, fmt.Sprintf("%d %s %v", r.Status, r.Body, err))
			}
			raw, err := s.Redis.HGet(context.Background(), hosts, first.HostID).Result()
			if err != nil || !strings.Contains(raw, `"instance":"`+instance+`"`) {
				taken = append(taken, fmt.Sprintf("%s %v", raw, err))
			}
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	})

	env := map[string]string{
		"CHAT_HOST_ID": first.HostID, "CHAT_DATABASE_URL": s.DatabaseURL, "CHAT_REDIS_URL": s.RedisURL,
		"CHAT_REDIS_PREFIX": s.Prefix, "CHAT_CLUSTER_SECRET": s.Secret, "CHAT_AUTO_MIGRATE": "false",
		"CHAT_STARTUP_TIMEOUT": "5s",
	}
	maps.Copy(env, timing)
	start := time.Now()
	res := runChatd(t, serveEnv(env), "serve")
	took := time.Since(start)
	close(stop)
	probes.Wait()

	lines := strings.Split(strings.TrimRight(res.Stderr, "\n"), "\n")
	last := lines[len(lines)-1]
	if res.Code != 1 {
		t.Errorf("a second chatd serve with CHAT_HOST_ID %s exited with status %d after %s, want 1; stderr:\n%s", first.HostID, res.Code, took, res.Stderr)
	} else if !strings.HasPrefix(last, "chatd: ") || !strings.Contains(last, "CHAT_HOST_ID") || !strings.Contains(last, `"`+first.HostID+`"`) {
		t.Errorf("last line of stderr %q: want chatd's error naming CHAT_HOST_ID and %q; stderr:\n%s", last, first.HostID, res.Stderr)
	}
	// Start-up (stores, listeners) is quick; the slack is for a loaded machine.
	if limit := claimTimeout + 5*time.Second; took > limit {
		t.Errorf("the second chatd serve took %s to give up, want at most %s (claim timeout %s)", took, limit, claimTimeout)
	}
	if strings.Contains(res.Stderr, "host serving") {
		t.Errorf("the second chatd serve served before giving up:\n%s", res.Stderr)
	}
	t.Logf("the second chatd serve gave up after %s", took)

	if len(notReady) > 0 {
		t.Errorf("while the second tried to start, the first host's /readyz answered: %v", notReady)
	}
	if len(taken) > 0 {
		t.Errorf("while the second tried to start, the first host's registration was: %v", taken)
	}
	now, hbBefore := registration()
	if now != instance {
		t.Fatalf("registration of %s now belongs to instance %s, want the first host's %s", first.HostID, now, instance)
	}
	// Its heartbeat still moves, and it still serves the API.
	hosttest.CheckFor(t, 2*time.Second, 50*time.Millisecond, func() error {
		if now, hbAfter := registration(); now != instance || hbAfter <= hbBefore {
			return fmt.Errorf("the first host's heartbeat stopped: instance %s (want %s), hb_ms %d then %d", now, instance, hbBefore, hbAfter)
		}
		return nil
	})
	first.newUser(t, "after")
}
