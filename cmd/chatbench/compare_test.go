package main

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSignTest(t *testing.T) {
	for _, c := range []struct {
		k, j int
		want float64
	}{
		{5, 0, 0.0625}, // 2 * 1/32
		{0, 6, 0.03125},
		{6, 1, 0.125}, // 2 * 8/128
		{3, 3, 1},
		{0, 0, 1},
	} {
		if got := signTest(c.k, c.j); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("signTest(%d, %d) = %g, want %g", c.k, c.j, got, c.want)
		}
	}
}

func TestMedian(t *testing.T) {
	if got := median([]float64{3, 1, 2}); got != 2 {
		t.Errorf("median of 3 = %g, want 2", got)
	}
	if got := median([]float64{4, 1, 3, 2}); got != 2.5 {
		t.Errorf("median of 4 = %g, want 2.5", got)
	}
	if !math.IsNaN(median(nil)) {
		t.Error("median of none is not NaN")
	}
}

// writeRun writes a oneone --json result with the given p50/p99 and CPU figures.
func writeRun(t *testing.T, dir, name string, p50, p99, hostCPU, pgCPU float64, pass bool) string {
	t.Helper()
	r := Result{Scenario: "oneone", Pass: pass, Load: &LoadResult{
		Label:      "oneone",
		Latency:    Summary{Count: 1000, P50: p50, P99: p99, P999: p99 * 2},
		Server:     &ServerResult{CPUPerMsgUS: hostCPU},
		MachineCPU: &ProcCPU{PerMessageUS: map[string]float64{"chatd": hostCPU, "postgres": pgCPU}, TotalUS: hostCPU + pgCPU},
	}}
	if !pass {
		r.Failures = []string{"lost 3 messages"}
	}
	data, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCompareCountsPairsAndMedians(t *testing.T) {
	dir := t.TempDir()
	var a, b []string
	for i := range 5 {
		f := float64(i)
		// B is faster in every pair, but its p99 wins only three of five.
		a = append(a, writeRun(t, dir, "a"+string(rune('0'+i))+".json", 2+f, 10, 700+f, 400, true))
		p99 := 9.0
		if i >= 3 {
			p99 = 11
		}
		b = append(b, writeRun(t, dir, "b"+string(rune('0'+i))+".json", 1+f, p99, 600+f, 300, true))
	}
	var out, errw bytes.Buffer
	err := compare([]string{"--names", "before,after", strings.Join(a, ","), strings.Join(b, ",")}, &out, &errw)
	if err != nil {
		t.Fatalf("compare: %v (%s)", err, errw.String())
	}
	text := out.String()
	for _, want := range []string{
		"| p50 ms | 0 | 5 | 0 | 0.0625 |",          // after lower in all five pairs
		"| p99 ms | 2 | 3 | 0 | 1 |",               // three of five is chance
		"| host CPU µs/msg | 0 | 5 | 0 | 0.0625 |", //
		"| median | 4.00 | 3.00 | 10.0 | 9.00 |",   // medians of p50 and p99 lead the row
		"| chatd | 702 | 602 |",                    // per-process medians
		"| postgres | 400 | 300 |",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the comparison lacks %q:\n%s", want, text)
		}
	}
}

func TestCompareRefusesFailedAndUnevenRuns(t *testing.T) {
	dir := t.TempDir()
	good := writeRun(t, dir, "good.json", 1, 5, 700, 400, true)
	failed := writeRun(t, dir, "failed.json", 1, 5, 700, 400, false)
	var out, errw bytes.Buffer
	if err := compare([]string{good, failed}, &out, &errw); err == nil || !strings.Contains(err.Error(), "lost 3 messages") {
		t.Errorf("a failed run was compared: err = %v", err)
	}
	if err := compare([]string{good + "," + good, good}, &out, &errw); err == nil || !strings.Contains(err.Error(), "as many") {
		t.Errorf("two runs against one were compared: err = %v", err)
	}
	if err := compare([]string{"--names", "onlyone", good, good}, &out, &errw); err == nil {
		t.Error("--names with one name was accepted")
	}
}
