package clustertest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// The presence hash has no TTL: a host killed with SIGKILL leaves its entries behind,
// and the only code that deletes them is the sender's fan-out (cluster.Deliverer:
// route calls an entry stale when Directory.AliveInstance says its host is dead or has
// a newer instance, and DeliverMessage hands the stale entries to RemoveConnections
// after its calls). PruneHosts drops registrations from `hosts`, never entries, and
// typing deliveries skip stale entries without removing them. So these tests read
// Redis itself, not the presence API (which hides dead hosts' entries whether or not
// they are gone), and send a message to make a reader find them.

// rawEntry is a presence hash value as section 6 of the contract shows it to
// `redis-cli`.
type rawEntry struct {
	HostID   string    `json:"host_id"`
	ConnID   string    `json:"conn_id"`
	Since    time.Time `json:"since"`
	Instance string    `json:"instance"`
}

func presenceKey(c *Cluster, userID string) string {
	return c.RedisPrefix + "presence:{" + userID + "}"
}

// rawPresence returns a user's presence hash: conn id -> raw value.
func rawPresence(c *Cluster, rdb *goredis.Client, userID string) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return rdb.HGetAll(ctx, presenceKey(c, userID)).Result()
}

// entriesOf decodes rawPresence's answer.
func entriesOf(c *Cluster, rdb *goredis.Client, userID string) (map[string]rawEntry, error) {
	raw, err := rawPresence(c, rdb, userID)
	if err != nil {
		return nil, err
	}
	out := make(map[string]rawEntry, len(raw))
	for connID, val := range raw {
		var e rawEntry
		if err := json.Unmarshal([]byte(val), &e); err != nil {
			return nil, fmt.Errorf("presence entry %s of user %s is not JSON: %w: %s", connID, userID, err, val)
		}
		if e.ConnID != connID || e.HostID == "" || e.Instance == "" || e.Since.IsZero() {
			return nil, fmt.Errorf("presence entry %s of user %s lacks a field: %s", connID, userID, val)
		}
		out[connID] = e
	}
	return out, nil
}

// rawHost is a `hosts` hash value.
type rawHost struct {
	Instance string `json:"instance"`
	HBMs     int64  `json:"hb_ms"`
}

func hostEntry(c *Cluster, rdb *goredis.Client, hostID string) (rawHost, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	val, err := rdb.HGet(ctx, c.RedisPrefix+"hosts", hostID).Result()
	if err != nil {
		return rawHost{}, fmt.Errorf("hosts[%s]: %w", hostID, err)
	}
	var h rawHost
	if err := json.Unmarshal([]byte(val), &h); err != nil {
		return rawHost{}, fmt.Errorf("hosts[%s] is not JSON: %w: %s", hostID, err, val)
	}
	return h, nil
}

// waitEntries waits until each client's hello conn id has its entry, on its host, in
// its user's hash: a socket's entry is written before its catch-up starts, so this is
// at once, but the test must not race it.
func waitEntries(tb testing.TB, c *Cluster, rdb *goredis.Client, socks map[*Client]string) {
	tb.Helper()
	CheckFor(tb, 5*time.Second, 20*time.Millisecond, func() error {
		for cl, userID := range socks {
			es, err := entriesOf(c, rdb, userID)
			if err != nil {
				return err
			}
			e, ok := es[cl.Hello.ConnID]
			if !ok || e.HostID != cl.HostID {
				return fmt.Errorf("no entry of socket %s on %s in user %s's hash %v", cl.Hello.ConnID, cl.HostID, userID, es)
			}
		}
		return nil
	})
}

// TestDeadHostPresenceRemovedBySender (contract sections 4.6 and 5): h2 is killed with
// SIGKILL while bob (also on h3) and dave (only on h2) have sockets on it. Within 10 s
// h1 shows dave offline and h2's registration is stale, yet both h2 entries are still
// in Redis: nothing sweeps them. Then alice on h1 sends to the thread, and h1's fan-out
// removes exactly those two fields: bob keeps his h3 entry, dave's hash is gone and his
// last seen is recorded, carol's (h3) and alice's (h1) hashes are byte for byte
// unchanged, h1 counts 2 stale deliveries and never called h2 (no failed or
// not_connected delivery, no hand-off for it), and the live members get the message.
func TestDeadHostPresenceRemovedBySender(t *testing.T) {
	t.Parallel()
	c := StartCluster(t, 3, Options{})
	h1, h2, h3 := c.Hosts[0], c.Hosts[1], c.Hosts[2]
	rdb := c.RawRedis(t)
	alice := NewUser(t, h1, "alice")
	bobOnH2 := NewUser(t, h2, "bob")
	bobOnH3 := Login(t, h3, "bob")
	dave := NewUser(t, h2, "dave")
	carol := NewUser(t, h3, "carol")
	th := CreateThread(t, h1, alice, "dead", "bob", "dave", "carol")

	a := DialSynced(t, h1, alice)
	b2 := DialSynced(t, h2, bobOnH2)
	b3 := DialSynced(t, h3, bobOnH3)
	d2 := DialSynced(t, h2, dave)
	c3 := DialSynced(t, h3, carol)
	waitEntries(t, c, rdb, map[*Client]string{a: alice.ID, b2: bobOnH2.ID, b3: bobOnH3.ID, d2: dave.ID, c3: carol.ID})
	carolBefore, err := rawPresence(c, rdb, carol.ID)
	if err != nil {
		t.Fatal(err)
	}
	aliceBefore, err := rawPresence(c, rdb, alice.ID)
	if err != nil {
		t.Fatal(err)
	}
	const (
		stale        = `switchboard_deliveries_total{result="stale"}`
		failed       = `switchboard_deliveries_total{result="failed"}`
		notConnected = `switchboard_deliveries_total{result="not_connected"}`
	)
	if n := h1.Metric(t, stale); n != 0 {
		t.Fatalf("h1 counted %v stale deliveries before any send", n)
	}

	// dave's presence as h1 answers it: listed (he shares a thread with alice), and
	// online while his socket's host is alive.
	daveOnline := func() (online bool, err error) {
		p := Presence(t, h1, alice, dave.ID)
		online, listed := p[dave.ID]
		if !listed {
			return false, fmt.Errorf("h1's presence answer does not list dave: %v", p)
		}
		return online, nil
	}
	CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if online, err := daveOnline(); err != nil || !online {
			return fmt.Errorf("h1 does not show dave online before the kill (%w)", err)
		}
		return nil
	})

	h2.Kill(t)
	killed := time.Now()
	CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		online, err := daveOnline()
		if err != nil {
			return err
		}
		if online {
			return fmt.Errorf("h1 still shows dave, whose only socket was on the killed h2, online %v after the kill", time.Since(killed).Round(time.Millisecond))
		}
		return nil
	})
	recognised := time.Since(killed)
	reg, err := hostEntry(c, rdb, h2.ID)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("h1 took h2 for dead %v after the kill, h2's last heartbeat %v old", recognised.Round(time.Millisecond), time.Since(time.UnixMilli(reg.HBMs)).Round(time.Millisecond))
	// A sender does not go by its own view alone: it reloads the hosts before calling
	// an entry stale. So the send must wait until the registration itself is stale (the
	// harness's CHAT_HOST_TTL, 6 s), which a host whose view lags (a starved refresh
	// loop) may not have reached when it shows dave offline.
	CheckFor(t, 10*time.Second-time.Since(killed), 20*time.Millisecond, func() error {
		reg, err := hostEntry(c, rdb, h2.ID)
		if err != nil {
			return err
		}
		if age := time.Since(time.UnixMilli(reg.HBMs)); age < 6*time.Second {
			return fmt.Errorf("h2's last heartbeat is %v old", age)
		}
		return nil
	})
	if recognised := time.Since(killed); recognised > 10*time.Second {
		t.Errorf("h2 was recognised dead %v after SIGKILL (contract: within 10 s)", recognised)
	}

	// Dead, but its entries are still there: removing them is the readers' job.
	for _, u := range []struct {
		id   string
		sock *Client
	}{{bobOnH2.ID, b2}, {dave.ID, d2}} {
		es, err := entriesOf(c, rdb, u.id)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := es[u.sock.Hello.ConnID]; !ok {
			t.Fatalf("the entry of socket %s on the killed h2 was gone before any message was sent: %v", u.sock.Hello.ConnID, es)
		}
	}

	m := waitAllSent(t, a, sendAll(t, a, th.ID, "after-kill", 1), 5*time.Second)[0]
	sentAt := time.Now()
	for _, cl := range []*Client{b3, c3} {
		cl.WaitFor(t, 5*time.Second, func([]Frame) error {
			if got := cl.Messages(th.ID); len(got) != 1 || got[0].ID != m.ID {
				return fmt.Errorf("socket on %s holds %v, want message %s", cl.HostID, got, m.ID)
			}
			return nil
		})
	}

	CheckFor(t, 3*time.Second, 20*time.Millisecond, func() error {
		bob, err := entriesOf(c, rdb, bobOnH2.ID)
		if err != nil {
			return err
		}
		if want := []string{b3.Hello.ConnID}; !slices.Equal(slices.Collect(maps.Keys(bob)), want) {
			return fmt.Errorf("bob's presence hash holds %v, want only his h3 socket %v", bob, want)
		}
		if d, err := rawPresence(c, rdb, dave.ID); err != nil || len(d) > 0 {
			return fmt.Errorf("dave's presence hash still holds %v (%w)", d, err)
		}
		return nil
	})
	t.Logf("the dead host's entries were gone %v after alice's send was answered", time.Since(sentAt).Round(time.Millisecond))
	if carolAfter, err := rawPresence(c, rdb, carol.ID); err != nil || !maps.Equal(carolAfter, carolBefore) {
		t.Errorf("carol's presence hash (live, on h3) changed: %v, was %v (%v)", carolAfter, carolBefore, err)
	}
	if aliceAfter, err := rawPresence(c, rdb, alice.ID); err != nil || !maps.Equal(aliceAfter, aliceBefore) {
		t.Errorf("alice's presence hash (live, on the sender's h1) changed: %v, was %v (%v)", aliceAfter, aliceBefore, err)
	}

	// The removal is presence_remove.lua's: a user left with no entry gets last seen,
	// one with a live entry left does not.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	seen, err := rdb.Get(ctx, c.RedisPrefix+"lastseen:{"+dave.ID+"}").Result()
	var at time.Time
	if err != nil || json.Unmarshal([]byte(seen), &at) != nil || at.Before(killed) {
		t.Errorf("dave's last seen is %q (%v), want the time of the removal, after the kill", seen, err)
	}
	if n, err := rdb.Exists(ctx, c.RedisPrefix+"lastseen:{"+bobOnH2.ID+"}").Result(); err != nil || n != 0 {
		t.Errorf("bob, who still has a live socket, got a last seen (exists %d, %v)", n, err)
	}

	// h1 removed them as stale, and skipped the dead host rather than calling it. (The
	// stale count also takes not_connected answers, hence the third check.)
	if n := h1.Metric(t, stale); n != 2 {
		t.Errorf("h1 counted %v stale deliveries, want 2 (bob's and dave's entries on h2)", n)
	}
	if n, m := h1.Metric(t, failed), h1.Metric(t, notConnected); n != 0 || m != 0 {
		t.Errorf("h1 counted %v failed and %v not_connected deliveries: it called the dead h2 instead of skipping it", n, m)
	}
	if n, err := rdb.Exists(ctx, c.RedisPrefix+"handoff:"+h2.ID).Result(); err != nil || n != 0 {
		t.Errorf("a hand-off was recorded for the dead h2 (exists %d, %v): dead hosts' entries are skipped, not owed", n, err)
	}
}

// TestRestartedHostStalePresenceRemovedBySender: h2 is killed with SIGKILL while bob
// has a socket on it and started again with the same host id (a new instance, its
// heartbeat fresh). bob's old entry still names h2, a live host; what makes it stale is
// its instance. bob opens a new socket on the new h2, and alice on h1 sends: h1's
// fan-out removes the old instance's entry, as stale, without calling h2 about it,
// and leaves the new one, which gets the message.
func TestRestartedHostStalePresenceRemovedBySender(t *testing.T) {
	t.Parallel()
	c := StartCluster(t, 2, Options{})
	h1, h2 := c.Hosts[0], c.Hosts[1]
	rdb := c.RawRedis(t)
	alice := NewUser(t, h1, "alice")
	bob := NewUser(t, h2, "bob")
	th := CreateThread(t, h1, alice, "restart", "bob")
	a := DialSynced(t, h1, alice)
	old := DialSynced(t, h2, bob)
	waitEntries(t, c, rdb, map[*Client]string{a: alice.ID, old: bob.ID})
	es, err := entriesOf(c, rdb, bob.ID)
	if err != nil {
		t.Fatal(err)
	}
	oldInstance := es[old.Hello.ConnID].Instance
	if reg, err := hostEntry(c, rdb, h2.ID); err != nil || reg.Instance != oldInstance {
		t.Fatalf("bob's entry names instance %q, h2 is registered as %+v (%v)", oldInstance, reg, err)
	}

	h2.Restart(t) // SIGKILL, then the same id again
	old.WaitClosed(t, 5*time.Second)
	fresh := DialSynced(t, h2, bob)
	waitEntries(t, c, rdb, map[*Client]string{fresh: bob.ID})

	reg, err := hostEntry(c, rdb, h2.ID)
	if err != nil {
		t.Fatal(err)
	}
	es, err = entriesOf(c, rdb, bob.ID)
	if err != nil {
		t.Fatal(err)
	}
	stale, ok := es[old.Hello.ConnID]
	if !ok {
		t.Fatalf("the old instance's entry %s was gone before any message was sent: %v", old.Hello.ConnID, es)
	}
	if reg.Instance == oldInstance || stale.Instance != oldInstance || es[fresh.Hello.ConnID].Instance != reg.Instance {
		t.Fatalf("h2 is registered as instance %q; bob's old entry names %q, his new one %q: want old and new to differ and the new to be h2's",
			reg.Instance, stale.Instance, es[fresh.Hello.ConnID].Instance)
	}
	if age := time.Since(time.UnixMilli(reg.HBMs)); age >= 6*time.Second {
		t.Fatalf("the restarted h2's heartbeat is %v old: the case is a live host with a stale entry", age)
	}
	const notConnected = `switchboard_deliveries_total{result="not_connected"}`
	before, askedBefore := h1.Metric(t, `switchboard_deliveries_total{result="stale"}`), h1.Metric(t, notConnected)

	m := waitAllSent(t, a, sendAll(t, a, th.ID, "after-restart", 1), 5*time.Second)[0]
	fresh.WaitFor(t, 5*time.Second, func([]Frame) error {
		for _, got := range fresh.Messages(th.ID) {
			if got.ID == m.ID {
				return nil
			}
		}
		return errors.New("bob's socket on the restarted h2 has not got alice's message")
	})
	CheckFor(t, 3*time.Second, 20*time.Millisecond, func() error {
		es, err := entriesOf(c, rdb, bob.ID)
		if err != nil {
			return err
		}
		if want := []string{fresh.Hello.ConnID}; !slices.Equal(slices.Collect(maps.Keys(es)), want) {
			return fmt.Errorf("bob's presence hash holds %v, want only his socket on the new instance %v", es, want)
		}
		return nil
	})
	if n := h1.Metric(t, `switchboard_deliveries_total{result="stale"}`) - before; n != 1 {
		t.Errorf("h1 counted %v stale deliveries for the send, want 1 (the old instance's entry)", n)
	}
	// The new h2 would answer not_connected for the old conn id, and that too removes
	// an entry; but h1 is to know the entry for stale by its instance, without asking.
	if n := h1.Metric(t, notConnected) - askedBefore; n != 0 {
		t.Errorf("h1 asked h2 about %v entries that came back not_connected: it took the old instance's entry for live", n)
	}
}

// TestRestartedHostForgetsItsOldInstance: bob's only socket was on h2, which restarts
// (SIGKILL, the same id again) while he stays away. His entry of h2's old instance is
// nobody's socket: GET /presence says he is offline on every host, and the restarted
// h2 removes the entry itself when alice, also on h2, sends to him. Before, presence
// counted any entry of a live host id, so bob read as online for as long as the entry
// lasted, and h2 skipped entries under its own id before it checked their instance,
// so where h2 was bob's only sender the entry lasted for ever.
func TestRestartedHostForgetsItsOldInstance(t *testing.T) {
	t.Parallel()
	c := StartCluster(t, 2, Options{})
	h1, h2 := c.Hosts[0], c.Hosts[1]
	rdb := c.RawRedis(t)
	alice := NewUser(t, h2, "alice")
	bob := NewUser(t, h2, "bob")
	th := CreateThread(t, h2, alice, "restart", "bob")
	old := DialSynced(t, h2, bob)
	waitEntries(t, c, rdb, map[*Client]string{old: bob.ID})

	h2.Restart(t)
	old.WaitClosed(t, 5*time.Second)
	a := DialSynced(t, h2, alice)
	if es, err := entriesOf(c, rdb, bob.ID); err != nil || len(es) != 1 {
		t.Fatalf("bob's presence hash after the restart: %v, %v; want his old entry, still there", es, err)
	}
	for _, h := range []*Host{h1, h2} {
		CheckFor(t, 3*time.Second, 20*time.Millisecond, func() error {
			if Presence(t, h, alice, bob.ID)[bob.ID] {
				return fmt.Errorf("%s says bob is online; his only entry is of h2's previous instance", h.ID)
			}
			return nil
		})
	}

	waitAllSent(t, a, sendAll(t, a, th.ID, "to-bob", 1), 5*time.Second)
	CheckFor(t, 3*time.Second, 20*time.Millisecond, func() error {
		if es, err := entriesOf(c, rdb, bob.ID); err != nil || len(es) != 0 {
			return fmt.Errorf("bob's presence hash holds %v (%w) after a send from the restarted h2, want nothing", es, err)
		}
		return nil
	})
	if n, err := rdb.Exists(context.Background(), c.RedisPrefix+"lastseen:{"+bob.ID+"}").Result(); err != nil || n != 1 {
		t.Errorf("bob's last seen after his old entry went: exists %d, %v; want it recorded", n, err)
	}
}
