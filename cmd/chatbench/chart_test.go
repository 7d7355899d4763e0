package main

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// synthLatency is a histogram of n latencies around medianMS with a long tail, the
// shape a loaded cluster gives (log-normal).
func synthLatency(rng *rand.Rand, n int, medianMS, sigma float64) Summary {
	h := NewHistogram()
	for range n {
		h.Record(int64(medianMS * 1e6 * math.Exp(sigma*rng.NormFloat64())))
	}
	s := h.Summary()
	s.CDF = h.CDF()
	return s
}

// synthMatrix is a summarize matrix of a oneone, a ramp (held up to 3,000 msg/s, then
// a knee at 5,000), a fanout and an idle run, as the JSON chatbench writes.
func synthMatrix(t *testing.T) []byte {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	m := machine()
	m.Model, m.CPUs = "Test CPU @ 2.0GHz", 2
	started := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	res := func(scenario string) *Result {
		return &Result{Scenario: scenario, Started: started, Machine: m, Params: map[string]any{}, Pass: true}
	}
	oneone := res("oneone")
	oneone.Load = &LoadResult{Label: "oneone", OfferedRate: 1000, Latency: synthLatency(rng, 10000, 2.5, 0.7)}

	ramp := res("ramp")
	ramp.Params["max_p99"] = "50ms"
	for i, rate := range []float64{500, 1000, 2000, 3000, 5000} {
		med := 1.5 * math.Pow(1.9, float64(i))
		l := &LoadResult{Label: "ramp", OfferedRate: rate, Latency: synthLatency(rng, int(rate*5), med, 0.6)}
		held := l.Latency.P99 <= 50
		l.Held = &held
		ramp.Steps = append(ramp.Steps, l)
		if !held {
			break
		}
		v := rate
		ramp.HeldRate = &v
	}

	fanout := res("fanout")
	fanout.Params["members"] = 100
	last := synthLatency(rng, 5000, 30, 0.5)
	fanout.Load = &LoadResult{Label: "fanout", OfferedRate: 500, Receivers: 100,
		Latency: synthLatency(rng, 50000, 12, 0.8), LastMember: &last}

	idle := res("idle")
	idle.Idle = &IdleResult{Conns: 100, Connected: 100}

	return matrixOf(t, oneone, ramp, fanout, idle)
}

func matrixOf(t *testing.T, rs ...*Result) []byte {
	t.Helper()
	mx := Matrix{Generated: time.Now().UTC(), Machine: rs[0].Machine}
	for _, r := range rs {
		raw, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		mx.Results = append(mx.Results, raw)
	}
	data, err := json.MarshalIndent(mx, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func writeTemp(t *testing.T, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// svgText checks that path is well-formed XML with an <svg> root and returns its text.
func svgText(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(bytes.NewReader(data))
	var root string
	var texts strings.Builder
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s is not well-formed XML: %v", path, err)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			if root == "" {
				root = tok.Name.Local
			}
		case xml.CharData:
			texts.Write(tok)
			texts.WriteByte('\n')
		}
	}
	if root != "svg" {
		t.Fatalf("%s: root element %q, want svg", path, root)
	}
	return texts.String()
}

func TestChartDrawsBothSVGs(t *testing.T) {
	t.Parallel()
	in := writeTemp(t, "matrix.json", synthMatrix(t))
	out := filepath.Join(t.TempDir(), "charts")
	var stdout, stderr bytes.Buffer
	if code := run(t.Context(), []string{"chart", "--out", out, in}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s%s", code, stdout.String(), stderr.String())
	}
	want := map[string][]string{
		chartRateFile: {"offered rate (messages/s", "latency, sender write → receiver read (ms", "p99 latency of the step",
			"the ramp's limit: p99 ≤ 50 ms", "highest rate held: 3,000 messages/s", "step not held", "Test CPU @ 2.0GHz"},
		chartCDFFile: {"percentile (log scale", "latency, sender write → receiver read (ms", "oneone at 1,000 messages/s",
			"fanout, 100 members, 500 messages/s: to the last member", "ramp step at 3,000 messages/s (highest held)",
			"99.9%", "Test CPU @ 2.0GHz"},
	}
	for file, labels := range want {
		txt := svgText(t, filepath.Join(out, file))
		for _, l := range labels {
			if !strings.Contains(txt, l) {
				t.Errorf("%s: no text %q", file, l)
			}
		}
	}
	if !strings.Contains(stdout.String(), "wrote "+filepath.Join(out, chartCDFFile)) {
		t.Errorf("stdout does not name the files written: %q", stdout.String())
	}
}

func TestChartSingleResultWithoutRamp(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	r := &Result{Scenario: "oneone", Machine: machine(), Load: &LoadResult{OfferedRate: 1000, Latency: synthLatency(rng, 1000, 1, 0.5)}}
	data, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	in := writeTemp(t, "oneone.json", data)
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	if code := run(t.Context(), []string{"chart", "--out", out, in}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if _, err := os.Stat(filepath.Join(out, chartCDFFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(out, chartRateFile)); !os.IsNotExist(err) {
		t.Fatalf("latency-vs-rate drawn without a ramp (stat: %v)", err)
	}
	if !strings.Contains(stderr.String(), "skipping "+chartRateFile+": no data: no ramp result") {
		t.Fatalf("no skip message: %q", stderr.String())
	}
}

func TestChartNothingToDraw(t *testing.T) {
	t.Parallel()
	idle := &Result{Scenario: "idle", Machine: machine(), Idle: &IdleResult{Conns: 10}}
	// A oneone from before CDFs were recorded: summary numbers only.
	old := &Result{Scenario: "oneone", Machine: machine(), Load: &LoadResult{OfferedRate: 1000, Latency: Summary{Count: 10, P50: 1, P99: 2, Max: 3}}}
	in := writeTemp(t, "matrix.json", matrixOf(t, idle, old))
	out := filepath.Join(t.TempDir(), "charts")
	var stdout, stderr bytes.Buffer
	if code := run(t.Context(), []string{"chart", "--out", out, in}, &stdout, &stderr); code != 1 {
		t.Fatalf("exit %d, want 1: %s", code, stderr.String())
	}
	if msg := stderr.String(); !strings.Contains(msg, "nothing to chart in "+in) || !strings.Contains(msg, "no ramp result") ||
		!strings.Contains(msg, "with a latency CDF") {
		t.Fatalf("unclear error: %q", msg)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatalf("output written although nothing was drawn (stat: %v)", err)
	}
}

func TestChartRejectsOtherJSON(t *testing.T) {
	t.Parallel()
	in := writeTemp(t, "x.json", []byte(`{"hello": 1}`))
	err := chart([]string{"--out", t.TempDir(), in}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "neither a chatbench result") {
		t.Fatalf("err = %v", err)
	}
	if err := chart([]string{"--out", t.TempDir()}, io.Discard, io.Discard); err == nil {
		t.Fatal("no files: no error")
	}
}

func TestChartTicks(t *testing.T) {
	t.Parallel()
	got := map[string]bool{}
	for _, tk := range (logTicks{}).Ticks(math.Log10(0.3), math.Log10(80)) {
		if tk.Label != "" {
			got[tk.Label] = true
		}
	}
	for _, want := range []string{"0.5", "1", "2", "5", "10", "20", "50"} {
		if !got[want] {
			t.Errorf("log ticks over 0.3..80: no label %q (got %v)", want, got)
		}
	}
	if got["0.3"] || got["3"] {
		t.Errorf("log ticks label more than 1, 2, 5: %v", got)
	}
	pct := map[string]bool{}
	for _, tk := range (percentileTicks{}).Ticks(0, math.Log10(20000)) {
		if tk.Label != "" {
			pct[tk.Label] = true
		}
	}
	for _, want := range []string{"0%", "50%", "90%", "99%", "99.9%", "99.99%"} {
		if !pct[want] {
			t.Errorf("percentile ticks: no %q (got %v)", want, pct)
		}
	}
	for v, want := range map[float64]string{999: "999", 1000: "1,000", 10000: "10,000", 1234567: "1,234,567", 2.5: "2.5"} {
		if got := groupThousands(v); got != want {
			t.Errorf("groupThousands(%g) = %q, want %q", v, got, want)
		}
	}
}
