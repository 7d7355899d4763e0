package main

import (
	"math"
	"strings"
	"testing"
)

const page1 = `# HELP switchboard_send_stage_seconds Time of each stage.
# TYPE switchboard_send_stage_seconds histogram
switchboard_send_stage_seconds_bucket{stage="store",le="0.001"} 10
switchboard_send_stage_seconds_bucket{stage="store",le="0.002"} 30
switchboard_send_stage_seconds_bucket{stage="store",le="+Inf"} 40
switchboard_send_stage_seconds_sum{stage="store"} 0.08
switchboard_send_stage_seconds_count{stage="store"} 40
switchboard_send_stage_seconds_bucket{stage="local",le="0.001"} 5
switchboard_send_stage_seconds_bucket{stage="local",le="0.002"} 5
switchboard_send_stage_seconds_bucket{stage="local",le="+Inf"} 5
switchboard_send_stage_seconds_sum{stage="local"} 0.001
switchboard_send_stage_seconds_count{stage="local"} 5
process_resident_memory_bytes 4.5e+07
switchboard_sends_total{result="created"} 40
weird_label{a="x\"y,z}",b="2"} 1 1700000000000
`

const page2 = `switchboard_send_stage_seconds_bucket{stage="store",le="0.001"} 110
switchboard_send_stage_seconds_bucket{stage="store",le="0.002"} 130
switchboard_send_stage_seconds_bucket{stage="store",le="+Inf"} 140
switchboard_send_stage_seconds_sum{stage="store"} 0.18
switchboard_send_stage_seconds_count{stage="store"} 140
process_resident_memory_bytes 5.5e+07
`

func TestParseScrape(t *testing.T) {
	t.Parallel()
	s1, err := ParseScrape(strings.NewReader(page1))
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := s1.Value("process_resident_memory_bytes", nil); !ok || v != 45e6 {
		t.Fatalf("rss %v %v", v, ok)
	}
	if v, _ := s1.Value("weird_label", map[string]string{"a": `x"y,z}`, "b": "2"}); v != 1 {
		t.Fatalf("escaped label value not parsed: %v", v)
	}
	hs := s1.Histograms("switchboard_send_stage_seconds", "stage")
	store := hs["store"]
	if store == nil || store.Count != 40 || len(store.LE) != 3 || !math.IsInf(store.LE[2], 1) {
		t.Fatalf("store histogram %+v", store)
	}
	// 40 samples: rank 20 is halfway through the (1ms, 2ms] bucket's 20.
	if q := store.Quantile(.5); math.Abs(q-0.0015) > 1e-9 {
		t.Fatalf("p50 %v, want 0.0015", q)
	}
	if q := store.Quantile(.99); q != 0.002 {
		t.Fatalf("p99 in +Inf reports the last finite bound: %v", q)
	}

	s2, err := ParseScrape(strings.NewReader(page2))
	if err != nil {
		t.Fatal(err)
	}
	d := s2.Histograms("switchboard_send_stage_seconds", "stage")["store"].Sub(store)
	if d.Count != 100 || math.Abs(d.Sum-0.1) > 1e-9 || d.Cum[0] != 100 {
		t.Fatalf("difference %+v", d)
	}
	if q := d.Quantile(.5); math.Abs(q-0.0005) > 1e-9 {
		t.Fatalf("p50 of the difference %v, want 0.0005", q)
	}
	sum := d.Add(d)
	if sum.Count != 200 || sum.Cum[0] != 200 {
		t.Fatalf("sum %+v", sum)
	}
	if (&PromHist{}).Quantile(.5) == (&PromHist{}).Quantile(.5) {
		t.Fatal("empty histogram quantile should be NaN")
	}
}

func TestParseScrapeErrors(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"novalue", `x{a="1"`, `x{a=1} 2`, "x abc"} {
		if _, err := ParseScrape(strings.NewReader(bad + "\n")); err == nil {
			t.Errorf("%q: want an error", bad)
		}
	}
}
