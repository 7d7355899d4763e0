package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync/atomic"
	"time"
)

// ---- shared setup ------------------------------------------------------------------

var devCounter atomic.Int64

// device creates a device with a fresh index.
func (b *bench) device(u *user, home int, threads ...*threadLog) *device {
	d := b.newDevice(int(devCounter.Add(1)-1), u, home, threads...)
	d.reconnect = true
	return d
}

// sendersFor is how many sending users carry rate within the per-user send limit.
func (b *bench) sendersFor(rate float64) int {
	if b.opt.users > 0 {
		return b.opt.users
	}
	return max(1, int(math.Ceil(rate/b.opt.perSender)))
}

// connect opens every device and fails when some never got `synced`.
func (b *bench) connect(ctx context.Context, devs []*device) (time.Duration, error) {
	if !b.opt.quiet {
		fmt.Fprintf(b.stderr, "connecting %d sockets...\n", len(devs))
	}
	took, failed := b.connectAll(ctx, devs, b.opt.connectTimeout)
	if failed > 0 {
		return took, fmt.Errorf("%d of %d sockets did not connect and sync within %s (dial errors %v)", failed, len(devs), b.opt.connectTimeout, b.dialErrors())
	}
	return took, nil
}

// phase runs one measured open-loop phase: scrape, load, drain, scrape, verify.
func (b *bench) phase(ctx context.Context, label string, senders, devs []*device, rate float64, total int64) *LoadResult {
	st := newRunStats()
	b.stats.Store(st)
	before, _ := b.scrapeAll(ctx)
	procs := readProcCPU("/proc")
	sendTime, drain := b.load(ctx, label, senders, rate, total)
	procCPU := procCPUDelta(procs, readProcCPU("/proc"), st.acked.Load())
	after, errs := b.scrapeAll(ctx)
	l := &LoadResult{
		Label: label, OfferedRate: rate, Seconds: sendTime.Seconds(), Senders: len(senders), Receivers: len(devs),
		Emitted: st.emitted.Load(), Issued: st.issued.Load(), Acked: st.acked.Load(), Deliveries: st.received.Load(),
		Stalls: st.stalls.Load(), DrainSeconds: drain.Seconds(),
		Latency: st.lat.Summary(), AckLatency: st.ackLat.Summary(), Lag: st.lag.Summary(), MachineCPU: procCPU,
	}
	l.Latency.CDF = st.lat.CDF()
	window := sendTime.Seconds()
	if l.Acked > 0 && window > 0 {
		l.AckedRate = float64(l.Acked) / window
	}
	if span := float64(st.lastRecvNS.Load()-st.startNS.Load()) / 1e9; l.Deliveries > 0 && span > 0 {
		l.DeliveryRate = float64(l.Deliveries) / max(span, window)
	}
	if st.last.Count() > 0 {
		s := st.last.Summary()
		s.CDF = st.last.CDF()
		l.LastMember = &s
	}
	l.Verify = b.verify(devs, st, senders)
	l.Errors = l.Verify.ErrorCodes
	l.Server = b.serverResult(before, after, errs, l.Acked)
	return l
}

// warmup runs the --warmup phase at rate, or nothing. Its messages are verified (a
// loss fails the run) but its latencies stay out of the measured phase: a fresh
// cluster opens its database, Redis and host-to-host connections, prepares its
// statements and grows its heaps in the first seconds, which is not the steady state
// the targets are about.
func (b *bench) warmup(ctx context.Context, label string, senders, devs []*device, rate float64) *LoadResult {
	if b.opt.warmup <= 0 {
		return nil
	}
	l := b.phase(ctx, label+" warm-up", senders, devs, rate, totalFor(rate, b.opt.warmup))
	l.Server = nil
	return l
}

func totalFor(rate float64, d time.Duration) int64 {
	return max(1, int64(math.Round(rate*d.Seconds())))
}

// pairs creates n pairs of users, one thread each, the sender's socket on host i and
// the receiver's on host i+1, and connects them.
func (b *bench) pairs(ctx context.Context, n int) (senders, all []*device, err error) {
	if !b.opt.quiet {
		fmt.Fprintf(b.stderr, "setup: %d pairs (%d users) through the API...\n", n, 2*n)
	}
	users, err := b.makeUsers(ctx, "u", 2*n)
	if err != nil {
		return nil, nil, err
	}
	threads := make([]*threadLog, n)
	err = parallel(ctx, n, b.opt.setupConcurrency, func(ctx context.Context, i int) error {
		t, err := b.makeThread(ctx, i, "pair"+strconv.Itoa(i), users[2*i], []*user{users[2*i+1]})
		if t != nil {
			t.Participants = 2
		}
		threads[i] = t
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	h := len(b.targets)
	for i := 0; i < n; i++ {
		s := b.device(users[2*i], i%h, threads[i])
		r := b.device(users[2*i+1], (i+1)%h, threads[i])
		s.startSender(ctx, threads[i])
		senders = append(senders, s)
		all = append(all, s, r)
	}
	_, err = b.connect(ctx, all)
	return senders, all, err
}

// ---- oneone ------------------------------------------------------------------------

func runOneOne(ctx context.Context, b *bench, res *Result) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	o := b.opt
	n := b.sendersFor(o.rate)
	res.Params["rate"], res.Params["duration"], res.Params["pairs"], res.Params["size"] = o.rate, o.duration.String(), n, o.size
	senders, all, err := b.pairs(ctx, n)
	if err != nil {
		return err
	}
	res.Floor = b.floor(ctx)
	res.Warmup = b.warmup(ctx, "oneone", senders, all, o.rate)
	res.Load = b.phase(ctx, "oneone", senders, all, o.rate, totalFor(o.rate, o.duration))
	res.Server = res.Load.Server
	res.Load.Server = nil
	if o.rate == 1000 {
		l := res.Load
		res.Targets6 = append(res.Targets6,
			Target{What: "oneone 1,000 msg/s p50", Want: "<= 1.5 ms", Measured: l.Latency.P50, Unit: "ms", Met: l.Latency.P50 <= 1.5},
			Target{What: "oneone 1,000 msg/s p99", Want: "<= 5 ms", Measured: l.Latency.P99, Unit: "ms", Met: l.Latency.P99 <= 5},
			Target{What: "oneone 1,000 msg/s loss", Want: "0", Measured: float64(l.Verify.Lost), Unit: "lost", Met: l.Verify.Lost == 0})
	}
	return nil
}

// ---- ramp --------------------------------------------------------------------------

func runRamp(ctx context.Context, b *bench, res *Result) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	o := b.opt
	top := 0.0
	for _, r := range o.rates {
		top = max(top, r)
	}
	n := b.sendersFor(top)
	res.Params["rates"], res.Params["step"], res.Params["pairs"], res.Params["max_p99"] = o.rates, o.step.String(), n, o.maxP99.String()
	senders, all, err := b.pairs(ctx, n)
	if err != nil {
		return err
	}
	res.Floor = b.floor(ctx)
	if len(o.rates) > 0 {
		res.Warmup = b.warmup(ctx, "ramp", senders, all, o.rates[0])
	}
	for _, rate := range o.rates {
		if ctx.Err() != nil {
			break
		}
		l := b.phase(ctx, fmt.Sprintf("ramp %g/s", rate), senders, all, rate, totalFor(rate, o.step))
		held := l.Verify.Lost == 0 && l.Verify.Unanswered == 0 && l.Verify.SendErrors == 0 &&
			l.Verify.Reordered == 0 && l.Latency.Count > 0 && l.Latency.P99 <= float64(o.maxP99)/1e6 &&
			l.AckedRate >= 0.95*rate
		l.Held = &held
		res.Steps = append(res.Steps, l)
		if !held {
			break
		}
		v := rate
		res.HeldRate = &v
	}
	if len(res.Steps) > 0 {
		// Where the time goes at the highest step run.
		res.Server = res.Steps[len(res.Steps)-1].Server
	}
	held := 0.0
	if res.HeldRate != nil {
		held = *res.HeldRate
	}
	res.Targets6 = append(res.Targets6, Target{What: "ramp: highest rate held", Want: ">= 5,000 msg/s", Measured: held, Unit: "msg/s", Met: held >= 5000})
	return nil
}

// ---- fanout ------------------------------------------------------------------------

func runFanout(ctx context.Context, b *bench, res *Result) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	o := b.opt
	if o.members < 2 {
		return errors.New("--members must be at least 2")
	}
	ns := o.senders
	if ns <= 0 {
		ns = b.sendersFor(o.rate)
	}
	ns = min(ns, o.members)
	res.Params["members"], res.Params["senders"], res.Params["rate"], res.Params["duration"] = o.members, ns, o.rate, o.duration.String()
	if !o.quiet {
		fmt.Fprintf(b.stderr, "setup: %d members, %d of them sending...\n", o.members, ns)
	}
	users, err := b.makeUsers(ctx, "f", o.members)
	if err != nil {
		return err
	}
	t, err := b.makeThread(ctx, 0, "fanout", users[0], users[1:])
	if err != nil {
		return err
	}
	t.Participants = o.members
	t.trackLast(int(float64(totalFor(o.rate, o.duration+max(0, o.warmup)))*1.05) + 1000)
	var senders, all []*device
	h := len(b.targets)
	for i, u := range users {
		home := 0 // senders on the first host
		if i >= ns {
			home = (i - ns) % h // the rest spread over every host
		}
		d := b.device(u, home, t)
		if i < ns {
			d.startSender(ctx, t)
			senders = append(senders, d)
		}
		all = append(all, d)
	}
	if _, err := b.connect(ctx, all); err != nil {
		return err
	}
	res.Floor = b.floor(ctx)
	res.Warmup = b.warmup(ctx, "fanout", senders, all, o.rate)
	res.Load = b.phase(ctx, "fanout", senders, all, o.rate, totalFor(o.rate, o.duration))
	res.Server = res.Load.Server
	res.Load.Server = nil
	if o.members == 100 {
		l := res.Load
		p99 := math.NaN()
		if l.LastMember != nil {
			p99 = l.LastMember.P99
		}
		res.Targets6 = append(res.Targets6,
			Target{What: "fanout 100: deliveries/s", Want: ">= 100,000", Measured: l.DeliveryRate, Unit: "/s", Met: l.DeliveryRate >= 100000},
			Target{What: "fanout 100: p99 to the last member", Want: "<= 50 ms", Measured: p99, Unit: "ms", Met: p99 <= 50})
	}
	return nil
}
