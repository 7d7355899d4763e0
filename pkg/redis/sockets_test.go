package redis_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/pkg/chat"
	"github.com/switchboard-chat/switchboard/pkg/redis"
)

// ReserveSocket counts live entries and unexpired claims and claims a slot in one
// atomic step: concurrent claims never pass the limit, a registration or a release
// drops the claim, an expired claim no longer counts, and entries of hosts not in the
// live list count as dead only when the caller says its list is final.
func TestReserveSocket(t *testing.T) {
	t.Parallel()
	live := []chat.Host{{HostID: "h1", Instance: "inst-h1"}, {HostID: "h2", Instance: "inst-h2"}}
	forEachBackend(t, func(t *testing.T, e env) {
		ctx := t.Context()
		reserve := func(user, id string, limit int, final bool) chat.SocketClaim {
			t.Helper()
			c, _, err := e.Store.ReserveSocket(ctx, user, id, limit, live, final)
			if err != nil {
				t.Fatal(err)
			}
			return c
		}

		// 25 concurrent claims against a limit of 20: exactly 20 succeed.
		var mu sync.Mutex
		var wg sync.WaitGroup
		got := map[chat.SocketClaim]int{}
		for i := range 25 {
			wg.Go(func() {
				c := reserve("alice", fmt.Sprintf("c%d", i), 20, false)
				mu.Lock()
				got[c]++
				mu.Unlock()
			})
		}
		wg.Wait()
		if got[chat.SocketClaimReserved] != 20 || got[chat.SocketClaimFull] != 5 {
			t.Fatalf("25 concurrent claims at a limit of 20: %v", got)
		}

		// A registration drops its claim, and its entry holds the slot instead.
		if err := e.Store.AddConnections(ctx, []chat.Connection{conn("bob", "h1", "b1", e.Clock.Now())}); err != nil {
			t.Fatal(err)
		}
		if c := reserve("bob", "b2", 2, false); c != chat.SocketClaimReserved {
			t.Fatalf("second socket of bob: %v", c)
		}
		if err := e.Store.AddConnections(ctx, []chat.Connection{conn("bob", "h2", "b2", e.Clock.Now())}); err != nil {
			t.Fatal(err)
		}
		if claims, err := e.Store.Claims(ctx, "bob"); err != nil || len(claims) != 0 {
			t.Fatalf("claims after registering: %v %v, want none", claims, err)
		}
		if c := reserve("bob", "b3", 2, false); c != chat.SocketClaimFull {
			t.Fatalf("third socket of bob at a limit of 2: %v, want full", c)
		}
		// Removing an entry frees its slot.
		if err := e.Store.RemoveConnections(ctx, []chat.Connection{conn("bob", "h2", "b2", time.Time{})}); err != nil {
			t.Fatal(err)
		}
		if c := reserve("bob", "b3", 2, false); c != chat.SocketClaimReserved {
			t.Fatalf("after a removal: %v, want reserved", c)
		}

		// A released claim, and an expired one, free their slot.
		if c := reserve("carol", "k1", 1, false); c != chat.SocketClaimReserved {
			t.Fatal(c)
		}
		if c := reserve("carol", "k2", 1, false); c != chat.SocketClaimFull {
			t.Fatal(c)
		}
		if err := e.Store.ReleaseSocket(ctx, "carol", "k1"); err != nil {
			t.Fatal(err)
		}
		if c := reserve("carol", "k2", 1, false); c != chat.SocketClaimReserved {
			t.Fatalf("after a release: %v", c)
		}
		e.Clock.Advance(redis.SocketClaimTTL + time.Millisecond)
		if c := reserve("carol", "k3", 1, false); c != chat.SocketClaimReserved {
			t.Fatalf("after the claim expired: %v", c)
		}

		// Entries of an unknown host (or an old instance) make a close call unsure.
		stale := conn("dave", "h9", "d1", e.Clock.Now())
		old := conn("dave", "h1", "d2", e.Clock.Now())
		old.Instance = "inst-before"
		if err := e.Store.AddConnections(ctx, []chat.Connection{stale, old}); err != nil {
			t.Fatal(err)
		}
		if c := reserve("dave", "d3", 3, false); c != chat.SocketClaimReserved {
			t.Fatalf("far from the limit: %v", c)
		}
		if c := reserve("dave", "d4", 2, false); c != chat.SocketClaimUnsure {
			t.Fatalf("unknown entries could decide: %v, want unsure", c)
		}
		if c := reserve("dave", "d4", 2, true); c != chat.SocketClaimReserved {
			t.Fatalf("final: %v, want reserved (the unknown entries are dead)", c)
		}
	})
}
