package main

import (
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
)

func TestHistogramBucketsAreContiguous(t *testing.T) {
	t.Parallel()
	prevHi := int64(-1)
	for i := 0; i < histBuckets; i++ {
		lo, hi := histBounds(i)
		if lo != prevHi+1 {
			t.Fatalf("bucket %d starts at %d, want %d", i, lo, prevHi+1)
		}
		if hi < lo {
			t.Fatalf("bucket %d: hi %d < lo %d", i, hi, lo)
		}
		if histIndex(lo) != i || histIndex(hi) != i {
			t.Fatalf("bucket %d [%d,%d]: index(lo)=%d index(hi)=%d", i, lo, hi, histIndex(lo), histIndex(hi))
		}
		if lo >= histSub && float64(hi-lo+1)/float64(lo) > 1.0/histHalf+1e-12 {
			t.Fatalf("bucket %d [%d,%d] wider than 1/%d of its value", i, lo, hi, histHalf)
		}
		prevHi = hi
		if hi == math.MaxInt64 {
			if i != histBuckets-1 {
				t.Fatalf("MaxInt64 lands in bucket %d of %d", i, histBuckets)
			}
			return
		}
	}
	t.Fatalf("buckets end at %d, before MaxInt64", prevHi)
}

// exact returns the ceil(q*n)-th smallest value, the definition Quantile follows.
func exact(sorted []int64, q float64) int64 {
	rank := int(math.Ceil(q * float64(len(sorted))))
	return sorted[max(rank, 1)-1]
}

func TestHistogramQuantiles(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	cases := []struct {
		name string
		gen  func() int64
	}{
		{"uniform 1..1e6", func() int64 { return 1 + rng.Int64N(1_000_000) }},
		// latency-like: exponential around 800 µs with a long tail
		{"exponential ns", func() int64 { return int64(rng.ExpFloat64() * 800_000) }},
		{"lognormal ns", func() int64 { return int64(math.Exp(rng.NormFloat64()*1.5 + 13)) }},
		{"small exact", func() int64 { return rng.Int64N(200) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := NewHistogram()
			vals := make([]int64, 200_000)
			var sum float64
			for i := range vals {
				vals[i] = tc.gen()
				h.Record(vals[i])
				sum += float64(vals[i])
			}
			slices.Sort(vals)
			if h.Count() != int64(len(vals)) {
				t.Fatalf("count %d, want %d", h.Count(), len(vals))
			}
			if h.Max() != vals[len(vals)-1] || h.Min() != vals[0] {
				t.Fatalf("min/max %d/%d, want %d/%d", h.Min(), h.Max(), vals[0], vals[len(vals)-1])
			}
			if got, want := h.Mean(), sum/float64(len(vals)); math.Abs(got-want) > 1e-6*want+1e-9 {
				t.Fatalf("mean %f, want %f", got, want)
			}
			for _, q := range []float64{0.001, 0.5, 0.9, 0.99, 0.999, 0.9999} {
				want := exact(vals, q)
				got := h.Quantile(q)
				// Half a bucket either way: 1/256 of the value, or exact below 256.
				tol := float64(want)/float64(2*histHalf) + 1
				if math.Abs(float64(got-want)) > tol {
					t.Errorf("q%.4f: got %d, want %d ± %.0f", q, got, want, tol)
				}
			}
			if h.Quantile(1) != vals[len(vals)-1] {
				t.Errorf("q1 is not the max")
			}
		})
	}
}

func TestHistogramEdges(t *testing.T) {
	t.Parallel()
	h := NewHistogram()
	if h.Quantile(.5) != 0 || h.Max() != 0 || h.Min() != 0 || h.Mean() != 0 {
		t.Fatal("empty histogram should report zeros")
	}
	h.Record(-5) // clamped to 0
	h.Record(math.MaxInt64)
	if h.Min() != 0 || h.Max() != math.MaxInt64 {
		t.Fatalf("min %d max %d", h.Min(), h.Max())
	}
	if got := h.Quantile(.5); got != 0 {
		t.Fatalf("p50 of {0, max} = %d, want 0", got)
	}
	s := h.Summary()
	if s.Count != 2 {
		t.Fatalf("summary count %d", s.Count)
	}
}

func TestHistogramConcurrent(t *testing.T) {
	t.Parallel()
	h := NewHistogram()
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int64(1); i <= 10_000; i++ {
				h.Record(i * 1000)
			}
		}()
	}
	wg.Wait()
	if h.Count() != 80_000 || h.Max() != 10_000_000 || h.Min() != 1000 {
		t.Fatalf("count %d min %d max %d", h.Count(), h.Min(), h.Max())
	}
	if p := h.Quantile(.5); math.Abs(float64(p-5_000_000)) > 5_000_000/256+1 {
		t.Fatalf("p50 %d", p)
	}
}

func BenchmarkHistogramRecord(b *testing.B) {
	b.ReportAllocs()
	h := NewHistogram()
	for i := 0; b.Loop(); i++ {
		h.Record(int64(i&0xfffff) * 997)
	}
}

func TestHistogramCDF(t *testing.T) {
	t.Parallel()
	if NewHistogram().CDF() != nil {
		t.Fatal("empty histogram has a CDF")
	}
	h := NewHistogram()
	for i := int64(1); i <= 10_000; i++ {
		h.Record(i * 1000) // 1 µs .. 10 ms
	}
	cdf := h.CDF()
	// 10,000 samples resolve quantiles up to 1-1/10,000 = .9999; the rest is the max.
	if got, want := len(cdf), 16; got != want {
		t.Fatalf("%d points, want %d: %v", got, want, cdf)
	}
	for i := 1; i < len(cdf); i++ {
		if cdf[i].Q <= cdf[i-1].Q || cdf[i].MS < cdf[i-1].MS {
			t.Fatalf("not increasing at %d: %v", i, cdf)
		}
	}
	if last := cdf[len(cdf)-1]; last.Q != 1 || last.MS != 10 {
		t.Fatalf("last point %v, want the max {1 10}", last)
	}
	for _, pt := range cdf[:len(cdf)-1] {
		want := max(pt.Q*10, 0.001)
		if math.Abs(pt.MS-want) > want/256+0.001 {
			t.Errorf("q %g: %g ms, want %g", pt.Q, pt.MS, want)
		}
	}
	one := NewHistogram()
	one.Record(2_000_000)
	// One sample is the min (q 0) and the max.
	if got := one.CDF(); len(got) != 2 || got[0] != (CDFPoint{Q: 0, MS: 2}) || got[1] != (CDFPoint{Q: 1, MS: 2}) {
		t.Fatalf("one sample: %v", got)
	}
}

// TestWindowQuantile: a second with a stall shows in that second's quantiles even
// when the run's cumulative ones, diluted by the good seconds before, do not.
func TestWindowQuantile(t *testing.T) {
	t.Parallel()
	h := NewHistogram()
	for range 9900 {
		h.Record(1_000_000) // 1 ms: many good seconds
	}
	before := h.Counts(nil)
	if got := WindowQuantile(before, h.Counts(nil), .99); got != 0 {
		t.Fatalf("empty window: p99 %d, want 0", got)
	}
	for i := range 100 {
		h.Record(int64(80_000_000 + i)) // one second in which everything took 80 ms
	}
	after := h.Counts(nil)
	within := func(got, want int64) bool { return math.Abs(float64(got-want)) <= 0.005*float64(want) }
	if got := WindowQuantile(before, after, .99); !within(got, 80_000_000) {
		t.Errorf("window p99 = %d, want about 80 ms", got)
	}
	if got := WindowQuantile(before, after, 1); got < 80_000_099 || !within(got, 80_000_099) {
		t.Errorf("window max = %d, want the top of the bucket holding 80.000099 ms", got)
	}
	if got := h.Quantile(.99); !within(got, 1_000_000) {
		t.Errorf("cumulative p99 = %d: the test's premise (one bad second hides in the run) broke", got)
	}
	// From the start (no earlier snapshot) the window is the whole run.
	if got := WindowQuantile(nil, after, .5); !within(got, 1_000_000) {
		t.Errorf("whole-run p50 = %d, want about 1 ms", got)
	}
}
