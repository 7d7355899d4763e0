package main

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
)

// Scrape is one host's /metrics page, parsed from the Prometheus text format. Only
// what chatbench reads is kept: plain samples with their labels.
type Scrape struct {
	Samples []Sample
}

// Sample is one line of the text format.
type Sample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// ParseScrape reads the Prometheus text exposition format (comments and blank lines
// skipped; timestamps ignored).
func ParseScrape(r io.Reader) (*Scrape, error) {
	s := &Scrape{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		t := strings.TrimSpace(sc.Text())
		if t == "" || t[0] == '#' {
			continue
		}
		smp, err := parseSample(t)
		if err != nil {
			return nil, fmt.Errorf("metrics line %d: %w", line, err)
		}
		s.Samples = append(s.Samples, smp)
	}
	return s, sc.Err()
}

func parseSample(t string) (Sample, error) {
	var smp Sample
	i := strings.IndexAny(t, "{ ")
	if i <= 0 {
		return smp, fmt.Errorf("no value in %q", t)
	}
	smp.Name = t[:i]
	rest := t[i:]
	if rest[0] == '{' {
		smp.Labels = map[string]string{}
		j := 1
		for {
			for j < len(rest) && (rest[j] == ' ' || rest[j] == ',') {
				j++
			}
			if j >= len(rest) {
				return smp, fmt.Errorf("unterminated labels in %q", t)
			}
			if rest[j] == '}' {
				j++
				break
			}
			eq := strings.IndexByte(rest[j:], '=')
			if eq < 0 || j+eq+1 >= len(rest) || rest[j+eq+1] != '"' {
				return smp, fmt.Errorf("bad label in %q", t)
			}
			key := strings.TrimSpace(rest[j : j+eq])
			j += eq + 2
			var b strings.Builder
			for ; j < len(rest) && rest[j] != '"'; j++ {
				if rest[j] == '\\' && j+1 < len(rest) {
					j++
					switch rest[j] {
					case 'n':
						b.WriteByte('\n')
					default:
						b.WriteByte(rest[j])
					}
					continue
				}
				b.WriteByte(rest[j])
			}
			if j >= len(rest) {
				return smp, fmt.Errorf("unterminated label value in %q", t)
			}
			j++ // closing quote
			smp.Labels[key] = b.String()
		}
		rest = rest[j:]
	}
	fields := strings.Fields(rest)
	if len(fields) == 0 {
		return smp, fmt.Errorf("no value in %q", t)
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return smp, fmt.Errorf("bad value in %q", t)
	}
	smp.Value = v
	return smp, nil
}

// Value returns the sum of the samples named name whose labels include match.
func (s *Scrape) Value(name string, match map[string]string) (float64, bool) {
	if s == nil {
		return 0, false
	}
	var sum float64
	found := false
	for _, smp := range s.Samples {
		if smp.Name == name && labelsMatch(smp.Labels, match) {
			sum += smp.Value
			found = true
		}
	}
	return sum, found
}

func labelsMatch(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

// PromHist is one Prometheus histogram: cumulative bucket counts by upper bound.
type PromHist struct {
	LE    []float64 // ascending, +Inf last
	Cum   []float64
	Sum   float64
	Count float64
}

// Histograms returns the histograms named name, keyed by the value of label by ("" when
// by is empty), summed over every other label.
func (s *Scrape) Histograms(name, by string) map[string]*PromHist {
	out := map[string]*PromHist{}
	if s == nil {
		return out
	}
	type key struct {
		group string
		le    float64
	}
	buckets := map[key]float64{}
	get := func(g string) *PromHist {
		h := out[g]
		if h == nil {
			h = &PromHist{}
			out[g] = h
		}
		return h
	}
	for _, smp := range s.Samples {
		g := ""
		if by != "" {
			g = smp.Labels[by]
		}
		switch smp.Name {
		case name + "_bucket":
			le, err := strconv.ParseFloat(smp.Labels["le"], 64)
			if err != nil {
				continue
			}
			get(g)
			buckets[key{g, le}] += smp.Value
		case name + "_sum":
			get(g).Sum += smp.Value
		case name + "_count":
			get(g).Count += smp.Value
		}
	}
	for g, h := range out {
		var les []float64
		for k := range buckets {
			if k.group == g {
				les = append(les, k.le)
			}
		}
		sort.Float64s(les)
		h.LE = les
		h.Cum = make([]float64, len(les))
		for i, le := range les {
			h.Cum[i] = buckets[key{g, le}]
		}
	}
	return out
}

// Sub returns h minus an earlier scrape of the same histogram (nil: nothing before).
func (h *PromHist) Sub(before *PromHist) *PromHist {
	out := &PromHist{LE: h.LE, Cum: append([]float64(nil), h.Cum...), Sum: h.Sum, Count: h.Count}
	if before == nil {
		return out
	}
	out.Sum -= before.Sum
	out.Count -= before.Count
	for i, le := range out.LE {
		for j, ble := range before.LE {
			if ble == le {
				out.Cum[i] -= before.Cum[j]
			}
		}
	}
	return out
}

// Add returns the sum of two histograms with the same buckets (for all hosts together).
func (h *PromHist) Add(o *PromHist) *PromHist {
	if h == nil {
		return o
	}
	out := &PromHist{LE: h.LE, Cum: append([]float64(nil), h.Cum...), Sum: h.Sum + o.Sum, Count: h.Count + o.Count}
	for i, le := range out.LE {
		for j, ole := range o.LE {
			if ole == le {
				out.Cum[i] += o.Cum[j]
			}
		}
	}
	return out
}

// Quantile estimates quantile q the way PromQL's histogram_quantile does: linear
// interpolation inside the bucket that holds the rank. NaN when empty.
func (h *PromHist) Quantile(q float64) float64 {
	if h == nil || len(h.LE) == 0 || h.Count <= 0 {
		return math.NaN()
	}
	total := h.Cum[len(h.Cum)-1]
	if total <= 0 {
		return math.NaN()
	}
	rank := q * total
	for i, c := range h.Cum {
		if c >= rank {
			if math.IsInf(h.LE[i], 1) {
				if i == 0 {
					return math.NaN()
				}
				return h.LE[i-1] // beyond the last finite bound: report the bound
			}
			lo, below := 0.0, 0.0
			if i > 0 {
				lo, below = h.LE[i-1], h.Cum[i-1]
			}
			if c == below {
				return h.LE[i]
			}
			return lo + (h.LE[i]-lo)*(rank-below)/(c-below)
		}
	}
	return h.LE[len(h.LE)-1]
}

// Mean is sum/count in the histogram's unit; NaN when empty.
func (h *PromHist) Mean() float64 {
	if h == nil || h.Count <= 0 {
		return math.NaN()
	}
	return h.Sum / h.Count
}
