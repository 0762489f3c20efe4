package eval

import (
	"encoding/json"
	"fmt"
	"html"
	"io"
	"math"
	"sort"
	"strings"
	"time"
)

// ReportInfo is what a comparison report shows besides the result.
type ReportInfo struct {
	Text      string    // the evaluated text file
	Generated time.Time // zero: not shown
	// QuantReport is the model's "quant_report" metadata, nil if it has
	// none; QuantNote says why it is absent.
	QuantReport json.RawMessage
	QuantNote   string
	Verdict     *Verdict
}

// TensorError is one tensor of a quantization report, as the report page
// reads it.
type TensorError struct {
	Name string
	Type string // dtype and group, "q4 g32"
	// Value is the chosen metric; Exact marks a tensor stored without
	// error (SNR +Inf, stored as null).
	Value float64
	Exact bool
}

// metricPreference lists the per-tensor error fields a report page can
// chart, best first, with whether higher is better.
var metricPreference = []struct {
	key    string
	higher bool
	label  string
}{
	{"snr_db", true, "signal-to-noise ratio, dB (higher is better)"},
	{"sqnr_db", true, "signal-to-quantization-noise ratio, dB (higher is better)"},
	{"rel_rmse", false, "relative RMS error (lower is better)"},
	{"relative_rmse", false, "relative RMS error (lower is better)"},
	{"nmse", false, "normalized mean squared error (lower is better)"},
	{"rmse", false, "RMS error (lower is better)"},
	{"mse", false, "mean squared error (lower is better)"},
	{"max_abs_err", false, "maximum absolute error (lower is better)"},
}

// ParseQuantReport reads a quantization report generically: a list of
// per-tensor objects, either the whole value or its "tensors" field, each
// with a "name" and numeric error fields. It returns the charted metric's
// description and the tensors.
func ParseQuantReport(raw json.RawMessage) (metric string, higherBetter bool, ts []TensorError, err error) {
	var list []map[string]json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(raw, &obj); err != nil {
			return "", false, nil, fmt.Errorf("quant_report: %w", err)
		}
		if err := json.Unmarshal(obj["tensors"], &list); err != nil {
			return "", false, nil, fmt.Errorf("quant_report: no list of tensors")
		}
	}
	key := ""
	for _, m := range metricPreference {
		for _, t := range list {
			if _, ok := t[m.key]; ok {
				key, metric, higherBetter = m.key, m.label, m.higher
				break
			}
		}
		if key != "" {
			break
		}
	}
	if key == "" {
		return "", false, nil, fmt.Errorf("quant_report: no known error field (snr_db, rmse, ...)")
	}
	str := func(t map[string]json.RawMessage, k string) string {
		var s string
		json.Unmarshal(t[k], &s)
		return s
	}
	for _, t := range list {
		te := TensorError{Name: str(t, "name"), Type: str(t, "type")}
		if te.Name == "" {
			te.Name = str(t, "tensor")
		}
		if te.Type == "" {
			te.Type = str(t, "dtype")
		}
		var g int
		if json.Unmarshal(t["group"], &g) == nil && g > 0 {
			te.Type += fmt.Sprintf(" g%d", g)
		}
		v, ok := t[key]
		if !ok {
			continue
		}
		if string(v) == "null" {
			te.Exact = true
		} else if err := json.Unmarshal(v, &te.Value); err != nil {
			continue
		}
		ts = append(ts, te)
	}
	return metric, higherBetter, ts, nil
}

// WriteReport writes a comparison as one self-contained HTML page: inline
// CSS and SVG, no scripts, nothing fetched.
func WriteReport(w io.Writer, r *CompareResult, info ReportInfo) error {
	var b strings.Builder
	e := html.EscapeString
	title := fmt.Sprintf("%s vs %s", baseName(r.Model), baseName(r.Base))
	fmt.Fprintf(&b, `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>kvant compare: %s</title>
<style>%s</style></head><body><main>
`, e(title), reportCSS)
	fmt.Fprintf(&b, "<header><div class=kicker>kvant compare</div><h1>%s</h1><p class=sub>", e(title))
	fmt.Fprintf(&b, "model <code>%s</code><br>base <code>%s</code>", e(r.Model), e(r.Base))
	if r.BaseFile != "" {
		fmt.Fprintf(&b, " (from <code>%s</code>, %s rows)", e(r.BaseFile), e(r.BaseEncoding))
	}
	fmt.Fprintf(&b, "<br>text <code>%s</code>: %d tokens, %d windows of %d, %d tokens scored (llama.cpp chunking)",
		e(info.Text), r.TextTokens, r.Windows, r.Context, r.Scored)
	if !info.Generated.IsZero() {
		fmt.Fprintf(&b, "<br>%s, %.1f s", info.Generated.UTC().Format("2006-01-02 15:04 MST"), r.Seconds)
	}
	b.WriteString("</p></header>\n")

	if v := info.Verdict; v != nil {
		cls, word := "pass", "PASS"
		if !v.Pass {
			cls, word = "fail", "FAIL"
		}
		fmt.Fprintf(&b, "<section class=\"verdict %s\"><strong>%s</strong><ul>", cls, word)
		for _, c := range v.Checks {
			mark := "✓"
			if !c.Pass {
				mark = "✗"
			}
			fmt.Fprintf(&b, "<li>%s %s %s, limit %s %s</li>", mark, e(c.Name), fmtCheck(c.Name, c.Value), e(c.Op), fmtCheck(c.Name, c.Limit))
		}
		b.WriteString("</ul></section>\n")
	}

	// Headline cards.
	b.WriteString("<section class=cards>")
	card := func(label, value, note string) {
		fmt.Fprintf(&b, "<div class=card><div class=label>%s</div><div class=value>%s</div><div class=note>%s</div></div>", label, value, note)
	}
	card("PPL ratio", fmt.Sprintf("%.4f", r.PPLRatio.Value), fmt.Sprintf("± %.2g &middot; model / base", r.PPLRatio.StdErr))
	card("Mean KLD", fmtSci(r.KLD.Mean), fmt.Sprintf("± %s nats/token", fmtSci(r.KLD.StdErr)))
	card("Top-1 agreement", fmt.Sprintf("%.2f%%", 100*r.Top1.Value), fmt.Sprintf("± %.2f%%", 100*r.Top1.StdErr))
	if g := r.Greedy; g != nil {
		card("Greedy match", fmt.Sprintf("%.1f / %d", g.Mean, g.GenTokens), fmt.Sprintf("tokens before divergence, min %d", g.Min))
	}
	b.WriteString("</section>\n")

	// Summary table.
	b.WriteString("<section><h2>Summary</h2><table class=summary><tbody>\n")
	row := func(k, v string) { fmt.Fprintf(&b, "<tr><th>%s</th><td>%s</td></tr>\n", k, v) }
	row("PPL base", fmt.Sprintf("%.4f ± %.4f", r.PPLBase.Value, r.PPLBase.StdErr))
	row("PPL model", fmt.Sprintf("%.4f ± %.4f", r.PPLModel.Value, r.PPLModel.StdErr))
	row("PPL model / base", fmt.Sprintf("%.5f ± %.5f", r.PPLRatio.Value, r.PPLRatio.StdErr))
	row("KLD mean", fmt.Sprintf("%s ± %s", fmtSci(r.KLD.Mean), fmtSci(r.KLD.StdErr)))
	row("KLD median / p90 / p99 / max", fmt.Sprintf("%s / %s / %s / %s", fmtSci(r.KLD.Median), fmtSci(r.KLD.P90), fmtSci(r.KLD.P99), fmtSci(r.KLD.Max)))
	row("Top-1 agreement", fmt.Sprintf("%.3f%% ± %.3f%%", 100*r.Top1.Value, 100*r.Top1.StdErr))
	row("Δp of the correct token, mean", fmt.Sprintf("%+.4f%% ± %.4f%%", 100*r.DeltaP.Value, 100*r.DeltaP.StdErr))
	row("Δp RMS", fmt.Sprintf("%.4f%% ± %.4f%%", 100*r.DeltaPRMS.Value, 100*r.DeltaPRMS.StdErr))
	row("Max |Δ logit|", fmt.Sprintf("%.4g", r.MaxLogitDiff))
	if g := r.Greedy; g != nil {
		row("Greedy continuation", fmt.Sprintf("%d prompts of %d tokens, %d generated: %.2f tokens match on average, min %d",
			g.Prompts, g.PromptLen, g.GenTokens, g.Mean, g.Min))
	}
	b.WriteString("</tbody></table></section>\n")

	// KLD histogram.
	b.WriteString("<section><h2>Per-token KL divergence</h2>")
	b.WriteString(kldHistogram(r))
	b.WriteString("</section>\n")

	if g := r.Greedy; g != nil && len(g.Matched) > 0 {
		b.WriteString("<section><h2>Greedy continuations</h2>")
		b.WriteString(greedyChart(g))
		b.WriteString("</section>\n")
	}

	// Per-tensor quantization error.
	b.WriteString("<section><h2>Per-tensor quantization error</h2>")
	if info.QuantReport == nil {
		note := info.QuantNote
		if note == "" {
			note = "the model carries no quant_report metadata"
		}
		fmt.Fprintf(&b, "<p class=muted>No quantization report: %s.</p>", e(note))
	} else if metric, higher, ts, err := ParseQuantReport(info.QuantReport); err != nil {
		fmt.Fprintf(&b, "<p class=muted>The quant_report metadata could not be read: %s.</p>", e(err.Error()))
	} else {
		b.WriteString(tensorChart(metric, higher, ts))
	}
	b.WriteString("</section>\n")

	b.WriteString(`<footer>Definitions: docs/validation.md in the kvant repository. KLD is KL(base‖model) in nats per scored token;
Δp is p<sub>model</sub> − p<sub>base</sub> of the correct next token. Uncertainties are standard errors.</footer>
</main></body></html>
`)
	_, err := io.WriteString(w, b.String())
	return err
}

func baseName(p string) string {
	p = strings.TrimRight(p, "/")
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[i+1:]
	}
	return p
}

func fmtSci(v float64) string {
	switch {
	case v == 0:
		return "0"
	case math.Abs(v) >= 0.01 && math.Abs(v) < 1000:
		return fmt.Sprintf("%.5f", v)
	}
	return fmt.Sprintf("%.3e", v)
}

func fmtCheck(name string, v float64) string {
	if strings.Contains(name, "top-1") {
		return fmt.Sprintf("%.3f%%", 100*v)
	}
	return fmtSci(v)
}

const reportCSS = `
:root{--fg:#1d2330;--muted:#667085;--line:#e4e7ec;--bg:#f7f8fa;--card:#fff;--accent:#3a5bd9;--accent2:#12a38a;--bad:#d14343;--good:#14804a}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:15px/1.5 -apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1080px;margin:0 auto;padding:32px 28px 48px}
header{margin-bottom:20px}
.kicker{text-transform:uppercase;letter-spacing:.12em;font-size:12px;color:var(--accent);font-weight:600}
h1{margin:4px 0 8px;font-size:28px}
h2{font-size:18px;margin:0 0 12px}
.sub{color:var(--muted);margin:0;font-size:13.5px}
code{font:12.5px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:#eef0f4;padding:1px 5px;border-radius:4px;color:#344054}
section{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:18px 20px;margin:16px 0}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(200px,1fr));gap:14px;background:none;border:0;padding:0}
.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:14px 16px}
.card .label{font-size:12.5px;color:var(--muted);text-transform:uppercase;letter-spacing:.06em}
.card .value{font-size:26px;font-weight:650;margin:2px 0;font-variant-numeric:tabular-nums}
.card .note{font-size:12.5px;color:var(--muted)}
table.summary{border-collapse:collapse;width:100%}
table.summary th{text-align:left;font-weight:500;color:var(--muted);width:42%}
table.summary th,table.summary td{padding:7px 4px;border-bottom:1px solid var(--line);font-variant-numeric:tabular-nums}
table.summary tr:last-child th,table.summary tr:last-child td{border-bottom:0}
.verdict{border-left:6px solid}
.verdict.pass{border-color:var(--good)}.verdict.pass strong{color:var(--good)}
.verdict.fail{border-color:var(--bad)}.verdict.fail strong{color:var(--bad)}
.verdict strong{font-size:20px}.verdict ul{margin:6px 0 0;padding-left:18px}
.muted{color:var(--muted)}
svg{display:block;max-width:100%;height:auto}
svg text{font-family:-apple-system,"Segoe UI",Roboto,Arial,sans-serif;fill:#344054}
.legend{font-size:12.5px;color:var(--muted);margin-top:6px}
footer{color:var(--muted);font-size:12.5px;margin-top:20px}
`

// kldHistogram draws the per-token KLD values in logarithmic bins, with
// exact zeros in a bin of their own, and marks the median, p90 and p99.
func kldHistogram(r *CompareResult) string {
	vals := r.KLDValues
	if len(vals) == 0 {
		return "<p class=muted>No scored tokens.</p>"
	}
	zeros, lo, hi := 0, math.Inf(1), 0.0
	for _, v := range vals {
		if v <= 0 {
			zeros++
			continue
		}
		lo, hi = min(lo, v), max(hi, v)
	}
	if zeros == len(vals) {
		return fmt.Sprintf("<p>All %d tokens have KLD exactly 0: the model's predictions equal the base's.</p>", zeros)
	}
	const nb = 40
	l0, l1 := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
	if l1 <= l0 {
		l1 = l0 + 1
	}
	counts := make([]int, nb)
	for _, v := range vals {
		if v > 0 {
			i := int((math.Log10(v) - l0) / (l1 - l0) * nb)
			counts[min(max(i, 0), nb-1)]++
		}
	}
	maxc := zeros
	for _, c := range counts {
		maxc = max(maxc, c)
	}
	const W, H, left, right, top, bottom = 1000, 300, 56, 16, 14, 44
	pw, ph := float64(W-left-right), float64(H-top-bottom)
	zeroW := 0.0
	if zeros > 0 {
		zeroW = pw / (nb + 3)
	}
	bw := (pw - zeroW*1.5) / nb
	x0 := float64(left) + zeroW*1.5
	var b strings.Builder
	fmt.Fprintf(&b, `<svg viewBox="0 0 %d %d" role="img" aria-label="histogram of per-token KL divergence">`, W, H)
	// Y grid.
	for _, f := range []float64{0, 0.25, 0.5, 0.75, 1} {
		y := float64(top) + ph*(1-f)
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#e4e7ec"/>`, left, W-right, y, y)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" font-size="11" text-anchor="end">%d</text>`, left-6, y+4, int(math.Round(f*float64(maxc))))
	}
	bar := func(x, w float64, c int, color, tip string) {
		h := ph * float64(c) / float64(maxc)
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s" rx="1.5"><title>%s</title></rect>`,
			x+0.6, float64(top)+ph-h, max(w-1.2, 0.5), h, color, html.EscapeString(tip))
	}
	if zeros > 0 {
		bar(float64(left), zeroW, zeros, "#98a2b3", fmt.Sprintf("KLD = 0: %d tokens", zeros))
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" font-size="11" text-anchor="middle">0</text>`, float64(left)+zeroW/2, H-bottom+16)
	}
	for i, c := range counts {
		a := math.Pow(10, l0+(l1-l0)*float64(i)/nb)
		z := math.Pow(10, l0+(l1-l0)*float64(i+1)/nb)
		bar(x0+bw*float64(i), bw, c, "#3a5bd9", fmt.Sprintf("%.3g – %.3g: %d tokens", a, z, c))
	}
	xOf := func(v float64) float64 { return x0 + (math.Log10(v)-l0)/(l1-l0)*(pw-zeroW*1.5) }
	for d := l0; d <= l1; d++ {
		x := xOf(math.Pow(10, d))
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#98a2b3"/>`, x, x, H-bottom, H-bottom+5)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" font-size="11" text-anchor="middle">1e%d</text>`, x, H-bottom+18, int(d))
	}
	fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="#667085"/>`, left, W-right, H-bottom, H-bottom)
	for i, m := range []struct {
		name string
		v    float64
		c    string
	}{{"median", r.KLD.Median, "#12a38a"}, {"mean", r.KLD.Mean, "#1d2330"}, {"p90", r.KLD.P90, "#e8a23a"}, {"p99", r.KLD.P99, "#d14343"}} {
		if m.v <= 0 {
			continue
		}
		x := xOf(m.v)
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="%s" stroke-width="1.6" stroke-dasharray="4 3"/>`, x, x, top, H-bottom, m.c)
		// Staggered, so labels of close markers do not overlap.
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" font-size="11" style="fill:%s;paint-order:stroke;stroke:#fff;stroke-width:3px" text-anchor="start">%s</text>`, x+3, top+10+13*i, m.c, m.name)
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="12" text-anchor="middle">KL(base‖model) per token, nats (log scale)</text>`, left+int(pw/2), H-4)
	b.WriteString("</svg>")
	fmt.Fprintf(&b, `<div class=legend>%d tokens; %d with KLD exactly 0. Dashed lines: median %s, p90 %s, p99 %s, mean %s.</div>`,
		len(vals), zeros, fmtSci(r.KLD.Median), fmtSci(r.KLD.P90), fmtSci(r.KLD.P99), fmtSci(r.KLD.Mean))
	return b.String()
}

// greedyChart shows, per prompt, how many generated tokens matched.
func greedyChart(g *GreedyResult) string {
	n := len(g.Matched)
	const W, H, left, top, bottom = 1000, 150, 40, 10, 30
	pw, ph := float64(W-left-10), float64(H-top-bottom)
	bw := pw / float64(n)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg viewBox="0 0 %d %d" role="img" aria-label="greedy continuation agreement per prompt">`, W, H)
	for _, f := range []float64{0, 0.5, 1} {
		y := float64(top) + ph*(1-f)
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#e4e7ec"/>`, left, W-10, y, y)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" font-size="11" text-anchor="end">%d</text>`, left-6, y+4, int(f*float64(g.GenTokens)))
	}
	for i, m := range g.Matched {
		// A prompt that diverged at once still gets a visible stub.
		h := max(ph*float64(m)/float64(g.GenTokens), 2)
		color := "#12a38a"
		if m < g.GenTokens {
			color = "#e8a23a"
		}
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s" rx="1.5"><title>prompt %d: %d of %d tokens match</title></rect>`,
			float64(left)+bw*float64(i)+1, float64(top)+ph-h, max(bw-2, 1), h, color, i+1, m, g.GenTokens)
		if n <= 40 {
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" font-size="10" text-anchor="middle">%d</text>`, float64(left)+bw*(float64(i)+0.5), H-bottom+14, i+1)
		}
	}
	b.WriteString("</svg>")
	fmt.Fprintf(&b, `<div class=legend>Tokens generated identically (greedy, %d per prompt) before the first difference, per prompt; green: all matched. Mean %.2f, min %d.</div>`,
		g.GenTokens, g.Mean, g.Min)
	return b.String()
}

// tensorChart draws one horizontal bar per tensor, in file order, coloured
// by storage type.
func tensorChart(metric string, higher bool, ts []TensorError) string {
	if len(ts) == 0 {
		return "<p class=muted>The quantization report lists no tensors.</p>"
	}
	var types []string
	seen := map[string]bool{}
	maxv := 0.0
	for _, t := range ts {
		if !seen[t.Type] {
			seen[t.Type] = true
			types = append(types, t.Type)
		}
		if !t.Exact && !math.IsInf(t.Value, 0) {
			maxv = max(maxv, t.Value)
		}
	}
	sort.Strings(types)
	palette := []string{"#3a5bd9", "#12a38a", "#e8a23a", "#9b51e0", "#d14343", "#2d9cdb", "#667085"}
	color := map[string]string{}
	for i, t := range types {
		color[t] = palette[i%len(palette)]
	}
	if maxv <= 0 {
		maxv = 1
	}
	const W, rowH, left, right, top = 1000, 16, 300, 90, 8
	H := top + rowH*len(ts) + 34
	pw := float64(W - left - right)
	var b strings.Builder
	fmt.Fprintf(&b, "<p class=muted>%s, one bar per tensor as the quantizer reported it.</p>", html.EscapeString(metric))
	fmt.Fprintf(&b, `<svg viewBox="0 0 %d %d" role="img" aria-label="per-tensor quantization error">`, W, H)
	for _, f := range []float64{0, 0.25, 0.5, 0.75, 1} {
		x := float64(left) + pw*f
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#e4e7ec"/>`, x, x, top, H-30)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" font-size="11" text-anchor="middle">%.3g</text>`, x, H-16, f*maxv)
	}
	for i, t := range ts {
		y := float64(top + rowH*i)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" font-size="11" text-anchor="end">%s</text>`, left-8, y+rowH-4, html.EscapeString(t.Name))
		label := fmt.Sprintf("%.4g", t.Value)
		w := pw * t.Value / maxv
		if t.Exact {
			label, w = "exact", 0
		}
		w = max(min(w, pw), 0)
		fmt.Fprintf(&b, `<rect x="%d" y="%.1f" width="%.1f" height="%d" fill="%s" rx="2"><title>%s (%s): %s</title></rect>`,
			left, y+2, w, rowH-4, color[t.Type], html.EscapeString(t.Name), html.EscapeString(t.Type), label)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="10.5" style="fill:#667085">%s</text>`, float64(left)+w+5, y+rowH-4, label)
	}
	b.WriteString("</svg><div class=legend>")
	for _, t := range types {
		name := t
		if name == "" {
			name = "(type not given)"
		}
		fmt.Fprintf(&b, `<span style="display:inline-block;width:10px;height:10px;border-radius:2px;background:%s;margin:0 5px 0 12px"></span>%s`, color[t], html.EscapeString(name))
	}
	if higher {
		b.WriteString(" &middot; exact tensors (no error) have no bar")
	}
	b.WriteString("</div>")
	return b.String()
}
