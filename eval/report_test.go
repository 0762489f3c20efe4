package eval

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// The layout kvant-quantize stores (quant/pipeline.Report): a "tensors"
// list with SNR in dB, null for exact tensors.
const pipelineReport = `{"tensors":[
 {"name":"token_embd.weight","type":"q8","group":32,"rmse":0.0005,"snr_db":45.5},
 {"name":"blk.0.attn_norm.weight","type":"f32","rmse":0,"snr_db":null},
 {"name":"blk.0.attn_q.weight","type":"q4","group":32,"rmse":0.003,"snr_db":21.9}],
 "totals":{"tensors":3}}`

func TestParseQuantReport(t *testing.T) {
	metric, higher, ts, err := ParseQuantReport(json.RawMessage(pipelineReport))
	if err != nil {
		t.Fatal(err)
	}
	want := []TensorError{{"token_embd.weight", "q8 g32", 45.5, false}, {"blk.0.attn_norm.weight", "f32", 0, true}, {"blk.0.attn_q.weight", "q4 g32", 21.9, false}}
	if !higher || !strings.Contains(metric, "dB") || len(ts) != 3 {
		t.Fatalf("metric %q higher %v tensors %+v", metric, higher, ts)
	}
	for i := range want {
		if ts[i] != want[i] {
			t.Errorf("tensor %d: %+v, want %+v", i, ts[i], want[i])
		}
	}
	// A bare list with another metric.
	metric, higher, ts, err = ParseQuantReport(json.RawMessage(`[{"tensor":"a","dtype":"q8","rmse":0.5}]`))
	if err != nil || higher || !strings.Contains(metric, "RMS") || len(ts) != 1 || ts[0].Name != "a" || ts[0].Value != 0.5 {
		t.Fatalf("list form: %q %v %+v %v", metric, higher, ts, err)
	}
	if _, _, _, err := ParseQuantReport(json.RawMessage(`{"totals":{}}`)); err == nil {
		t.Fatal("no tensors: no error")
	}
}

func TestWriteReport(t *testing.T) {
	r := &CompareResult{Base: "base.kvant", Model: "m-q4.kvant", Context: 64, Windows: 2, Scored: 4,
		KLD: Distribution{Mean: 0.01, Median: 0.005, P90: 0.02, P99: 0.03, Max: 0.03}, KLDValues: []float64{0, 0.005, 0.004, 0.03},
		Greedy: &GreedyResult{Prompts: 2, PromptLen: 16, GenTokens: 32, Matched: []int{32, 5}, Mean: 18.5, Min: 5}}
	v := r.Judge(0.001, -1)
	var b bytes.Buffer
	if err := WriteReport(&b, r, ReportInfo{Text: "t.txt", QuantReport: json.RawMessage(pipelineReport), Verdict: v}); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	for _, want := range []string{"m-q4.kvant vs base.kvant", "FAIL", "blk.0.attn_q.weight", "exact", "q4 g32", "1 with KLD exactly 0", "18.50"} {
		if !strings.Contains(page, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if strings.Contains(page, "<script") || strings.Contains(page, "http") {
		t.Error("report is not self-contained")
	}
	b.Reset()
	WriteReport(&b, r, ReportInfo{QuantNote: "no metadata here"})
	if !strings.Contains(b.String(), "No quantization report: no metadata here") {
		t.Error("absent quant report not explained")
	}
}

func TestJudge(t *testing.T) {
	r := &CompareResult{KLD: Distribution{Mean: 0.02}, Top1: Estimate{Value: 0.95}}
	if r.Judge(-1, -1) != nil {
		t.Error("no criteria, verdict given")
	}
	if v := r.Judge(0.02, 0.95); !v.Pass || v.String() != "PASS" {
		t.Errorf("limits met exactly: %+v", v)
	}
	if v := r.Judge(0.01, 0.96); v.Pass || !strings.Contains(v.String(), "mean KLD") || !strings.Contains(v.String(), "top-1") {
		t.Errorf("both fail: %v", v)
	}
}
