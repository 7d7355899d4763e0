package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"sort"
	"text/tabwriter"
)

// The hosts' own view of a run, from their public /metrics (a Prometheus page every
// host serves): per-stage time of the send path, the whole fan-out, CPU and memory.
// Scraped before and after; the difference is the run.

// ServerResult is "where the time goes" on the hosts during one phase.
type ServerResult struct {
	Hosts       []HostStats        `json:"hosts"`
	Stages      []StageRow         `json:"send_stages"`
	Deliver     *StageRow          `json:"deliver,omitempty"`
	Internal    *StageRow          `json:"internal_deliver_call,omitempty"`
	CPUSeconds  float64            `json:"cpu_seconds"`
	CPUPerMsgUS float64            `json:"cpu_us_per_message,omitempty"`
	Sends       map[string]float64 `json:"sends,omitempty"`
	Deliveries  map[string]float64 `json:"deliveries,omitempty"`
	SlowClosed  float64            `json:"slow_closed"`
}

// HostStats is one host's resources over the phase.
type HostStats struct {
	URL            string  `json:"url"`
	CPUSeconds     float64 `json:"cpu_seconds"`
	RSSBeforeMB    float64 `json:"rss_before_mb"`
	RSSAfterMB     float64 `json:"rss_after_mb"`
	GoroutinesDiff float64 `json:"goroutines_added"`
	Connections    float64 `json:"ws_connections"`
	Error          string  `json:"error,omitempty"`
}

// StageRow is one histogram's difference, in milliseconds.
type StageRow struct {
	Stage  string  `json:"stage"`
	Count  float64 `json:"count"`
	MeanMS float64 `json:"mean_ms"`
	P50MS  float64 `json:"p50_ms"`
	P90MS  float64 `json:"p90_ms"`
	P99MS  float64 `json:"p99_ms"`
}

// scrapeAll reads every host's /metrics; a host that does not answer gets nil and an
// error string.
func (b *bench) scrapeAll(ctx context.Context) ([]*Scrape, []string) {
	out := make([]*Scrape, len(b.opt.hosts))
	errs := make([]string, len(b.opt.hosts))
	if !b.opt.metrics {
		return out, errs
	}
	_ = parallel(ctx, len(b.opt.hosts), len(b.opt.hosts), func(ctx context.Context, i int) error {
		s, err := b.api.metrics(ctx, b.opt.hosts[i])
		if err != nil {
			errs[i] = err.Error()
		}
		out[i] = s
		return nil
	})
	return out, errs
}

// stageOrder is the send path in order; stages the hosts have beyond these follow.
var stageOrder = []string{"validate", "limit", "store", "sent", "presence", "local", "remote", "write"}

// serverResult computes the difference of two scrapes of every host. acked is the
// number of messages of the phase, for CPU per message.
func (b *bench) serverResult(before, after []*Scrape, errs []string, acked int64) *ServerResult {
	if !b.opt.metrics {
		return nil
	}
	r := &ServerResult{Sends: map[string]float64{}, Deliveries: map[string]float64{}}
	stages := map[string]*PromHist{}
	var deliver, internal *PromHist
	got := false
	for i, h := range b.opt.hosts {
		hs := HostStats{URL: h}
		if i < len(errs) {
			hs.Error = errs[i]
		}
		a, bf := after[i], before[i]
		if a == nil {
			r.Hosts = append(r.Hosts, hs)
			continue
		}
		got = true
		val := func(s *Scrape, name string) float64 { v, _ := s.Value(name, nil); return v }
		hs.CPUSeconds = val(a, "process_cpu_seconds_total") - val(bf, "process_cpu_seconds_total")
		hs.RSSBeforeMB = val(bf, "process_resident_memory_bytes") / (1 << 20)
		hs.RSSAfterMB = val(a, "process_resident_memory_bytes") / (1 << 20)
		hs.GoroutinesDiff = val(a, "go_goroutines") - val(bf, "go_goroutines")
		hs.Connections = val(a, "switchboard_ws_connections")
		r.CPUSeconds += hs.CPUSeconds
		r.Hosts = append(r.Hosts, hs)
		bs := bf.Histograms("switchboard_send_stage_seconds", "stage")
		for stage, h := range a.Histograms("switchboard_send_stage_seconds", "stage") {
			stages[stage] = stages[stage].Add(h.Sub(bs[stage]))
		}
		if h := a.Histograms("switchboard_deliver_seconds", "")[""]; h != nil {
			deliver = deliver.Add(h.Sub(bf.Histograms("switchboard_deliver_seconds", "")[""]))
		}
		ib := bf.Histograms("switchboard_internal_call_seconds", "path")
		for path, h := range a.Histograms("switchboard_internal_call_seconds", "path") {
			if path == "/internal/v1/deliver" {
				internal = internal.Add(h.Sub(ib[path]))
			}
		}
		for _, kind := range []struct {
			name string
			into map[string]float64
		}{{"switchboard_sends_total", r.Sends}, {"switchboard_deliveries_total", r.Deliveries}} {
			for _, s := range a.Samples {
				if s.Name != kind.name {
					continue
				}
				label := s.Labels["result"]
				prev, _ := bf.Value(kind.name, map[string]string{"result": label})
				if d := s.Value - prev; d != 0 {
					kind.into[label] += d
				}
			}
		}
		r.SlowClosed += val(a, "switchboard_ws_slow_closed_total") - val(bf, "switchboard_ws_slow_closed_total")
	}
	if !got {
		return r
	}
	names := make([]string, 0, len(stages))
	for s := range stages {
		names = append(names, s)
	}
	rank := func(s string) int {
		for i, o := range stageOrder {
			if o == s {
				return i
			}
		}
		return len(stageOrder)
	}
	sort.Slice(names, func(i, j int) bool {
		ri, rj := rank(names[i]), rank(names[j])
		if ri != rj {
			return ri < rj
		}
		return names[i] < names[j]
	})
	for _, s := range names {
		if row := stageRow(s, stages[s]); row.Count > 0 {
			r.Stages = append(r.Stages, row)
		}
	}
	if deliver != nil {
		row := stageRow("deliver (whole fan-out)", deliver)
		r.Deliver = &row
	}
	if internal != nil {
		row := stageRow("internal deliver call", internal)
		r.Internal = &row
	}
	if acked > 0 {
		r.CPUPerMsgUS = r.CPUSeconds / float64(acked) * 1e6
	}
	return r
}

func stageRow(name string, h *PromHist) StageRow {
	ms := func(v float64) float64 {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return 0
		}
		return v * 1000
	}
	return StageRow{Stage: name, Count: h.Count, MeanMS: ms(h.Mean()), P50MS: ms(h.Quantile(.5)), P90MS: ms(h.Quantile(.9)), P99MS: ms(h.Quantile(.99))}
}

func (r *ServerResult) print(w io.Writer) {
	fmt.Fprintln(w, "where the time goes (hosts' /metrics, this run; quantiles interpolated in the hosts' buckets):")
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "  stage\tcount\tmean ms\tp50 ms\tp90 ms\tp99 ms\t")
	rows := append([]StageRow(nil), r.Stages...)
	if r.Deliver != nil {
		rows = append(rows, *r.Deliver)
	}
	if r.Internal != nil {
		rows = append(rows, *r.Internal)
	}
	for _, s := range rows {
		fmt.Fprintf(tw, "  %s\t%.0f\t%.3f\t%.3f\t%.3f\t%.3f\t\n", s.Stage, s.Count, s.MeanMS, s.P50MS, s.P90MS, s.P99MS)
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "host CPU: %.1f s in all", r.CPUSeconds)
	if r.CPUPerMsgUS > 0 {
		fmt.Fprintf(w, " (%.0f µs per message)", r.CPUPerMsgUS)
	}
	for _, h := range r.Hosts {
		if h.Error != "" {
			fmt.Fprintf(w, "; %s: %s", h.URL, h.Error)
			continue
		}
		fmt.Fprintf(w, "; %s %.1fs, RSS %.0f->%.0f MB", h.URL, h.CPUSeconds, h.RSSBeforeMB, h.RSSAfterMB)
	}
	fmt.Fprintln(w)
	if len(r.Sends) > 0 || len(r.Deliveries) > 0 {
		fmt.Fprintf(w, "host counters: sends %v, deliveries %v, slow-closed %.0f\n", r.Sends, r.Deliveries, r.SlowClosed)
	}
}
