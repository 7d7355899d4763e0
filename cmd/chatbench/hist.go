package main

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// Histogram is an HDR-style log-linear histogram of non-negative int64 values
// (nanoseconds here): exact below 256, then 128 linear buckets per power of two, so
// any recorded value is reported within 0.4% (half a bucket) of what it was. Memory is
// fixed (57 KiB) whatever the number of samples: no per-sample slice.
//
// Record is safe from any number of goroutines (atomic adds); readers see a snapshot
// that may be a few samples behind concurrent writers.
type Histogram struct {
	counts [histBuckets]atomic.Uint64
	n      atomic.Uint64
	sum    atomic.Uint64
	min    atomic.Int64 // math.MaxInt64 while empty
	max    atomic.Int64
}

const (
	histSubBits = 8
	histSub     = 1 << histSubBits // values below this are exact
	histHalf    = histSub / 2      // linear buckets per power of two above
	// The largest value, MaxInt64, has bit length 63: shift 55, top 255.
	histBuckets = (63-histSubBits)*histHalf + histSub
)

// NewHistogram returns an empty histogram.
func NewHistogram() *Histogram {
	h := &Histogram{}
	h.min.Store(math.MaxInt64)
	return h
}

func histIndex(v int64) int {
	if v < histSub {
		return int(v)
	}
	shift := bits.Len64(uint64(v)) - histSubBits
	return shift*histHalf + int(uint64(v)>>uint(shift))
}

// histBounds returns the lowest and highest value that land in bucket i.
func histBounds(i int) (lo, hi int64) {
	if i < histSub {
		return int64(i), int64(i)
	}
	shift := i/histHalf - 1
	top := int64(i - shift*histHalf)
	return top << uint(shift), (top+1)<<uint(shift) - 1
}

// Record adds one value; negative values count as 0.
func (h *Histogram) Record(v int64) {
	if v < 0 {
		v = 0
	}
	h.counts[histIndex(v)].Add(1)
	h.n.Add(1)
	h.sum.Add(uint64(v))
	for {
		m := h.min.Load()
		if v >= m || h.min.CompareAndSwap(m, v) {
			break
		}
	}
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			break
		}
	}
}

// RecordDuration adds d in nanoseconds.
func (h *Histogram) RecordDuration(d time.Duration) { h.Record(int64(d)) }

// Count is the number of recorded values.
func (h *Histogram) Count() int64 { return int64(h.n.Load()) }

// Max is the largest recorded value (exact), 0 when empty.
func (h *Histogram) Max() int64 { return h.max.Load() }

// Min is the smallest recorded value (exact), 0 when empty.
func (h *Histogram) Min() int64 {
	if h.n.Load() == 0 {
		return 0
	}
	return h.min.Load()
}

// Mean is the exact mean, 0 when empty.
func (h *Histogram) Mean() float64 {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	return float64(h.sum.Load()) / float64(n)
}

// Quantile returns the value at quantile q (0..1): the middle of the bucket holding
// the ceil(q*n)-th smallest value, clamped to the exact min and max. Quantile(1) is
// the exact max.
func (h *Histogram) Quantile(q float64) int64 {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	if q >= 1 {
		return h.Max()
	}
	i := rankBucket(uint64(n), q, func(i int) uint64 { return h.counts[i].Load() })
	if i < 0 {
		return h.Max() // concurrent writers moved n ahead of the buckets
	}
	lo, hi := histBounds(i)
	return min(max(lo+(hi-lo)/2, h.Min()), h.Max())
}

// rankBucket returns the bucket holding quantile q of n values counted by count, or -1
// when the buckets hold fewer than the rank (a snapshot taken as writers add).
func rankBucket(n uint64, q float64, count func(i int) uint64) int {
	rank := max(1, uint64(math.Ceil(q*float64(n))))
	var seen uint64
	for i := range histBuckets {
		if seen += count(i); seen >= rank {
			return i
		}
	}
	return -1
}

// Summary is the reported shape of a histogram, in milliseconds.
type Summary struct {
	Count int64   `json:"count"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
	// CDF is filled for the message latencies only: `chatbench chart` draws it, and the
	// five quantiles above are too few for a curve.
	CDF []CDFPoint `json:"cdf,omitempty"`
}

// CDFPoint is one point of a distribution: a fraction Q of the samples took at most MS.
type CDFPoint struct {
	Q  float64 `json:"q"`
	MS float64 `json:"ms"`
}

// cdfQuantiles are where CDF samples the histogram: 1, 2 and 4 per decade of 1/(1-q),
// so the points spread evenly over a chart's tail-stretching percentile axis, and few
// enough to keep a result small and its JSON stable.
var cdfQuantiles = []float64{0, .1, .25, .5, .75, .9, .95, .975, .99, .995, .9975,
	.999, .9995, .99975, .9999, .99995, .999975, .99999}

// Summary reports the histogram (of nanoseconds) in milliseconds.
func (h *Histogram) Summary() Summary {
	ms := func(v int64) float64 { return float64(v) / 1e6 }
	return Summary{
		Count: h.Count(), Mean: h.Mean() / 1e6,
		P50: ms(h.Quantile(.5)), P90: ms(h.Quantile(.9)), P99: ms(h.Quantile(.99)),
		P999: ms(h.Quantile(.999)), Max: ms(h.Max()),
	}
}

// CDF samples the histogram (of nanoseconds) at cdfQuantiles, in milliseconds, and ends
// with the exact max at q 1. Quantiles past 1-1/n are left out: with n samples they
// are all the largest one, and a chart would draw them as a false plateau.
func (h *Histogram) CDF() []CDFPoint {
	n := h.Count()
	if n == 0 {
		return nil
	}
	pts := make([]CDFPoint, 0, len(cdfQuantiles)+1)
	for _, q := range cdfQuantiles {
		if q > 1-1/float64(n) {
			break
		}
		pts = append(pts, CDFPoint{Q: q, MS: float64(h.Quantile(q)) / 1e6})
	}
	return append(pts, CDFPoint{Q: 1, MS: float64(h.Max()) / 1e6})
}

// Counts copies the bucket counts into dst (grown to fit) and returns it: two copies
// a second apart give that second's distribution (WindowQuantile).
func (h *Histogram) Counts(dst []uint64) []uint64 {
	if cap(dst) < histBuckets {
		dst = make([]uint64, histBuckets)
	}
	dst = dst[:histBuckets]
	for i := range h.counts {
		dst[i] = h.counts[i].Load()
	}
	return dst
}

// WindowQuantile returns quantile q (0..1) of the values recorded between two Counts
// snapshots, as the middle of its bucket (q 1: the top of the highest bucket), and 0
// when none were. It shows a stall as it happens, where the run's cumulative
// quantiles hide one bad second among many good ones.
func WindowQuantile(prev, cur []uint64, q float64) int64 {
	var n uint64
	for i := range cur {
		n += cur[i] - countAt(prev, i)
	}
	if n == 0 {
		return 0
	}
	i := rankBucket(n, q, func(i int) uint64 { return countAt(cur, i) - countAt(prev, i) })
	if i < 0 {
		return 0
	}
	lo, hi := histBounds(i)
	if q >= 1 {
		return hi
	}
	return lo + (hi-lo)/2
}

// countAt is counts[i], or 0 past the end (no snapshot yet).
func countAt(counts []uint64, i int) uint64 {
	if i < len(counts) {
		return counts[i]
	}
	return 0
}
