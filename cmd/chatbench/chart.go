package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

// Charts of a matrix: `chatbench chart --out DIR FILE...` reads summarize's combined
// JSON or single --json results and draws the two SVGs that docs/bench shows:
//
//	latency-vs-rate.svg  the ramp's steps: p50, p99 and p99.9 against the offered rate,
//	                     with the ramp's p99 limit and the highest rate held;
//	latency-cdf.svg      the latency distribution of oneone, fanout (to the last member)
//	                     and the highest held ramp step, on an HDR percentile axis.
//
// A chart without data (no ramp in the files, or no run with a CDF) is skipped with a
// message; only when neither can be drawn is it an error.

const (
	chartRateFile = "latency-vs-rate.svg"
	chartCDFFile  = "latency-cdf.svg"
)

// errNoData marks a chart that the given files have nothing for.
var errNoData = errors.New("no data")

// Colours of the Okabe-Ito palette: told apart with any colour vision.
var (
	colBlue      = color.RGBA{0x00, 0x72, 0xB2, 0xff}
	colOrange    = color.RGBA{0xE6, 0x9F, 0x00, 0xff}
	colVermilion = color.RGBA{0xD5, 0x5E, 0x00, 0xff}
	colGreen     = color.RGBA{0x00, 0x9E, 0x73, 0xff}
	colPurple    = color.RGBA{0xCC, 0x79, 0xA7, 0xff}
	colSky       = color.RGBA{0x56, 0xB4, 0xE9, 0xff}
	colGrey      = color.Gray{0x55}
	chartColours = []color.Color{colBlue, colVermilion, colGreen, colOrange, colPurple, colSky}
)

func chart(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("chatbench chart", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "charts", "directory to write "+chartRateFile+" and "+chartCDFFile+" into")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: chatbench chart [--out DIR] MATRIX.json|RESULT.json...\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return errors.New("no result files given")
	}
	var results []*Result
	for _, path := range fs.Args() {
		rs, err := readResults(path)
		if err != nil {
			return err
		}
		results = append(results, rs...)
	}
	charts := []struct {
		file string
		draw func([]*Result, io.Writer) (*chartDoc, error)
	}{
		{chartRateFile, rateChart},
		{chartCDFFile, cdfChart},
	}
	var skipped []string
	for _, c := range charts {
		doc, err := c.draw(results, stdout)
		if errors.Is(err, errNoData) {
			skipped = append(skipped, fmt.Sprintf("%s: %v", c.file, err))
			fmt.Fprintf(stderr, "chatbench chart: skipping %s: %v\n", c.file, err)
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: %w", c.file, err)
		}
		path := filepath.Join(*out, c.file)
		if err := doc.write(path); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %s\n", path)
	}
	if len(skipped) == len(charts) {
		return fmt.Errorf("nothing to chart in %s (%s)", strings.Join(fs.Args(), ", "), strings.Join(skipped, "; "))
	}
	return nil
}

// readResults reads a summarize matrix (its results) or a single result.
func readResults(path string) ([]*Result, error) {
	data, err := os.ReadFile(path) // #nosec G304 -- the operator's own files
	if err != nil {
		return nil, err
	}
	var probe struct {
		Results  []json.RawMessage `json:"results"`
		Scenario string            `json:"scenario"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	raws := probe.Results
	if raws == nil {
		if probe.Scenario == "" {
			return nil, fmt.Errorf("%s: neither a chatbench result (--json) nor a matrix (summarize --out)", path)
		}
		raws = []json.RawMessage{data}
	}
	var rs []*Result
	for i, raw := range raws {
		var r Result
		if err := json.Unmarshal(raw, &r); err != nil {
			return nil, fmt.Errorf("%s: result %d: %w", path, i, err)
		}
		rs = append(rs, &r)
	}
	return rs, nil
}

// ---- latency versus rate ------------------------------------------------------------

func rateChart(results []*Result, w io.Writer) (*chartDoc, error) {
	var ramp *Result
	ramps := 0
	for _, r := range results {
		if len(r.Steps) > 0 {
			ramp = r
			ramps++
		}
	}
	if ramp == nil {
		return nil, fmt.Errorf("%w: no ramp result with steps", errNoData)
	}
	if ramps > 1 {
		fmt.Fprintf(w, "chart: %d ramp results; %s draws the last one given (%s)\n", ramps, chartRateFile, ramp.Started.Format(time.RFC3339))
	}
	limit := 50.0 // ms: the ramp's default --max-p99
	if s, ok := ramp.Params["max_p99"].(string); ok {
		if d, err := time.ParseDuration(s); err == nil && d > 0 {
			limit = float64(d) / 1e6
		}
	}
	var p50, p99, p999, notHeld plotter.XYs
	var rates []float64
	for _, s := range ramp.Steps {
		if s.Latency.Count == 0 {
			continue
		}
		p50 = append(p50, plotter.XY{X: s.OfferedRate, Y: lgMS(s.Latency.P50)})
		p99 = append(p99, plotter.XY{X: s.OfferedRate, Y: lgMS(s.Latency.P99)})
		p999 = append(p999, plotter.XY{X: s.OfferedRate, Y: lgMS(s.Latency.P999)})
		rates = append(rates, s.OfferedRate)
		if s.Held != nil && !*s.Held {
			notHeld = append(notHeld, plotter.XY{X: s.OfferedRate, Y: lgMS(s.Latency.P99)})
		}
	}
	if len(p50) == 0 {
		return nil, fmt.Errorf("%w: the ramp's steps have no latency samples", errNoData)
	}
	doc := newChartDoc(fmt.Sprintf("Latency versus offered rate: chatbench ramp, %s", ramp.Started.Format("2006-01-02")),
		"offered rate (messages/s, open loop, in total over all pairs)", "latency, sender write → receiver read (ms, log scale)")
	p := doc.plot
	p.Y.Tick.Marker = logTicks{}

	xmax := 0.0
	ymin, ymax := lgMS(limit), lgMS(limit) // the limit line is always in view
	for i := range p50 {
		xmax = max(xmax, p50[i].X)
		ymin = min(ymin, p50[i].Y)
		ymax = max(ymax, p999[i].Y)
	}
	xmax *= 1.05
	ymin, ymax = ymin-lgPad, ymax+lgPad

	lim, err := plotter.NewLine(plotter.XYs{{X: 0, Y: lgMS(limit)}, {X: xmax, Y: lgMS(limit)}})
	if err != nil {
		return nil, err
	}
	lim.LineStyle = draw.LineStyle{Color: colVermilion, Width: vg.Points(1.25), Dashes: []vg.Length{vg.Points(6), vg.Points(3)}}
	p.Add(lim)
	var held *plotter.Line
	if ramp.HeldRate != nil {
		held, err = plotter.NewLine(plotter.XYs{{X: *ramp.HeldRate, Y: ymin}, {X: *ramp.HeldRate, Y: ymax}})
		if err != nil {
			return nil, err
		}
		held.LineStyle = draw.LineStyle{Color: colGreen, Width: vg.Points(1.25), Dashes: []vg.Length{vg.Points(2), vg.Points(2)}}
		p.Add(held)
	}
	series := []struct {
		name  string
		xys   plotter.XYs
		col   color.Color
		glyph draw.GlyphDrawer
	}{
		{"p50", p50, colBlue, draw.CircleGlyph{}},
		{"p99", p99, colOrange, draw.BoxGlyph{}},
		{"p99.9", p999, colPurple, draw.PyramidGlyph{}},
	}
	for _, s := range series {
		line, pts, err := lineWithPoints(s.xys, s.col, s.glyph)
		if err != nil {
			return nil, err
		}
		p.Add(line, pts)
		doc.legend.Add(s.name+" latency of the step", line, pts)
	}
	doc.legend.Add(fmt.Sprintf("the ramp's limit: p99 ≤ %s ms (and nothing lost)", strconv.FormatFloat(limit, 'f', -1, 64)), lim)
	if held != nil {
		doc.legend.Add(fmt.Sprintf("highest rate held: %s messages/s", groupThousands(*ramp.HeldRate)), held)
	} else {
		doc.legend.Add("no rate held: the first step was not held")
	}
	if len(notHeld) > 0 {
		sc, err := plotter.NewScatter(notHeld)
		if err != nil {
			return nil, err
		}
		sc.GlyphStyle = draw.GlyphStyle{Color: color.Black, Radius: vg.Points(6), Shape: draw.CrossGlyph{}}
		p.Add(sc)
		doc.legend.Add("step not held (p99, loss or acked rate): the ramp stopped", sc)
	}
	p.X.Min, p.X.Max = 0, xmax
	p.Y.Min, p.Y.Max = ymin, ymax
	p.X.Tick.Marker = rateTicks(rates)
	doc.caption = []string{
		"Each step sends at a fixed rate for --step seconds (open loop: a slow cluster shows as latency, not as a lower rate).",
		machineCaption([]*Result{ramp}),
	}
	return doc, nil
}

// ---- latency CDF ----------------------------------------------------------------------

// cdfLine is one distribution on the CDF chart.
type cdfLine struct {
	name string
	sum  *Summary
}

func cdfChart(results []*Result, w io.Writer) (*chartDoc, error) {
	var lines []cdfLine
	var from []*Result
	add := func(r *Result, name string, s *Summary) {
		if s == nil || len(s.CDF) == 0 {
			fmt.Fprintf(w, "chart: %s has no latency CDF (a result from before chatbench recorded one); left out of %s\n", name, chartCDFFile)
			return
		}
		lines = append(lines, cdfLine{name, s})
		from = append(from, r)
	}
	for _, r := range results {
		switch {
		case r.Scenario == "oneone" && r.Load != nil:
			add(r, fmt.Sprintf("oneone at %s messages/s", groupThousands(r.Load.OfferedRate)), &r.Load.Latency)
		case r.Scenario == "fanout" && r.Load != nil:
			members := fmt.Sprintf("%d sockets", r.Load.Receivers)
			if m, ok := r.Params["members"].(float64); ok {
				members = fmt.Sprintf("%g members", m)
			}
			base := fmt.Sprintf("fanout, %s, %s messages/s", members, groupThousands(r.Load.OfferedRate))
			if r.Load.LastMember != nil && len(r.Load.LastMember.CDF) > 0 {
				add(r, base+": to the last member", r.Load.LastMember)
			} else {
				add(r, base+": to every member", &r.Load.Latency)
			}
		case len(r.Steps) > 0 && r.HeldRate != nil:
			for _, s := range r.Steps {
				if s.OfferedRate == *r.HeldRate {
					add(r, fmt.Sprintf("ramp step at %s messages/s (highest held)", groupThousands(s.OfferedRate)), &s.Latency)
					break
				}
			}
		}
	}
	if len(lines) == 0 {
		return nil, fmt.Errorf("%w: no oneone, fanout or held ramp step with a latency CDF", errNoData)
	}
	doc := newChartDoc("Latency distribution (HDR percentile plot)",
		"percentile (log scale of 1/(1 − q): each label to the right is ten times rarer)",
		"latency, sender write → receiver read (ms, log scale)")
	p := doc.plot
	p.Y.Tick.Marker = logTicks{}
	p.X.Tick.Marker = percentileTicks{}
	xmax, ymin, ymax := 1.0, math.Inf(1), math.Inf(-1)
	glyphs := []draw.GlyphDrawer{draw.CircleGlyph{}, draw.BoxGlyph{}, draw.PyramidGlyph{}, draw.RingGlyph{}, draw.SquareGlyph{}, draw.TriangleGlyph{}}
	for i, l := range lines {
		xys := cdfXYs(l.sum)
		for _, pt := range xys {
			xmax, ymin, ymax = max(xmax, pt.X), min(ymin, pt.Y), max(ymax, pt.Y)
		}
		line, pts, err := lineWithPoints(xys, chartColours[i%len(chartColours)], glyphs[i%len(glyphs)])
		if err != nil {
			return nil, err
		}
		p.Add(line, pts)
		doc.legend.Add(fmt.Sprintf("%s (n = %s, p99 %s ms, max %s ms)", l.name, groupThousands(float64(l.sum.Count)), fmtNum(l.sum.P99), fmtNum(l.sum.Max)), line, pts)
	}
	p.X.Min, p.X.Max = 0, xmax+0.1
	p.Y.Min, p.Y.Max = ymin-lgPad, ymax+lgPad
	doc.caption = []string{
		"A point (x, y): that share of the messages took at most y. The last point of a line is its max, drawn at 1 − 1/n.",
		machineCaption(from),
	}
	return doc, nil
}

// cdfXYs puts a CDF on the HDR axis: x = log10(1/(1-q)), so 90%, 99%, 99.9% are 1,
// 2, 3. The max (q 1) would be at infinity; it is the n-th of n samples, at 1-1/n.
func cdfXYs(s *Summary) plotter.XYs {
	var xys plotter.XYs
	last := 0.0
	for _, pt := range s.CDF {
		x := max(math.Log10(float64(s.Count)), last)
		if pt.Q < 1 {
			x = -math.Log10(1 - pt.Q)
		}
		xys = append(xys, plotter.XY{X: x, Y: lgMS(pt.MS)})
		last = x
	}
	return xys
}

// percentileTicks label the HDR axis (log10 of 1/(1-q)) in percent: 0%, 50%, 90%,
// 99%...
type percentileTicks struct{}

func (percentileTicks) Ticks(lo, hi float64) []plot.Tick {
	var ts []plot.Tick
	for dec := 1.0; math.Log10(dec) <= hi; dec *= 10 {
		for i := 1; i <= 9; i++ {
			v := math.Log10(float64(i) * dec)
			if v < lo || v > hi {
				continue
			}
			t := plot.Tick{Value: v}
			if i == 1 || (i == 2 && dec == 1) {
				t.Label = percentLabel(1 - 1/(float64(i)*dec))
			}
			ts = append(ts, t)
		}
	}
	return ts
}

// percentLabel writes q as a percentage with as many nines as it has: 99.9%, 99.99%.
func percentLabel(q float64) string {
	return strconv.FormatFloat(math.Round(q*1e8)/1e6, 'f', -1, 64) + "%"
}

// ---- shared -----------------------------------------------------------------------------

// The log axes are linear axes over log10 of the values: plot.LogScale centres an
// axis label at the arithmetic mean of the range, which on a log axis is near the top,
// and shrinks the data area to fit it there.

// lgPad is the room above and below the data on a log axis: a factor of 1.6.
const lgPad = 0.2

// lgMS is a latency on a log axis; a zero (an empty step) is drawn at 1 µs.
func lgMS(v float64) float64 { return math.Log10(max(v, 0.001)) }

// logTicks label 1, 2 and 5 of each decade (only 1 when the range spans many), with
// minor ticks between: powers of ten alone are too few to read a latency off a chart
// spanning a decade or two. lo and hi are log10 values.
type logTicks struct{}

func (logTicks) Ticks(lo, hi float64) []plot.Tick {
	var ts []plot.Tick
	e0, e1 := int(math.Floor(lo)), int(math.Floor(hi))
	for e := e0; e <= e1; e++ {
		dec := math.Pow10(e)
		for i := 1; i <= 9; i++ {
			v := math.Log10(float64(i) * dec)
			if v < lo || v > hi {
				continue
			}
			t := plot.Tick{Value: v}
			if i == 1 || (e1-e0 <= 3 && (i == 2 || i == 5)) {
				t.Label = strconv.FormatFloat(float64(i)*dec, 'f', max(0, -e), 64)
			}
			ts = append(ts, t)
		}
	}
	return ts
}

// rateTicks are the offered rates of the steps, thousands grouped (10,000 reads at a
// glance, 10000 does not): the rates run are the values worth reading off the axis.
// A label too close to the one before is left out rather than overprinted.
type rateTicks []float64

func (r rateTicks) Ticks(lo, hi float64) []plot.Tick {
	ts := []plot.Tick{{Value: 0, Label: "0"}}
	last := 0.0
	for _, v := range r {
		if v < lo || v > hi || v == last {
			continue
		}
		t := plot.Tick{Value: v}
		if v-last >= 0.04*(hi-lo) {
			t.Label = groupThousands(v)
			last = v
		}
		ts = append(ts, t)
	}
	return ts
}

func groupThousands(v float64) string {
	if v != math.Round(v) || math.Abs(v) < 1000 {
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	s := strconv.FormatFloat(v, 'f', 0, 64)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func lineWithPoints(xys plotter.XYs, c color.Color, g draw.GlyphDrawer) (*plotter.Line, *plotter.Scatter, error) {
	line, pts, err := plotter.NewLinePoints(xys)
	if err != nil {
		return nil, nil, err
	}
	line.LineStyle = draw.LineStyle{Color: c, Width: vg.Points(1.75)}
	pts.GlyphStyle = draw.GlyphStyle{Color: c, Radius: vg.Points(2.75), Shape: g}
	return line, pts, nil
}

// machineCaption names the machine of the runs: numbers mean nothing without it.
func machineCaption(rs []*Result) string {
	m := rs[0].Machine
	s := fmt.Sprintf("Machine: %d CPUs, %s", m.CPUs, m.Model)
	if m.MemoryMB > 0 {
		s += fmt.Sprintf(", %d GB RAM", (m.MemoryMB+512)/1024)
	}
	s += fmt.Sprintf(", %s/%s", m.OS, m.Arch)
	if m.Kernel != "" {
		s += ", Linux " + m.Kernel
	}
	s += ", " + m.Go + "; cluster, stores and chatbench on the same machine."
	for _, r := range rs[1:] {
		if r.Machine.Model != m.Model || r.Machine.CPUs != m.CPUs {
			return s + " Some runs come from another machine: do not compare them."
		}
	}
	return s
}

// chartDoc is a plot with its legend and caption below it: a legend inside the data
// area hides whichever lines happen to run under it.
type chartDoc struct {
	plot    *plot.Plot
	legend  plot.Legend
	caption []string
}

func sans(size vg.Length) text.Style {
	return text.Style{Color: color.Black, Font: font.From(font.Font{Typeface: "Liberation", Variant: "Sans"}, size), Handler: plot.DefaultTextHandler}
}

func newChartDoc(title, xlabel, ylabel string) *chartDoc {
	p := plot.New()
	p.Title.Text = title
	p.Title.TextStyle.Font = sans(14).Font
	p.Title.Padding = vg.Points(10)
	for _, a := range []*plot.Axis{&p.X, &p.Y} {
		a.Label.TextStyle.Font = sans(11).Font
		a.Tick.Label.Font = sans(10).Font
		a.Label.Padding = vg.Points(4)
	}
	p.X.Label.Text, p.Y.Label.Text = xlabel, ylabel
	grid := plotter.NewGrid()
	grid.Vertical.Color, grid.Horizontal.Color = color.Gray{0xd0}, color.Gray{0xd0}
	grid.Vertical.Width, grid.Horizontal.Width = vg.Points(0.5), vg.Points(0.5)
	p.Add(grid)
	leg := plot.NewLegend()
	leg.TextStyle = sans(10.5)
	leg.Top, leg.Left = true, true
	leg.ThumbnailWidth = vg.Points(28)
	leg.Padding = vg.Points(3)
	return &chartDoc{plot: p, legend: leg}
}

// write renders the plot on top, then the legend and the caption in a band below it.
func (d *chartDoc) write(path string) error {
	const (
		width  = 10 * vg.Inch
		plotH  = 5.25 * vg.Inch
		margin = 36 // points, left of the legend and the caption
		gap    = 10 // points between the blocks
	)
	legH := d.legend.Rectangle(draw.Canvas{}).Size().Y
	capSty := sans(9)
	capSty.Color = colGrey
	lineH := capSty.Height("M") * 1.35
	capH := lineH * vg.Length(len(d.caption))
	band := gap + legH + gap + capH + gap
	c := vgsvg.New(width, plotH+band)
	dc := draw.New(c)
	dc.SetColor(color.White)
	dc.Fill(dc.Path())
	d.plot.Draw(draw.Crop(dc, 0, -gap, band, -gap))
	d.legend.Draw(draw.Crop(dc, margin, -margin, gap+capH+gap, -(plotH + gap)))
	for i, line := range d.caption {
		y := gap + capH - lineH*vg.Length(i+1)
		dc.FillText(capSty, vg.Point{X: margin, Y: y + capSty.FontExtents().Descent}, line)
	}
	var buf bytes.Buffer
	if _, err := c.WriteTo(&buf); err != nil {
		return err
	}
	// vgsvg names Liberation Sans alone; a viewer without it (a browser showing the
	// README) would fall back to its default serif. Arial has the same metrics, so the
	// layout, measured with Liberation's, still fits.
	out := bytes.ReplaceAll(buf.Bytes(), []byte("font-family:Liberation Sans;"),
		[]byte("font-family:'Liberation Sans',Arial,Helvetica,sans-serif;"))
	return writeFile(path, out)
}
