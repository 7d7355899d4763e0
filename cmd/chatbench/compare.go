package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
)

// Comparison of two builds: `chatbench compare --names before,after A1.json,A2.json
// B1.json,B2.json` reads the --json results of runs taken in turns against two
// clusters (scripts/bench.sh --vs does this) and says, metric by metric, how often one
// beat the other. On a small shared VM the same build's p50 moved threefold between
// two runs a minute apart, so one run each proves nothing; a change counts only when
// it wins pair after pair, which the sign test below puts a number on.

// pairMetric is one number read from a run, lower is better.
type pairMetric struct {
	name string
	get  func(*LoadResult) (float64, bool)
}

var pairMetrics = []pairMetric{
	{"p50 ms", func(l *LoadResult) (float64, bool) { return l.Latency.P50, l.Latency.Count > 0 }},
	{"p99 ms", func(l *LoadResult) (float64, bool) { return l.Latency.P99, l.Latency.Count > 0 }},
	{"p99.9 ms", func(l *LoadResult) (float64, bool) { return l.Latency.P999, l.Latency.Count > 0 }},
	{"host CPU µs/msg", (*LoadResult).hostCPU},
	{"all CPU µs/msg", (*LoadResult).allCPU},
}

func compare(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("chatbench compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	names := fs.String("names", "A,B", "what to call the two sides, comma-separated")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: chatbench compare [--names A,B] A1.json,A2.json,... B1.json,B2.json,...")
		fmt.Fprintln(stderr, "  run i of A is paired with run i of B; runs should alternate between the sides")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	label := strings.Split(*names, ",")
	if len(label) != 2 || label[0] == "" || label[1] == "" {
		return errors.New("--names takes two names, comma-separated")
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return errors.New("give two comma-separated lists of result files")
	}
	var sides [2][]*LoadResult
	for i := range sides {
		for _, path := range strings.Split(fs.Arg(i), ",") {
			l, err := readLoad(path)
			if err != nil {
				return err
			}
			sides[i] = append(sides[i], l)
		}
	}
	if len(sides[0]) != len(sides[1]) {
		return fmt.Errorf("%d runs of %s against %d of %s: pairs need as many of each", len(sides[0]), label[0], len(sides[1]), label[1])
	}
	_, err := io.WriteString(stdout, comparison(label[0], label[1], sides[0], sides[1]))
	return err
}

// readLoad reads the measured load of one --json result (oneone, fanout: the run;
// a ramp of one step: that step).
func readLoad(path string) (*LoadResult, error) {
	data, err := os.ReadFile(path) // #nosec G304 -- the operator's own files
	if err != nil {
		return nil, err
	}
	var r Result
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	l := r.Load
	if l == nil && len(r.Steps) == 1 {
		l = r.Steps[0]
	}
	if l == nil {
		return nil, fmt.Errorf("%s: a %s result holds no single load run to compare", path, r.Scenario)
	}
	if l.Server == nil {
		l.Server = r.Server
	}
	if !r.Pass {
		// A run that lost or reordered messages is no basis for a speed comparison.
		return nil, fmt.Errorf("%s: the run failed (%s)", path, strings.Join(r.Failures, "; "))
	}
	return l, nil
}

// comparison is the Markdown report: each pair, the medians, and for each metric how
// many pairs a side was lower in, with the two-sided sign test's p-value.
func comparison(nameA, nameB string, a, b []*LoadResult) string {
	var sb strings.Builder
	n := len(a)
	sb.WriteString("| pair |")
	for _, m := range pairMetrics {
		fmt.Fprintf(&sb, " %s %s | %s %s |", nameA, m.name, nameB, m.name)
	}
	sb.WriteString("\n| --- |" + strings.Repeat(" --- | --- |", len(pairMetrics)) + "\n")
	for i := range n {
		fmt.Fprintf(&sb, "| %d |", i+1)
		for _, m := range pairMetrics {
			fmt.Fprintf(&sb, " %s | %s |", metricText(m, a[i]), metricText(m, b[i]))
		}
		sb.WriteString("\n")
	}
	sb.WriteString("| median |")
	for _, m := range pairMetrics {
		fmt.Fprintf(&sb, " %s | %s |", fmtNum(median(values(m, a))), fmtNum(median(values(m, b))))
	}
	sb.WriteString("\n\n")
	fmt.Fprintf(&sb, "| metric | %s lower | %s lower | ties | sign test p |\n| --- | --- | --- | --- | --- |\n", nameA, nameB)
	for _, m := range pairMetrics {
		lowerA, lowerB, ties, ok := 0, 0, 0, false
		for i := range n {
			va, okA := m.get(a[i])
			vb, okB := m.get(b[i])
			if !okA || !okB {
				continue
			}
			ok = true
			switch {
			case va < vb:
				lowerA++
			case vb < va:
				lowerB++
			default:
				ties++
			}
		}
		if !ok {
			continue
		}
		fmt.Fprintf(&sb, "| %s | %d | %d | %d | %.3g |\n", m.name, lowerA, lowerB, ties, signTest(lowerA, lowerB))
	}
	sb.WriteString("\nPer process, median µs of CPU per message:\n\n")
	procs := processNames(a, b)
	fmt.Fprintf(&sb, "| process | %s | %s |\n| --- | --- | --- |\n", nameA, nameB)
	for _, p := range procs {
		fmt.Fprintf(&sb, "| %s | %s | %s |\n", p, fmtNum(median(procValues(p, a))), fmtNum(median(procValues(p, b))))
	}
	sb.WriteString("\nA sign test p under 0.05 says one side was lower in more pairs than chance makes likely;\n" +
		"it needs at least 6 pairs to get there at all.\n")
	return sb.String()
}

func metricText(m pairMetric, l *LoadResult) string {
	v, ok := m.get(l)
	if !ok {
		return "-"
	}
	return fmtNum(v)
}

func values(m pairMetric, ls []*LoadResult) []float64 {
	var out []float64
	for _, l := range ls {
		if v, ok := m.get(l); ok {
			out = append(out, v)
		}
	}
	return out
}

func procValues(name string, ls []*LoadResult) []float64 {
	var out []float64
	for _, l := range ls {
		if l.MachineCPU == nil {
			continue
		}
		out = append(out, l.MachineCPU.PerMessageUS[name]) // absent: under 2 %, so about 0
	}
	return out
}

// processNames are the processes named in any run, largest first by A's median.
func processNames(a, b []*LoadResult) []string {
	seen := map[string]bool{}
	var names []string
	for _, l := range append(slices.Clone(a), b...) {
		if l.MachineCPU == nil {
			continue
		}
		for name := range l.MachineCPU.PerMessageUS {
			if !seen[name] {
				seen[name] = true
				names = append(names, name)
			}
		}
	}
	slices.SortFunc(names, func(x, y string) int {
		mx, my := median(procValues(x, a)), median(procValues(y, a))
		switch {
		case mx > my:
			return -1
		case mx < my:
			return 1
		}
		return strings.Compare(x, y)
	})
	return names
}

// median of vs; NaN for none.
func median(vs []float64) float64 {
	if len(vs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// signTest is the two-sided sign test: the chance that a fair coin splits k+j tosses
// at least as unevenly as k against j. Ties are left out, as the test prescribes.
func signTest(k, j int) float64 {
	n := k + j
	if n == 0 {
		return 1
	}
	low := min(k, j)
	p := 0.0
	for i := 0; i <= low; i++ {
		p += binom(n, i)
	}
	p = 2 * p / math.Pow(2, float64(n))
	return min(p, 1)
}

// binom is n choose k, exact in float64 for the pair counts used here.
func binom(n, k int) float64 {
	r := 1.0
	for i := 1; i <= k; i++ {
		r = r * float64(n-k+i) / float64(i)
	}
	return r
}
