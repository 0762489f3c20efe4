package pipeline

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"

	"github.com/kvant-dev/kvant/format"
)

// DB is a signal-to-noise ratio in decibels. An exact tensor has +Inf,
// which JSON stores as null.
type DB float64

// MarshalJSON writes +Inf as null and rounds to 0.01 dB.
func (d DB) MarshalJSON() ([]byte, error) {
	if math.IsInf(float64(d), 0) || math.IsNaN(float64(d)) {
		return []byte("null"), nil
	}
	return json.Marshal(math.Round(float64(d)*100) / 100)
}

// UnmarshalJSON reads null as +Inf.
func (d *DB) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*d = DB(math.Inf(1))
		return nil
	}
	var v float64
	err := json.Unmarshal(b, &v)
	*d = DB(v)
	return err
}

func (d DB) String() string {
	if math.IsInf(float64(d), 1) {
		return "exact"
	}
	return fmt.Sprintf("%.2f", float64(d))
}

// TensorReport is one tensor's outcome. Errors compare the values as
// stored (decoded with the runner's code) with the source values.
type TensorReport struct {
	Name  string       `json:"name"`
	Shape []int64      `json:"shape"`
	From  format.DType `json:"from"`
	Type  format.DType `json:"type"`
	Group int          `json:"group,omitempty"`
	Scale format.DType `json:"scale,omitempty"`
	// Pad is the number of padding slots per row when the row length is
	// not a multiple of the group size.
	Pad           int     `json:"pad,omitempty"`
	Reason        string  `json:"reason"`
	BitsPerWeight float64 `json:"bits_per_weight"`
	RMSE          float64 `json:"rmse"`
	MaxAbsErr     float64 `json:"max_abs_err"`
	// SNR is 10·log10(Σx² / Σ(x - x̂)²).
	SNR      DB    `json:"snr_db"`
	BytesIn  int64 `json:"bytes_in"`
	BytesOut int64 `json:"bytes_out"`

	n            int64
	sumX2, sumE2 float64
}

// Totals sums the report over all tensors.
type Totals struct {
	Tensors       int     `json:"tensors"`
	Parameters    int64   `json:"parameters"`
	Padded        int     `json:"padded_tensors"`
	BytesIn       int64   `json:"bytes_in"`
	BytesOut      int64   `json:"bytes_out"`
	BitsPerWeight float64 `json:"bits_per_weight"`
	RMSE          float64 `json:"rmse"`
	MaxAbsErr     float64 `json:"max_abs_err"`
	SNR           DB      `json:"snr_db"`
}

// Report is the outcome of Quantize.
type Report struct {
	Path    string         `json:"path,omitempty"`
	Seconds float64        `json:"seconds,omitempty"`
	Tensors []TensorReport `json:"tensors"`
	Totals  Totals         `json:"totals"`
}

func snr(sumX2, sumE2 float64) DB {
	if sumE2 == 0 {
		return DB(math.Inf(1))
	}
	return DB(10 * math.Log10(sumX2/sumE2))
}

func (t *TensorReport) finish() {
	n, _ := format.NumElements(t.Shape)
	if n > 0 {
		t.BitsPerWeight = math.Round(float64(8*t.BytesOut)/float64(n)*1000) / 1000
		t.RMSE = math.Sqrt(t.sumE2 / float64(n))
	}
	t.n = n
	t.SNR = snr(t.sumX2, t.sumE2)
}

func (r *Report) total() {
	var sumX2, sumE2 float64
	t := Totals{Tensors: len(r.Tensors)}
	for _, tr := range r.Tensors {
		t.Parameters += tr.n
		t.BytesIn += tr.BytesIn
		t.BytesOut += tr.BytesOut
		t.MaxAbsErr = max(t.MaxAbsErr, tr.MaxAbsErr)
		if tr.Pad > 0 {
			t.Padded++
		}
		sumX2 += tr.sumX2
		sumE2 += tr.sumE2
	}
	if t.Parameters > 0 {
		t.BitsPerWeight = math.Round(float64(8*t.BytesOut)/float64(t.Parameters)*1000) / 1000
		t.RMSE = math.Sqrt(sumE2 / float64(t.Parameters))
	}
	t.SNR = snr(sumX2, sumE2)
	r.Totals = t
}

// WriteText prints the report as a table, one tensor per line, then the
// totals.
func (r *Report) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "TENSOR\tSHAPE\tTYPE\tBPW\tRMSE\tMAX ERR\tSNR dB\tBEFORE\tAFTER\t")
	for _, t := range r.Tensors {
		typ := string(t.Type)
		if t.Group > 0 {
			typ = fmt.Sprintf("%s/g%d", t.Type, t.Group)
			if t.Pad > 0 {
				typ += fmt.Sprintf("+pad%d", t.Pad)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.3f\t%.3g\t%.3g\t%s\t%s\t%s\t\n", t.Name, shapeString(t.Shape), typ,
			t.BitsPerWeight, t.RMSE, t.MaxAbsErr, t.SNR, humanBytes(t.BytesIn), humanBytes(t.BytesOut))
	}
	tt := r.Totals
	fmt.Fprintf(tw, "total (%d tensors, %d params)\t\t\t%.3f\t%.3g\t%.3g\t%s\t%s\t%s\t\n", tt.Tensors, tt.Parameters,
		tt.BitsPerWeight, tt.RMSE, tt.MaxAbsErr, tt.SNR, humanBytes(tt.BytesIn), humanBytes(tt.BytesOut))
	return tw.Flush()
}

func shapeString(s []int64) string {
	parts := make([]string, len(s))
	for i, d := range s {
		parts[i] = fmt.Sprint(d)
	}
	return strings.Join(parts, "x")
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
