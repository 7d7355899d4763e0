package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParsePressureTotal(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want float64
	}{
		{"some avg10=36.10 avg60=29.55 avg300=30.11 total=418366877\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n", 418366877},
		// Only "some" counts: "full" (every task stalled) is 0 for CPUs on most kernels.
		{"full avg10=1.00 avg60=0.00 avg300=0.00 total=99\nsome avg10=0.00 avg60=0.00 avg300=0.00 total=7\n", 7},
		{"", -1},
		{"some avg10=0.00 avg60=0.00 avg300=0.00\n", -1},
		{"some total=x\n", -1},
	} {
		if got := parsePressureTotal(tc.in); got != tc.want {
			t.Errorf("parsePressureTotal(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// The reference encode is a speed, so it must be a plausible one: positive, finite,
// and nowhere near the 20 ms the whole measurement takes.
func TestRefEncodeMicros(t *testing.T) {
	start := time.Now()
	us := refEncodeMicros()
	took := time.Since(start)
	if !(us > 0) || math.IsInf(us, 0) || us > 1000 {
		t.Fatalf("refEncodeMicros = %v µs", us)
	}
	t.Logf("reference encode %.2f µs (measured in %v)", us, took)
	if took > 5*time.Second {
		t.Errorf("measuring took %v", took)
	}
}

// The round trip through another process is a price of wakeups: positive, and more
// than the 1 µs or so that writing and reading a byte cost without one.
func TestRoundTripMicros(t *testing.T) {
	start := time.Now()
	us := roundTripMicros()
	took := time.Since(start)
	if !(us > 1) || math.IsInf(us, 0) || us > 10_000 {
		t.Fatalf("roundTripMicros = %v µs", us)
	}
	t.Logf("process round trip %.1f µs (measured in %v)", us, took)
}

// A summary names, for each run, the machine's speed and how contended it was, and a
// run from before those were recorded shows dashes rather than zeros.
func TestMarkdownShowsTheMachineOfEachRun(t *testing.T) {
	m := machine()
	m.Model, m.CPUs, m.RefEncodeUS, m.RoundTripUS = "Test CPU", 2, 1.87, 16.2
	p := 0.36
	fast := &Result{Scenario: "oneone", Machine: m, Params: map[string]any{}, Pass: true}
	fast.System.Utilization, fast.System.CPUPressure = 0.87, &p
	old := &Result{Scenario: "idle", Machine: machine(), Params: map[string]any{}, Pass: true}
	text := markdown(Matrix{Generated: time.Now().UTC(), Machine: m}, []*Result{fast, old})
	for _, want := range []string{
		"Machine: 2 CPU Test CPU", "reference encode 1.87 µs", "process round trip 16.2 µs",
		"| oneone | 1.87 | 16.2 | 87 % | 36 % |",
		"| idle | - | - | 0 % | - |",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("summary lacks %q:\n%s", want, text)
		}
	}
}

// The machine line says whether idle vCPUs poll before they halt, where the kernel
// tells, and says nothing where it does not.
func TestHaltPollNS(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, c := range []struct {
		path string
		want string
	}{
		{write("off", "0\n"), "0"},
		{write("on", "200000\n"), "200000"},
		{write("bad", "Y\n"), "none"},
		{filepath.Join(dir, "missing"), "none"},
	} {
		got := "none"
		if v := haltPollNS(c.path); v != nil {
			got = strconv.FormatInt(*v, 10)
		}
		if got != c.want {
			t.Errorf("%s: %s, want %s", filepath.Base(c.path), got, c.want)
		}
	}
	m := Machine{CPUs: 2, Model: "Test CPU", HaltPollNS: haltPollNS(filepath.Join(dir, "off"))}
	if s := m.String(); !strings.Contains(s, "; guest halt polling 0 ns") {
		t.Errorf("machine line %q does not give the halt polling", s)
	}
	if s := (Machine{CPUs: 2}).String(); strings.Contains(s, "halt polling") || strings.Contains(s, "cpuidle") {
		t.Errorf("machine line %q gives a halt polling or cpuidle driver it never read", s)
	}
	m.CPUIdleDriver = "none"
	if s := m.String(); !strings.HasSuffix(s, "; guest halt polling 0 ns; cpuidle driver none") {
		t.Errorf("machine line %q does not say which cpuidle driver the window belongs to", s)
	}
}

// The matrix's machine line is what the first run read at the start, not the last
// run's: the round trip a run reads depends on the run before it.
func TestSummarizeTakesTheMachineOfTheFirstRun(t *testing.T) {
	t.Parallel()
	var paths []string
	for i, trip := range []float64{5.3, 80.1} {
		m := machine()
		m.Model, m.CPUs, m.RoundTripUS = "Test CPU", 2, trip
		data, err := json.Marshal(&Result{Scenario: "oneone", Machine: m, Params: map[string]any{}, Pass: true})
		if err != nil {
			t.Fatal(err)
		}
		paths = append(paths, writeTemp(t, fmt.Sprintf("run%d.json", i), data))
	}
	md := filepath.Join(t.TempDir(), "matrix.md")
	var stdout, stderr bytes.Buffer
	args := append([]string{"summarize", "--md", md}, paths...)
	if code := run(t.Context(), args, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s%s", code, stdout.String(), stderr.String())
	}
	data, err := os.ReadFile(md) // #nosec G304 -- the test's own file
	if err != nil {
		t.Fatal(err)
	}
	var line string
	for l := range strings.Lines(string(data)) {
		if strings.HasPrefix(l, "Machine:") {
			line = l
		}
	}
	if !strings.Contains(line, "process round trip 5.3 µs") {
		t.Errorf("machine line %q is not the first run's:\n%s", line, data)
	}
}
