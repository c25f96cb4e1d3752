package publish

import (
	"bytes"
	"fmt"
	"html"
	"math"
)

// The colours of the series, in order (the same as dash.js): readable on
// white and distinct for the common colour-vision deficiencies.
var palette = []string{"#0072b2", "#e69f00", "#009e73", "#cc79a7", "#d55e00", "#56b4e9"}

// renderSVG draws a chart as a standalone SVG document, for print and for
// articles: the same numbers as the page's chart and its CSV.
func renderSVG(c *chart, subtitle string) []byte {
	const W, H = 800, 420
	const left, right, top, bottom = 70, 20, 60, 70
	pw, ph := float64(W-left-right), float64(H-top-bottom)
	var b bytes.Buffer
	esc := html.EscapeString
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-labelledby="t d" font-family="sans-serif" font-size="12">`, W, H, W, H)
	fmt.Fprintf(&b, `<title id="t">%s</title><desc id="d">%s</desc>`, esc(c.Title), esc(c.Desc))
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#fff"/>`, W, H)
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="16" font-weight="bold">%s</text>`, left, esc(c.Title))
	fmt.Fprintf(&b, `<text x="%d" y="40" fill="#444">%s</text>`, left, esc(subtitle))

	var plotted []series
	for _, s := range c.Series {
		if s.Plot {
			plotted = append(plotted, s)
		}
	}
	ymax := 0.0
	for _, s := range plotted {
		for _, v := range s.Values {
			ymax = math.Max(ymax, v)
		}
	}
	step := niceStep(ymax / 5)
	ymax = math.Max(step, math.Ceil(ymax/step)*step)
	y := func(v float64) float64 { return float64(top) + ph - v/ymax*ph }
	n := len(c.X)
	x := func(i int) float64 {
		if c.Kind == "bars" {
			return float64(left) + (float64(i)+0.5)*pw/float64(max(n, 1))
		}
		if n <= 1 {
			return float64(left) + pw/2
		}
		return float64(left) + float64(i)*pw/float64(n-1)
	}
	// Grid and y axis.
	for v := 0.0; v <= ymax+step/2; v += step {
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/>`, left, W-right, y(v), y(v))
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end" dominant-baseline="middle">%s</text>`, left-6, y(v), formatNum(v))
	}
	fmt.Fprintf(&b, `<text transform="translate(16 %.0f) rotate(-90)" text-anchor="middle">%s</text>`, float64(top)+ph/2, esc(c.YLabel))
	// X labels: at most about 10.
	every := max(1, (n+9)/10)
	for i := 0; i < n; i += every {
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`, x(i), H-bottom+18, esc(c.X[i]))
	}
	fmt.Fprintf(&b, `<text x="%.0f" y="%d" text-anchor="middle">%s</text>`, float64(left)+pw/2, H-bottom+40, esc(c.XLabel))
	if n == 0 {
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="middle" fill="#444">No data in this period</text>`, float64(left)+pw/2, float64(top)+ph/2)
	}
	for k, s := range plotted {
		col := palette[k%len(palette)]
		if c.Kind == "bars" {
			bw := pw / float64(max(n, 1)) * 0.8
			for i, v := range s.Values {
				fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s: %s</title></rect>`,
					x(i)-bw/2, y(v), bw, y(0)-y(v), col, esc(c.X[i]), formatNum(v))
			}
			continue
		}
		b.WriteString(`<polyline fill="none" stroke-width="2" stroke="` + col + `" points="`)
		for i, v := range s.Values {
			fmt.Fprintf(&b, "%.1f,%.1f ", x(i), y(v))
		}
		b.WriteString(`"/>`)
		// Legend.
		lx := left + k*90
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="14" height="4" fill="%s"/><text x="%d" y="%d">%s</text>`, lx, H-14, col, lx+18, H-10, esc(s.Name))
	}
	fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#333"/>`, left, W-right, y(0), y(0))
	b.WriteString(`</svg>`)
	return b.Bytes()
}

// niceStep rounds a grid step up to 1, 2 or 5 times a power of ten.
func niceStep(x float64) float64 {
	if x <= 0 || math.IsNaN(x) || math.IsInf(x, 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(x)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= x {
			return m * p
		}
	}
	return 10 * p
}
