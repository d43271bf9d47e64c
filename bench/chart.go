package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// chartLockers fixes each locker's colour across panels.
var chartLockers = allLockers

// writeCharts draws cycle.png: one panel per database, the uncontended
// cycle's throughput by goroutine count, one bar per locker.
func writeCharts(dir string, res *results) error {
	var panels []*plot.Plot
	for _, d := range res.DBs {
		if len(d.Cycle) == 0 {
			continue
		}
		p, err := cyclePanel(d)
		if err != nil {
			return err
		}
		panels = append(panels, p)
	}
	if len(panels) == 0 {
		return nil
	}
	const panelW, h = 11 * vg.Centimeter, 10 * vg.Centimeter
	img := vgimg.NewWith(vgimg.UseWH(panelW*vg.Length(len(panels)), h), vgimg.UseDPI(110))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 1, Cols: len(panels), PadX: vg.Millimeter * 4, PadTop: vg.Millimeter * 2,
		PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	grid := [][]*plot.Plot{panels}
	canvases := plot.Align(grid, tiles, dc)
	for i, p := range panels {
		p.Draw(canvases[0][i])
	}
	f, err := os.Create(filepath.Join(dir, "cycle.png"))
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// wholeTicks labels gonum's default ticks as whole numbers.
type wholeTicks struct{}

func (wholeTicks) Ticks(lo, hi float64) []plot.Tick {
	ticks := plot.DefaultTicks{}.Ticks(lo, hi)
	for i := range ticks {
		if ticks[i].Label != "" {
			ticks[i].Label = fmt.Sprintf("%.0f", ticks[i].Value)
		}
	}
	return ticks
}

func cyclePanel(d *dbResult) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = d.Title + ": uncontended cycle"
	p.Y.Label.Text = "cycles per second (median of rounds)"
	p.X.Label.Text = "goroutines"
	var concs []int
	var present []string
	for _, c := range d.Cycle {
		if !slices.Contains(concs, c.Conc) {
			concs = append(concs, c.Conc)
		}
		if !slices.Contains(present, c.Locker) {
			present = append(present, c.Locker)
		}
	}
	slices.Sort(concs)
	names := make([]string, len(concs))
	for i, c := range concs {
		names[i] = fmt.Sprint(c)
	}
	p.NominalX(names...)
	w := vg.Points(9)
	n := 0
	for ci, l := range chartLockers {
		if !slices.Contains(present, l) {
			continue
		}
		vals := make(plotter.Values, len(concs))
		for i, conc := range concs {
			if c := find(d.Cycle, l, func(x *cell) bool { return x.Conc == conc }); c != nil {
				vals[i] = c.opsPerSec()
			}
		}
		bars, err := plotter.NewBarChart(vals, w)
		if err != nil {
			return nil, err
		}
		bars.LineStyle.Width = 0
		bars.Color = plotutil.Color(ci)
		bars.Offset = w * vg.Length(2*n-len(present)+1) / 2
		p.Add(bars)
		p.Legend.Add(l, bars)
		n++
	}
	p.Legend.Top = true
	p.Legend.Left = true
	p.Y.Min = 0
	p.Y.Max *= 1.3 // room for the legend
	p.Y.Tick.Marker = wholeTicks{}
	p.X.Min, p.X.Max = -0.6, float64(len(concs))-0.4
	return p, nil
}
