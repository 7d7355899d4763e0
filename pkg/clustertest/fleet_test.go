package clustertest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/pkg/chat"
)

// A fleet is the load of a fault case: member devices of one group thread spread over
// the hosts, some of them streaming sends, every one behaving like a real client while
// the fault happens. A device that loses its socket reconnects to another live host
// with full-jitter backoff (when the case allows it), catches up, and fills its gap
// with `sync` from its own last seq; a sender keeps an outbox and writes unanswered
// sends again, with the same client_msg_id, on its next socket. At the end the fleet
// checks what the contract promises (finish) and reports the numbers of the fault in
// one fixed format (logFault).

// devSpec places one device: a user (registered on first use), the host index of its
// first socket, and whether it streams sends.
type devSpec struct {
	user string
	host int
	send bool
	// via, when set, carries the device's first socket (a Proxy in front of the host's
	// public listener).
	via *Proxy
}

// fleetSpec configures a fleet.
type fleetSpec struct {
	devices []devSpec
	// every is the pause between two sends of one sender (default 25 ms).
	every time.Duration
	// reconnect lets devices whose socket ends reconnect elsewhere on their own.
	reconnect bool
}

type fleet struct {
	tb     testing.TB
	c      *Cluster
	th     chat.Thread
	viewer *User // a member, for API calls
	users  map[string]*User
	devs   []*device
	sends  []*streamer
	every  time.Duration
	recon  bool

	mu   sync.Mutex
	down map[*Host]bool // hosts a case is taking down: no reconnect goes there

	quit chan struct{}
	wg   sync.WaitGroup

	cmu     sync.Mutex
	clients []*Client // every socket ever opened, closed at the end
}

// device is one member device: the sockets it had, oldest first.
type device struct {
	name string
	user *User
	f    *fleet
	via  string // dial the first socket through this address

	mu      sync.Mutex
	conns   []*Client
	ackSent int64
	// reconnects: how long each reconnect took, from the drop to the gap filled.
	reconnects []time.Duration
	syncN      int
}

// newFleet registers the users, creates the thread with all of them, and connects
// every device (synced). Call run to start the senders, the acks and the reconnects.
func newFleet(tb testing.TB, c *Cluster, spec fleetSpec) *fleet {
	tb.Helper()
	f := &fleet{tb: tb, c: c, users: map[string]*User{}, every: spec.every, recon: spec.reconnect,
		down: map[*Host]bool{}, quit: make(chan struct{})}
	if f.every == 0 {
		f.every = 25 * time.Millisecond
	}
	tb.Cleanup(f.closeAll)
	var names []string
	for i, ds := range spec.devices {
		h := c.Hosts[ds.host]
		u := f.users[ds.user]
		if u == nil {
			u = NewUser(tb, h, ds.user)
			f.users[ds.user] = u
			names = append(names, ds.user)
		} else {
			u = Login(tb, h, ds.user) // every device has a session of its own
		}
		f.devs = append(f.devs, &device{name: fmt.Sprintf("%s#%d@%s", ds.user, i, h.ID), user: u, f: f})
	}
	f.viewer = f.users[names[0]]
	f.th = CreateThread(tb, c.Hosts[spec.devices[0].host], f.viewer, "fault", names[1:]...)
	for i, ds := range spec.devices {
		d := f.devs[i]
		if ds.via != nil {
			d.via = ds.via.Addr()
		}
		if err := d.connect(c.Hosts[ds.host]); err != nil {
			tb.Fatalf("%s: %v", d.name, err)
		}
		if ds.send {
			f.sends = append(f.sends, &streamer{d: d, f: f, items: map[string]*sendItem{}, cursor: map[*Client]int{}})
		}
	}
	return f
}

// run starts the senders, the acks and (when allowed) the reconnects.
func (f *fleet) run() {
	for _, s := range f.sends {
		f.wg.Add(1)
		go func() { defer f.wg.Done(); s.loop() }()
	}
	f.wg.Add(1)
	go func() { defer f.wg.Done(); f.ackLoop() }()
	if f.recon {
		for _, d := range f.devs {
			f.wg.Add(1)
			go func() { defer f.wg.Done(); d.supervise() }()
		}
	}
}

// setDown marks a host as going down (true) or back (false): devices do not
// reconnect to a host that is down.
func (f *fleet) setDown(h *Host, down bool) {
	f.mu.Lock()
	f.down[h] = down
	f.mu.Unlock()
}

// liveHosts are the hosts running and not marked down.
func (f *fleet) liveHosts() []*Host {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*Host
	for _, h := range f.c.Hosts {
		if !f.down[h] && !h.Exited() {
			out = append(out, h)
		}
	}
	return out
}

func (f *fleet) track(c *Client) {
	f.cmu.Lock()
	f.clients = append(f.clients, c)
	f.cmu.Unlock()
}

// describe tells what the fleet knows of a socket by its conn id.
func (f *fleet) describe(connID string) string {
	f.cmu.Lock()
	defer f.cmu.Unlock()
	for _, c := range f.clients {
		if c.Hello.ConnID == connID {
			code, closed := c.Closed()
			fs := c.Frames()
			last := ""
			if len(fs) > 0 {
				last = fs[len(fs)-1].Type
			}
			return fmt.Sprintf("a socket on %s, closed=%v code=%d, %d frames, last %q", c.HostID, closed, code, len(fs), last)
		}
	}
	return "not a socket of the fleet"
}

func (f *fleet) closeAll() {
	select {
	case <-f.quit:
	default:
		close(f.quit)
	}
	f.wg.Wait()
	f.cmu.Lock()
	cs := slices.Clone(f.clients)
	f.cmu.Unlock()
	for _, c := range cs {
		c.Close()
	}
}

// ---- devices -----------------------------------------------------------------------

func (d *device) cur() *Client {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.conns[len(d.conns)-1]
}

func (d *device) all() []*Client {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.conns)
}

func (d *device) open() bool {
	_, closed := d.cur().Closed()
	return !closed
}

// held is every message of the thread the device holds, over all its sockets.
func (d *device) held() []chat.Message {
	var lists [][]chat.Message
	for _, c := range d.all() {
		lists = append(lists, c.Held(d.f.th.ID))
	}
	return union(lists...)
}

// connect opens a socket to h, waits for `synced`, and fills the gap between what the
// device holds and where the server's catch-up began with `sync` from its own last
// contiguous seq, as a real client does.
func (d *device) connect(h *Host) error {
	d.mu.Lock()
	via := ""
	if len(d.conns) == 0 {
		via = d.via
	}
	d.mu.Unlock()
	cl, hs, err := DialWith(h, DialOptions{Token: d.user.Token, Addr: via})
	if err != nil {
		return fmt.Errorf("dial %s: %w (status %d %s)", h.ID, err, hs.Status, hs.Body)
	}
	d.f.track(cl)
	if err := waitType(cl, 10*time.Second, "synced"); err != nil {
		cl.Close()
		return fmt.Errorf("%s: %w", h.ID, err)
	}
	cl.Hello = cl.Frames()[0] // hello comes first, before synced
	if cl.Hello.Type != "hello" {
		cl.Close()
		return fmt.Errorf("%s: first frame %s", h.ID, cl.Hello.Raw)
	}
	d.mu.Lock()
	first := len(d.conns) == 0
	d.conns = append(d.conns, cl)
	d.syncN++
	n := d.syncN
	d.mu.Unlock()
	if first || d.f.th.ID == "" {
		return nil
	}
	return syncFrom(cl, d.f.th.ID, lastContiguous(d.held()), fmt.Sprintf("%s-%d", d.name, n))
}

// supervise reconnects the device whenever its socket ends, to a live host at random,
// with full-jitter backoff (sleep uniformly in [0, min(2 s, 100 ms * 2^attempt)]).
func (d *device) supervise() {
	for {
		select {
		case <-d.cur().Done():
		case <-d.f.quit:
			return
		}
		dropped := time.Now()
		for attempt := 0; ; attempt++ {
			ceil := min(2*time.Second, 100*time.Millisecond<<min(attempt, 10))
			select {
			case <-time.After(time.Duration(rand.Int64N(int64(ceil) + 1))):
			case <-d.f.quit:
				return
			}
			hosts := d.f.liveHosts()
			if len(hosts) == 0 {
				continue
			}
			if err := d.connect(hosts[rand.IntN(len(hosts))]); err == nil {
				d.mu.Lock()
				d.reconnects = append(d.reconnects, time.Since(dropped))
				d.mu.Unlock()
				break
			}
		}
	}
}

// ackLoop acks, for every device, its contiguous seq as it grows (every 100 ms), as a
// client would; another device's reconnect then starts its catch-up there.
func (f *fleet) ackLoop() {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-f.quit:
			return
		case <-tick.C:
		}
		for _, d := range f.devs {
			s := lastContiguous(d.held())
			d.mu.Lock()
			due := s > d.ackSent
			d.mu.Unlock()
			if due && d.open() && d.cur().Ack(f.th.ID, s) == nil {
				d.mu.Lock()
				d.ackSent = s
				d.mu.Unlock()
			}
		}
	}
}

// waitType waits for a frame of type typ without failing a test (for goroutines).
func waitType(c *Client, timeout time.Duration, typ string) error {
	return poll(timeout, 5*time.Millisecond, func() error {
		for _, f := range c.Frames() {
			if f.Type == typ {
				return nil
			}
		}
		if code, closed := c.Closed(); closed {
			return fmt.Errorf("socket closed (%d) before %q", code, typ)
		}
		return fmt.Errorf("no %q yet", typ)
	})
}

// syncFrom pages the thread after afterSeq with `sync` frames (ids prefix-N) until
// has_more is false, without failing a test.
func syncFrom(c *Client, threadID string, afterSeq int64, prefix string) error {
	for page := 0; ; page++ {
		id := fmt.Sprintf("sync-%s-%d", prefix, page)
		if err := c.write(map[string]any{"type": "sync", "id": id, "thread_id": threadID, "after_seq": afterSeq, "limit": 200}); err != nil {
			return fmt.Errorf("sync: %w", err)
		}
		var res Frame
		err := poll(10*time.Second, 5*time.Millisecond, func() error {
			for _, f := range c.Frames() {
				if (f.Type == "sync_result" && f.ID == id) || (f.Type == "error" && f.Ref == id) {
					res = f
					return nil
				}
			}
			if code, closed := c.Closed(); closed {
				return fmt.Errorf("socket closed (%d) before sync_result %s", code, id)
			}
			return fmt.Errorf("no sync_result %s", id)
		})
		if err != nil {
			return err
		}
		if res.Type == "error" {
			return fmt.Errorf("sync: %s", res.Raw)
		}
		if !res.HasMore || len(res.Messages) == 0 {
			return nil
		}
		afterSeq = res.Messages[len(res.Messages)-1].Seq
	}
}

// ---- senders -----------------------------------------------------------------------

// streamer is one sending device: a new send every f.every into its outbox, each
// written on the current socket until answered.
type streamer struct {
	d *device
	f *fleet

	mu       sync.Mutex
	n        int
	items    map[string]*sendItem
	order    []string
	cursor   map[*Client]int
	quiet    bool // stop making new sends
	writeErr int
}

type sendItem struct {
	cmid, body string
	firstAt    time.Time
	on         *Client // the socket it was last written on
	writtenAt  time.Time
	answer     string // "sent" or an error code; "" while unanswered
	answeredAt time.Time
	msg        chat.Message
}

func (s *streamer) loop() {
	tick := time.NewTicker(s.f.every)
	defer tick.Stop()
	for {
		select {
		case <-s.f.quit:
			return
		case <-tick.C:
		}
		s.step()
	}
}

// step reads new answers, queues one more send (unless quiet) and writes every
// unanswered send that is not in flight on the current socket.
func (s *streamer) step() {
	conns := s.d.all()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range conns {
		fs, next := c.FramesFrom(s.cursor[c])
		s.cursor[c] = next
		for _, f := range fs {
			var it *sendItem
			switch {
			case f.Type == "sent" && f.Message != nil:
				it = s.items[f.ClientMsgID]
			case f.Type == "error" && f.Ref != "":
				it = s.items[f.Ref]
			}
			if it == nil || it.answer != "" {
				continue
			}
			it.answeredAt = f.At
			if f.Type == "sent" {
				it.answer, it.msg = "sent", *f.Message
			} else {
				it.answer = f.Code
			}
		}
	}
	if !s.quiet {
		s.n++
		cmid := fmt.Sprintf("%s-%05d", strings.ReplaceAll(s.d.name, "@", "-"), s.n)
		s.items[cmid] = &sendItem{cmid: cmid, body: "fault stream " + cmid, firstAt: time.Now()}
		s.order = append(s.order, cmid)
	}
	c := conns[len(conns)-1]
	if _, closed := c.Closed(); closed {
		return
	}
	for _, id := range s.order {
		it := s.items[id]
		if it.answer != "" || it.on == c {
			continue
		}
		if it.on != nil {
			if _, closed := it.on.Closed(); !closed {
				continue // in flight on a socket still open
			}
		}
		if err := c.Send(s.f.th.ID, it.cmid, it.body); err != nil {
			s.writeErr++
			return
		}
		it.on, it.writtenAt = c, time.Now()
	}
}

// snapshot copies the items in send order.
func (s *streamer) snapshot() []sendItem {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]sendItem, 0, len(s.order))
	for _, id := range s.order {
		out = append(out, *s.items[id])
	}
	return out
}

// lags returns, for the messages answered `sent` between from and to, how long after
// the `sent` each member device first got them (in any frame), for the devices
// accepted by which; and the largest.
func (f *fleet) lags(from, to time.Time, which func(*device) bool) (n int, worst time.Duration) {
	for _, d := range f.devs {
		if !which(d) {
			continue
		}
		first := map[string]time.Time{}
		for _, c := range d.all() {
			for _, fr := range c.Frames() {
				var ms []chat.Message
				switch {
				case (fr.Type == "message" || fr.Type == "sent") && fr.Message != nil:
					ms = []chat.Message{*fr.Message}
				case fr.Type == "sync_result":
					ms = fr.Messages
				}
				for _, m := range ms {
					if t, ok := first[m.ID]; !ok || fr.At.Before(t) {
						first[m.ID] = fr.At
					}
				}
			}
		}
		for _, s := range f.sends {
			if s.d == d {
				continue
			}
			for _, it := range s.snapshot() {
				if it.answer != "sent" || it.answeredAt.Before(from) || it.answeredAt.After(to) {
					continue
				}
				n++
				at, ok := first[it.msg.ID]
				if !ok {
					return n, time.Duration(1<<62 - 1) // never arrived
				}
				worst = max(worst, at.Sub(it.answeredAt))
			}
		}
	}
	return n, worst
}

// sentBetween counts the sends answered `sent` between from and to.
func (f *fleet) sentBetween(from, to time.Time) int {
	n := 0
	for _, s := range f.sends {
		for _, it := range s.snapshot() {
			if it.answer == "sent" && !it.answeredAt.Before(from) && it.answeredAt.Before(to) {
				n++
			}
		}
	}
	return n
}

// ---- the end -----------------------------------------------------------------------

// faultResult is what one fault case measured.
type faultResult struct {
	name string
	// sentDuring counts sends answered `sent` between the fault's start and end.
	sentDuring int
	// refused counts sends answered with an error (unavailable...) during the fault.
	refused int
	// lost counts (message answered `sent`, member device) pairs missing at the end.
	lost int
	// dups counts `message` frames repeating an id the device already had.
	dups int
	// recovery is from the fault's end until every device held every message and
	// presence was right again.
	recovery time.Duration
	note     string
}

// logFault logs a fault's numbers in the one format the suite's report quotes:
//
//	FAULT <name> sent_during=N refused=N lost=N dups=N recovery=D [note]
func logFault(tb testing.TB, r faultResult) {
	tb.Helper()
	tb.Logf("FAULT %s sent_during=%d refused=%d lost=%d dups=%d recovery=%s %s",
		r.name, r.sentDuring, r.refused, r.lost, r.dups, r.recovery.Round(time.Millisecond), r.note)
}

// quiesce stops new sends and waits until every send has an answer.
func (f *fleet) quiesce(tb testing.TB, timeout time.Duration) {
	tb.Helper()
	for _, s := range f.sends {
		s.mu.Lock()
		s.quiet = true
		s.mu.Unlock()
	}
	CheckFor(tb, timeout, 20*time.Millisecond, func() error {
		for _, s := range f.sends {
			for _, it := range s.snapshot() {
				if it.answer == "" {
					return fmt.Errorf("%s: no answer to %s (written %v ago)", s.d.name, it.cmid, time.Since(it.writtenAt).Round(time.Millisecond))
				}
			}
		}
		return nil
	})
}

// finish quiesces the senders, waits until every device holds every stored message
// and presence is right, checks every promise, logs the FAULT line and returns the
// numbers (recovery counted from faultEnd, and bounded by recoverWithin). The fleet's
// goroutines are stopped.
func (f *fleet) finish(tb testing.TB, name string, faultStart, faultEnd time.Time, recoverWithin time.Duration) faultResult {
	tb.Helper()
	r := faultResult{name: name}
	deadline := faultEnd.Add(recoverWithin)
	f.quiesce(tb, time.Until(deadline)+10*time.Second)
	var stored []chat.Message
	var lost int
	err := poll(max(time.Until(deadline), time.Second), 50*time.Millisecond, func() error {
		var err error
		if stored, lost, err = f.whole(); err != nil {
			return err
		}
		return f.presenceRight()
	})
	r.recovery = time.Since(faultEnd)
	r.lost = lost
	for _, s := range f.sends {
		for _, it := range s.snapshot() {
			if it.answeredAt.Before(faultStart) || it.answeredAt.After(faultEnd) {
				continue
			}
			if it.answer == "sent" {
				r.sentDuring++
			} else {
				r.refused++
			}
		}
	}
	r.dups = f.wireDups()
	if err != nil {
		logFault(tb, r)
		tb.Fatalf("%s: not whole %v after the fault: %v", name, r.recovery.Round(time.Millisecond), err)
	}
	if n := f.resolveAmbiguous(tb, stored, faultStart); n > 0 {
		r.note += fmt.Sprintf("ambiguous=%d(resolved by resend) ", n)
	}
	codes := map[string]int{}
	for _, s := range f.sends {
		for _, it := range s.snapshot() {
			if it.answer != "" && it.answer != "sent" {
				codes[it.answer]++
			}
		}
	}
	if len(codes) > 0 {
		r.note += fmt.Sprintf("errors=%v ", codes)
	}
	close(f.quit)
	f.wg.Wait()
	f.checkAnswers(tb, stored)
	f.checkOrder(tb)
	logFault(tb, r)
	return r
}

// whole reads the stored history and reports an error unless it is 1..N without a
// gap and every device holds exactly it; lost counts the messages answered `sent`
// that some device lacks (one per device).
func (f *fleet) whole() (stored []chat.Message, lost int, err error) {
	hosts := f.liveHosts()
	if len(hosts) == 0 {
		return nil, 0, fmt.Errorf("no live host")
	}
	stored, err = historyOf(hosts[0], f.viewer, f.th.ID)
	if err != nil {
		return nil, 0, err
	}
	if err := checkSeqs(stored, len(stored)); err != nil {
		return nil, 0, fmt.Errorf("stored history: %w", err)
	}
	var problems []string
	for _, d := range f.devs {
		held := d.held()
		have := make(map[string]bool, len(held))
		for _, m := range held {
			have[m.ID] = true
		}
		for _, s := range f.sends {
			for _, it := range s.snapshot() {
				if it.answer == "sent" && !have[it.msg.ID] {
					lost++
				}
			}
		}
		if err := checkSeqs(held, len(stored)); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", d.name, err))
			continue
		}
		for i, m := range held {
			if m.ID != stored[i].ID {
				problems = append(problems, fmt.Sprintf("%s: seq %d is %s, stored %s", d.name, m.Seq, m.ID, stored[i].ID))
				break
			}
		}
	}
	if len(problems) > 0 {
		return stored, lost, fmt.Errorf("%d of %d stored messages not everywhere: %s", len(stored), len(stored), strings.Join(problems, "; "))
	}
	return stored, lost, nil
}

// resolveAmbiguous handles the sends answered with an error that are stored all the
// same. One case is allowed: the send was in flight when the fault began (written
// before, answered after), so its commit may have reached the database while the
// answer was lost with the connection; the host cannot know, and answers unavailable.
// The client learns the truth by sending it again with the same client_msg_id, which
// must answer `sent` with the stored message. Any other such send fails the test.
func (f *fleet) resolveAmbiguous(tb testing.TB, stored []chat.Message, faultStart time.Time) int {
	tb.Helper()
	byCmid := map[string]chat.Message{}
	for _, m := range stored {
		byCmid[m.SenderID+"/"+m.ClientMsgID] = m
	}
	type amb struct {
		s   *streamer
		it  sendItem
		msg chat.Message
	}
	var ambs []amb
	for _, s := range f.sends {
		for _, it := range s.snapshot() {
			m, ok := byCmid[s.d.user.ID+"/"+it.cmid]
			if !ok || it.answer == "sent" || it.answer == "" {
				continue
			}
			if !it.writtenAt.Before(faultStart) || it.answeredAt.Before(faultStart) {
				tb.Errorf("%s: %s written %v, answered %s %v, yet stored as seq %d (half-stored); the fault began %v",
					s.d.name, it.cmid, it.writtenAt.Format("15:04:05.000"), it.answer, it.answeredAt.Format("15:04:05.000"), m.Seq, faultStart.Format("15:04:05.000"))
				continue
			}
			tb.Logf("%s: %s was in flight as the fault began, answered %s, and is stored as seq %d: resending it", s.d.name, it.cmid, it.answer, m.Seq)
			ambs = append(ambs, amb{s, it, m})
			s.mu.Lock()
			x := s.items[it.cmid]
			x.answer, x.on = "", nil
			s.mu.Unlock()
		}
	}
	CheckFor(tb, 10*time.Second, 20*time.Millisecond, func() error {
		for _, a := range ambs {
			a.s.mu.Lock()
			x := *a.s.items[a.it.cmid]
			a.s.mu.Unlock()
			if x.answer == "" {
				return fmt.Errorf("%s: no answer to the resend of %s", a.s.d.name, x.cmid)
			}
			if x.answer != "sent" || x.msg.ID != a.msg.ID {
				return fmt.Errorf("%s: the resend of %s answered %s %s, want sent with the stored %s", a.s.d.name, x.cmid, x.answer, x.msg.ID, a.msg.ID)
			}
		}
		return nil
	})
	return len(ambs)
}

// checkAnswers: every send answered `sent` is stored at its seq; a send answered with
// an error is not stored at all (nothing half-stored); none is unanswered.
func (f *fleet) checkAnswers(tb testing.TB, stored []chat.Message) {
	tb.Helper()
	byCmid := map[string]chat.Message{}
	for _, m := range stored {
		byCmid[m.SenderID+"/"+m.ClientMsgID] = m
	}
	for _, s := range f.sends {
		for _, it := range s.snapshot() {
			m, ok := byCmid[s.d.user.ID+"/"+it.cmid]
			switch it.answer {
			case "sent":
				if !ok || m.ID != it.msg.ID || m.Seq != it.msg.Seq {
					tb.Errorf("%s: %s answered sent as seq %d (%s), stored as %+v", s.d.name, it.cmid, it.msg.Seq, it.msg.ID, m)
				}
			case "":
				tb.Errorf("%s: %s never answered", s.d.name, it.cmid)
			default:
				if ok {
					tb.Errorf("%s: %s answered %s, yet stored as seq %d (half-stored)", s.d.name, it.cmid, it.answer, m.Seq)
				}
			}
		}
	}
}

// checkOrder: on every socket, the thread's `message` frames bring new seqs in
// ascending order (a repeat of a seq already seen is allowed, at-least-once).
func (f *fleet) checkOrder(tb testing.TB) {
	tb.Helper()
	for _, d := range f.devs {
		for i, c := range d.all() {
			seen := map[int64]bool{}
			var last int64
			for _, fr := range c.Frames() {
				if fr.Type != "message" || fr.Message == nil || fr.Message.ThreadID != f.th.ID || seen[fr.Message.Seq] {
					continue
				}
				seen[fr.Message.Seq] = true
				if fr.Message.Seq < last {
					tb.Errorf("%s socket %d (%s): seq %d after %d", d.name, i, c.HostID, fr.Message.Seq, last)
					break
				}
				last = fr.Message.Seq
			}
		}
	}
}

// wireDups counts `message` frames whose id the same device had already received in
// a `message` frame, over all its sockets.
func (f *fleet) wireDups() int {
	n := 0
	for _, d := range f.devs {
		seen := map[string]bool{}
		for _, c := range d.all() {
			for _, fr := range c.Frames() {
				if fr.Type != "message" || fr.Message == nil {
					continue
				}
				if seen[fr.Message.ID] {
					n++
				}
				seen[fr.Message.ID] = true
			}
		}
	}
	return n
}

// presenceRight compares, for every user of the fleet, the sockets the devices hold
// open with (a) the live presence entries in Redis (entries of hosts with a fresh
// heartbeat and their current instance, as chatctl shows them) and (b) the online flag
// of GET /api/v1/presence on every live host.
func (f *fleet) presenceRight() error {
	want := map[string]map[string]bool{} // user id -> open conn ids
	for _, u := range f.users {
		want[u.ID] = map[string]bool{}
	}
	for _, d := range f.devs {
		for _, c := range d.all() {
			if _, closed := c.Closed(); !closed {
				want[d.user.ID][c.Hello.ConnID] = true
			}
		}
	}
	ids := make([]string, 0, len(want))
	for id := range want {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	live, err := livePresence(f.c, ids)
	if err != nil {
		return err
	}
	for _, id := range ids {
		got := live[id]
		if len(got) != len(want[id]) {
			return fmt.Errorf("user %s: %d live presence entries %v, %d open sockets %v", id, len(got), got, len(want[id]), want[id])
		}
		for _, cid := range got {
			if !want[id][cid] {
				return fmt.Errorf("user %s: presence entry %s is no open socket (%s)", id, cid, f.describe(cid))
			}
		}
	}
	for _, h := range f.liveHosts() {
		url := h.PublicURL() + "/api/v1/presence?user_id=" + strings.Join(ids, "&user_id=")
		var out struct {
			Presence []chat.Presence `json:"presence"`
		}
		st, raw, err := api("GET", url, f.viewer.Token, nil, &out)
		if err != nil || st != 200 {
			return fmt.Errorf("%s presence: %d %s: %w", h.ID, st, raw, err)
		}
		for _, p := range out.Presence {
			if p.Online != (len(want[p.UserID]) > 0) {
				return fmt.Errorf("%s shows user %s online=%v with %d open sockets", h.ID, p.UserID, p.Online, len(want[p.UserID]))
			}
		}
		if len(out.Presence) != len(ids) {
			return fmt.Errorf("%s presence answered %d of %d users", h.ID, len(out.Presence), len(ids))
		}
	}
	return nil
}

// livePresence returns, per user, the conn ids of the presence entries that count:
// those of a registered host with a fresh heartbeat, written by its current instance.
func livePresence(c *Cluster, userIDs []string) (map[string][]string, error) {
	store := c.redisStore()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	entries, err := store.Lookup(ctx, userIDs)
	if err != nil {
		return nil, err
	}
	hosts, err := store.Hosts(ctx)
	if err != nil {
		return nil, err
	}
	ttl, _ := time.ParseDuration(c.hostTTL)
	byID := map[string]chat.Host{}
	for _, h := range hosts {
		byID[h.HostID] = h
	}
	out := map[string][]string{}
	for u, es := range entries {
		for _, e := range es {
			h, ok := byID[e.HostID]
			if !ok || time.Since(h.LastHeartbeat) >= ttl || (e.Instance != "" && e.Instance != h.Instance) {
				continue
			}
			out[u] = append(out[u], e.ConnID)
		}
	}
	return out, nil
}

// historyOf returns every stored message of a thread through h's HTTP API, without
// failing a test.
func historyOf(h *Host, u *User, threadID string) ([]chat.Message, error) {
	var all []chat.Message
	after := int64(0)
	for {
		var out struct {
			Messages []chat.Message `json:"messages"`
			HasMore  bool           `json:"has_more"`
		}
		url := fmt.Sprintf("%s/api/v1/threads/%s/messages?after_seq=%d&limit=200", h.PublicURL(), threadID, after)
		st, raw, err := api("GET", url, u.Token, nil, &out)
		if err != nil || st != 200 {
			return nil, fmt.Errorf("history from %s: %d %s: %w", h.ID, st, raw, err)
		}
		all = append(all, out.Messages...)
		if !out.HasMore || len(out.Messages) == 0 {
			return all, nil
		}
		after = out.Messages[len(out.Messages)-1].Seq
	}
}
