package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Summary of a matrix: `chatbench summarize --out all.json --md all.md a.json b.json`
// puts the --json results of several runs into one file and writes the Markdown table
// that docs/bench shows: issue 6's targets, then the key numbers of each run.

// Matrix is the combined file.
type Matrix struct {
	Generated time.Time         `json:"generated"`
	Machine   Machine           `json:"machine"`
	Note      string            `json:"note,omitempty"`
	Results   []json.RawMessage `json:"results"`
}

func summarize(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("chatbench summarize", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "write the combined JSON here")
	md := fs.String("md", "", "write the Markdown summary here (default: stdout)")
	note := fs.String("note", "", "a line to put on top (e.g. the commit)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return errors.New("no result files given")
	}
	m := Matrix{Generated: time.Now().UTC(), Machine: machine(), Note: *note}
	var results []*Result
	found := false
	for _, path := range fs.Args() {
		data, err := os.ReadFile(path) // #nosec G304 -- the operator's own files
		if err != nil {
			return err
		}
		var r Result
		if err := json.Unmarshal(data, &r); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		results = append(results, &r)
		m.Results = append(m.Results, json.RawMessage(data))
		// The first run's machine: its readings were taken at the start of the
		// matrix. A later run's round trip says more about the run before it (a vCPU
		// left idle or busy) than about the boot; each run's is in the table.
		if r.Machine.Model != "" && !found {
			m.Machine, found = r.Machine, true
		}
	}
	if *out != "" {
		data, err := json.MarshalIndent(m, "", "  ")
		if err != nil {
			return err
		}
		if err := writeFile(*out, append(data, '\n')); err != nil {
			return err
		}
	}
	text := markdown(m, results)
	if *md != "" {
		return writeFile(*md, []byte(text))
	}
	_, err := io.WriteString(stdout, text)
	return err
}

func writeFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o600)
}

func markdown(m Matrix, results []*Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# chatbench results, %s\n\n", m.Generated.Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&b, "Machine: %s.\n\n", m.Machine)
	if m.Note != "" {
		fmt.Fprintf(&b, "%s\n\n", m.Note)
	}
	b.WriteString("## Issue 6 targets\n\n| scenario | target | must reach | measured | |\n| --- | --- | --- | --- | --- |\n")
	for _, r := range results {
		for _, t := range r.Targets6 {
			met := "met"
			if !t.Met {
				met = "**missed**"
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s %s | %s |\n", r.Scenario, t.What, t.Want, fmtNum(t.Measured), t.Unit, met)
		}
	}
	b.WriteString("\n## Runs\n\n| scenario | verdict | offered | acked/s | deliveries/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | lost | reordered | dups | host CPU µs/msg | all CPU µs/msg |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, r := range results {
		verdict := "pass"
		if !r.Pass {
			verdict = "**FAIL**"
		}
		loads := r.Steps
		if r.Load != nil {
			loads = append([]*LoadResult{r.Load}, loads...)
		}
		for _, l := range loads {
			row := *l // the row's view only: the results stay as they were read
			if row.Server == nil && len(r.Steps) == 0 {
				row.Server = r.Server // a single run's hosts were scraped for the run as a whole
			}
			cpu, all := cpuText(row.hostCPU()), cpuText(row.allCPU())
			fmt.Fprintf(&b, "| %s | %s | %g/s | %.0f | %.0f | %s | %s | %s | %s | %s | %d | %d | %d | %s | %s |\n",
				l.Label, verdict, l.OfferedRate, l.AckedRate, l.DeliveryRate, fmtNum(l.Latency.P50), fmtNum(l.Latency.P90),
				fmtNum(l.Latency.P99), fmtNum(l.Latency.P999), fmtNum(l.Latency.Max), l.Verify.Lost, l.Verify.Reordered, l.Verify.Duplicates, cpu, all)
		}
		if r.HeldRate != nil {
			fmt.Fprintf(&b, "| ramp | | highest rate held: **%g msg/s** | | | | | | | | | | | | |\n", *r.HeldRate)
		}
	}
	for _, r := range results {
		switch {
		case r.Idle != nil:
			fmt.Fprintf(&b, "\n**idle**: %d of %d sockets connected in %.2f s; %.1f KB resident per socket (%.1f KB marginal; heap %.1f KB, stacks %.1f KB).\n",
				r.Idle.Connected, r.Idle.Conns, r.Idle.ConnectSeconds, r.Idle.KBPerSocket, r.Idle.MarginalKB, r.Idle.HeapKBPerSock, r.Idle.StackKBPerSock)
		case r.Catchup != nil:
			fmt.Fprintf(&b, "\n**catchup**: %d messages over %d threads; upgrade -> synced %.0f ms; %d before synced; lost %d.\n",
				r.Catchup.Backlog, r.Catchup.Threads, r.Catchup.UpgradeToSyncedMS, r.Catchup.BeforeSynced, r.Catchup.Verify.Lost)
		case r.Storm != nil:
			fmt.Fprintf(&b, "\n**storm**: %d sockets; all back and synced in %.2f s (p50 %.2f s, p99 %.2f s); not back %d; lost %d.\n",
				r.Storm.Conns, r.Storm.AllBackSeconds, r.Storm.BackSeconds.P50/1e3, r.Storm.BackSeconds.P99/1e3, r.Storm.NotBack, r.Storm.Verify.Lost)
		}
	}
	b.WriteString("\n## The machine during each run\n\nThe generator, the hosts and the stores share the machine: a slower or busier machine moves every number above.\n\n| run | reference encode µs | process round trip µs | machine busy | waited for a CPU | load average |\n| --- | --- | --- | --- | --- | --- |\n")
	for _, r := range results {
		enc, trip, pressure := "-", "-", "-"
		if r.Machine.RefEncodeUS > 0 {
			enc = fmt.Sprintf("%.2f", r.Machine.RefEncodeUS)
		}
		if r.Machine.RoundTripUS > 0 {
			trip = fmt.Sprintf("%.1f", r.Machine.RoundTripUS)
		}
		if p := r.System.CPUPressure; p != nil {
			pressure = fmt.Sprintf("%.0f %%", 100**p)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %.0f %% | %s | %.1f -> %.1f |\n", r.Scenario, enc, trip, 100*r.System.Utilization, pressure, r.System.Load1Start, r.System.Load1End)
	}
	b.WriteString("\n## Where the time goes (hosts' send-path histograms)\n")
	for _, r := range results {
		if r.Server == nil || len(r.Server.Stages) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n%s (%.1f host CPU-s, %.0f µs per message):\n\n| stage | count | mean ms | p50 ms | p99 ms |\n| --- | --- | --- | --- | --- |\n",
			r.Scenario, r.Server.CPUSeconds, r.Server.CPUPerMsgUS)
		rows := append([]StageRow(nil), r.Server.Stages...)
		if r.Server.Deliver != nil {
			rows = append(rows, *r.Server.Deliver)
		}
		if r.Server.Internal != nil {
			rows = append(rows, *r.Server.Internal)
		}
		for _, s := range rows {
			fmt.Fprintf(&b, "| %s | %.0f | %.3f | %.3f | %.3f |\n", s.Stage, s.Count, s.MeanMS, s.P50MS, s.P99MS)
		}
	}
	for _, r := range results {
		if r.Floor == nil {
			continue
		}
		b.WriteString("\n## Floor (raw store round trips from the generator)\n\n")
		if r.Floor.RedisPing != nil {
			fmt.Fprintf(&b, "- Redis PING: %s\n", fmtSummary(*r.Floor.RedisPing))
		}
		if r.Floor.PostgresInsert != nil {
			fmt.Fprintf(&b, "- PostgreSQL INSERT (autocommit): %s\n", fmtSummary(*r.Floor.PostgresInsert))
		}
		break
	}
	b.WriteString("\nCharts of these runs: `chatbench chart --out DIR` on this matrix's JSON draws " + chartRateFile + " and " +
		chartCDFFile + " (scripts/bench.sh puts them in charts/ beside it; --quick in charts-quick/).\n")
	return b.String()
}
