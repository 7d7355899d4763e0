package clustertest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The fault suite (issue 7, item 1). Each case streams messages between users on
// different hosts while the fault happens (a fleet, fleet_test.go), and ends by
// checking that every message answered `sent` reached every member device exactly
// once after dedupe, in seq order, without a gap (devices that reconnect sync from
// their own last seq), that nothing answered with an error was stored, and that
// presence is right again, both in Redis and through GET /api/v1/presence. Each logs
// one line in a fixed format:
//
//	FAULT <name> sent_during=N refused=N lost=N dups=N recovery=D [note]
//
// Faults proven elsewhere in this package, with the same kind of check, which log
// their FAULT line too:
//   - SIGKILL while streaming: TestSIGKILLWhileStreaming (cluster_test.go), which also
//     checks `chatctl presence --json`;
//   - Redis restarted empty: TestRedisRestart (a message sent right after the restart
//     included) and, here, TestFaultRedisEmptyBeforeReregistration;
//   - a single host drained with SIGTERM: TestSIGTERMDrain;
//   - a slow reader closed with 1013: TestSlowReaderClosed;
//   - a silent (non-reading) socket: TestSilentSocketClosed (protocol_test.go).
//
// The randomized run of all of them together is TestNemesis (nemesis_test.go).

// threeHostFleet: devices spread over three hosts, three of them sending.
var threeHostFleet = []devSpec{
	{user: "alice", host: 0, send: true}, {user: "bob", host: 1, send: true}, {user: "carol", host: 2, send: true},
	{user: "dave", host: 0}, {user: "erin", host: 1}, {user: "frank", host: 2},
	{user: "bob", host: 2}, {user: "carol", host: 0}, // second devices
}

// outage is how long the store and link cuts last.
const outage = 10 * time.Second

// TestFaultRollingRestart: all three hosts are restarted one at a time with SIGTERM
// (drain: 1012 to every socket, presence removed, exit 0 within 15 s) under load;
// their devices reconnect elsewhere and senders write their unanswered sends again.
func TestFaultRollingRestart(t *testing.T) {
	// Not parallel: its recovery bounds are timings, which other clusters' CPU on
	// two cores would stretch.
	c := StartCluster(t, 3, Options{Env: map[string]string{"CHAT_DRAIN_TIMEOUT": "3s"}})
	f := newFleet(t, c, fleetSpec{devices: threeHostFleet, reconnect: true})
	f.run()
	waitStreaming(t, f, 40)
	start := time.Now()
	var drains []string
	for _, h := range c.Hosts {
		f.setDown(h, true)
		code, took := h.Term(t)
		if code != 0 || took > 15*time.Second {
			t.Errorf("%s drained: exit %d after %v, want 0 within 15 s", h.ID, code, took)
		}
		h.Restart(t)
		f.setDown(h, false)
		drains = append(drains, fmt.Sprintf("%s=%v", h.ID, took.Round(time.Millisecond)))
		waitStreaming(t, f, 60) // the restarted host serves again before the next goes
	}
	r := f.finish(t, "rolling-restart", start, time.Now(), 20*time.Second)
	_ = r
	t.Logf("drain times %v", drains)
}

// TestFaultRedisUnreachable: the hosts reach a private redis-server through a proxy,
// which is cut for 10 s (connections closed, new ones refused) while the data stays.
// Sockets stay open, every send is answered `sent` (Postgres is the record) and
// reaches every member live within 1 s through the every-known-host fallback; once
// Redis is back, presence is whole again (every open socket has its entry) within 10 s.
func TestFaultRedisUnreachable(t *testing.T) {
	// Not parallel: its recovery bounds are timings, which other clusters' CPU on
	// two cores would stretch.
	rs := StartRedisServer(t)
	p := NewProxy(t, fmt.Sprintf("127.0.0.1:%d", rs.Port))
	c := StartCluster(t, 3, Options{RedisURL: "redis://" + p.Addr() + "/0"})
	f := newFleet(t, c, fleetSpec{devices: threeHostFleet})
	f.run()
	// Fallback goes to the hosts each host last saw: let every host see the others.
	CheckFor(t, 5*time.Second, 50*time.Millisecond, f.presenceRight)
	waitStreaming(t, f, 40)
	<-time.After(3 * time.Second) // the rate before the cut, to compare with

	start, end := cutFor(p, outage)
	// The first messages after the return are the ones at risk (every heartbeat in
	// Redis is older than the host TTL then): send a few, then nothing more, so no
	// later message can fill a gap they leave.
	<-time.After(200 * time.Millisecond)
	for _, d := range f.devs {
		if code, closed := d.cur().Closed(); closed {
			t.Errorf("%s: socket closed (%d) while Redis was unreachable", d.name, code)
		}
	}
	r := f.finish(t, "redis-unreachable", start, end, 10*time.Second)
	n, worst := f.lags(start, end, func(*device) bool { return true })
	// Sends keep flowing at (a good part of) the rate of the seconds before the cut.
	const before = 3 * time.Second
	was := float64(f.sentBetween(start.Add(-before), start)) / before.Seconds()
	during := float64(r.sentDuring) / end.Sub(start).Seconds()
	t.Logf("sends answered per second: %.0f before the cut, %.0f during it", was, during)
	if during < was/4 { // the bug this guards against held each socket to ~2 sends a second
		t.Errorf("sends slowed from %.0f/s to %.0f/s while Redis was unreachable", was, during)
	}
	if r.refused > 0 {
		t.Errorf("%d sends refused while Redis was unreachable; want every one sent", r.refused)
	}
	t.Logf("during the outage: %d deliveries, slowest %v after its sent", n, worst.Round(time.Millisecond))
	if worst > liveBound {
		t.Errorf("a message sent while Redis was unreachable arrived %v after its sent (contract: within %v)", worst, liveBound)
	}
}

// TestFaultRedisUnreachableSendLimit: the send limit of section 8 (20 a second, bursts
// of 40, per user; `error rate_limited` or 429, nothing stored) while Redis is
// unreachable and after. Section 4.5 says sends still succeed then (PostgreSQL is the
// record) and rate limits fall back to a per-host limit; so with the Redis link cut, a
// quick burst of 80 sends over one socket is answered `sent` for the 40 of the burst
// plus what refilled during it and `rate_limited` for the rest, only the sent ones are
// stored, and they reach the other member's connected devices (section 4.1). Once
// Redis answers again the limit is the cluster's again (section 8: "they hold
// cluster-wide, not per host"): a burst spent on h1 leaves h2 only the refill, where a
// bucket of h2's own would allow 40 more.
func TestFaultRedisUnreachableSendLimit(t *testing.T) {
	// Not parallel: the bursts must be quick for a refill of 20 a second not to blur
	// them, which other clusters' CPU on two cores would prevent.
	const rate, burst = 20, 40 // section 8; the harness raises them for the other tests
	// mostAllowed is what one bucket, full at first, can allow to decisions spread over
	// span; the Redis bucket counts whole milliseconds, so one more may have refilled.
	mostAllowed := func(span time.Duration) int {
		return burst + int(rate*(span+time.Millisecond).Seconds())
	}
	rs := StartRedisServer(t)
	p := NewProxy(t, fmt.Sprintf("127.0.0.1:%d", rs.Port))
	c := StartCluster(t, 2, Options{RedisURL: "redis://" + p.Addr() + "/0", Env: map[string]string{
		"CHAT_LIMIT_SEND_RATE": strconv.Itoa(rate), "CHAT_LIMIT_SEND_BURST": strconv.Itoa(burst),
	}})
	h1, h2 := c.Hosts[0], c.Hosts[1]
	alice, bob := NewUser(t, h1, "alice"), NewUser(t, h2, "bob")
	th := CreateThread(t, h1, alice, "limited", "bob")
	// A limiter notices the cut, and later the return, only when it is asked: bob's
	// sends ask each host's, in a thread of his own so that alice's holds only hers.
	solo := CreateThread(t, h2, bob, "bob alone")
	a := DialSynced(t, h1, alice) // new sockets need Redis (sessions live there)
	bobs := []*Client{DialSynced(t, h1, bob), DialSynced(t, h2, bob)}
	// Without Redis, h1 delivers to the hosts it knew: a message that reached bob on h2
	// shows it knows h2 (a host it has not seen yet gets nothing, section 4.5).
	before := sendAll(t, a, th.ID, "before-", 1)
	a.WaitSent(t, before[0], 5*time.Second)
	for _, b := range bobs {
		waitSeqs(t, b, th.ID, 1, 5*time.Second)
	}
	nudges := 0
	nudge := func() {
		for _, b := range bobs {
			nudges++
			b.WaitSent(t, sendAll(t, b, solo.ID, fmt.Sprintf("nudge%d-", nudges), 1)[0], 10*time.Second)
		}
	}
	// wantStored fails unless the thread holds exactly the messages answered sent.
	wantStored := func(when string, sent []string) {
		t.Helper()
		stored := History(t, h2, bob, th.ID)
		if err := checkSeqs(stored, len(sent)); err != nil {
			t.Errorf("%s: %v", when, err)
		}
		got := make([]string, 0, len(stored))
		for _, m := range stored {
			got = append(got, m.ClientMsgID)
		}
		want := slices.Clone(sent)
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s: stored %v, want the sends answered sent, %v", when, got, want)
		}
	}

	p.Cut()
	nudge()
	for _, h := range c.Hosts {
		if !h.LogContains("rate limiter cannot reach redis") {
			t.Fatalf("%s's limiter still reached Redis after the cut: the test would prove nothing", h.ID)
		}
	}
	const n = 80
	sent, limited, span := sendBurst(t, a, th.ID, "cut-", n)
	most := mostAllowed(span)
	t.Logf("Redis cut: %d of %d sends on h1 answered sent, %d rate_limited, in %v (one bucket allows %d..%d)",
		len(sent), n, len(limited), span.Round(time.Millisecond), burst, most)
	if most >= n {
		t.Fatalf("the burst took %v, long enough to refill what it spent: it cannot show a limit", span)
	}
	if len(sent) < burst || len(sent) > most {
		t.Errorf("with Redis cut, %d sends in %v were answered sent, want %d..%d (the burst plus the refill)", len(sent), span, burst, most)
	}
	for _, b := range bobs {
		if code, closed := b.Closed(); closed {
			t.Errorf("bob's socket on %s closed (%d) while Redis was unreachable", b.HostID, code)
		}
	}

	p.Restore()
	end := time.Now()
	// Each limiter is back once its probe (at most one a second, sent when it is asked)
	// gets an answer.
	CheckFor(t, 10*time.Second, 200*time.Millisecond, func() error {
		nudge()
		for _, h := range c.Hosts {
			if !h.LogContains("rate limiter back on redis") {
				return fmt.Errorf("%s's limiter not back on Redis yet", h.ID)
			}
		}
		return nil
	})
	recovery := time.Since(end)
	wantStored("after the cut", slices.Concat(before, sent))
	// Section 4.1 holds through the cut: bob's two devices, which stayed connected, get
	// every message answered sent.
	lost := 0
	err := poll(10*time.Second, 20*time.Millisecond, func() error {
		lost = 0
		for _, b := range bobs {
			held := map[string]bool{}
			for _, m := range b.Messages(th.ID) {
				held[m.ClientMsgID] = true
			}
			for _, id := range sent {
				if !held[id] {
					lost++
				}
			}
		}
		if lost > 0 {
			return fmt.Errorf("%d (message answered sent, bob's device) pairs missing", lost)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	logFault(t, faultResult{name: "redis-unreachable-send-limit", sentDuring: len(sent), refused: len(limited), lost: lost,
		dups: wireDups(bobs[0]) + wireDups(bobs[1]), recovery: recovery,
		note: fmt.Sprintf("(refused: rate_limited by h1's own bucket, which allowed %d..%d; recovery: until both limiters were back on Redis)", burst, most)})

	// alice's bucket in Redis is full (her one send through it refilled long ago): h1
	// takes it, and h2, asked right after over HTTP, may allow no more than the refill.
	// Wait until her bucket of h1's own is full again too, so that a limiter left on it
	// would show as a second 40 allowed on h2, not as a short first one on h1.
	<-time.After(time.Until(a.SentAt("cut-000").Add(span + burst*time.Second/rate)))
	const onH1, onH2 = 50, burst
	sent2, limited2, _ := sendBurst(t, a, th.ID, "back-", onH1)
	var mu sync.Mutex
	var viaHTTP, refusedHTTP []string
	var last time.Time
	err = parallelDo(onH2, 8, func(i int) error {
		id := fmt.Sprintf("http-%03d", i)
		st, raw, err := api(http.MethodPost, h2.PublicURL()+"/api/v1/threads/"+th.ID+"/messages", alice.Token,
			map[string]string{"client_msg_id": id, "body": "after the return"}, nil)
		mu.Lock()
		defer mu.Unlock()
		last = time.Now()
		switch {
		case err == nil && st == http.StatusCreated:
			viaHTTP = append(viaHTTP, id)
		case err == nil && st == http.StatusTooManyRequests && strings.Contains(string(raw), `"rate_limited"`):
			refusedHTTP = append(refusedHTTP, id)
		default:
			return fmt.Errorf("HTTP send %s on h2: %d %s (%w), want 201 or 429 rate_limited", id, st, raw, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	span = last.Sub(a.SentAt("back-000"))
	most = mostAllowed(span)
	total := len(sent2) + len(viaHTTP)
	t.Logf("Redis back: %d of %d sends on h1 answered sent, then %d of %d on h2 (%d refused 429), in %v (one bucket allows %d..%d; one per host would allow %d or more)",
		len(sent2), onH1, len(viaHTTP), onH2, len(refusedHTTP), span.Round(time.Millisecond), burst, most, 2*burst)
	if most >= 2*burst {
		t.Fatalf("the sends took %v, long enough to refill what h1 spent: they cannot tell one bucket from two", span)
	}
	if len(sent2) < burst || total > most {
		t.Errorf("after the return, %d sends on h1 and %d on h2 in %v were allowed, want %d..%d in all (one bucket for the cluster); %d were refused on h1",
			len(sent2), len(viaHTTP), span, burst, most, len(limited2))
	}
	wantStored("at the end", slices.Concat(before, sent, sent2, viaHTTP))
}

// TestFaultHandoffKeptWhileRedisUnreachable: h1 cannot reach Redis and its call to h2
// fails, so it can neither deliver a message to bob's socket on h2 nor record the
// hand-off h2 would repair from. bob stays connected and nothing else happens in the
// thread, so before the sender kept such hand-offs he never got the message (section
// 4.1: live if connected). Now h1 records the hand-off once Redis answers, and h2
// pushes the message within a few seconds. The cut is shorter than the host TTL, so no
// host counts h1 as dead (which would repair every socket anyway).
func TestFaultHandoffKeptWhileRedisUnreachable(t *testing.T) {
	t.Parallel()
	rs := StartRedisServer(t)
	redisLink := NewProxy(t, fmt.Sprintf("127.0.0.1:%d", rs.Port)) // h1's only
	internal := NewProxy(t, "")                                    // to h2
	c := StartCluster(t, 2, Options{RedisURL: rs.URL(), HostEnv: map[int]map[string]string{
		0: {"CHAT_REDIS_URL": "redis://" + redisLink.Addr() + "/0"},
		1: {"CHAT_INTERNAL_URL": internal.URL()},
	}})
	h1, h2 := c.Hosts[0], c.Hosts[1]
	internal.SetTarget(h2.InternalAddr())
	alice, bob := NewUser(t, h1, "alice"), NewUser(t, h2, "bob")
	th := CreateThread(t, h1, alice, "kept", "bob")
	a, b := DialSynced(t, h1, alice), DialSynced(t, h2, bob)
	waitAllSent(t, a, sendAll(t, a, th.ID, "before-", 1), 5*time.Second)
	waitSeqs(t, b, th.ID, 1, 5*time.Second)

	redisLink.Cut()
	internal.Cut()
	sent := waitAllSent(t, a, sendAll(t, a, th.ID, "during-", 1), 5*time.Second)
	<-time.After(time.Second)
	if got := b.Messages(th.ID); len(got) != 1 {
		t.Fatalf("bob has %d messages with h2 out of h1's reach, want only the one before: the cut proves nothing", len(got))
	}
	redisLink.Restore()
	internal.Restore()
	back := time.Now()
	b.WaitFor(t, 10*time.Second, func([]Frame) error {
		if got := b.Messages(th.ID); len(got) < 2 || got[1].ID != sent[0].ID {
			return fmt.Errorf("bob, connected to h2 throughout, has %d of the 2 messages", len(got))
		}
		return nil
	})
	took := time.Since(back)
	t.Logf("bob got the message kept while h1 could not reach Redis %v after the links came back", took.Round(time.Millisecond))
	if took > 5*time.Second {
		t.Errorf("bob got the message %v after the links came back, want within 5 s (a second to record the hand-off, a second for h2 to take it)", took)
	}
}

// TestFaultLogoutWhileAHostIsCutOffFromRedis: h2 loses its Redis link long enough for
// the others to see its heartbeat go stale, keeping its sockets, and alice logs out on
// h1 meanwhile. h1 does not call a host it counts as silent, so it records the
// disconnect for h2 in Redis; h2 takes it once it reaches Redis again and closes
// alice's socket there with 4001. Before, that socket stayed open, sending and
// receiving, until the session would have expired.
func TestFaultLogoutWhileAHostIsCutOffFromRedis(t *testing.T) {
	t.Parallel()
	rs := StartRedisServer(t)
	redisLink := NewProxy(t, fmt.Sprintf("127.0.0.1:%d", rs.Port)) // h2's only
	c := StartCluster(t, 2, Options{RedisURL: rs.URL(), HostEnv: map[int]map[string]string{
		1: {"CHAT_REDIS_URL": "redis://" + redisLink.Addr() + "/0"},
	}})
	h1, h2 := c.Hosts[0], c.Hosts[1]
	rdb := c.RawRedis(t)
	alice := NewUser(t, h1, "alice")
	s1, s2 := DialSynced(t, h1, alice), DialSynced(t, h2, alice)

	redisLink.Cut()
	CheckFor(t, 15*time.Second, 100*time.Millisecond, func() error {
		reg, err := hostEntry(c, rdb, h2.ID)
		if err != nil {
			return err
		}
		if age := time.Since(time.UnixMilli(reg.HBMs)); age < 7*time.Second {
			return fmt.Errorf("h2's last heartbeat is %v old, want it stale (6 s) with a second for h1 to notice", age)
		}
		return nil
	})
	st, raw := API(t, http.MethodPost, h1.PublicURL()+"/api/v1/auth/logout", alice.Token, nil, nil)
	if st != http.StatusNoContent {
		t.Fatalf("logout: %d %s", st, raw)
	}
	if code := s1.WaitClosed(t, 2*time.Second); code != 4001 {
		t.Errorf("socket on h1 closed with %d, want 4001", code)
	}
	time.Sleep(time.Second)
	if code, closed := s2.Closed(); closed {
		t.Fatalf("socket on h2 closed (%d) while h2 could not reach Redis: the cut proves nothing", code)
	}
	redisLink.Restore()
	back := time.Now()
	if code := s2.WaitClosed(t, 5*time.Second); code != 4001 {
		t.Errorf("socket on h2 closed with %d, want 4001", code)
	}
	t.Logf("alice's socket on h2 closed %v after h2's Redis link came back", time.Since(back).Round(time.Millisecond))
}

// TestFaultPostgresUnreachable: every host reaches PostgreSQL through a proxy, cut for
// 10 s. Each send meanwhile is answered `error unavailable` within 5 s, nothing is
// acked or half-stored (a refused send never shows up in the history), sockets stay
// open, and sends succeed again within 2 s of the database's return.
// TestPostgresDown (cluster_test.go) checks the HTTP side (503) and the resend.
func TestFaultPostgresUnreachable(t *testing.T) {
	// Not parallel: its recovery bounds are timings, which other clusters' CPU on
	// two cores would stretch.
	testPostgresOutage(t, "postgres-unreachable", cutFor)
}

// TestFaultPostgresSilent is TestFaultPostgresUnreachable with a link that goes silent
// instead of breaking: nothing is answered, nothing is reset (a partition, a dead
// router), so no error ever comes from the driver. The hosts' own deadlines must
// answer every send within 5 s all the same, new connections included, which hang
// too. When it ends, the connections it held are reset, as a partition's usually are
// by then.
func TestFaultPostgresSilent(t *testing.T) {
	// Not parallel, as above.
	testPostgresOutage(t, "postgres-silent", freezeFor)
}

// testPostgresOutage runs the PostgreSQL outage cases: fault takes the link down for
// the given time and returns when it began and ended.
func testPostgresOutage(t *testing.T, name string, fault func(*Proxy, time.Duration) (time.Time, time.Time)) {
	p := NewProxy(t, "")
	c := StartCluster(t, 3, Options{Setup: func(_ int, env map[string]string) {
		u, err := url.Parse(env["CHAT_DATABASE_URL"])
		if err != nil {
			t.Fatal(err)
		}
		p.SetTarget(u.Host)
		u.Host = p.Addr()
		env["CHAT_DATABASE_URL"] = u.String()
	}})
	f := newFleet(t, c, fleetSpec{devices: threeHostFleet})
	f.run()
	waitStreaming(t, f, 40)

	start, end := fault(p, outage)
	// The first send written after the return that is answered sent.
	var back time.Duration
	CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		back = 0
		for _, s := range f.sends {
			for _, it := range s.snapshot() {
				if it.answer == "sent" && it.writtenAt.After(end) {
					if d := it.answeredAt.Sub(end); back == 0 || d < back {
						back = d
					}
				}
			}
		}
		if back == 0 {
			return fmt.Errorf("no send written after the return answered sent yet")
		}
		return nil
	})
	var slowest time.Duration
	for _, s := range f.sends {
		for _, it := range s.snapshot() {
			if it.answer == "" || it.answer == "sent" {
				continue
			}
			if it.answer != "unavailable" {
				t.Errorf("%s: %s answered %s, want unavailable", s.d.name, it.cmid, it.answer)
			}
			slowest = max(slowest, it.answeredAt.Sub(it.writtenAt))
		}
	}
	r := f.finish(t, name, start, end, 10*time.Second)
	t.Logf("sends succeed again %v after the database's return; slowest unavailable answer %v", back.Round(time.Millisecond), slowest.Round(time.Millisecond))
	if back > 2*time.Second {
		t.Errorf("sends succeeded again only %v after the database's return (want within 2 s)", back)
	}
	if slowest > 5*time.Second {
		t.Errorf("a send was answered unavailable only after %v (contract: within 5 s)", slowest)
	}
	if r.refused == 0 {
		t.Errorf("no send was refused during the outage: the cut proves nothing")
	}
	for _, d := range f.devs {
		if code, closed := d.cur().Closed(); closed {
			t.Errorf("%s: socket closed (%d) while the database was unreachable", d.name, code)
		}
	}
}

// TestFaultInternalLinkCut: the internal link to h2 is cut for 10 s (its
// CHAT_INTERNAL_URL goes through a proxy) while h2 stays alive and its clients
// connected. They still get every message, none later than 5 s after its `sent`: the
// other hosts record the missed hand-offs in Redis and h2 pushes them from Postgres.
// TestInternalLinkCut (cluster_test.go) is the two-host, non-streaming version.
func TestFaultInternalLinkCut(t *testing.T) {
	// Not parallel: its recovery bounds are timings, which other clusters' CPU on
	// two cores would stretch.
	p := NewProxy(t, "")
	c := StartCluster(t, 3, Options{HostEnv: map[int]map[string]string{1: {"CHAT_INTERNAL_URL": p.URL()}}})
	h2 := c.Hosts[1]
	p.SetTarget(h2.InternalAddr())
	// Nobody sends from h2: its sockets' only way to the messages is the hand-off
	// record (a send of their own would make h2 fill their gaps from the store).
	f := newFleet(t, c, fleetSpec{devices: []devSpec{
		{user: "alice", host: 0, send: true}, {user: "carol", host: 2, send: true},
		{user: "bob", host: 1}, {user: "erin", host: 1}, {user: "alice", host: 1},
		{user: "dave", host: 0}, {user: "frank", host: 2},
	}})
	f.run()
	waitStreaming(t, f, 40)
	<-time.After(3 * time.Second) // the rate before the cut, to compare with
	recorded := c.Hosts[0].Metric(t, `switchboard_handoffs_total{event="recorded"}`) + c.Hosts[2].Metric(t, `switchboard_handoffs_total{event="recorded"}`)

	start, end := cutFor(p, outage)
	onH2 := func(d *device) bool { return d.all()[0].HostID == h2.ID }
	r := f.finish(t, "internal-link-cut", start, end, 5*time.Second)
	n, worst := f.lags(start, end, onH2)
	after := c.Hosts[0].Metric(t, `switchboard_handoffs_total{event="recorded"}`) + c.Hosts[2].Metric(t, `switchboard_handoffs_total{event="recorded"}`)
	t.Logf("h2's devices: %d deliveries during the cut, slowest %v after its sent; %v hand-offs recorded; sends answered per second: %.0f in the 3 s before the cut, %.0f during it",
		n, worst.Round(time.Millisecond), after-recorded, float64(f.sentBetween(start.Add(-3*time.Second), start))/3, float64(r.sentDuring)/end.Sub(start).Seconds())
	if after <= recorded {
		t.Fatalf("no missed hand-off recorded: the link was not cut, the test proves nothing")
	}
	if worst > 5*time.Second {
		t.Errorf("a message reached a device on h2 %v after its sent (contract: within 5 s)", worst)
	}
}

// TestFaultHalfOpenClient: a device whose network vanishes without a FIN (the proxy
// in front of h2's public listener stops forwarding, closing nothing) is closed by
// h2 and its presence entry removed within the ping interval plus the pong timeout
// (short here: 500 ms and 3 s; 25 s and 60 s by default, so 75 s); messages sent
// meanwhile reach it when it comes back (through h1) and syncs from its own seq.
func TestFaultHalfOpenClient(t *testing.T) {
	// Not parallel: its bound is a timing (ping + pong timeout + 1 s), which another
	// cluster's load on two cores stretched in CI (6.9 s beside the parallel tests,
	// 3.0 s alone or beside three CPU hogs).
	const ping, pong = 500 * time.Millisecond, 3 * time.Second
	p := NewProxy(t, "")
	c := StartCluster(t, 2, Options{Env: map[string]string{"CHAT_PING_INTERVAL": ping.String(), "CHAT_PONG_TIMEOUT": pong.String()}})
	h2 := c.Hosts[1]
	p.SetTarget(h2.PublicURL()[len("http://"):])
	f := newFleet(t, c, fleetSpec{devices: []devSpec{
		{user: "alice", host: 0, send: true}, {user: "bob", host: 1}, {user: "bob", host: 1, via: p}, {user: "carol", host: 1, send: true},
	}})
	phone := f.devs[2]
	f.run()
	waitStreaming(t, f, 40)
	conn := phone.cur().Hello.ConnID
	before := h2.Metric(t, "switchboard_ws_connections")

	p.Freeze()
	start := time.Now()
	var gone time.Duration
	CheckFor(t, ping+pong+5*time.Second, 20*time.Millisecond, func() error {
		live, err := livePresence(c, []string{phone.user.ID})
		if err != nil {
			return err
		}
		for _, id := range live[phone.user.ID] {
			if id == conn {
				return fmt.Errorf("the vanished socket's presence entry is still there after %v", time.Since(start).Round(time.Millisecond))
			}
		}
		if n := h2.Metric(t, "switchboard_ws_connections"); n >= before {
			return fmt.Errorf("h2 still holds %v sockets", n)
		}
		gone = time.Since(start)
		return nil
	})
	t.Logf("the half-open socket was closed and its presence removed %v after it vanished", gone.Round(time.Millisecond))
	if gone > ping+pong+time.Second {
		t.Errorf("removal took %v, want within ping %v + pong timeout %v (+1 s)", gone, ping, pong)
	}
	// The host's read deadline runs from the last frame or pong it read, which on a
	// loaded machine can be well before the freeze: measure from the last bytes the
	// proxy handed it (the check polls, so the removal came at most this late).
	if sinceLast := start.Add(gone).Sub(p.LastForwarded()); sinceLast < pong-100*time.Millisecond {
		t.Errorf("removed %v after the last bytes from the client reached the host, before the pong timeout %v: a quiet client is not a dead one", sinceLast, pong)
	}
	// The device notices (its own timeout) and comes back through the other host.
	phone.cur().Close()
	if err := phone.connect(c.Hosts[0]); err != nil {
		t.Fatal(err)
	}
	end := time.Now()
	p.Unfreeze()
	r := f.finish(t, "half-open-client", start, end, 10*time.Second)
	_ = r
}

// waitStreaming waits until n more sends have been answered `sent`.
func waitStreaming(tb testing.TB, f *fleet, n int) {
	tb.Helper()
	count := func() int {
		k := 0
		for _, s := range f.sends {
			for _, it := range s.snapshot() {
				if it.answer == "sent" {
					k++
				}
			}
		}
		return k
	}
	from := count()
	CheckFor(tb, 20*time.Second, 20*time.Millisecond, func() error {
		if got := count() - from; got < n {
			return fmt.Errorf("%d of %d more sends answered sent", got, n)
		}
		return nil
	})
}

// TestFaultReconnectStorm: 2,000 sockets (100 users with 20 each) on h3, which is
// killed with SIGKILL while alice on h1 streams to a thread of two of those users.
// Every socket reconnects to h1 or h2 with full-jitter backoff (sleep uniformly in
// [0, min(4 s, 250 ms * 2^attempt)]): all are back and synced within 15 s, those of
// the thread's members hold every message, and each surviving host's resident memory
// (process_resident_memory_bytes) stays under stormRSSBound. CHAT_LIMIT_SOCKETS_PER_USER
// is 50: until h3 is recognised as dead (6 s) its entries still count against the
// 20 sockets each user reconnects.
func TestFaultReconnectStorm(t *testing.T) {
	t.Parallel()
	const users, perUser = 100, 20
	// stormRSSBound: what one surviving host may hold after taking about 1,000 of the
	// sockets (the issue-6 target is 16 KB per idle socket; this leaves room for the
	// catch-up burst and the Go runtime's slack).
	const stormRSSBound = 160 << 20
	c := StartCluster(t, 3, Options{Env: map[string]string{"CHAT_LIMIT_SOCKETS_PER_USER": "50"}})
	h1, h2, h3 := c.Hosts[0], c.Hosts[1], c.Hosts[2]

	// The thread's members' devices are a fleet (checked message by message); the
	// other 1,960 sockets are bare.
	spec := []devSpec{{user: "alice", host: 0, send: true}}
	for _, name := range []string{"storm000", "storm001"} {
		for range perUser {
			spec = append(spec, devSpec{user: name, host: 2})
		}
	}
	f := newFleet(t, c, fleetSpec{devices: spec, reconnect: true, every: 50 * time.Millisecond})
	var mu sync.Mutex
	var bare []*stormSock
	err := parallelDo(users-2, 8, func(i int) error {
		u, err := registerLogin(c.Hosts[i%2], fmt.Sprintf("storm%03d", i+2))
		if err != nil {
			return err
		}
		for range perUser {
			s := &stormSock{u: u}
			mu.Lock()
			bare = append(bare, s)
			mu.Unlock()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, s := range bare {
			if s.c != nil {
				s.c.Close()
			}
		}
	})
	connectStart := time.Now()
	if err := parallelDo(len(bare), 32, func(i int) error { return bare[i].connect(h3) }); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d sockets on h3 (%d bare, %d of the thread's members) connected in %v", len(bare)+len(spec)-1, len(bare), len(spec)-1, time.Since(connectStart).Round(time.Millisecond))
	rss := func(h *Host) float64 { return h.Metric(t, "process_resident_memory_bytes") }
	rss1, rss2 := rss(h1), rss(h2)
	f.run()
	waitStreaming(t, f, 20)

	f.setDown(h3, true)
	h3.Kill(t)
	kill := time.Now()
	quit := make(chan struct{})
	var wg sync.WaitGroup
	for _, s := range bare {
		wg.Add(1)
		go func() { defer wg.Done(); s.reconnect([]*Host{h1, h2}, quit) }()
	}
	allBack := func() error {
		for _, d := range f.devs {
			if !d.open() || d.cur().HostID == h3.ID {
				return fmt.Errorf("%s not back", d.name)
			}
		}
		n := 0
		for _, s := range bare {
			if s.isBack() {
				n++
			}
		}
		if n < len(bare) {
			return fmt.Errorf("%d of %d bare sockets back", n, len(bare))
		}
		return nil
	}
	err = poll(30*time.Second, 20*time.Millisecond, allBack)
	back := time.Since(kill)
	close(quit)
	wg.Wait()
	if err != nil {
		t.Fatalf("after %v: %v", back, err)
	}
	attempts, maxAttempts := 0, 0
	var backs []time.Duration
	for _, s := range bare {
		attempts += s.attempts
		maxAttempts = max(maxAttempts, s.attempts)
		backs = append(backs, s.backAt.Sub(kill))
	}
	slices.Sort(backs)
	t.Logf("bare sockets back after the kill: p50 %v, p99 %v, max %v; at most %d dial attempts for one",
		percentile(backs, .5).Round(time.Millisecond), percentile(backs, .99).Round(time.Millisecond), backs[len(backs)-1].Round(time.Millisecond), maxAttempts)
	for _, d := range f.devs {
		d.mu.Lock()
		for _, r := range d.reconnects {
			if r > 5*time.Second {
				t.Logf("%s took %v to reconnect and sync", d.name, r.Round(time.Millisecond))
			}
		}
		d.mu.Unlock()
	}
	after1, after2 := rss(h1), rss(h2)
	t.Logf("all %d sockets back and synced %v after the kill (%d dial attempts of the bare ones); RSS h1 %.0f -> %.0f MiB, h2 %.0f -> %.0f MiB",
		len(bare)+len(spec)-1, back.Round(time.Millisecond), attempts, rss1/(1<<20), after1/(1<<20), rss2/(1<<20), after2/(1<<20))
	if back > 15*time.Second {
		t.Errorf("the sockets took %v to be back, want within 15 s", back)
	}
	for _, v := range []struct {
		h   *Host
		rss float64
	}{{h1, after1}, {h2, after2}} {
		if v.rss > stormRSSBound {
			t.Errorf("%s holds %.0f MiB after the storm, bound %d MiB", v.h.ID, v.rss/(1<<20), stormRSSBound>>20)
		}
	}
	r := f.finish(t, "reconnect-storm-2000", kill, kill.Add(back), 20*time.Second)
	_ = r
	// Every bare socket has its live presence entry (h3's are dead, skipped).
	ids := make([]string, 0, users)
	want := map[string]map[string]bool{}
	for _, s := range bare {
		if want[s.u.ID] == nil {
			want[s.u.ID] = map[string]bool{}
			ids = append(ids, s.u.ID)
		}
		want[s.u.ID][s.c.Hello.ConnID] = true
	}
	CheckFor(t, 5*time.Second, 50*time.Millisecond, func() error {
		live, err := livePresence(c, ids)
		if err != nil {
			return err
		}
		for _, id := range ids {
			if len(live[id]) != len(want[id]) {
				return fmt.Errorf("user %s has %d live presence entries, %d sockets", id, len(live[id]), len(want[id]))
			}
			for _, cid := range live[id] {
				if !want[id][cid] {
					return fmt.Errorf("user %s: entry %s is no open socket", id, cid)
				}
			}
		}
		return nil
	})
}

// stormSock is one bare socket of the storm.
type stormSock struct {
	u        *User
	mu       sync.Mutex
	c        *Client
	back     bool
	backAt   time.Time
	attempts int
}

func (s *stormSock) connect(h *Host) error {
	cl, hs, err := DialWith(h, DialOptions{Token: s.u.Token})
	if err != nil {
		return fmt.Errorf("dial %s as %s: %w (%d %s)", h.ID, s.u.Username, err, hs.Status, hs.Body)
	}
	if err := waitType(cl, 15*time.Second, "synced"); err != nil {
		cl.Close()
		return fmt.Errorf("%s as %s: %w", h.ID, s.u.Username, err)
	}
	cl.Hello = cl.Frames()[0]
	s.mu.Lock()
	s.c = cl
	s.mu.Unlock()
	return nil
}

func (s *stormSock) isBack() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.back
}

// reconnect waits for the socket to end, then dials one of hosts at random with
// full-jitter backoff until a socket is synced.
func (s *stormSock) reconnect(hosts []*Host, quit <-chan struct{}) {
	select {
	case <-s.c.Done():
	case <-quit:
		return
	}
	s.c.Close()
	for attempt := 0; ; attempt++ {
		ceil := min(4*time.Second, 250*time.Millisecond<<min(attempt, 10))
		select {
		case <-time.After(time.Duration(rand.Int64N(int64(ceil) + 1))):
		case <-quit:
			return
		}
		s.mu.Lock()
		s.attempts++
		s.mu.Unlock()
		if s.connect(hosts[rand.IntN(len(hosts))]) == nil {
			s.mu.Lock()
			s.back, s.backAt = true, time.Now()
			s.mu.Unlock()
			return
		}
	}
}

// registerLogin registers username through h and logs it in, without failing a test.
func registerLogin(h *Host, username string) (*User, error) {
	body := map[string]string{"username": username, "password": Password}
	if st, raw, err := api("POST", h.PublicURL()+"/api/v1/auth/register", "", body, nil); err != nil || st != 201 {
		return nil, fmt.Errorf("register %s: %d %s: %w", username, st, raw, err)
	}
	var out struct {
		Token string `json:"token"`
		User  struct {
			ID string `json:"id"`
		} `json:"user"`
	}
	if st, raw, err := api("POST", h.PublicURL()+"/api/v1/auth/login", "", body, &out); err != nil || st != 200 {
		return nil, fmt.Errorf("login %s: %d %s: %w", username, st, raw, err)
	}
	return &User{ID: out.User.ID, Username: username, Token: out.Token}, nil
}

// parallelDo runs fn(0..n-1) on `workers` goroutines and returns the first error.
func parallelDo(n, workers int, fn func(i int) error) error {
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	next := make(chan int)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(i); err != nil {
					once.Do(func() { first = err })
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return first
}

// TestFaultRedisEmptyBeforeReregistration: Redis restarts empty, and a message is sent
// after the sender's host has registered again but before the receiver's host has
// (h1 beats every 200 ms, h2 every 5 s). The sender's lookup finds no entry for the
// receiver, so no host is called and no hand-off recorded; yet the connected receiver
// gets the message, with no later one to fill the gap: a host that finds its
// registration gone re-registers its sockets and pushes them what they missed from
// PostgreSQL.
func TestFaultRedisEmptyBeforeReregistration(t *testing.T) {
	t.Parallel()
	rs := StartRedisServer(t)
	c := StartCluster(t, 2, Options{RedisURL: rs.URL(),
		Env:     map[string]string{"CHAT_HEARTBEAT_INTERVAL": "5s", "CHAT_HOST_TTL": "15s"},
		HostEnv: map[int]map[string]string{0: {"CHAT_HEARTBEAT_INTERVAL": "200ms"}},
	})
	h1, h2 := c.Hosts[0], c.Hosts[1]
	alice := NewUser(t, h1, "alice")
	bob := NewUser(t, h2, "bob")
	th := CreateThread(t, h1, alice, "empty", "bob")
	a := DialSynced(t, h1, alice)
	b := DialSynced(t, h2, bob)
	waitAllSent(t, a, sendAll(t, a, th.ID, "before", 1), 5*time.Second)
	waitSeqs(t, b, th.ID, 1, 5*time.Second)

	rs.Stop(t)
	rs.Start(t)
	restarted := time.Now()
	store := c.Redis(t)
	CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		hosts, err := store.Hosts(ctx)
		if err != nil {
			return err
		}
		if len(hosts) != 1 || hosts[0].HostID != h1.ID {
			return fmt.Errorf("registered: %v, want h1 alone", hosts)
		}
		return nil
	})
	m := waitAllSent(t, a, sendAll(t, a, th.ID, "after", 1), 5*time.Second)[0]
	sent := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	entries, err := store.Lookup(ctx, []string{bob.ID})
	cancel()
	if err != nil || len(entries[bob.ID]) > 0 {
		t.Logf("bob's entry was back before the send (%v, %v): the window was missed", entries, err)
	}
	waitSeqs(t, b, th.ID, 2, 10*time.Second)
	got := time.Since(sent)
	t.Logf("bob got seq %d %v after its sent (Redis restarted %v before)", m.Seq, got.Round(time.Millisecond), sent.Sub(restarted).Round(time.Millisecond))
	logFault(t, faultResult{name: "redis-empty-before-reregistration", sentDuring: 1, dups: wireDups(b), recovery: got,
		note: "(recovery: from sent until the connected receiver had it)"})
}

// freezeFor freezes p for d (no byte passes, nothing is closed), then resets the
// connections it held and lets new ones through; it returns when the fault began and
// ended.
func freezeFor(p *Proxy, d time.Duration) (start, end time.Time) {
	start = time.Now()
	p.Freeze()
	<-time.After(d)
	p.Cut() // the held bytes are dropped, not delivered late
	p.Unfreeze()
	p.Restore()
	return start, time.Now()
}

// cutFor cuts p for d and returns when the fault began and ended. The start is taken
// before the cut, not after: a send in flight is answered unavailable the moment its
// connection drops, which can come before Cut returns, and such a send must count as
// in flight when the fault began (written before, answered after).
func cutFor(p *Proxy, d time.Duration) (start, end time.Time) {
	start = time.Now()
	p.Cut()
	<-time.After(d)
	p.Restore()
	return start, time.Now()
}

// sendBurst pipelines n sends on c and waits for every answer. It returns the ids
// answered `sent` and those answered `error rate_limited` (any other answer fails the
// test), and the time from the first write to the last answer, which holds every
// limiter decision of the burst.
func sendBurst(tb testing.TB, c *Client, threadID, prefix string, n int) (sent, limited []string, span time.Duration) {
	tb.Helper()
	ids := sendAll(tb, c, threadID, prefix, n)
	answers := map[string]Frame{}
	c.WaitFor(tb, 20*time.Second, func(fs []Frame) error {
		for _, f := range fs {
			if id := f.ClientMsgID; f.Type == "sent" && strings.HasPrefix(id, prefix) {
				answers[id] = f
			} else if id := f.Ref; f.Type == "error" && strings.HasPrefix(id, prefix) {
				answers[id] = f
			}
		}
		if len(answers) < n {
			return fmt.Errorf("%d of %d sends answered", len(answers), n)
		}
		return nil
	})
	var last time.Time
	for _, id := range ids {
		f := answers[id]
		if f.At.After(last) {
			last = f.At
		}
		switch {
		case f.Type == "sent":
			sent = append(sent, id)
		case f.Code == "rate_limited":
			limited = append(limited, id)
		default:
			tb.Errorf("send %s answered %s, want sent or rate_limited", id, f.Raw)
		}
	}
	return sent, limited, last.Sub(c.SentAt(ids[0]))
}
