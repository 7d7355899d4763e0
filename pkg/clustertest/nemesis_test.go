package clustertest

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/pkg/chat"
)

// TestNemesis is a randomized fault run in the manner of Jepsen: a three-host cluster
// with proxies in front of Redis (a private redis-server), PostgreSQL and each host's
// internal listener; devices that send, receive, ack and reconnect like real clients;
// and a nemesis that, at seeded random times, picks one fault at a time with a
// bounded duration: kill -9 a host and restart it, SIGTERM a host and restart it, cut
// and restore the Redis link, the PostgreSQL link or one internal link, restart Redis
// empty. Every send, answer, receipt and fault goes to a history (JSON lines), and a
// checker (checkHistory) verifies it at the end.
//
// It runs only when -nemesis.minutes is set (scripts/nemesis.sh sets it):
//
//	go test -run '^TestNemesis$' ./pkg/clustertest -args -nemesis.seed=42 -nemesis.minutes=2
//
// The seed decides the faults (kinds, hosts, times, durations) and each device's
// choices; the machine's timing decides the rest, so a replay with the same seed
// repeats the same schedule of faults, not every interleaving.
var (
	nemesisSeed    = flag.Uint64("nemesis.seed", 0, "TestNemesis: seed of the fault schedule and the clients' choices (0: a random one, printed)")
	nemesisMinutes = flag.Float64("nemesis.minutes", 0, "TestNemesis: minutes of faults (0: the test is skipped)")
	nemesisHistory = flag.String("nemesis.history", "", "TestNemesis: write the history to this file (default: nemesis-history.jsonl under the test's temp dir)")
	nemesisCheck   = flag.String("nemesis.check", "", "TestNemesisCheckFile: check this history file and nothing else")
)

// event is one line of the history. T is microseconds since the run began.
type event struct {
	T       int64    `json:"t"`
	Ev      string   `json:"ev"`
	Dev     string   `json:"dev,omitempty"`
	User    string   `json:"user,omitempty"`
	Conn    int      `json:"conn,omitempty"`
	Host    string   `json:"host,omitempty"`
	Thread  string   `json:"thread,omitempty"`
	Cmid    string   `json:"cmid,omitempty"`
	ID      string   `json:"id,omitempty"`
	Seq     int64    `json:"seq,omitempty"`
	Sender  string   `json:"sender,omitempty"`
	Code    string   `json:"code,omitempty"`
	Members []string `json:"members,omitempty"`
	Threads []string `json:"threads,omitempty"`
	Fault   string   `json:"fault,omitempty"`
	Note    string   `json:"note,omitempty"`
}

// Event kinds:
//
//	thread      Thread, Members (user ids)             written at the start
//	device      Dev, User, Threads                     written at the start
//	connect     Dev, Conn, Host                        a socket got `synced`
//	disconnect  Dev, Conn, Code                        a socket ended
//	send        Dev, Conn, Thread, Cmid                a `send` frame was written
//	sent        Dev, Conn, Thread, Cmid, ID, Seq       its answer
//	error       Dev, Conn, Cmid, Code                  an `error` answering a send
//	abandon     Dev, Cmid                              the device gave up on an unanswered send
//	recv        Dev, Conn, Thread, ID, Seq, Sender, Cmid   a `message` frame
//	sync        (as recv)                              a message of a `sync_result`
//	fault       Fault, Note ("start"/"end")
//	stored      Thread, ID, Seq, Sender, Cmid          the history as stored, read at the end

// historyLog writes events as JSON lines; safe for concurrent use.
type historyLog struct {
	mu    sync.Mutex
	f     *os.File
	w     *bufio.Writer
	start time.Time
	n     int
}

func newHistoryLog(path string) (*historyLog, error) {
	f, err := os.Create(path) //nolint:gosec // G304: the test's own path
	if err != nil {
		return nil, err
	}
	return &historyLog{f: f, w: bufio.NewWriterSize(f, 64<<10), start: time.Now()}, nil
}

func (h *historyLog) add(e event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	e.T = time.Since(h.start).Microseconds()
	b, _ := json.Marshal(e)
	_, _ = h.w.Write(append(b, '\n'))
	h.n++
}

func (h *historyLog) close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.w.Flush(); err != nil {
		return err
	}
	return h.f.Close()
}

// nemesis is one run: the cluster, its proxies, the devices and the history.
type nemesis struct {
	tb      testing.TB
	c       *Cluster
	rs      *RedisServer
	redisP  *Proxy
	pgP     *Proxy
	intP    []*Proxy
	hist    *historyLog
	threads []chat.Thread
	devs    []*nemDevice

	mu    sync.Mutex
	quiet bool // no new sends
	stop  bool
	wg    sync.WaitGroup
}

func TestNemesis(t *testing.T) {
	if *nemesisMinutes <= 0 {
		t.Skip("TestNemesis runs with -nemesis.minutes > 0 (scripts/nemesis.sh)")
	}
	seed := *nemesisSeed
	if seed == 0 {
		seed = rand.Uint64() % 1_000_000_000
		if seed == 0 {
			seed = 1
		}
	}
	path := *nemesisHistory
	if path == "" {
		path = filepath.Join(t.TempDir(), "nemesis-history.jsonl")
	}
	// Printed first, and again at the end, so a failure can be replayed.
	fmt.Fprintf(os.Stderr, "nemesis: seed=%d minutes=%g history=%s\n", seed, *nemesisMinutes, path)
	t.Logf("nemesis: seed=%d minutes=%g history=%s", seed, *nemesisMinutes, path)
	hist, err := newHistoryLog(path)
	if err != nil {
		t.Fatal(err)
	}
	n := startNemesis(t, seed, hist)
	faults := n.runFaults(seed, time.Duration(*nemesisMinutes*float64(time.Minute)))
	n.settle()
	if err := hist.close(); err != nil {
		t.Fatal(err)
	}
	res, err := checkHistory(path)
	t.Logf("nemesis: seed=%d faults %s", seed, faults)
	if res != nil {
		t.Logf("nemesis: %s", res)
	}
	if err != nil {
		t.Errorf("nemesis seed=%d: the history fails the check (%s):\n%v", seed, path, err)
	}
	t.Logf("nemesis: replay with scripts/nemesis.sh --seed %d --minutes %g", seed, *nemesisMinutes)
}

// TestNemesisCheckFile checks a history file written by an earlier run.
func TestNemesisCheckFile(t *testing.T) {
	if *nemesisCheck == "" {
		t.Skip("runs with -nemesis.check=FILE")
	}
	res, err := checkHistory(*nemesisCheck)
	if res != nil {
		t.Logf("%s", res)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// startNemesis starts the private Redis, the proxies and the cluster, creates the
// users and threads, and starts the devices.
func startNemesis(t *testing.T, seed uint64, hist *historyLog) *nemesis {
	n := &nemesis{tb: t, hist: hist}
	n.rs = StartRedisServer(t)
	n.redisP = NewProxy(t, fmt.Sprintf("127.0.0.1:%d", n.rs.Port))
	n.pgP = NewProxy(t, "")
	hostEnv := map[int]map[string]string{}
	for i := range 3 {
		p := NewProxy(t, "")
		n.intP = append(n.intP, p)
		hostEnv[i] = map[string]string{"CHAT_INTERNAL_URL": p.URL()}
	}
	n.c = StartCluster(t, 3, Options{
		RedisURL: "redis://" + n.redisP.Addr() + "/0",
		Env: map[string]string{
			"CHAT_HEARTBEAT_INTERVAL": "1s", "CHAT_HOST_TTL": "3s", "CHAT_DRAIN_TIMEOUT": "3s",
			"CHAT_STARTUP_TIMEOUT": "30s",
		},
		HostEnv: hostEnv,
		Setup: func(_ int, env map[string]string) {
			u, err := url.Parse(env["CHAT_DATABASE_URL"])
			if err != nil {
				t.Fatal(err)
			}
			n.pgP.SetTarget(u.Host)
			u.Host = n.pgP.Addr()
			env["CHAT_DATABASE_URL"] = u.String()
		},
	})
	for i, h := range n.c.Hosts {
		n.intP[i].SetTarget(h.InternalAddr())
	}

	// Six users, nine devices, three threads that overlap.
	names := []string{"nem0", "nem1", "nem2", "nem3", "nem4", "nem5"}
	users := map[string]*User{}
	for i, name := range names {
		users[name] = NewUser(t, n.c.Hosts[i%3], name)
	}
	members := [][]string{{"nem0", "nem1", "nem2", "nem3"}, {"nem2", "nem3", "nem4", "nem5"}, names}
	for i, ms := range members {
		th := CreateThread(t, n.c.Hosts[i], users[ms[0]], fmt.Sprintf("nemesis %d", i), ms[1:]...)
		n.threads = append(n.threads, th)
		var ids []string
		for _, m := range th.Members {
			ids = append(ids, m.ID)
		}
		hist.add(event{Ev: "thread", Thread: th.ID, Members: ids})
	}
	for i, name := range append(names, "nem0", "nem2", "nem5") {
		var ths []string
		for j, ms := range members {
			for _, m := range ms {
				if m == name {
					ths = append(ths, n.threads[j].ID)
				}
			}
		}
		d := &nemDevice{
			name: fmt.Sprintf("d%d-%s", i, name), username: name, userID: users[name].ID, threads: ths, n: n,
			rng:  rand.New(rand.NewPCG(seed, uint64(i)+1)), //nolint:gosec // G404: a reproducible test schedule
			held: map[string]map[int64]bool{}, acked: map[string]int64{}, sends: map[string]*nemSend{},
		}
		for _, th := range ths {
			d.held[th] = map[int64]bool{}
		}
		n.devs = append(n.devs, d)
		hist.add(event{Ev: "device", Dev: d.name, User: d.userID, Threads: ths})
	}
	for _, d := range n.devs {
		n.wg.Add(1)
		go func() { defer n.wg.Done(); d.run() }()
	}
	t.Cleanup(n.halt)
	return n
}

func (n *nemesis) stopped() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.stop
}

func (n *nemesis) isQuiet() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.quiet
}

// halt stops the devices and closes their sockets.
func (n *nemesis) halt() {
	n.mu.Lock()
	n.stop = true
	n.mu.Unlock()
	n.wg.Wait()
	for _, d := range n.devs {
		if d.conn != nil {
			d.conn.Close()
		}
	}
}

// faultKinds are what the nemesis picks from.
var faultKinds = []string{"kill", "term", "redis-cut", "pg-cut", "link-cut", "redis-restart"}

// runFaults injects faults for the given time, one at a time: a pause of 1..5 s, then
// a fault lasting 2..8 s, then healing, until the time is up. It returns a count per
// kind.
func (n *nemesis) runFaults(seed uint64, total time.Duration) string {
	t := n.tb
	rng := rand.New(rand.NewPCG(seed, 0)) //nolint:gosec // G404: a reproducible test schedule
	counts := map[string]int{}
	end := time.Now().Add(total)
	for time.Now().Before(end) {
		<-time.After(time.Second + time.Duration(rng.Int64N(int64(4*time.Second))))
		if !time.Now().Before(end) {
			break
		}
		kind := faultKinds[rng.IntN(len(faultKinds))]
		i := rng.IntN(3)
		dur := 2*time.Second + time.Duration(rng.Int64N(int64(6*time.Second)))
		h := n.c.Hosts[i]
		note := fmt.Sprintf("%s for %v", kind, dur.Round(time.Millisecond))
		switch kind {
		case "kill", "term", "link-cut":
			note = fmt.Sprintf("%s %s for %v", kind, h.ID, dur.Round(time.Millisecond))
		}
		n.hist.add(event{Ev: "fault", Fault: kind, Host: h.ID, Note: "start: " + note})
		t.Logf("nemesis: %s", note)
		counts[kind]++
		switch kind {
		case "kill", "term":
			if kind == "kill" {
				h.Kill(t)
			} else if code, took := h.Term(t); code != 0 {
				t.Errorf("%s drained with exit %d after %v", h.ID, code, took)
			}
			<-time.After(dur)
			h.Restart(t)
			n.intP[i].SetTarget(h.InternalAddr())
		case "redis-cut":
			n.redisP.Cut()
			<-time.After(dur)
			n.redisP.Restore()
		case "pg-cut":
			n.pgP.Cut()
			// The link breaks while Cut closes the proxy's connections one by one, not
			// at the instant logged above: a send written meanwhile may still commit.
			n.hist.add(event{Ev: "fault", Fault: kind, Host: h.ID, Note: "cut in effect"})
			<-time.After(dur)
			n.pgP.Restore()
		case "link-cut":
			n.intP[i].Cut()
			<-time.After(dur)
			n.intP[i].Restore()
		case "redis-restart":
			n.rs.Stop(t)
			<-time.After(min(dur, time.Second))
			n.rs.Start(t)
		}
		n.hist.add(event{Ev: "fault", Fault: kind, Host: h.ID, Note: "end"})
		n.waitReady()
	}
	var parts []string
	for _, k := range faultKinds {
		parts = append(parts, fmt.Sprintf("%s=%d", k, counts[k]))
	}
	return strings.Join(parts, " ")
}

// waitReady waits until every host answers /readyz 200.
func (n *nemesis) waitReady() {
	CheckFor(n.tb, 30*time.Second, 50*time.Millisecond, func() error {
		for _, h := range n.c.Hosts {
			st, raw, err := api("GET", h.PublicURL()+"/readyz", "", nil, nil)
			if err != nil || st != 200 {
				return fmt.Errorf("%s /readyz: %d %s: %w", h.ID, st, raw, err)
			}
		}
		return nil
	})
}

// settle ends the run: no new sends; every send answered or abandoned; every device
// connected and holding every stored message of its threads through live delivery
// (a device that reconnects fills its gap with `sync`, as always); then the stored
// histories are read into the history and the devices stop.
func (n *nemesis) settle() {
	t := n.tb
	n.mu.Lock()
	n.quiet = true
	n.mu.Unlock()
	err := poll(30*time.Second, 50*time.Millisecond, func() error {
		for _, d := range n.devs {
			if k := d.pending(); k > 0 {
				return fmt.Errorf("%s: %d sends unanswered", d.name, k)
			}
		}
		return nil
	})
	if err != nil {
		t.Logf("nemesis: settling: %v (left to the checker)", err)
	}
	last := map[string]int64{}
	tokens := map[string]string{}
	err = poll(30*time.Second, 100*time.Millisecond, func() error {
		for _, th := range n.threads {
			if tokens[th.ID] == "" {
				tokens[th.ID] = n.tokenOf(th)
			}
			ms, err := historyOf(n.c.Hosts[0], &User{Token: tokens[th.ID]}, th.ID)
			if err != nil {
				return err
			}
			last[th.ID] = int64(len(ms))
		}
		for _, d := range n.devs {
			if !d.connected() {
				return fmt.Errorf("%s not connected", d.name)
			}
			for _, th := range d.threads {
				if c := d.contiguous(th); c < last[th] {
					return fmt.Errorf("%s holds thread %s up to %d of %d", d.name, th, c, last[th])
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Logf("nemesis: settling: %v (left to the checker)", err)
	}
	n.halt()
	for _, th := range n.threads {
		if tokens[th.ID] == "" {
			tokens[th.ID] = n.tokenOf(th)
		}
		ms, err := historyOf(n.c.Hosts[0], &User{Token: tokens[th.ID]}, th.ID)
		if err != nil {
			t.Fatalf("read the stored history: %v", err)
		}
		for _, m := range ms {
			n.hist.add(event{Ev: "stored", Thread: th.ID, ID: m.ID, Seq: m.Seq, Sender: m.SenderID, Cmid: m.ClientMsgID})
		}
	}
}

// tokenOf logs a member of th in (a session of the test's own: the devices' sessions
// may have been lost with Redis) and returns the token; "" when the login failed.
func (n *nemesis) tokenOf(th chat.Thread) string {
	body := map[string]string{"username": th.Members[0].Username, "password": Password}
	var out struct {
		Token string `json:"token"`
	}
	if st, _, err := api("POST", n.c.Hosts[0].PublicURL()+"/api/v1/auth/login", "", body, &out); err != nil || st != 200 {
		return ""
	}
	return out.Token
}

// ---- devices -----------------------------------------------------------------------

// nemDevice is one client device: it connects to a host at random, sends to its
// threads at random, acks what it holds, sometimes drops its own socket, and
// reconnects with full-jitter backoff when the socket ends. Sends unanswered when a
// socket ends are either written again on the next socket (same client_msg_id) or
// abandoned, at random.
type nemDevice struct {
	name     string
	username string
	userID   string
	threads  []string
	n        *nemesis
	rng      *rand.Rand // the device goroutine's only

	mu     sync.Mutex // guards what other goroutines read: conn, held, sends, token
	token  string
	conn   *Client
	connN  int
	cursor int
	held   map[string]map[int64]bool
	acked  map[string]int64
	sends  map[string]*nemSend
	order  []string
	k      int
}

type nemSend struct {
	cmid, thread, body string
	conn               int // the connection number it was last written on
	done               bool
}

func (d *nemDevice) tokenNow() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.token
}

func (d *nemDevice) connected() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.conn != nil
}

func (d *nemDevice) contiguous(thread string) int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return contiguousOf(d.held[thread])
}

func contiguousOf(h map[int64]bool) int64 {
	var s int64
	for h[s+1] {
		s++
	}
	return s
}

// pending counts sends neither answered nor abandoned.
func (d *nemDevice) pending() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	k := 0
	for _, s := range d.sends {
		if !s.done {
			k++
		}
	}
	return k
}

func (d *nemDevice) run() {
	attempt := 0
	nextSend := time.Now()
	nextDrop := time.Now().Add(d.randDur(10*time.Second, 40*time.Second))
	for !d.n.stopped() {
		if !d.connected() {
			ceil := min(2*time.Second, 100*time.Millisecond<<min(attempt, 10))
			<-time.After(time.Duration(d.rng.Int64N(int64(ceil) + 1)))
			if d.n.stopped() {
				return
			}
			if err := d.connect(); err != nil {
				attempt++
				continue
			}
			attempt = 0
		}
		d.process()
		if !d.connected() {
			continue
		}
		now := time.Now()
		if !d.n.isQuiet() && now.After(nextSend) {
			d.send()
			nextSend = now.Add(d.randDur(100*time.Millisecond, 400*time.Millisecond))
		}
		d.ack()
		if now.After(nextDrop) && !d.n.isQuiet() {
			// The client drops its own socket now and then (a phone changing networks).
			d.mu.Lock()
			c := d.conn
			d.mu.Unlock()
			c.Close()
			nextDrop = now.Add(d.randDur(10*time.Second, 40*time.Second))
		}
		<-time.After(20 * time.Millisecond)
	}
}

func (d *nemDevice) randDur(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(d.rng.Int64N(int64(hi-lo)))
}

// connect logs in when the device has no session (first time, or Redis lost them),
// dials a host at random, waits for `synced`, fills its gaps with `sync` from its own
// last seq, and writes again or abandons the sends left unanswered.
func (d *nemDevice) connect() error {
	hosts := d.n.c.Hosts
	h := hosts[d.rng.IntN(len(hosts))]
	if d.tokenNow() == "" {
		var out struct {
			Token string `json:"token"`
		}
		body := map[string]string{"username": d.username, "password": Password}
		st, raw, err := api("POST", h.PublicURL()+"/api/v1/auth/login", "", body, &out)
		if err != nil || st != 200 {
			return fmt.Errorf("login: %d %s: %w", st, raw, err)
		}
		d.mu.Lock()
		d.token = out.Token
		d.mu.Unlock()
	}
	cl, hs, err := DialWith(h, DialOptions{Token: d.tokenNow()})
	if err != nil {
		if hs.Status == 401 {
			d.mu.Lock()
			d.token = "" // the session is gone (Redis restarted empty): log in again
			d.mu.Unlock()
		}
		return err
	}
	if err := waitType(cl, 10*time.Second, "synced"); err != nil {
		cl.Close()
		return err
	}
	d.mu.Lock()
	d.connN++
	d.conn, d.cursor = cl, 0
	conn := d.connN
	d.mu.Unlock()
	d.n.hist.add(event{Ev: "connect", Dev: d.name, Conn: conn, Host: h.ID})
	d.process()
	for _, th := range d.threads {
		if err := syncFrom(cl, th, d.contiguous(th), fmt.Sprintf("%s-%d-%s", d.name, conn, th)); err != nil {
			break // the socket ended: process() notes it
		}
	}
	d.process()
	// Sends written on an earlier socket and never answered: again, or give up.
	d.mu.Lock()
	var again []*nemSend
	for _, id := range d.order {
		s := d.sends[id]
		if s.done || s.conn == conn {
			continue
		}
		if d.rng.IntN(2) == 0 {
			again = append(again, s)
		} else {
			s.done = true
			d.n.hist.add(event{Ev: "abandon", Dev: d.name, Cmid: s.cmid})
		}
	}
	d.mu.Unlock()
	for _, s := range again {
		d.write(s)
	}
	return nil
}

// write sends s on the current socket, recording the attempt first.
func (d *nemDevice) write(s *nemSend) {
	d.mu.Lock()
	c, conn := d.conn, d.connN
	s.conn = conn
	d.mu.Unlock()
	if c == nil {
		return
	}
	d.n.hist.add(event{Ev: "send", Dev: d.name, Conn: conn, Thread: s.thread, Cmid: s.cmid})
	_ = c.Send(s.thread, s.cmid, s.body)
}

func (d *nemDevice) send() {
	d.mu.Lock()
	d.k++
	s := &nemSend{cmid: fmt.Sprintf("%s-%05d", d.name, d.k), thread: d.threads[d.rng.IntN(len(d.threads))]}
	s.body = "nemesis " + s.cmid
	d.sends[s.cmid] = s
	d.order = append(d.order, s.cmid)
	d.mu.Unlock()
	d.write(s)
}

func (d *nemDevice) ack() {
	d.mu.Lock()
	c := d.conn
	var todo []struct {
		th  string
		seq int64
	}
	for _, th := range d.threads {
		if s := contiguousOf(d.held[th]); s > d.acked[th] {
			d.acked[th] = s
			todo = append(todo, struct {
				th  string
				seq int64
			}{th, s})
		}
	}
	d.mu.Unlock()
	for _, a := range todo {
		if c != nil {
			_ = c.Ack(a.th, a.seq)
		}
	}
}

// process records the frames the current socket got since the last call, and notes
// the socket's end.
func (d *nemDevice) process() {
	d.mu.Lock()
	c, conn := d.conn, d.connN
	if c == nil {
		d.mu.Unlock()
		return
	}
	fs, next := c.FramesFrom(d.cursor)
	d.cursor = next
	d.mu.Unlock()
	for _, f := range fs {
		switch f.Type {
		case "message":
			if f.Message != nil {
				d.receive("recv", conn, *f.Message)
			}
		case "sync_result":
			for _, m := range f.Messages {
				d.receive("sync", conn, m)
			}
		case "sent":
			if f.Message == nil {
				continue
			}
			m := *f.Message
			d.n.hist.add(event{Ev: "sent", Dev: d.name, Conn: conn, Thread: m.ThreadID, Cmid: f.ClientMsgID, ID: m.ID, Seq: m.Seq})
			d.mu.Lock()
			if s := d.sends[f.ClientMsgID]; s != nil {
				s.done = true
			}
			if h := d.held[m.ThreadID]; h != nil {
				h[m.Seq] = true
			}
			d.mu.Unlock()
		case "error":
			d.mu.Lock()
			s := d.sends[f.Ref]
			if s != nil {
				s.done = true
			}
			d.mu.Unlock()
			if s != nil {
				d.n.hist.add(event{Ev: "error", Dev: d.name, Conn: conn, Cmid: f.Ref, Code: f.Code})
			}
		}
	}
	if code, closed := c.Closed(); closed {
		fs, _ := c.FramesFrom(next)
		if len(fs) > 0 {
			return // frames arrived meanwhile: record them first, next call
		}
		d.n.hist.add(event{Ev: "disconnect", Dev: d.name, Conn: conn, Code: fmt.Sprint(code)})
		d.mu.Lock()
		d.conn = nil
		d.mu.Unlock()
	}
}

func (d *nemDevice) receive(ev string, conn int, m chat.Message) {
	d.n.hist.add(event{Ev: ev, Dev: d.name, Conn: conn, Thread: m.ThreadID, ID: m.ID, Seq: m.Seq, Sender: m.SenderID, Cmid: m.ClientMsgID})
	d.mu.Lock()
	if h := d.held[m.ThreadID]; h != nil {
		h[m.Seq] = true
	}
	d.mu.Unlock()
}

// ---- the checker -------------------------------------------------------------------

// historyResult summarises a checked history.
type historyResult struct {
	Events, Faults, Connects, Devices, Threads int
	Stored, Sent, Refused, Abandoned           int
	Indeterminate, IndeterminateStored         int
	Ambiguous                                  int // refused, in flight at a database cut, and stored
	WireDups, Receipts                         int
}

func (r *historyResult) String() string {
	return fmt.Sprintf("%d events; %d faults; %d threads, %d devices, %d connections; %d messages stored, %d sends answered sent, %d refused (%d of them in flight at a database cut and stored), %d abandoned; %d indeterminate sends (%d of them stored); %d receipts, %d repeated on the wire",
		r.Events, r.Faults, r.Threads, r.Devices, r.Connects, r.Stored, r.Sent, r.Refused, r.Ambiguous, r.Abandoned, r.Indeterminate, r.IndeterminateStored, r.Receipts, r.WireDups)
}

// cutSpan is one cut of the PostgreSQL link: from the instant it was logged to the
// instant the proxy had closed every connection (equal in histories written before
// the second was logged).
type cutSpan struct{ began, effective int64 }

// checkHistory reads a history and verifies:
//   - each thread's stored history is seq 1..N without a gap, one id per seq;
//   - every send answered `sent` is stored at the answered seq with the answered id,
//     and every answer for one (user, client_msg_id) names the same message;
//   - a send whose every attempt was answered with an error is not stored (nothing
//     half-stored); a send with an unanswered attempt and no `sent` (indeterminate)
//     may or may not be stored;
//   - every stored message was sent by some device (nothing appears that was never
//     sent), and every message received is stored, with that id at that seq;
//   - every device holds, at the end, every stored message of each of its threads
//     exactly: all of 1..N, after dedupe (so a message whose send got no answer is
//     either held by everyone or stored nowhere);
//   - on every socket, `message` frames of a thread bring new seqs in ascending order.
func checkHistory(path string) (*historyResult, error) {
	f, err := os.Open(path) //nolint:gosec // G304: the test's own file
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := &historyResult{}
	type key struct{ user, cmid string }
	type attempt struct {
		answered    bool
		sentID      string
		sentSeq     int64
		errCode     string
		sentT, ansT int64 // when written, when answered
	}
	var pgCuts []cutSpan                        // each cut of the PostgreSQL link
	members := map[string][]string{}            // thread -> user ids
	devUser := map[string]string{}              // dev -> user id
	devThreads := map[string][]string{}         // dev -> threads
	stored := map[string]map[int64]event{}      // thread -> seq -> stored event
	storedByID := map[string]event{}            // id -> stored
	sends := map[key][]*attempt{}               // (user, cmid) -> attempts in order
	pending := map[string]map[string]*attempt{} // dev -> cmid -> the attempt awaiting an answer
	held := map[string]map[string]map[int64]string{}
	type connKey struct {
		dev  string
		conn int
		th   string
	}
	lastSeq := map[connKey]int64{}
	seenOnConn := map[connKey]map[int64]bool{}
	seenRecv := map[string]map[string]bool{} // dev -> ids received in message frames
	var problems []string
	problem := func(format string, args ...any) {
		if len(problems) < 50 {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
	}
	hold := func(dev, th string, seq int64, id string) {
		if held[dev] == nil {
			held[dev] = map[string]map[int64]string{}
		}
		if held[dev][th] == nil {
			held[dev][th] = map[int64]string{}
		}
		if old, ok := held[dev][th][seq]; ok && old != id {
			problem("%s holds two messages at seq %d of thread %s: %s and %s", dev, seq, th, old, id)
		}
		held[dev][th][seq] = id
	}
	var receipts []event
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return nil, fmt.Errorf("line %d: %w", r.Events+1, err)
		}
		r.Events++
		switch e.Ev {
		case "thread":
			members[e.Thread] = e.Members
			r.Threads++
		case "device":
			devUser[e.Dev], devThreads[e.Dev] = e.User, e.Threads
			r.Devices++
		case "connect":
			r.Connects++
		case "fault":
			if strings.HasPrefix(e.Note, "start") {
				r.Faults++
				if e.Fault == "pg-cut" {
					pgCuts = append(pgCuts, cutSpan{e.T, e.T})
				}
			}
			if e.Note == "cut in effect" && e.Fault == "pg-cut" && len(pgCuts) > 0 {
				pgCuts[len(pgCuts)-1].effective = e.T
			}
		case "send":
			a := &attempt{sentT: e.T}
			k := key{devUser[e.Dev], e.Cmid}
			sends[k] = append(sends[k], a)
			if pending[e.Dev] == nil {
				pending[e.Dev] = map[string]*attempt{}
			}
			pending[e.Dev][e.Cmid] = a
		case "sent":
			a := pending[e.Dev][e.Cmid]
			if a == nil {
				problem("%s got sent for %s, which it never sent", e.Dev, e.Cmid)
				continue
			}
			a.answered, a.sentID, a.sentSeq, a.ansT = true, e.ID, e.Seq, e.T
			delete(pending[e.Dev], e.Cmid)
			hold(e.Dev, e.Thread, e.Seq, e.ID)
		case "error":
			if a := pending[e.Dev][e.Cmid]; a != nil {
				a.answered, a.errCode, a.ansT = true, e.Code, e.T
				delete(pending[e.Dev], e.Cmid)
			}
		case "abandon":
			r.Abandoned++
		case "recv", "sync":
			r.Receipts++
			receipts = append(receipts, e)
			hold(e.Dev, e.Thread, e.Seq, e.ID)
			if e.Ev == "recv" {
				if seenRecv[e.Dev] == nil {
					seenRecv[e.Dev] = map[string]bool{}
				}
				if seenRecv[e.Dev][e.ID] {
					r.WireDups++
				}
				seenRecv[e.Dev][e.ID] = true
				ck := connKey{e.Dev, e.Conn, e.Thread}
				if seenOnConn[ck] == nil {
					seenOnConn[ck] = map[int64]bool{}
				}
				if !seenOnConn[ck][e.Seq] {
					seenOnConn[ck][e.Seq] = true
					if e.Seq < lastSeq[ck] {
						problem("%s socket %d thread %s: seq %d after %d (out of order)", e.Dev, e.Conn, e.Thread, e.Seq, lastSeq[ck])
					}
					lastSeq[ck] = max(lastSeq[ck], e.Seq)
				}
			}
		case "stored":
			if stored[e.Thread] == nil {
				stored[e.Thread] = map[int64]event{}
			}
			if _, dup := stored[e.Thread][e.Seq]; dup {
				problem("thread %s: two stored messages at seq %d", e.Thread, e.Seq)
			}
			stored[e.Thread][e.Seq] = e
			storedByID[e.ID] = e
			r.Stored++
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if r.Stored == 0 {
		return r, fmt.Errorf("no stored messages in the history: the run did not finish")
	}
	// Stored histories: 1..N.
	for th := range members {
		for seq := int64(1); seq <= int64(len(stored[th])); seq++ {
			if _, ok := stored[th][seq]; !ok {
				problem("thread %s: stored history has a gap at seq %d (%d messages)", th, seq, len(stored[th]))
				break
			}
		}
	}
	storedByKey := map[key]event{}
	for _, e := range storedByID {
		storedByKey[key{e.Sender, e.Cmid}] = e
	}
	// Answers against what is stored.
	keys := make([]key, 0, len(sends))
	for k := range sends {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].cmid < keys[j].cmid })
	for _, k := range keys {
		as := sends[k]
		st, isStored := storedByKey[k]
		var sentID string
		allErr, unanswered := true, false
		for _, a := range as {
			switch {
			case !a.answered:
				unanswered, allErr = true, false
			case a.sentID != "":
				allErr = false
				if sentID != "" && a.sentID != sentID {
					problem("%s: answered sent twice with different messages %s and %s", k.cmid, sentID, a.sentID)
				}
				sentID = a.sentID
				if !isStored || st.ID != a.sentID || st.Seq != a.sentSeq {
					problem("%s: answered sent as seq %d (%s) but stored as %+v", k.cmid, a.sentSeq, a.sentID, st)
				}
			}
		}
		switch {
		case sentID != "":
			r.Sent++
		case allErr:
			r.Refused++
			if !isStored {
				break
			}
			// Allowed only for an attempt in flight as the database link was cut: its
			// commit may have reached PostgreSQL while the answer was lost with the
			// connection, and the host answers unavailable, unable to know.
			inFlight := false
			for _, a := range as {
				for _, c := range pgCuts {
					inFlight = inFlight || (a.sentT < c.effective && c.began <= a.ansT)
				}
			}
			if inFlight {
				r.Ambiguous++
			} else {
				problem("%s: every attempt answered with an error (%s), yet stored as seq %d (half-stored)", k.cmid, as[len(as)-1].errCode, st.Seq)
			}
		case unanswered:
			r.Indeterminate++
			if isStored {
				r.IndeterminateStored++
			}
		}
	}
	// Nothing stored that was never sent; nothing received that is not stored.
	for k, e := range storedByKey {
		if _, ok := sends[k]; !ok {
			problem("stored message %s (seq %d of %s, client_msg_id %s) was never sent", e.ID, e.Seq, e.Thread, e.Cmid)
		}
	}
	for _, e := range receipts {
		st, ok := storedByID[e.ID]
		if !ok || st.Seq != e.Seq || st.Thread != e.Thread {
			problem("%s received %s (seq %d of %s), which is not stored so", e.Dev, e.ID, e.Seq, e.Thread)
		}
	}
	// Every device holds exactly the stored history of each of its threads.
	devs := make([]string, 0, len(devThreads))
	for d := range devThreads {
		devs = append(devs, d)
	}
	sort.Strings(devs)
	for _, d := range devs {
		for _, th := range devThreads[d] {
			var missing []int64
			for seq, st := range stored[th] {
				if held[d][th][seq] != st.ID {
					missing = append(missing, seq)
				}
			}
			if len(missing) > 0 {
				sort.Slice(missing, func(i, j int) bool { return missing[i] < missing[j] })
				if len(missing) > 10 {
					missing = missing[:10]
				}
				problem("%s lacks (or holds another message at) seqs %v of thread %s's %d", d, missing, th, len(stored[th]))
			}
			for seq := range held[d][th] {
				if _, ok := stored[th][seq]; !ok {
					problem("%s holds seq %d of thread %s, which is not stored", d, seq, th)
				}
			}
		}
	}
	if len(problems) > 0 {
		return r, fmt.Errorf("%d problem(s):\n  %s", len(problems), strings.Join(problems, "\n  "))
	}
	return r, nil
}

// ---- the checker's own test ---------------------------------------------------------

// TestNemesisChecker feeds the checker small histories, each breaking one rule, and a
// good one.
func TestNemesisChecker(t *testing.T) {
	t.Parallel()
	head := []event{
		{Ev: "thread", Thread: "T", Members: []string{"ua", "ub"}},
		{Ev: "device", Dev: "a", User: "ua", Threads: []string{"T"}},
		{Ev: "device", Dev: "b", User: "ub", Threads: []string{"T"}},
	}
	good := append(append([]event(nil), head...),
		event{Ev: "send", Dev: "a", Conn: 1, Thread: "T", Cmid: "a1"},
		event{Ev: "sent", Dev: "a", Conn: 1, Thread: "T", Cmid: "a1", ID: "m1", Seq: 1},
		event{Ev: "recv", Dev: "b", Conn: 1, Thread: "T", ID: "m1", Seq: 1, Sender: "ua", Cmid: "a1"},
		event{Ev: "send", Dev: "b", Conn: 1, Thread: "T", Cmid: "b1"}, // no answer: indeterminate, stored
		event{Ev: "recv", Dev: "a", Conn: 1, Thread: "T", ID: "m2", Seq: 2, Sender: "ub", Cmid: "b1"},
		event{Ev: "sync", Dev: "b", Conn: 2, Thread: "T", ID: "m2", Seq: 2, Sender: "ub", Cmid: "b1"},
		event{Ev: "send", Dev: "b", Conn: 2, Thread: "T", Cmid: "b2"},
		event{Ev: "error", Dev: "b", Conn: 2, Cmid: "b2", Code: "unavailable"},
		event{Ev: "stored", Thread: "T", ID: "m1", Seq: 1, Sender: "ua", Cmid: "a1"},
		event{Ev: "stored", Thread: "T", ID: "m2", Seq: 2, Sender: "ub", Cmid: "b1"},
	)
	write := func(evs []event) string {
		p := filepath.Join(t.TempDir(), "h.jsonl")
		var b strings.Builder
		for _, e := range evs {
			j, _ := json.Marshal(e)
			b.Write(append(j, '\n'))
		}
		if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if _, err := checkHistory(write(good)); err != nil {
		t.Fatalf("a good history fails: %v", err)
	}
	without := func(drop func(event) bool, extra ...event) []event {
		var out []event
		for _, e := range good {
			if !drop(e) {
				out = append(out, e)
			}
		}
		return append(out, extra...)
	}
	for _, tc := range []struct {
		name, want string
		evs        []event
	}{
		{"a device lacks a sent message", "lacks", without(func(e event) bool { return e.Ev == "recv" && e.Dev == "b" })},
		{"half-stored", "half-stored", append(append([]event(nil), good...),
			event{Ev: "stored", Thread: "T", ID: "m3", Seq: 3, Sender: "ub", Cmid: "b2"})},
		{"stored, never sent", "never sent", append(append([]event(nil), good...),
			event{Ev: "stored", Thread: "T", ID: "m3", Seq: 3, Sender: "ua", Cmid: "zz"})},
		{"received, not stored", "not stored", append(append([]event(nil), good...),
			event{Ev: "recv", Dev: "b", Conn: 1, Thread: "T", ID: "mX", Seq: 9, Sender: "ua", Cmid: "a9"})},
		{"sent but not stored", "but stored as", without(func(e event) bool { return e.Ev == "stored" && e.ID == "m1" })},
		{"out of order", "out of order", append(append([]event(nil), head...),
			event{Ev: "recv", Dev: "b", Conn: 1, Thread: "T", ID: "m2", Seq: 2},
			event{Ev: "recv", Dev: "b", Conn: 1, Thread: "T", ID: "m1", Seq: 1},
			event{Ev: "stored", Thread: "T", ID: "m1", Seq: 1, Sender: "ua", Cmid: "a1"})},
		{"refused outside a database cut, stored", "half-stored", append(append(append([]event(nil), head...),
			event{T: 1, Ev: "send", Dev: "a", Conn: 1, Thread: "T", Cmid: "a1"},
			event{T: 2, Ev: "fault", Fault: "pg-cut", Note: "start: pg-cut"},
			event{T: 3, Ev: "error", Dev: "a", Conn: 1, Cmid: "a1", Code: "unavailable"},
			event{T: 4, Ev: "send", Dev: "a", Conn: 1, Thread: "T", Cmid: "a2"},
			event{T: 5, Ev: "error", Dev: "a", Conn: 1, Cmid: "a2", Code: "unavailable"},
			event{Ev: "recv", Dev: "b", Conn: 1, Thread: "T", ID: "m1", Seq: 1},
			event{Ev: "recv", Dev: "b", Conn: 1, Thread: "T", ID: "m2", Seq: 2},
			event{Ev: "sync", Dev: "a", Conn: 1, Thread: "T", ID: "m1", Seq: 1},
			event{Ev: "sync", Dev: "a", Conn: 1, Thread: "T", ID: "m2", Seq: 2},
			event{Ev: "stored", Thread: "T", ID: "m1", Seq: 1, Sender: "ua", Cmid: "a1"}), // in flight at the cut: allowed
			event{Ev: "stored", Thread: "T", ID: "m2", Seq: 2, Sender: "ua", Cmid: "a2"})}, // written after it: not
		{"a gap in the stored history", "gap", append(append([]event(nil), good...),
			event{Ev: "stored", Thread: "T", ID: "m4", Seq: 4, Sender: "ua", Cmid: "a4"})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := checkHistory(write(tc.evs))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("checker said %v, want a problem containing %q", err, tc.want)
			}
		})
	}
	// A send written after the cut was logged but before the proxy had closed every
	// connection may commit with its answer lost: refused and stored is allowed.
	t.Run("refused while the cut took effect, stored", func(t *testing.T) {
		evs := append(append([]event(nil), head...),
			event{T: 2, Ev: "fault", Fault: "pg-cut", Note: "start: pg-cut"},
			event{T: 4, Ev: "send", Dev: "a", Conn: 1, Thread: "T", Cmid: "a2"},
			event{T: 5, Ev: "fault", Fault: "pg-cut", Note: "cut in effect"},
			event{T: 6, Ev: "error", Dev: "a", Conn: 1, Cmid: "a2", Code: "unavailable"},
			event{Ev: "recv", Dev: "b", Conn: 1, Thread: "T", ID: "m1", Seq: 1},
			event{Ev: "sync", Dev: "a", Conn: 1, Thread: "T", ID: "m1", Seq: 1},
			event{Ev: "stored", Thread: "T", ID: "m1", Seq: 1, Sender: "ua", Cmid: "a2"})
		if _, err := checkHistory(write(evs)); err != nil {
			t.Fatalf("checker said %v, want no problem", err)
		}
	})
}
