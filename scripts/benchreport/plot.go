package main

import (
	"fmt"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

type plotFile struct {
	file, title, unit string
	ylabel            string
	ops               []string
}

var plotFiles = []plotFile{
	{"scale-reads.png", "GET latency against the number of shards", "ns/op", "ms", []string{"get_shards", "get_nodes", "get_node", "get_bdbs", "get_actions"}},
	{"scale-model.png", "Plans, snapshots and log replay against the number of shards", "ns/op", "ms", []string{"plan_maintenance_on", "plan_enslave_node", "snapshot_restore", "log_replay"}},
	{"scale-memory.png", "Memory against the number of shards", "", "MiB", []string{"model-MiB", "rss-MiB"}},
}

// plotScale draws the scale curves, log-log, one line per operation.
func plotScale(r results, dir string) error {
	for _, pf := range plotFiles {
		p := plot.New()
		p.Title.Text = pf.title
		p.X.Label.Text = "shards"
		p.Y.Label.Text = pf.ylabel
		p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
		p.X.Tick.Marker, p.Y.Tick.Marker = plot.LogTicks{Prec: -1}, plot.LogTicks{Prec: -1}
		p.Legend.Top, p.Legend.Left = true, true
		var lines []any
		lo, hi := 0.0, 0.0
		for _, op := range pf.ops {
			var pts plotter.XYs
			for _, n := range scaleSizes {
				name, unit := scaleName(n, op), pf.unit
				if unit == "" {
					name, unit = scaleName(n, "memory"), op
				}
				v, ok := r.get(name, unit)
				if !ok || v <= 0 {
					continue
				}
				if pf.unit == "ns/op" {
					v = ms(v)
				}
				pts = append(pts, plotter.XY{X: float64(n), Y: v})
				if lo == 0 || v < lo {
					lo = v
				}
				hi = max(hi, v)
			}
			if len(pts) > 0 {
				lines = append(lines, op, pts)
			}
		}
		if len(lines) == 0 {
			return fmt.Errorf("plot %s: the run measured none of %v", pf.file, pf.ops)
		}
		// Fixed ranges, padded: log ticks need a span to divide.
		p.X.Min, p.X.Max = float64(scaleSizes[0])/1.5, float64(scaleSizes[len(scaleSizes)-1])*1.5
		p.Y.Min, p.Y.Max = lo/2, hi*2
		if err := plotutil.AddLinePoints(p, lines...); err != nil {
			return fmt.Errorf("plot %s: %w", pf.file, err)
		}
		if err := p.Save(7*vg.Inch, 4.5*vg.Inch, filepath.Join(dir, pf.file)); err != nil {
			return fmt.Errorf("save %s: %w", pf.file, err)
		}
	}
	return nil
}
