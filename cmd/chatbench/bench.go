package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// runStats are the counters and histograms of one measured phase (a ramp step has
// its own). Everything is atomic: readers and writers of many sockets share it.
type runStats struct {
	lat    *Histogram // sender write -> receiver read, per delivery
	ackLat *Histogram // sender write -> `sent` read
	lag    *Histogram // due time -> write (the generator's own delay)
	last   *Histogram // fanout: write -> read by the last member of the thread

	emitted, issued, answered, acked, sendErrs, writeErrs atomic.Int64
	received, dups, reordered, conflicts, expected        atomic.Int64
	echoes                                                atomic.Int64 // own messages back as `message`
	stalls                                                atomic.Int64 // emits that found a sender's queue full
	stillArriving                                         atomic.Bool  // answers or deliveries still came after the grace period

	startNS, lastRecvNS atomic.Int64

	errMu    sync.Mutex
	errCodes map[string]int64
}

func newRunStats() *runStats {
	return &runStats{lat: NewHistogram(), ackLat: NewHistogram(), lag: NewHistogram(), last: NewHistogram(), errCodes: map[string]int64{}}
}

func (s *runStats) countError(code string) {
	s.errMu.Lock()
	s.errCodes[code]++
	s.errMu.Unlock()
}

func (s *runStats) errors() map[string]int64 {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	out := make(map[string]int64, len(s.errCodes))
	for k, v := range s.errCodes {
		out[k] = v
	}
	return out
}

// bench is one chatbench run: its options, the clock every timestamp is taken on,
// the public API client, and the devices (sockets) it drives.
type bench struct {
	opt            *options
	stdout, stderr io.Writer
	base           time.Time // timestamps are ns since base (monotonic)
	api            *apiClient
	dialer         *websocket.Dialer
	targets        []string // where sockets go: the hosts, or the front door
	stats          atomic.Pointer[runStats]
	dialSem        chan struct{}

	mu       sync.Mutex
	dialErrs map[string]int64

	// atLoadStart, when set, runs once as the next load phase starts (storm's kill).
	atLoadStart func()

	disconnects atomic.Int64
	resent      atomic.Int64 // sends written again after a reconnect
	badFrames   atomic.Int64
	foreign     atomic.Int64 // messages of threads the device does not know
}

func newBench(opt *options, stdout, stderr io.Writer) *bench {
	b := &bench{
		opt: opt, stdout: stdout, stderr: stderr, base: time.Now(), api: newAPIClient(),
		dialer: &websocket.Dialer{
			NetDialContext:   (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
			HandshakeTimeout: 15 * time.Second,
			ReadBufferSize:   2048,
			WriteBufferSize:  1024,
			WriteBufferPool:  &sync.Pool{},
		},
		targets:  opt.targets(),
		dialSem:  make(chan struct{}, max(1, opt.dialConcurrency)),
		dialErrs: map[string]int64{},
	}
	b.stats.Store(newRunStats())
	return b
}

// now is the run clock: ns since base, monotonic.
func (b *bench) now() int64 { return int64(time.Since(b.base)) }

func (b *bench) countDialError(err error, resp *http.Response) {
	key := "network"
	if resp != nil {
		key = "http " + strconv.Itoa(resp.StatusCode)
	} else if errors.Is(err, context.DeadlineExceeded) {
		key = "timeout"
	}
	b.mu.Lock()
	b.dialErrs[key]++
	b.mu.Unlock()
}

func (b *bench) dialErrors() map[string]int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := map[string]int64{}
	for k, v := range b.dialErrs {
		out[k] = v
	}
	return out
}

// device is one client socket (a user's device) that survives reconnects: its
// per-thread receive state, and, for senders, a queue of sends and a writer.
type device struct {
	b    *bench
	idx  int
	u    *user
	home int // target index of the first connection

	recordLatency bool // false for devices whose backlog latency means nothing (catchup)
	reconnect     bool // reconnect with full-jitter backoff when the socket drops

	mu      sync.Mutex // guards threads and the connection bookkeeping below
	threads map[string]*recvState

	wmu    sync.Mutex // one writer at a time on the socket
	conn   *websocket.Conn
	ackBuf []byte

	// Sender side: the thread sent to, the queue of due times, and the counters.
	sendThread *threadLog
	sendq      chan int64
	k          int // next client_msg_id number; writer goroutine only
	issued     atomic.Int64
	answered   atomic.Int64
	// outbox (under wmu), for devices that reconnect: the write stamp of every send not
	// yet answered, by number. A send due while the device has no socket waits there,
	// and after a reconnect every one is written again with the same client_msg_id and
	// body, as a real client does: a host restart then loses nothing (the server
	// answers a repeat with the first message) and counts no write error.
	outbox map[int]int64

	// Connection bookkeeping (under mu).
	connected   chan struct{} // closed at the first `synced`
	firstOnce   sync.Once
	conns       int    // connections made
	hostID      string // from the current connection's hello
	synced      bool   // the current connection got `synced`
	dialAt      int64  // when the current connection's dial started
	upgradeAt   int64  // when its upgrade completed
	helloAt     int64
	syncedAt    int64 // when it got `synced`
	downAt      int64 // when the previous connection dropped (0: never)
	attempts    int   // dial attempts since the last drop
	catchupMsgs int64 // messages before `synced` on the current connection
	syncs       int   // outstanding gap-fill syncs
	syncSeq     int
	filledAt    int64 // when the last gap-fill sync finished
}

func (b *bench) newDevice(idx int, u *user, home int, threads ...*threadLog) *device {
	d := &device{b: b, idx: idx, u: u, home: home, recordLatency: true, threads: map[string]*recvState{}, connected: make(chan struct{})}
	for _, t := range threads {
		d.threads[t.ID] = &recvState{t: t}
	}
	return d
}

// startSender gives the device a send queue and a writer goroutine for thread t.
func (d *device) startSender(ctx context.Context, t *threadLog) {
	d.sendThread = t
	d.sendq = make(chan int64, 4096)
	if d.reconnect {
		d.outbox = map[int]int64{}
	}
	go d.writeLoop(ctx)
}

// writeLoop writes one `send` per due time, stamping the body with the write time.
// It never waits for `sent`: the schedule is open-loop.
func (d *device) writeLoop(ctx context.Context) {
	b := d.b
	buf := make([]byte, 0, 160+b.opt.size)
	var cmid []byte
	for {
		var due int64
		select {
		case due = <-d.sendq:
		case <-ctx.Done():
			return
		}
		st := b.stats.Load()
		cmid = strconv.AppendInt(append(cmid[:0], 'm'), int64(d.k), 36)
		d.wmu.Lock()
		now := b.now()
		buf = appendSend(buf[:0], d.sendThread.ID, string(cmid), now, d.idx, d.k, b.opt.size)
		var err error
		switch {
		case d.outbox != nil:
			// Kept until answered; written again after a reconnect if need be.
			d.outbox[d.k] = now
			if d.conn != nil {
				_ = d.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
				_ = d.conn.WriteMessage(websocket.TextMessage, buf)
			}
		case d.conn == nil:
			err = errors.New("not connected")
		default:
			_ = d.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
			err = d.conn.WriteMessage(websocket.TextMessage, buf)
		}
		d.wmu.Unlock()
		d.k++
		st.lag.Record(now - due)
		d.issued.Add(1)
		st.issued.Add(1)
		if err != nil {
			// Never reached the server (as far as we know): no answer will come.
			st.writeErrs.Add(1)
			d.answered.Add(1)
			st.answered.Add(1)
		}
	}
}

// write sends one control frame of ours (ack, sync) if connected.
func (d *device) write(p []byte) {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	if d.conn == nil {
		return
	}
	_ = d.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_ = d.conn.WriteMessage(websocket.TextMessage, p)
}

// run keeps the device connected until ctx ends: dial (bounded by the dial
// semaphore for the first connection), read until the socket fails, then, when
// reconnect is set, back off with full jitter and dial another target at random.
func (d *device) run(ctx context.Context) {
	b := d.b
	target := d.home
	attempt := 0
	for ctx.Err() == nil {
		first := d.connCount() == 0
		ok := d.connectOnce(ctx, target, first)
		if ctx.Err() != nil || !d.reconnect {
			if !ok && !d.reconnect {
				// A device that may not reconnect still counts as done, so waits end.
				d.firstOnce.Do(func() { close(d.connected) })
			}
			return
		}
		if ok {
			attempt = 0
		}
		// Full jitter: sleep uniformly in [0, min(cap, base*2^attempt)].
		ceil := min(b.opt.backoffCap, b.opt.backoffBase<<min(attempt, 16))
		sleep := time.Duration(rand.Int64N(int64(ceil) + 1))
		attempt++
		select {
		case <-time.After(sleep):
		case <-ctx.Done():
			return
		}
		if n := len(b.targets); n > 1 {
			// Somewhere else, at random: clients of a dead host must not all pick the
			// same next one.
			target = (target + 1 + rand.IntN(n-1)) % n
		}
	}
}

func (d *device) connCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.conns
}

// connectOnce dials target and reads until the socket ends. It reports whether the
// connection was established.
func (d *device) connectOnce(ctx context.Context, target int, first bool) bool {
	b := d.b
	if first {
		select {
		case b.dialSem <- struct{}{}:
		case <-ctx.Done():
			return false
		}
	}
	hdr := http.Header{"Authorization": []string{"Bearer " + d.u.Token}}
	dialAt := b.now()
	dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	c, resp, err := b.dialer.DialContext(dctx, wsURL(b.targets[target]), hdr)
	cancel()
	if first {
		<-b.dialSem
	}
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	d.mu.Lock()
	d.attempts++
	d.mu.Unlock()
	if err != nil {
		if ctx.Err() == nil {
			b.countDialError(err, resp)
		}
		return false
	}
	up := b.now()
	d.mu.Lock()
	d.conns++
	d.dialAt, d.upgradeAt, d.helloAt, d.syncedAt = dialAt, up, 0, 0
	d.synced, d.catchupMsgs, d.hostID = false, 0, ""
	for _, rs := range d.threads {
		rs.connMax = 0 // order is per connection
	}
	d.mu.Unlock()
	d.wmu.Lock()
	d.conn = c
	d.wmu.Unlock()
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	d.readLoop(c)
	stop()
	d.wmu.Lock()
	d.conn = nil
	d.wmu.Unlock()
	_ = c.Close()
	if ctx.Err() == nil {
		b.disconnects.Add(1)
		d.mu.Lock()
		d.downAt, d.attempts = b.now(), 0
		d.mu.Unlock()
	}
	return true
}

// readLoop is the socket's only reader: it decodes each frame into a reused struct
// from a reused buffer and hands it to handle.
func (d *device) readLoop(c *websocket.Conn) {
	var f inFrame
	buf := make([]byte, 0, 1024)
	for {
		_, r, err := c.NextReader()
		if err != nil {
			return
		}
		buf = buf[:0]
		for {
			if len(buf) == cap(buf) {
				buf = append(buf, 0)[:len(buf)]
			}
			n, err := r.Read(buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+n]
			if err == io.EOF {
				break
			}
			if err != nil {
				return
			}
		}
		now := d.b.now()
		if err := parseFrame(buf, &f); err != nil {
			d.b.badFrames.Add(1)
			continue
		}
		d.handle(&f, now)
	}
}

// handle applies one server frame to the device's state and the run's counters.
func (d *device) handle(f *inFrame, now int64) {
	b := d.b
	st := b.stats.Load()
	switch string(f.Type) {
	case "message":
		d.mu.Lock()
		rs := d.threads[string(f.Msg.ThreadID)]
		if rs == nil {
			d.mu.Unlock()
			b.foreign.Add(1)
			return
		}
		d.receive(st, rs, &f.Msg, now, true)
		if !d.synced {
			d.catchupMsgs++
		}
		d.maybeAck(rs, now)
		d.mu.Unlock()
	case "sent":
		if !d.unqueue(f.ClientMsgID) {
			return // a second answer to a send written again after a reconnect
		}
		fp := fingerprint(f.Msg.ID)
		d.mu.Lock()
		rs := d.threads[string(f.Msg.ThreadID)]
		if rs != nil {
			if !rs.t.acked(f.Msg.Seq, d.idx, fp) {
				st.conflicts.Add(1)
			}
			rs.own(f.Msg.Seq)
			d.maybeAck(rs, now)
			st.expected.Add(int64(rs.t.Participants - 1))
		}
		d.mu.Unlock()
		d.answered.Add(1)
		st.answered.Add(1)
		st.acked.Add(1)
		if t, ok := bodyTime(f.Msg.Body); ok {
			st.ackLat.Record(now - t)
		}
	case "error":
		if len(f.Ref) > 0 && f.Ref[0] == 'm' && !d.unqueue(f.Ref) {
			return
		}
		st.countError(string(f.Code))
		if len(f.Ref) > 0 && f.Ref[0] == 'm' {
			d.answered.Add(1)
			st.answered.Add(1)
			st.sendErrs.Add(1)
		}
	case "synced":
		d.mu.Lock()
		d.synced, d.syncedAt = true, now
		d.resend()
		if d.conns > 1 {
			// Another device of this user may have acked past what this one holds:
			// the server's catch-up starts at the user's ack, so fill from our own.
			for _, rs := range d.threads {
				d.syncSeq++
				d.syncs++
				d.ackBuf = appendSync(d.ackBuf[:0], "g"+strconv.Itoa(d.syncSeq), rs.t.ID, rs.contig, 200)
				d.write(d.ackBuf)
			}
		}
		d.mu.Unlock()
		d.firstOnce.Do(func() { close(d.connected) })
	case "hello":
		d.mu.Lock()
		d.hostID, d.helloAt = string(f.HostID), now
		d.mu.Unlock()
	case "sync_result":
		d.mu.Lock()
		var rs *recvState
		var last int64
		for i := range f.Messages {
			m := &f.Messages[i]
			if rs = d.threads[string(m.ThreadID)]; rs != nil {
				d.receive(st, rs, m, now, false)
				last = max(last, m.Seq)
			}
		}
		if rs != nil && f.HasMore {
			d.ackBuf = appendSync(d.ackBuf[:0], string(f.SyncID), rs.t.ID, last, 200)
			d.write(d.ackBuf)
		} else if d.syncs > 0 {
			d.syncs--
			if d.syncs == 0 {
				d.filledAt = now
			}
		}
		if rs != nil {
			d.maybeAck(rs, now)
		}
		d.mu.Unlock()
	case "pong", "typing":
	default:
		b.badFrames.Add(1)
	}
}

// unqueue removes an answered send (client_msg_id "m" + base-36 number) from the
// outbox; false when it was not there: an answer to a send already answered.
func (d *device) unqueue(clientMsgID []byte) bool {
	if d.outbox == nil {
		return true
	}
	k, err := strconv.ParseInt(string(clientMsgID[1:]), 36, 64)
	if err != nil {
		return true
	}
	d.wmu.Lock()
	defer d.wmu.Unlock()
	if _, ok := d.outbox[int(k)]; !ok {
		return false
	}
	delete(d.outbox, int(k))
	return true
}

// resend writes every unanswered send again on the new socket, oldest first, with its
// first client_msg_id and body. Only sends written on an earlier socket (or due while
// there was none) can be in the outbox now: this socket has just synced.
func (d *device) resend() {
	if d.outbox == nil {
		return
	}
	d.wmu.Lock()
	defer d.wmu.Unlock()
	if d.conn == nil || len(d.outbox) == 0 {
		return
	}
	ks := make([]int, 0, len(d.outbox))
	for k := range d.outbox {
		ks = append(ks, k)
	}
	sort.Ints(ks)
	var buf, cmid []byte
	for _, k := range ks {
		cmid = strconv.AppendInt(append(cmid[:0], 'm'), int64(k), 36)
		buf = appendSend(buf[:0], d.sendThread.ID, string(cmid), d.outbox[k], d.idx, k, d.b.opt.size)
		_ = d.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if d.conn.WriteMessage(websocket.TextMessage, buf) != nil {
			return
		}
	}
	d.b.resent.Add(int64(len(ks)))
}

// receive records one message for rs; the caller holds d.mu.
func (d *device) receive(st *runStats, rs *recvState, m *wireMessage, now int64, ordered bool) {
	if s, ok := bodySender(m.Body); ok && s == d.idx {
		// This device's own message as a `message` frame (a catch-up or gap fill from
		// the store includes it). Not a delivery; it counts as held, like `sent`.
		st.echoes.Add(1)
		rs.own(m.Seq)
		return
	}
	switch rs.receive(m.Seq, fingerprint(m.ID), ordered) {
	case recvDuplicate:
		st.dups.Add(1)
		return
	case recvReordered:
		st.reordered.Add(1)
	}
	st.received.Add(1)
	for {
		l := st.lastRecvNS.Load()
		if now <= l || st.lastRecvNS.CompareAndSwap(l, now) {
			break
		}
	}
	t, ok := bodyTime(m.Body)
	if !ok {
		return
	}
	lat := now - t
	if d.recordLatency {
		st.lat.Record(lat)
	}
	if v, ok := rs.t.arrived(m.Seq, lat, rs.t.Participants-1); ok {
		st.last.Record(v)
	}
}

// ackEvery and ackInterval: receivers ack cumulatively like a real client, every 64
// messages of a thread or 100 ms, whichever comes first.
const (
	ackEvery    = 64
	ackInterval = int64(100 * time.Millisecond)
)

func (d *device) maybeAck(rs *recvState, now int64) {
	if rs.contig <= rs.ackSent || (rs.contig-rs.ackSent < ackEvery && now-rs.ackAt < ackInterval) {
		return
	}
	d.ackBuf = appendAck(d.ackBuf[:0], rs.t.ID, rs.contig)
	d.write(d.ackBuf)
	rs.ackSent, rs.ackAt = rs.contig, now
}

// ---- setup helpers ---------------------------------------------------------------

// makeUsers registers and logs in n users named PREFIX-ROLE-i, spreading the API calls
// over the targets.
func (b *bench) makeUsers(ctx context.Context, role string, n int) ([]*user, error) {
	users := make([]*user, n)
	err := parallel(ctx, n, b.opt.setupConcurrency, func(ctx context.Context, i int) error {
		u, err := b.api.registerLogin(ctx, b.targets[i%len(b.targets)], fmt.Sprintf("%s-%s%d", b.opt.prefix, role, i))
		users[i] = u
		return err
	})
	return users, err
}

// makeThread creates a thread as creator with the other users as members.
func (b *bench) makeThread(ctx context.Context, i int, name string, creator *user, others []*user) (*threadLog, error) {
	names := make([]string, 0, len(others))
	for _, u := range others {
		if u != creator {
			names = append(names, u.Name)
		}
	}
	id, err := b.api.createThread(ctx, b.targets[i%len(b.targets)], creator, b.opt.prefix+"-"+name, names)
	if err != nil {
		return nil, err
	}
	return &threadLog{ID: id, Name: name}, nil
}

// connectAll starts every device's connection loop and waits until each has had its
// first `synced` (or gave up, or timeout passed); it returns how long that took and
// how many devices are not synced.
func (b *bench) connectAll(ctx context.Context, devs []*device, timeout time.Duration) (time.Duration, int) {
	start := time.Now()
	for _, d := range devs {
		go d.run(ctx)
	}
	deadline := time.After(timeout)
wait:
	for _, d := range devs {
		select {
		case <-d.connected:
		case <-deadline:
			break wait
		case <-ctx.Done():
			break wait
		}
	}
	took := time.Since(start)
	failed := 0
	for _, d := range devs {
		d.mu.Lock()
		if !d.synced {
			failed++
		}
		d.mu.Unlock()
	}
	return took, failed
}

// ---- load phase ------------------------------------------------------------------

// load runs the open-loop schedule: total sends at rate, round-robin over the
// senders, with a progress line every second; then waits (up to grace) for every
// answer and every expected delivery.
func (b *bench) load(ctx context.Context, label string, senders []*device, rate float64, total int64) (time.Duration, time.Duration) {
	st := b.stats.Load()
	st.startNS.Store(b.now())
	if f := b.atLoadStart; f != nil {
		b.atLoadStart = nil
		f()
	}
	stop := b.progress(ctx, label, st)
	defer stop()
	start := time.Now()
	sched := &Schedule{Rate: rate, Total: total}
	sched.Run(ctx, func(i int64, due time.Time) {
		d := senders[int(i)%len(senders)]
		dueNS := int64(due.Sub(b.base))
		select {
		case d.sendq <- dueNS:
		default:
			st.stalls.Add(1)
			select {
			case d.sendq <- dueNS:
			case <-ctx.Done():
			}
		}
		st.emitted.Add(1)
	})
	sendTime := time.Since(start)
	drain := b.drain(ctx, st)
	return sendTime, drain
}

// drain waits until every emitted send was written and answered and every expected
// delivery arrived, or the grace period ends.
func (b *bench) drain(ctx context.Context, st *runStats) time.Duration {
	start := time.Now()
	deadline := start.Add(b.opt.grace)
	done := func() bool {
		return st.issued.Load() >= st.emitted.Load() && st.answered.Load() >= st.issued.Load() &&
			st.received.Load() >= st.expected.Load()
	}
	for time.Now().Before(deadline) && ctx.Err() == nil && !done() {
		time.Sleep(20 * time.Millisecond)
	}
	if !done() {
		// Out of time: is the cluster still delivering (behind) or stuck (lost)?
		n := st.received.Load() + st.answered.Load()
		time.Sleep(time.Second)
		st.stillArriving.Store(st.received.Load()+st.answered.Load() > n)
	}
	return time.Since(start)
}

// progress prints one line a second on stderr until the returned stop is called.
func (b *bench) progress(ctx context.Context, label string, st *runStats) func() {
	if b.opt.quiet {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		start := time.Now()
		var pe, pa, pr int64
		var prev, cur []uint64
		for {
			select {
			case <-t.C:
			case <-done:
				return
			case <-ctx.Done():
				return
			}
			e, a, r := st.emitted.Load(), st.acked.Load(), st.received.Load()
			errs := st.sendErrs.Load() + st.writeErrs.Load()
			cur = st.lat.Counts(cur)
			fmt.Fprintf(b.stderr, "%s %5.1fs  offered %6d/s  sent %6d/s  delivered %7d/s  in-flight %5d  p50 %s  p99 %s (this second %s, max %s)  errors %d  behind %d\n",
				label, time.Since(start).Seconds(), e-pe, a-pa, r-pr, st.issued.Load()-st.answered.Load(),
				fmtMS(st.lat.Quantile(.5)), fmtMS(st.lat.Quantile(.99)), fmtMS(WindowQuantile(prev, cur, .99)), fmtMS(WindowQuantile(prev, cur, 1)),
				errs, max(0, st.expected.Load()-r))
			pe, pa, pr = e, a, r
			prev, cur = cur, prev
		}
	}()
	return func() { close(done); wg.Wait() }
}

func fmtMS(ns int64) string {
	return strconv.FormatFloat(float64(ns)/1e6, 'f', 2, 64) + "ms"
}

// ---- verification ------------------------------------------------------------------

// VerifyResult is the delivery check of a run: zero Lost, Reordered and Conflicts, no
// send errors and no unanswered sends is a pass.
type VerifyResult struct {
	Devices    int              `json:"devices"`
	Expected   int64            `json:"expected_deliveries"`
	Received   int64            `json:"received"`
	Lost       int64            `json:"lost"`
	Reordered  int64            `json:"reordered"`
	Duplicates int64            `json:"wire_duplicates"`
	Echoes     int64            `json:"own_echoes"`
	Conflicts  int64            `json:"id_conflicts"`
	Extra      int64            `json:"received_unacked"`
	Unchecked  int64            `json:"fingerprint_unchecked"`
	SendErrors int64            `json:"send_errors"`
	WriteErrs  int64            `json:"write_errors"`
	Unanswered int64            `json:"unanswered_sends"`
	ErrorCodes map[string]int64 `json:"error_frames,omitempty"`
	BadFrames  int64            `json:"bad_frames"`
	// StillArriving: when the grace period ended, answers or deliveries were still
	// coming in: the cluster was behind (overloaded), so "lost" means "not within
	// --grace", not necessarily never.
	StillArriving bool     `json:"still_arriving_after_grace"`
	Pass          bool     `json:"pass"`
	Problems      []string `json:"problems,omitempty"`
}

// verify checks every device in devs against the thread logs (cumulative over the
// run), and folds in the counters of st (this phase).
func (b *bench) verify(devs []*device, st *runStats, senders []*device) VerifyResult {
	v := VerifyResult{Devices: len(devs)}
	for _, d := range devs {
		d.mu.Lock()
		ids := make([]string, 0, len(d.threads))
		for id := range d.threads {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, id := range ids {
			c := d.threads[id].check(d.idx)
			v.Expected += c.Expected
			v.Received += c.Received
			v.Lost += c.Lost
			v.Extra += c.Extra
			if c.Conflict {
				v.Conflicts++
			}
			if c.Unchecked {
				v.Unchecked++
			}
		}
		d.mu.Unlock()
	}
	for _, d := range senders {
		v.Unanswered += d.issued.Load() - d.answered.Load()
	}
	v.Reordered = st.reordered.Load()
	v.Duplicates = st.dups.Load()
	v.Echoes = st.echoes.Load()
	v.Conflicts += st.conflicts.Load()
	v.SendErrors = st.sendErrs.Load()
	v.WriteErrs = st.writeErrs.Load()
	v.ErrorCodes = st.errors()
	v.BadFrames = b.badFrames.Load()
	v.StillArriving = st.stillArriving.Load()
	for what, n := range map[string]int64{
		"lost": v.Lost, "reordered": v.Reordered, "id conflicts": v.Conflicts,
		"send errors": v.SendErrors, "write errors": v.WriteErrs, "unanswered sends": v.Unanswered,
	} {
		if n > 0 {
			v.Problems = append(v.Problems, fmt.Sprintf("%d %s", n, what))
		}
	}
	sort.Strings(v.Problems)
	if len(v.Problems) > 0 && v.StillArriving {
		v.Problems = append(v.Problems, fmt.Sprintf("still arriving after --grace %s: the cluster is behind", b.opt.grace))
	}
	v.Pass = len(v.Problems) == 0
	return v
}
