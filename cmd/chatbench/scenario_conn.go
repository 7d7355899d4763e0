package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os/exec"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

// ---- idle --------------------------------------------------------------------------

// IdleResult is what idle sockets cost the hosts. The sockets connect in two halves
// with a reading of each host's memory before, between and after: "per socket" is
// (after - before) / sockets, as issue 6 asks; "marginal" is the second half alone,
// which leaves out what the first burst grew once (store connection pools, buffers).
type IdleResult struct {
	Conns          int        `json:"conns"`
	Users          int        `json:"users"`
	Connected      int        `json:"connected"`
	ConnectSeconds float64    `json:"connect_seconds"`
	DialToSynced   Summary    `json:"dial_to_synced"`
	KBPerSocket    float64    `json:"rss_kb_per_socket"`
	MarginalKB     float64    `json:"rss_kb_per_socket_marginal"`
	HeapKBPerSock  float64    `json:"heap_kb_per_socket"`
	StackKBPerSock float64    `json:"stack_kb_per_socket"`
	Hosts          []IdleHost `json:"hosts"`
	Settle         string     `json:"settle"`
	Errors         []string   `json:"errors,omitempty"`
}

// IdleHost is one host's memory before, between and after the two halves.
type IdleHost struct {
	URL            string  `json:"url"`
	Sockets        float64 `json:"sockets"`
	RSSBeforeMB    float64 `json:"rss_before_mb"`
	RSSMidMB       float64 `json:"rss_mid_mb"`
	RSSAfterMB     float64 `json:"rss_after_mb"`
	KBPerSocket    float64 `json:"rss_kb_per_socket"`
	MarginalKB     float64 `json:"rss_kb_per_socket_marginal"`
	HeapKBPerSock  float64 `json:"heap_kb_per_socket"`
	StackKBPerSock float64 `json:"stack_kb_per_socket"`
	GoroutinesPer  float64 `json:"goroutines_per_socket"`
}

func runIdle(ctx context.Context, b *bench, res *Result) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	o := b.opt
	nu := o.users
	if nu <= 0 {
		nu = (o.conns + o.socketsPerUser - 1) / o.socketsPerUser
	}
	res.Params["conns"], res.Params["users"], res.Params["settle"] = o.conns, nu, o.settle.String()
	if !o.quiet {
		fmt.Fprintf(b.stderr, "setup: %d users for %d sockets...\n", nu, o.conns)
	}
	users, err := b.makeUsers(ctx, "i", nu)
	if err != nil {
		return err
	}
	devs := make([]*device, o.conns)
	for i := range devs {
		devs[i] = b.device(users[i%nu], i%len(b.targets))
		devs[i].reconnect = false // a refused socket is a finding, not something to retry
	}
	ir := &IdleResult{Conns: o.conns, Users: nu, Settle: o.settle.String()}
	res.Idle = ir
	settle := func(what string) {
		if !o.quiet {
			fmt.Fprintf(b.stderr, "waiting %s for the hosts to settle (%s)...\n", o.settle, what)
		}
		sleep(ctx, o.settle)
	}
	settle("before")
	before, _ := b.scrapeAll(ctx)
	half := o.conns / 2
	took1, failed1 := b.connectAll(ctx, devs[:half], o.connectTimeout)
	settle("half connected")
	mid, _ := b.scrapeAll(ctx)
	took2, failed2 := b.connectAll(ctx, devs[half:], o.connectTimeout)
	took, failed := took1+took2, failed1+failed2
	ir.ConnectSeconds = took.Seconds()
	ir.Connected = o.conns - failed
	h := NewHistogram()
	for _, d := range devs {
		d.mu.Lock()
		if d.synced {
			h.Record(d.syncedAt - d.dialAt)
		}
		d.mu.Unlock()
	}
	ir.DialToSynced = h.Summary()
	if !o.quiet {
		fmt.Fprintf(b.stderr, "%d sockets connected in %.2fs (two halves)\n", ir.Connected, took.Seconds())
	}
	settle("all connected")
	after, errs := b.scrapeAll(ctx)
	var rssKB, margKB, heapKB, stackKB, socks, margSocks float64
	for i, url := range o.hosts {
		if after[i] == nil || before[i] == nil || mid[i] == nil {
			ir.Errors = append(ir.Errors, fmt.Sprintf("%s: %s", url, errs[i]))
			continue
		}
		val := func(s *Scrape, name string) float64 { v, _ := s.Value(name, nil); return v }
		diff := func(a, b *Scrape, name string) float64 { return val(a, name) - val(b, name) }
		const conns, rss = "switchboard_ws_connections", "process_resident_memory_bytes"
		ih := IdleHost{URL: url, Sockets: diff(after[i], before[i], conns),
			RSSBeforeMB: val(before[i], rss) / (1 << 20), RSSMidMB: val(mid[i], rss) / (1 << 20), RSSAfterMB: val(after[i], rss) / (1 << 20)}
		if ih.Sockets > 0 {
			ih.KBPerSocket = diff(after[i], before[i], rss) / 1024 / ih.Sockets
			ih.HeapKBPerSock = diff(after[i], before[i], "go_memstats_heap_inuse_bytes") / 1024 / ih.Sockets
			ih.StackKBPerSock = diff(after[i], before[i], "go_memstats_stack_inuse_bytes") / 1024 / ih.Sockets
			ih.GoroutinesPer = diff(after[i], before[i], "go_goroutines") / ih.Sockets
			rssKB += diff(after[i], before[i], rss) / 1024
			heapKB += diff(after[i], before[i], "go_memstats_heap_inuse_bytes") / 1024
			stackKB += diff(after[i], before[i], "go_memstats_stack_inuse_bytes") / 1024
			socks += ih.Sockets
		}
		if n := diff(after[i], mid[i], conns); n > 0 {
			ih.MarginalKB = diff(after[i], mid[i], rss) / 1024 / n
			margKB += diff(after[i], mid[i], rss) / 1024
			margSocks += n
		}
		ir.Hosts = append(ir.Hosts, ih)
	}
	if socks > 0 {
		ir.KBPerSocket, ir.HeapKBPerSock, ir.StackKBPerSock = rssKB/socks, heapKB/socks, stackKB/socks
	}
	if margSocks > 0 {
		ir.MarginalKB = margKB / margSocks
	}
	if failed > 0 {
		res.Failures = append(res.Failures, fmt.Sprintf("%d of %d sockets did not connect (dial errors %v)", failed, o.conns, b.dialErrors()))
	}
	if o.hold > 0 {
		if !o.quiet {
			fmt.Fprintf(b.stderr, "holding the sockets open for %s...\n", o.hold)
		}
		sleep(ctx, o.hold)
	}
	if len(ir.Hosts) > 0 {
		res.Targets6 = append(res.Targets6, Target{What: "idle: resident memory per socket", Want: "<= 16 KB", Measured: ir.KBPerSocket, Unit: "KB", Met: ir.KBPerSocket <= 16})
	}
	if o.conns >= 10000 {
		res.Targets6 = append(res.Targets6, Target{What: fmt.Sprintf("idle: connect %d sockets", o.conns), Want: "<= 10 s for 10,000", Measured: ir.ConnectSeconds, Unit: "s", Met: ir.ConnectSeconds <= 10})
	}
	return nil
}

func (ir *IdleResult) print(w io.Writer) {
	fmt.Fprintf(w, "idle:    %d of %d sockets (%d users) connected and synced in %.2fs (two halves); dial -> synced %s\n",
		ir.Connected, ir.Conns, ir.Users, ir.ConnectSeconds, fmtSummary(ir.DialToSynced))
	fmt.Fprintf(w, "         resident memory per socket: %.1f KB before -> after, %.1f KB marginal (second half); Go heap %.1f KB, stacks %.1f KB per socket; %s settling\n",
		ir.KBPerSocket, ir.MarginalKB, ir.HeapKBPerSock, ir.StackKBPerSock, ir.Settle)
	for _, h := range ir.Hosts {
		fmt.Fprintf(w, "         %s: %.0f sockets, RSS %.1f -> %.1f -> %.1f MB = %.1f KB/socket (marginal %.1f), heap %.1f KB, stack %.1f KB, %.1f goroutines per socket\n",
			h.URL, h.Sockets, h.RSSBeforeMB, h.RSSMidMB, h.RSSAfterMB, h.KBPerSocket, h.MarginalKB, h.HeapKBPerSock, h.StackKBPerSock, h.GoroutinesPer)
	}
	for _, e := range ir.Errors {
		fmt.Fprintf(w, "         metrics: %s\n", e)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-time.After(d):
	case <-ctx.Done():
	}
}

// ---- catchup -----------------------------------------------------------------------

// CatchupResult is how fast an offline user is caught up on connect.
type CatchupResult struct {
	Backlog           int64        `json:"backlog"`
	Threads           int          `json:"threads"`
	SendSeconds       float64      `json:"backlog_send_seconds"`
	DialMS            float64      `json:"dial_ms"`
	UpgradeToHelloMS  float64      `json:"upgrade_to_hello_ms"`
	UpgradeToSyncedMS float64      `json:"upgrade_to_synced_ms"`
	BeforeSynced      int64        `json:"messages_before_synced"`
	Verify            VerifyResult `json:"verify"`
}

func runCatchup(ctx context.Context, b *bench, res *Result) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	o := b.opt
	if o.threads < 1 || o.backlog < 1 {
		return errors.New("--threads and --backlog must be positive")
	}
	ns := max(b.sendersFor(o.rate), o.threads)
	res.Params["backlog"], res.Params["threads"], res.Params["rate"], res.Params["senders"] = o.backlog, o.threads, o.rate, ns
	if !o.quiet {
		fmt.Fprintf(b.stderr, "setup: 1 offline reader, %d senders over %d threads...\n", ns, o.threads)
	}
	users, err := b.makeUsers(ctx, "c", ns+1)
	if err != nil {
		return err
	}
	reader, senderUsers := users[0], users[1:]
	threads := make([]*threadLog, o.threads)
	err = parallel(ctx, o.threads, b.opt.setupConcurrency, func(ctx context.Context, j int) error {
		members := []*user{reader}
		for i := j; i < ns; i += o.threads {
			members = append(members, senderUsers[i])
		}
		t, err := b.makeThread(ctx, j, "catchup"+strconv.Itoa(j), senderUsers[j], members)
		if t != nil {
			t.Participants = len(members) - 1 // the reader is offline during the backlog
		}
		threads[j] = t
		return err
	})
	if err != nil {
		return err
	}
	var senders []*device
	h := len(b.targets)
	for i, u := range senderUsers {
		t := threads[i%o.threads]
		d := b.device(u, (i+1)%h, t)
		d.startSender(ctx, t)
		senders = append(senders, d)
	}
	if _, err := b.connect(ctx, senders); err != nil {
		return err
	}
	res.Floor = b.floor(ctx)
	res.Load = b.phase(ctx, "backlog", senders, senders, o.rate, int64(o.backlog))
	res.Server = res.Load.Server
	res.Load.Server = nil

	// The reader connects: everything acked must be pushed before `synced`.
	cr := &CatchupResult{Threads: o.threads, SendSeconds: res.Load.Seconds}
	res.Catchup = cr
	for _, t := range threads {
		cr.Backlog += t.ackedCount()
	}
	st := newRunStats()
	b.stats.Store(st)
	rd := b.device(reader, 0, threads...)
	rd.recordLatency, rd.reconnect = false, false
	if !o.quiet {
		fmt.Fprintf(b.stderr, "reader connects to %s for %d messages...\n", b.targets[0], cr.Backlog)
	}
	if _, failed := b.connectAll(ctx, []*device{rd}, o.connectTimeout); failed > 0 {
		return fmt.Errorf("the reader did not sync within %s (dial errors %v)", o.connectTimeout, b.dialErrors())
	}
	rd.mu.Lock()
	cr.DialMS = float64(rd.upgradeAt-rd.dialAt) / 1e6
	cr.UpgradeToHelloMS = float64(rd.helloAt-rd.upgradeAt) / 1e6
	cr.UpgradeToSyncedMS = float64(rd.syncedAt-rd.upgradeAt) / 1e6
	cr.BeforeSynced = rd.catchupMsgs
	rd.mu.Unlock()
	sleep(ctx, 200*time.Millisecond) // anything late would be a finding
	cr.Verify = b.verify([]*device{rd}, st, nil)
	if cr.BeforeSynced < cr.Backlog {
		cr.Verify.Pass = false
		cr.Verify.Problems = append(cr.Verify.Problems, fmt.Sprintf("only %d of %d messages before synced", cr.BeforeSynced, cr.Backlog))
	}
	if o.backlog >= 10000 {
		res.Targets6 = append(res.Targets6, Target{What: fmt.Sprintf("catchup %d: upgrade -> synced", o.backlog), Want: "<= 2 s", Measured: cr.UpgradeToSyncedMS / 1000, Unit: "s", Met: cr.UpgradeToSyncedMS <= 2000 && cr.Verify.Pass})
	}
	return nil
}

func (cr *CatchupResult) print(w io.Writer) {
	fmt.Fprintf(w, "catchup: %d messages over %d threads (sent in %.1fs); reader: dial %.1f ms, upgrade -> hello %.1f ms, upgrade -> synced %.1f ms, %d messages before synced\n",
		cr.Backlog, cr.Threads, cr.SendSeconds, cr.DialMS, cr.UpgradeToHelloMS, cr.UpgradeToSyncedMS, cr.BeforeSynced)
	printVerify(w, &cr.Verify)
}

// ---- storm -------------------------------------------------------------------------

// StormResult is how the clients of a killed host came back.
type StormResult struct {
	Conns          int          `json:"conns"`
	Users          int          `json:"users"`
	Victim         string       `json:"victim"`
	KilledAfter    float64      `json:"killed_after_seconds"`
	Back           int          `json:"back"`
	NotBack        int          `json:"not_back"`
	AllBackSeconds float64      `json:"all_back_seconds"`
	BackSeconds    Summary      `json:"kill_to_synced"`
	FilledSeconds  float64      `json:"all_gaps_filled_seconds"`
	DialAttempts   int          `json:"dial_attempts"`
	Verify         VerifyResult `json:"verify"`
}

func runStorm(ctx context.Context, b *bench, res *Result) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	o := b.opt
	switch {
	case o.front != "":
		return errors.New("storm needs --hosts (it pins sockets to the victim), not --front")
	case len(o.hosts) < 2:
		return errors.New("storm needs at least two hosts")
	case o.victim >= len(o.hosts):
		return fmt.Errorf("--victim %d: there are %d hosts", o.victim, len(o.hosts))
	case o.killPID == 0 && o.killCmd == "":
		return errors.New("storm needs --kill-pid PID or --kill-cmd COMMAND for the victim host")
	}
	nu := o.users
	if nu <= 0 {
		nu = (o.conns + o.socketsPerUser - 1) / o.socketsPerUser
	}
	nt := max(nu, int(math.Ceil(o.rate/o.perSender)))
	res.Params["conns"], res.Params["users"], res.Params["threads"], res.Params["rate"], res.Params["duration"], res.Params["kill_after"] =
		o.conns, nu, nt, o.rate, o.duration.String(), o.killAfter.String()
	if !o.quiet {
		fmt.Fprintf(b.stderr, "setup: %d users with %d sockets on %s, %d senders elsewhere...\n", nu, o.conns, o.hosts[o.victim], nt)
	}
	users, err := b.makeUsers(ctx, "s", nu)
	if err != nil {
		return err
	}
	writers, err := b.makeUsers(ctx, "w", nt)
	if err != nil {
		return err
	}
	// Thread j: storm user j%nu and writer j.
	threads := make([]*threadLog, nt)
	userThreads := make([][]*threadLog, nu)
	err = parallel(ctx, nt, o.setupConcurrency, func(ctx context.Context, j int) error {
		t, err := b.makeThread(ctx, j, "storm"+strconv.Itoa(j), writers[j], []*user{users[j%nu]})
		threads[j] = t
		return err
	})
	if err != nil {
		return err
	}
	for j, t := range threads {
		userThreads[j%nu] = append(userThreads[j%nu], t)
	}
	devsPerUser := make([]int, nu)
	var storm []*device
	for i := 0; i < o.conns; i++ {
		ui := i % nu
		devsPerUser[ui]++
		storm = append(storm, b.device(users[ui], o.victim, userThreads[ui]...))
	}
	for j, t := range threads {
		t.Participants = devsPerUser[j%nu] + 1
	}
	var senders []*device
	others := make([]int, 0, len(o.hosts)-1)
	for i := range o.hosts {
		if i != o.victim {
			others = append(others, i)
		}
	}
	for j, u := range writers {
		d := b.device(u, others[j%len(others)], threads[j])
		d.startSender(ctx, threads[j])
		senders = append(senders, d)
	}
	all := append(append([]*device(nil), senders...), storm...)
	if _, err := b.connect(ctx, all); err != nil {
		return err
	}
	sr := &StormResult{Conns: o.conns, Users: nu, Victim: o.hosts[o.victim], KilledAfter: o.killAfter.Seconds()}
	res.Storm = sr

	var killNS atomic.Int64
	killed := make(chan error, 1)
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	b.atLoadStart = func() {
		timer = time.AfterFunc(o.killAfter, func() {
			if ctx.Err() != nil {
				return // the run was cut short: kill nothing
			}
			killNS.Store(b.now())
			if !o.quiet {
				fmt.Fprintf(b.stderr, "killing %s\n", o.hosts[o.victim])
			}
			killed <- kill(ctx, o.killPID, o.killCmd)
		})
	}
	res.Load = b.phase(ctx, "storm", senders, all, o.rate, totalFor(o.rate, o.duration))
	res.Server = res.Load.Server
	res.Load.Server = nil
	var k int64
	select {
	case err := <-killed:
		if err != nil {
			return fmt.Errorf("kill the victim: %w", err)
		}
		k = killNS.Load()
	default:
		return errors.New("the load ended before the kill: raise --duration or lower --kill-after")
	}
	// Wait for every storm socket to be back (the load's drain may have covered it).
	deadline := time.Now().Add(o.stormTimeout - time.Duration(b.now()-k))
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if back, _ := stormBack(storm, k); back == len(storm) {
			break
		}
		sleep(ctx, 50*time.Millisecond)
	}
	// Deliveries to sockets that came back late: give them the grace period again.
	st := b.stats.Load()
	b.drain(ctx, st)
	res.Load.Verify = b.verify(all, st, senders)
	sr.Verify = res.Load.Verify
	h := NewHistogram()
	var maxBack, maxFill int64
	for _, d := range storm {
		d.mu.Lock()
		sr.DialAttempts += d.attempts
		if d.conns > 1 && d.synced && d.syncedAt > k {
			h.Record(d.syncedAt - k)
			maxBack = max(maxBack, d.syncedAt-k)
			if d.filledAt > k {
				maxFill = max(maxFill, d.filledAt-k)
			}
		}
		d.mu.Unlock()
	}
	sr.Back, sr.NotBack = stormBack(storm, k)
	sr.BackSeconds = h.Summary()
	sr.AllBackSeconds = float64(maxBack) / 1e9
	sr.FilledSeconds = float64(maxFill) / 1e9
	if sr.NotBack > 0 {
		res.Failures = append(res.Failures, fmt.Sprintf("%d of %d sockets not back within %s", sr.NotBack, len(storm), o.stormTimeout))
	}
	res.Targets6 = append(res.Targets6,
		Target{What: fmt.Sprintf("storm %d: all back and synced", o.conns), Want: "<= 15 s", Measured: sr.AllBackSeconds, Unit: "s", Met: sr.NotBack == 0 && sr.AllBackSeconds <= 15},
		Target{What: fmt.Sprintf("storm %d: loss", o.conns), Want: "0", Measured: float64(sr.Verify.Lost), Unit: "lost", Met: sr.Verify.Lost == 0})
	return nil
}

// stormBack counts the devices synced on a connection made after the kill.
func stormBack(devs []*device, killNS int64) (back, notBack int) {
	for _, d := range devs {
		d.mu.Lock()
		if d.conns > 1 && d.synced && d.syncedAt > killNS {
			back++
		} else {
			notBack++
		}
		d.mu.Unlock()
	}
	return back, notBack
}

// kill stops the victim: SIGKILL to pid, or the operator's command.
func kill(ctx context.Context, pid int, cmd string) error {
	if pid > 0 {
		return syscall.Kill(pid, syscall.SIGKILL)
	}
	out, err := exec.CommandContext(ctx, "sh", "-c", cmd).CombinedOutput() // #nosec G204 -- the operator's own command
	if err != nil {
		return fmt.Errorf("%s: %w: %s", cmd, err, out)
	}
	return nil
}

func (sr *StormResult) print(w io.Writer) {
	fmt.Fprintf(w, "storm:   %d sockets (%d users) on %s, killed %.1fs into the load; back and synced elsewhere: %d, not back: %d\n",
		sr.Conns, sr.Users, sr.Victim, sr.KilledAfter, sr.Back, sr.NotBack)
	fmt.Fprintf(w, "         kill -> synced: all back in %.2fs; %s; gaps filled by %.2fs; %d dial attempts\n",
		sr.AllBackSeconds, fmtSummary(sr.BackSeconds), sr.FilledSeconds, sr.DialAttempts)
}
