package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Result is everything a run measured; --json writes it as is.
type Result struct {
	Scenario string         `json:"scenario"`
	Started  time.Time      `json:"started"`
	Seconds  float64        `json:"seconds"`
	Machine  Machine        `json:"machine"`
	Targets  []string       `json:"targets"`
	Params   map[string]any `json:"params"`
	Pass     bool           `json:"pass"`
	Failures []string       `json:"failures,omitempty"`
	Targets6 []Target       `json:"targets_issue6,omitempty"`
	Load     *LoadResult    `json:"load,omitempty"`
	// Warmup is the load run before the measured phase (--warmup): verified, not measured.
	Warmup   *LoadResult    `json:"warmup,omitempty"`
	Steps    []*LoadResult  `json:"steps,omitempty"`
	HeldRate *float64       `json:"highest_rate_held,omitempty"`
	Idle     *IdleResult    `json:"idle,omitempty"`
	Catchup  *CatchupResult `json:"catchup,omitempty"`
	Storm    *StormResult   `json:"storm,omitempty"`
	Server   *ServerResult  `json:"server,omitempty"`
	Floor    *FloorResult   `json:"floor,omitempty"`
	// System is the whole machine during the run: the generator shares it with the
	// hosts and the stores, and anything else running skews every number.
	System struct {
		BusyCPUSeconds float64 `json:"busy_cpu_seconds"`
		Utilization    float64 `json:"utilization"` // busy / (seconds * CPUs)
		Load1Start     float64 `json:"load1_start"`
		Load1End       float64 `json:"load1_end"`
		// CPUPressure is the share of the run during which some runnable task waited
		// for a CPU (Linux PSI, /proc/pressure/cpu "some"): contention that busy CPU
		// time alone does not show. Absent where the kernel has no PSI.
		CPUPressure *float64 `json:"cpu_pressure,omitempty"`
	} `json:"system"`
	Generator struct {
		CPUSeconds  float64          `json:"cpu_seconds"`
		DialErrors  map[string]int64 `json:"dial_errors,omitempty"`
		Disconnects int64            `json:"disconnects"`
		Resent      int64            `json:"sends_written_again"`
	} `json:"generator"`

	b     *bench
	start time.Time
	busy0 float64
	psi0  float64 // CPU pressure "some" total at the start, µs; < 0 without PSI
}

// Target is one line of issue 6's table: what must be reached and what was.
type Target struct {
	What     string  `json:"what"`
	Want     string  `json:"want"`
	Measured float64 `json:"measured"`
	Unit     string  `json:"unit"`
	Met      bool    `json:"met"`
}

// Machine describes where the run happened; every result carries it.
type Machine struct {
	Hostname string `json:"hostname"`
	CPUs     int    `json:"cpus"`
	Model    string `json:"cpu_model"`
	OS       string `json:"os"`
	Arch     string `json:"arch"`
	Kernel   string `json:"kernel,omitempty"`
	MemoryMB int64  `json:"memory_mb,omitempty"`
	Go       string `json:"go"`
	// RefEncodeUS is how long one core took to JSON-encode a reference message frame
	// at the start of the run (refEncodeMicros). Boots of the same VM type differ
	// (BenchmarkEncodeMessage took 1.1-1.7 µs on one, 1.9-2.7 on the next), so results
	// compare only at a similar speed.
	RefEncodeUS float64 `json:"ref_encode_us,omitempty"`
	// RoundTripUS is what handing work to another process cost at the start of the run
	// (roundTripMicros). A one-to-one message is eleven such hand-offs, and a boot that
	// encoded as fast as the best (1.03 µs) still ran one-to-one at 1,000 msg/s with a
	// p50 of 8 ms against 1.3: the reference encode does not see this.
	RoundTripUS float64 `json:"process_round_trip_us,omitempty"`
	// HaltPollNS is how long an idle vCPU of a KVM guest polls for work before it
	// halts (Linux's haltpoll cpuidle driver), when the kernel has that driver. At 0
	// every wakeup of an idle vCPU goes through the hypervisor: a pipe round trip
	// between two processes took 59-82 µs there, against 12-17 µs at the kernel's
	// default of 200,000 on the same boot.
	HaltPollNS *int64 `json:"guest_halt_poll_ns,omitempty"`
	// CPUIdleDriver is the kernel's cpuidle driver. The halt-polling window above is a
	// parameter of the haltpoll driver and does nothing under any other: one boot read
	// 200,000 ns with the driver "none" (idle vCPUs halt at once) and woke processes as
	// slowly as the boots that read 0.
	CPUIdleDriver string `json:"cpuidle_driver,omitempty"`
}

// LoadResult is one open-loop phase (a whole oneone/fanout run, or a ramp step).
type LoadResult struct {
	Label        string           `json:"label"`
	OfferedRate  float64          `json:"offered_rate"`
	Seconds      float64          `json:"seconds"`
	Senders      int              `json:"senders"`
	Receivers    int              `json:"receivers"`
	Emitted      int64            `json:"emitted"`
	Issued       int64            `json:"issued"`
	Acked        int64            `json:"acked"`
	AckedRate    float64          `json:"acked_per_second"`
	Deliveries   int64            `json:"deliveries"`
	DeliveryRate float64          `json:"deliveries_per_second"`
	Stalls       int64            `json:"generator_stalls"`
	DrainSeconds float64          `json:"drain_seconds"`
	Latency      Summary          `json:"latency"`
	AckLatency   Summary          `json:"ack_latency"`
	Lag          Summary          `json:"generator_lag"`
	LastMember   *Summary         `json:"latency_last_member,omitempty"`
	Verify       VerifyResult     `json:"verify"`
	Server       *ServerResult    `json:"server,omitempty"`
	MachineCPU   *ProcCPU         `json:"machine_cpu,omitempty"`
	Errors       map[string]int64 `json:"error_frames,omitempty"`
	Held         *bool            `json:"held,omitempty"`
}

// hostCPU is the hosts' CPU per acked message, from their /metrics; false when the
// run did not scrape them.
func (l *LoadResult) hostCPU() (float64, bool) {
	if l.Server == nil {
		return 0, false
	}
	return l.Server.CPUPerMsgUS, l.Server.CPUPerMsgUS > 0
}

// allCPU is every process's CPU per acked message, from /proc; false where there is
// no /proc.
func (l *LoadResult) allCPU() (float64, bool) {
	if l.MachineCPU == nil {
		return 0, false
	}
	return l.MachineCPU.TotalUS, l.MachineCPU.TotalUS > 0
}

// cpuText is a CPU figure for a table: whole µs, or "-" when absent.
func cpuText(us float64, ok bool) string {
	if !ok {
		return "-"
	}
	return fmt.Sprintf("%.0f", us)
}

func newResult(b *bench) *Result {
	m := machine()
	m.RefEncodeUS = refEncodeMicros()
	m.RoundTripUS = roundTripMicros()
	r := &Result{Scenario: b.opt.scenario, Started: time.Now().UTC(), Machine: m, Targets: b.targets,
		Params: map[string]any{}, b: b, start: time.Now(), busy0: busyCPUSeconds(), psi0: cpuPressureMicros()}
	r.System.Load1Start = load1()
	return r
}

func (r *Result) finish() {
	r.Seconds = time.Since(r.start).Seconds()
	r.System.BusyCPUSeconds = busyCPUSeconds() - r.busy0
	if r.Seconds > 0 && r.Machine.CPUs > 0 {
		r.System.Utilization = r.System.BusyCPUSeconds / (r.Seconds * float64(r.Machine.CPUs))
	}
	r.System.Load1End = load1()
	if psi1 := cpuPressureMicros(); r.psi0 >= 0 && psi1 >= r.psi0 && r.Seconds > 0 {
		p := min(1, (psi1-r.psi0)/(r.Seconds*1e6))
		r.System.CPUPressure = &p
	}
	for i := range r.Targets6 {
		if math.IsNaN(r.Targets6[i].Measured) || math.IsInf(r.Targets6[i].Measured, 0) {
			r.Targets6[i].Measured, r.Targets6[i].Met = 0, false
		}
	}
	r.Generator.DialErrors = r.b.dialErrors()
	r.Generator.Disconnects = r.b.disconnects.Load()
	r.Generator.Resent = r.b.resent.Load()
	check := func(v *VerifyResult) {
		if v != nil && !v.Pass {
			r.Failures = append(r.Failures, "verification: "+strings.Join(v.Problems, ", "))
		}
	}
	if r.Warmup != nil {
		check(&r.Warmup.Verify)
	}
	if r.Load != nil {
		check(&r.Load.Verify)
	}
	for _, s := range r.Steps {
		// A ramp stops at the first step that is not held; a loss there is the
		// finding, not a failure of the run, unless it is reordering or conflict.
		if s.Verify.Reordered > 0 || s.Verify.Conflicts > 0 {
			r.Failures = append(r.Failures, fmt.Sprintf("verification at %g msg/s: %s", s.OfferedRate, strings.Join(s.Verify.Problems, ", ")))
		}
	}
	if r.Catchup != nil {
		check(&r.Catchup.Verify)
	}
	if r.Storm != nil {
		check(&r.Storm.Verify)
	}
	r.Pass = len(r.Failures) == 0
}

func (r *Result) writeJSON(path string) error {
	if dir := filepath.Dir(path); dir != "." {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return err
		}
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o600)
}

// ---- machine ---------------------------------------------------------------------

func machine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), OS: runtime.GOOS, Arch: runtime.GOARCH, Go: runtime.Version()}
	m.Hostname, _ = os.Hostname()
	m.Model = procField("/proc/cpuinfo", "model name")
	if k, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(k))
	}
	if v := procField("/proc/meminfo", "MemTotal"); v != "" {
		var kb int64
		if _, err := fmt.Sscanf(v, "%d", &kb); err == nil {
			m.MemoryMB = kb / 1024
		}
	}
	m.HaltPollNS = haltPollNS(haltPollFile)
	if data, err := os.ReadFile(cpuIdleDriverFile); err == nil {
		m.CPUIdleDriver = strings.TrimSpace(string(data))
	}
	return m
}

// cpuIdleDriverFile names the cpuidle driver in use ("none" when there is none).
const cpuIdleDriverFile = "/sys/devices/system/cpu/cpuidle/current_driver"

// haltPollFile holds the guest's halt-polling window when the haltpoll driver is in.
const haltPollFile = "/sys/module/haltpoll/parameters/guest_halt_poll_ns"

// haltPollNS reads the halt-polling window, or nil where there is none to read.
func haltPollNS(path string) *int64 {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	v, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
	if err != nil {
		return nil
	}
	return &v
}

// busyCPUSeconds is the machine's non-idle CPU time so far, from /proc/stat (USER_HZ
// is 100 on Linux).
func busyCPUSeconds() float64 {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0
	}
	var busy float64
	for i, v := range f[1:] {
		if i == 3 || i == 4 || i >= 8 { // idle, iowait; guest time is already in user
			continue
		}
		var n float64
		if _, err := fmt.Sscanf(v, "%g", &n); err == nil {
			busy += n
		}
	}
	return busy / 100
}

// cpuPressureMicros is the kernel's running total of time, in µs, during which some
// runnable task waited for a CPU; -1 when there is no /proc/pressure/cpu.
func cpuPressureMicros() float64 {
	data, err := os.ReadFile("/proc/pressure/cpu")
	if err != nil {
		return -1
	}
	return parsePressureTotal(string(data))
}

// parsePressureTotal reads total= of the "some" line of a PSI file; -1 if absent.
func parsePressureTotal(text string) float64 {
	for line := range strings.Lines(text) {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "some" {
			continue
		}
		for _, kv := range f[1:] {
			if v, ok := strings.CutPrefix(kv, "total="); ok {
				var n float64
				if _, err := fmt.Sscanf(v, "%g", &n); err == nil {
					return n
				}
			}
		}
	}
	return -1
}

// refFrame is shaped like a `message` frame of the contract; only its encoding cost
// matters.
type refFrame struct {
	Type    string          `json:"type"`
	Message contractMessage `json:"message"`
}

// refEncodeMicros measures the machine's speed right now: µs per json.Marshal of a
// refFrame, the median of nine rounds of 1,000 after one to warm up (about 25 ms), so neither a
// moment of contention nor one lucky round sets it.
func refEncodeMicros() float64 {
	f := refFrame{Type: "message", Message: contractMessage{
		ID: "01890000-0000-7000-8000-000000000001", ThreadID: "01890000-0000-7000-8000-0000000000a1", Seq: 123456,
		SenderID: "01890000-0000-7000-8000-00000000000a", ClientMsgID: "6f1c3a9e-2b7d-4c1e-9f0a-1b2c3d4e5f60",
		Body: strings.Repeat("a typical chat message ", 4), CreatedAt: time.Date(2026, 11, 27, 5, 0, 0, 123456789, time.UTC),
	}}
	const n = 1000
	rounds := make([]float64, 10)
	for i := range rounds {
		start := time.Now()
		for range n {
			if _, err := json.Marshal(&f); err != nil {
				return 0
			}
		}
		rounds[i] = float64(time.Since(start).Nanoseconds()) / n / 1e3
	}
	rounds = rounds[1:] // the first warms the encoder's caches and the heap up
	sort.Float64s(rounds)
	return rounds[len(rounds)/2]
}

// roundTripMicros measures the price of a wakeup right now: µs per round trip of one
// byte through `cat` over two pipes (this process writes, cat wakes, reads and writes
// it back, this process wakes and reads), the median of nine rounds of 500 after one
// to warm up, about 0.1 s. 0 when cat cannot be run.
func roundTripMicros() float64 {
	// The deadline kills a cat that hangs, which ends the reads below.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "cat")
	in, err := cmd.StdinPipe()
	if err != nil {
		return 0
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0
	}
	if err := cmd.Start(); err != nil {
		return 0
	}
	defer func() {
		_ = in.Close() // cat ends at end of input
		_ = cmd.Wait()
	}()
	b := []byte{'x'}
	const n = 500
	rounds := make([]float64, 10)
	for i := range rounds {
		start := time.Now()
		for range n {
			if _, err := in.Write(b); err != nil {
				return 0
			}
			if _, err := io.ReadFull(out, b); err != nil {
				return 0
			}
		}
		rounds[i] = float64(time.Since(start).Nanoseconds()) / n / 1e3
	}
	rounds = rounds[1:]
	sort.Float64s(rounds)
	return rounds[len(rounds)/2]
}

func load1() float64 {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	var l float64
	_, _ = fmt.Sscanf(string(data), "%g", &l)
	return l
}

// procField returns the value of the first "key : value" line of a /proc file.
func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// String is the machine line every result starts with.
func (m Machine) String() string {
	s := fmt.Sprintf("%d CPU %s, %s/%s, %s", m.CPUs, m.Model, m.OS, m.Arch, m.Go)
	if m.MemoryMB > 0 {
		s += fmt.Sprintf(", %d MB RAM", m.MemoryMB)
	}
	if m.Kernel != "" {
		s += ", Linux " + m.Kernel
	}
	s += ", host " + m.Hostname
	if m.RefEncodeUS > 0 {
		s += fmt.Sprintf("; reference encode %.2f µs", m.RefEncodeUS)
	}
	if m.RoundTripUS > 0 {
		s += fmt.Sprintf("; process round trip %.1f µs", m.RoundTripUS)
	}
	if m.HaltPollNS != nil {
		s += fmt.Sprintf("; guest halt polling %d ns", *m.HaltPollNS)
	}
	if m.CPUIdleDriver != "" {
		s += "; cpuidle driver " + m.CPUIdleDriver
	}
	return s
}

// ---- printing --------------------------------------------------------------------

func (r *Result) print(w io.Writer) {
	verdict := "PASS"
	if !r.Pass {
		verdict = "FAIL"
	}
	fmt.Fprintf(w, "\nchatbench %s: %s  (%.1fs, %s)\n", r.Scenario, verdict, r.Seconds, r.Started.Format(time.RFC3339))
	fmt.Fprintf(w, "machine: %s\n", r.Machine)
	fmt.Fprintf(w, "targets: %s\n", strings.Join(r.Targets, ", "))
	if len(r.Params) > 0 {
		keys := make([]string, 0, len(r.Params))
		for k := range r.Params {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var parts []string
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s=%v", k, r.Params[k]))
		}
		fmt.Fprintf(w, "params:  %s\n", strings.Join(parts, " "))
	}
	if l := r.Warmup; l != nil {
		fmt.Fprintf(w, "warm-up: %g msg/s for %.1fs, not in the numbers below: p50 %.2f  p99 %.2f  max %.1f ms; delivered %d, lost %d\n",
			l.OfferedRate, l.Seconds, l.Latency.P50, l.Latency.P99, l.Latency.Max, l.Deliveries, l.Verify.Lost)
	}
	if r.Load != nil {
		printLoad(w, r.Load)
	}
	if len(r.Steps) > 0 {
		printSteps(w, r.Steps)
		if r.HeldRate != nil {
			fmt.Fprintf(w, "highest rate held: %g msg/s\n", *r.HeldRate)
		} else {
			fmt.Fprintf(w, "highest rate held: none\n")
		}
	}
	if r.Idle != nil {
		r.Idle.print(w)
	}
	if r.Catchup != nil {
		r.Catchup.print(w)
	}
	if r.Storm != nil {
		r.Storm.print(w)
	}
	if r.Server != nil {
		r.Server.print(w)
	}
	if r.Floor != nil {
		r.Floor.print(w)
	}
	hostCPU := 0.0
	if r.Server != nil {
		hostCPU = r.Server.CPUSeconds
	}
	fmt.Fprintf(w, "machine busy: %.0f%% of %d CPUs over %.1fs (%.1f CPU-s: hosts %.1f during the load, generator %.1f, the rest is the stores and anything else); load average %.1f -> %.1f",
		100*r.System.Utilization, r.Machine.CPUs, r.Seconds, r.System.BusyCPUSeconds, hostCPU, r.Generator.CPUSeconds, r.System.Load1Start, r.System.Load1End)
	if p := r.System.CPUPressure; p != nil {
		fmt.Fprintf(w, "; something waited for a CPU %.0f%% of the time", 100**p)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "generator: %.1f CPU-s", r.Generator.CPUSeconds)
	if r.Generator.Disconnects > 0 {
		fmt.Fprintf(w, ", %d disconnects", r.Generator.Disconnects)
	}
	if r.Generator.Resent > 0 {
		fmt.Fprintf(w, ", %d sends written again after a reconnect", r.Generator.Resent)
	}
	if len(r.Generator.DialErrors) > 0 {
		fmt.Fprintf(w, ", dial errors %v", r.Generator.DialErrors)
	}
	fmt.Fprintln(w)
	if len(r.Targets6) > 0 {
		fmt.Fprintln(w, "issue 6 targets:")
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		for _, t := range r.Targets6 {
			met := "met"
			if !t.Met {
				met = "MISSED"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s %s\t%s\n", t.What, t.Want, fmtNum(t.Measured), t.Unit, met)
		}
		_ = tw.Flush()
	}
	for _, f := range r.Failures {
		fmt.Fprintf(w, "FAIL: %s\n", f)
	}
}

func fmtNum(v float64) string {
	switch {
	case math.IsNaN(v):
		return "-"
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func fmtSummary(s Summary) string {
	if s.Count == 0 {
		return "no samples"
	}
	return fmt.Sprintf("p50 %s  p90 %s  p99 %s  p99.9 %s  max %s ms  (n=%d)",
		fmtNum(s.P50), fmtNum(s.P90), fmtNum(s.P99), fmtNum(s.P999), fmtNum(s.Max), s.Count)
}

func printLoad(w io.Writer, l *LoadResult) {
	fmt.Fprintf(w, "load:    offered %g msg/s for %.1fs over %d senders, %d receiving sockets\n", l.OfferedRate, l.Seconds, l.Senders, l.Receivers)
	fmt.Fprintf(w, "         issued %d, sent-acked %d (%.0f/s), delivered %d (%.0f/s), drain %.2fs, generator stalls %d\n",
		l.Issued, l.Acked, l.AckedRate, l.Deliveries, l.DeliveryRate, l.DrainSeconds, l.Stalls)
	fmt.Fprintf(w, "latency write -> receiver read:  %s\n", fmtSummary(l.Latency))
	if l.LastMember != nil {
		fmt.Fprintf(w, "latency to the last member:      %s\n", fmtSummary(*l.LastMember))
	}
	fmt.Fprintf(w, "latency write -> sent:           %s\n", fmtSummary(l.AckLatency))
	fmt.Fprintf(w, "generator lag due -> write:      %s\n", fmtSummary(l.Lag))
	if l.MachineCPU != nil {
		fmt.Fprintf(w, "CPU of every process here:       %s\n", l.MachineCPU)
	}
	printVerify(w, &l.Verify)
}

func printVerify(w io.Writer, v *VerifyResult) {
	verdict := "PASS"
	if !v.Pass {
		verdict = "FAIL (" + strings.Join(v.Problems, ", ") + ")"
	}
	fmt.Fprintf(w, "verify:  %d devices, received %d of %d expected, lost %d, reordered %d, wire duplicates %d, id conflicts %d, send errors %d, unanswered %d: %s\n",
		v.Devices, v.Received, v.Expected, v.Lost, v.Reordered, v.Duplicates, v.Conflicts, v.SendErrors, v.Unanswered, verdict)
	if len(v.ErrorCodes) > 0 {
		fmt.Fprintf(w, "         error frames by code: %v\n", v.ErrorCodes)
	}
	if v.Echoes > 0 {
		fmt.Fprintf(w, "         own messages sent back to their sender as `message` (gap fill or catch-up from the store): %d\n", v.Echoes)
	}
	if v.Extra > 0 || v.BadFrames > 0 {
		fmt.Fprintf(w, "         received but never acked to the sender: %d; undecodable frames: %d\n", v.Extra, v.BadFrames)
	}
}

func printSteps(w io.Writer, steps []*LoadResult) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "rate/s\tacked/s\tp50 ms\tp90 ms\tp99 ms\tp99.9 ms\tmax ms\tlost\treord\terrors\tstalls\tlag p99 ms\tCPU µs/msg\theld\t")
	for _, s := range steps {
		held := "no"
		if s.Held != nil && *s.Held {
			held = "yes"
		}
		cpu := cpuText(s.allCPU())
		fmt.Fprintf(tw, "%g\t%.0f\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t\n", s.OfferedRate, s.AckedRate,
			fmtNum(s.Latency.P50), fmtNum(s.Latency.P90), fmtNum(s.Latency.P99), fmtNum(s.Latency.P999), fmtNum(s.Latency.Max),
			s.Verify.Lost, s.Verify.Reordered, s.Verify.SendErrors+s.Verify.WriteErrs, s.Stalls, fmtNum(s.Lag.P99), cpu, held)
	}
	_ = tw.Flush()
}
