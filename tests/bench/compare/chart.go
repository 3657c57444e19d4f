package main

import (
	"errors"
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// serverColors: one colour per server, p50 solid and p99 dashed.
var serverColors = map[string]color.Color{
	"edgekv": color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
	"etcd":   color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
}

// drawChart writes a PNG of p50 and p99 latency (log scale) against
// throughput, a line per server and percentile, each point labelled with
// its client count.
func drawChart(path string, series map[string][]chartPoint) error {
	p := plot.New()
	p.Title.Text = "put latency against throughput (3 members, loopback)"
	p.X.Label.Text = "throughput (puts/s)"
	p.Y.Label.Text = "latency (ms, log scale)"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.TickerFunc(logTicks)
	p.X.Tick.Marker = plot.TickerFunc(linearTicks)
	p.X.Min = 0
	// Latency grows with throughput, so the lower right stays empty.
	p.Legend.Top = false
	p.Legend.Left = false
	p.Legend.XOffs = -vg.Points(8)
	p.Legend.YOffs = vg.Points(8)
	p.Add(plotter.NewGrid())

	drawn := 0
	for _, name := range []string{"edgekv", "etcd"} {
		pts := series[name]
		for _, pc := range []struct {
			label string
			y     func(chartPoint) float64
			dash  []vg.Length
		}{
			{"p50", func(c chartPoint) float64 { return c.p50 }, nil},
			{"p99", func(c chartPoint) float64 { return c.p99 }, []vg.Length{vg.Points(5), vg.Points(3)}},
		} {
			var xys plotter.XYs
			var labels []string
			for _, c := range pts {
				y := pc.y(c)
				// A log axis cannot show 0 or NaN.
				if y <= 0 || math.IsNaN(y) || math.IsNaN(c.throughput) {
					continue
				}
				xys = append(xys, plotter.XY{X: c.throughput, Y: y})
				labels = append(labels, strconv.Itoa(c.clients))
			}
			if len(xys) == 0 {
				continue
			}
			line, points, err := plotter.NewLinePoints(xys)
			if err != nil {
				return err
			}
			col := serverColors[name]
			line.Color, points.Color = col, col
			line.Width = vg.Points(1.5)
			line.Dashes = pc.dash
			points.Shape = draw.CircleGlyph{}
			if pc.label == "p99" {
				points.Shape = draw.TriangleGlyph{}
			}
			lab, err := plotter.NewLabels(plotter.XYLabels{XYs: xys, Labels: labels})
			if err != nil {
				return err
			}
			for i := range lab.TextStyle {
				lab.TextStyle[i].Color = col
				lab.TextStyle[i].Font.Size = vg.Points(7)
			}
			lab.Offset = vg.Point{X: vg.Points(4), Y: vg.Points(2)}
			p.Add(line, points, lab)
			p.Legend.Add(fmt.Sprintf("%s %s", name, pc.label), line, points)
			drawn++
		}
	}
	if drawn == 0 {
		return errors.New("no put load has a result to draw")
	}
	p.Legend.Add("point labels: clients")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return p.Save(8*vg.Inch, 5*vg.Inch, path)
}

// linearTicks labels round numbers, at most about eight, without decimals.
func linearTicks(lo, hi float64) []plot.Tick {
	if !(hi > lo) {
		return []plot.Tick{{Value: lo, Label: formatTick(lo)}}
	}
	raw := (hi - lo) / 8
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, f := range []float64{1, 2, 2.5, 5, 10} {
		if step = f * mag; step >= raw {
			break
		}
	}
	var ticks []plot.Tick
	for v := math.Ceil(lo/step) * step; v <= hi+step*1e-9; v += step {
		ticks = append(ticks, plot.Tick{Value: v, Label: formatTick(v)})
		if minor := v + step/2; minor < hi {
			ticks = append(ticks, plot.Tick{Value: minor})
		}
	}
	return ticks
}

// logTicks labels 1, 2 and 5 times the powers of ten between lo and hi.
func logTicks(lo, hi float64) []plot.Tick {
	var ticks []plot.Tick
	for e := math.Floor(math.Log10(lo)); math.Pow(10, e) <= hi; e++ {
		for _, f := range []float64{1, 2, 5} {
			if v := f * math.Pow(10, e); v >= lo && v <= hi {
				ticks = append(ticks, plot.Tick{Value: v, Label: formatTick(v)})
			}
		}
	}
	return ticks
}

func formatTick(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
