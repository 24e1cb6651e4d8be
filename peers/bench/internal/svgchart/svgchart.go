// Package svgchart draws grouped bar charts as standalone SVG, for the
// benchmark report: one group of bars per case, one bar per library.
package svgchart

import (
	"fmt"
	"html"
	"io"
	"math"
	"strings"
)

// Bars is a grouped bar chart. Values[g][s] is the value of series s in
// group g; NaN leaves the bar out (a case not run) and marks it "n/a".
type Bars struct {
	Title  string
	YLabel string // the unit, shown above the axis
	Groups []string
	Series []string
	Values [][]float64
	// Better says which way is better, shown under the title: "higher" or
	// "lower"; empty shows nothing.
	Better string
}

// Palette colours the series in order; the first is the project's own.
var Palette = []string{"#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"}

const (
	width        = 860
	height       = 440
	marginLeft   = 80
	marginRight  = 20
	marginTop    = 96
	marginBottom = 56
	fontFamily   = "Helvetica, Arial, sans-serif"
)

// Write renders the chart to w.
func (b *Bars) Write(w io.Writer) error {
	var sb strings.Builder
	fmt.Fprintf(&sb, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="%s">`+"\n",
		width, height, width, height, fontFamily)
	fmt.Fprintf(&sb, `<rect width="%d" height="%d" fill="#ffffff"/>`+"\n", width, height)
	fmt.Fprintf(&sb, `<text x="%d" y="24" font-size="17" font-weight="bold">%s</text>`+"\n", marginLeft, esc(b.Title))
	if b.Better != "" {
		fmt.Fprintf(&sb, `<text x="%d" y="42" font-size="12" fill="#555">%s is better</text>`+"\n", marginLeft, esc(b.Better))
	}
	b.legend(&sb)

	top, bottom := float64(marginTop), float64(height-marginBottom)
	left, right := float64(marginLeft), float64(width-marginRight)
	maxValue := 0.0
	for _, row := range b.Values {
		for _, v := range row {
			if !math.IsNaN(v) {
				maxValue = max(maxValue, v)
			}
		}
	}
	step, ticks := niceTicks(maxValue)
	yMax := step * float64(ticks)
	y := func(v float64) float64 { return bottom - (bottom-top)*v/yMax }

	fmt.Fprintf(&sb, `<text x="%d" y="%g" font-size="12" fill="#333">%s</text>`+"\n", 8, top-10, esc(b.YLabel))
	for i := 0; i <= ticks; i++ {
		v := step * float64(i)
		fmt.Fprintf(&sb, `<line x1="%g" x2="%g" y1="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", left, right, y(v), y(v))
		fmt.Fprintf(&sb, `<text x="%g" y="%.1f" font-size="11" text-anchor="end" fill="#333">%s</text>`+"\n", left-6, y(v)+4, Short(v))
	}

	groupWidth := (right - left) / float64(max(len(b.Groups), 1))
	barWidth := groupWidth * 0.8 / float64(max(len(b.Series), 1))
	for g, group := range b.Groups {
		x0 := left + groupWidth*float64(g) + groupWidth*0.1
		for s := range b.Series {
			x := x0 + barWidth*float64(s)
			v := math.NaN()
			if g < len(b.Values) && s < len(b.Values[g]) {
				v = b.Values[g][s]
			}
			if math.IsNaN(v) {
				fmt.Fprintf(&sb, `<text x="%.1f" y="%.1f" font-size="9" text-anchor="middle" fill="#888">n/a</text>`+"\n", x+barWidth/2, bottom-4)
				continue
			}
			fmt.Fprintf(&sb, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s, %s: %s</title></rect>`+"\n",
				x, y(v), barWidth*0.92, bottom-y(v), color(s), esc(group), esc(b.Series[s]), Short(v))
			fmt.Fprintf(&sb, `<text x="%.1f" y="%.1f" font-size="9" text-anchor="middle" fill="#333">%s</text>`+"\n",
				x+barWidth*0.46, y(v)-3, Short(v))
		}
		fmt.Fprintf(&sb, `<text x="%.1f" y="%g" font-size="12" text-anchor="middle">%s</text>`+"\n",
			left+groupWidth*(float64(g)+0.5), bottom+20, esc(group))
	}
	fmt.Fprintf(&sb, `<line x1="%g" x2="%g" y1="%g" y2="%g" stroke="#333"/>`+"\n", left, right, bottom, bottom)
	sb.WriteString("</svg>\n")
	_, err := io.WriteString(w, sb.String())
	return err
}

func (b *Bars) legend(sb *strings.Builder) {
	x := float64(marginLeft)
	for s, name := range b.Series {
		fmt.Fprintf(sb, `<rect x="%g" y="52" width="12" height="12" fill="%s"/>`, x, color(s))
		fmt.Fprintf(sb, `<text x="%g" y="62" font-size="12">%s</text>`+"\n", x+16, esc(name))
		x += 16 + 8*float64(len(name)) + 18
	}
}

func color(series int) string { return Palette[series%len(Palette)] }

func esc(s string) string { return html.EscapeString(s) }

// niceTicks returns a round step and how many steps reach past maxValue,
// so that the axis ends on a round number.
func niceTicks(maxValue float64) (step float64, ticks int) {
	if maxValue <= 0 {
		return 1, 1
	}
	raw := maxValue / 5
	magnitude := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		step = m * magnitude
		if step >= raw {
			break
		}
	}
	return step, int(math.Ceil(maxValue/step - 1e-9))
}

// Short formats v with at most three significant digits and a k, M or G
// suffix: 1234 is "1.23k".
func Short(v float64) string {
	abs := math.Abs(v)
	switch {
	case abs >= 1e9:
		return trim(v/1e9) + "G"
	case abs >= 1e6:
		return trim(v/1e6) + "M"
	case abs >= 1e3:
		return trim(v/1e3) + "k"
	default:
		return trim(v)
	}
}

func trim(v float64) string {
	var s string
	switch abs := math.Abs(v); {
	case abs >= 100:
		s = fmt.Sprintf("%.0f", v)
	case abs >= 10:
		s = fmt.Sprintf("%.1f", v)
	default:
		s = fmt.Sprintf("%.2f", v)
	}
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}
