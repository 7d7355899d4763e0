package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// The hosts' own CPU comes from their /metrics; what a message costs the stores and
// the generator does not. When they all share this machine (scripts/bench.sh), the
// CPU time of every process by name over a load phase, from /proc, shows the whole
// price of a message and who pays it. That split is what told us the bare relay
// (cmd/barerelay) is cheaper in PostgreSQL above all, not in the hosts alone.

// ProcCPU is the CPU time of every process on this machine over a load phase.
type ProcCPU struct {
	// PerMessageUS is µs of CPU per acked message, by process name; names under 2 %
	// of the total are summed as "other".
	PerMessageUS map[string]float64 `json:"us_per_message"`
	TotalUS      float64            `json:"total_us_per_message"`
	Seconds      float64            `json:"cpu_seconds"`
}

// procSample is one process's name and CPU time so far, in clock ticks.
type procSample struct {
	name  string
	ticks int64
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's times: 100 on Linux.
const clockTicks = 100

// readProcCPU reads the CPU time of every process under root (normally /proc); nil
// where there is no such tree.
func readProcCPU(root string) map[int]procSample {
	paths, err := filepath.Glob(filepath.Join(root, "[0-9]*", "stat"))
	if err != nil || len(paths) == 0 {
		return nil
	}
	out := make(map[int]procSample, len(paths))
	for _, p := range paths {
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if err != nil {
			continue
		}
		data, err := os.ReadFile(p)
		if err != nil {
			continue // exited since the glob
		}
		if name, ticks, ok := parseProcStat(string(data)); ok {
			out[pid] = procSample{name, ticks}
		}
	}
	return out
}

// parseProcStat takes the name and utime + stime of a /proc/PID/stat line. The name
// sits in parentheses and may itself hold spaces and parentheses, so the fields are
// counted from the last ')'.
func parseProcStat(line string) (name string, ticks int64, ok bool) {
	open, end := strings.IndexByte(line, '('), strings.LastIndexByte(line, ')')
	if open < 0 || end < open {
		return "", 0, false
	}
	f := strings.Fields(line[end+1:])
	if len(f) < 13 { // state ... utime (11) stime (12)
		return "", 0, false
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return "", 0, false
	}
	name = line[open+1 : end]
	if strings.HasPrefix(name, "kworker/") {
		// A kernel worker's name carries its CPU and the queue it serves at the
		// moment ("kworker/1:0-events"): one name for all of them.
		name = "kworker"
	}
	return name, u + s, true
}

// procCPUDelta is the CPU used between two readings, per message. A process that
// started in between counts from zero; one that ended in between is missed (its
// time went with it), which a kill in the storm scenario does.
func procCPUDelta(before, after map[int]procSample, messages int64) *ProcCPU {
	if before == nil || after == nil || messages <= 0 {
		return nil
	}
	byName := map[string]int64{}
	var total int64
	for pid, a := range after {
		d := a.ticks
		if b, ok := before[pid]; ok && b.name == a.name {
			d -= b.ticks
		}
		if d > 0 {
			byName[a.name] += d
			total += d
		}
	}
	if total == 0 {
		return nil
	}
	perMsg := func(ticks int64) float64 { return float64(ticks) / clockTicks * 1e6 / float64(messages) }
	p := &ProcCPU{PerMessageUS: map[string]float64{}, TotalUS: perMsg(total), Seconds: float64(total) / clockTicks}
	var other int64
	for name, t := range byName {
		if 50*t < total {
			other += t
			continue
		}
		p.PerMessageUS[name] = perMsg(t)
	}
	if other > 0 {
		p.PerMessageUS["other"] = perMsg(other)
	}
	return p
}

// String lists the processes, most expensive first: "chatd 818, postgres 490, ...
// µs per message; 1,650 in all".
func (p *ProcCPU) String() string {
	names := make([]string, 0, len(p.PerMessageUS))
	for n := range p.PerMessageUS {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		if (names[i] == "other") != (names[j] == "other") {
			return names[j] == "other" // other goes last
		}
		return p.PerMessageUS[names[i]] > p.PerMessageUS[names[j]]
	})
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("%s %.0f", n, p.PerMessageUS[n])
	}
	return fmt.Sprintf("%s µs per message; %.0f in all (%.1f CPU-s)", strings.Join(parts, ", "), p.TotalUS, p.Seconds)
}
