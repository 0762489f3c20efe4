package eval

import (
	"fmt"
	"strings"
)

// Check is one pass/fail criterion of a verdict.
type Check struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Limit float64 `json:"limit"`
	// Op is how Value must relate to Limit: "<=" or ">=".
	Op   string `json:"op"`
	Pass bool   `json:"pass"`
}

// Verdict is the outcome of a comparison's quality criteria.
type Verdict struct {
	Pass   bool    `json:"pass"`
	Checks []Check `json:"checks"`
}

// Judge applies the criteria: mean KLD at most maxKLD (nats) and top-1
// agreement at least minTop1 (a fraction). A negative limit is not
// checked; with no criteria Judge returns nil.
func (r *CompareResult) Judge(maxKLD, minTop1 float64) *Verdict {
	var v Verdict
	if maxKLD >= 0 {
		v.Checks = append(v.Checks, Check{Name: "mean KLD", Value: r.KLD.Mean, Limit: maxKLD, Op: "<=", Pass: r.KLD.Mean <= maxKLD})
	}
	if minTop1 >= 0 {
		v.Checks = append(v.Checks, Check{Name: "top-1 agreement", Value: r.Top1.Value, Limit: minTop1, Op: ">=", Pass: r.Top1.Value >= minTop1})
	}
	if len(v.Checks) == 0 {
		return nil
	}
	v.Pass = true
	for _, c := range v.Checks {
		v.Pass = v.Pass && c.Pass
	}
	return &v
}

// String lists the failed checks, or says all passed.
func (v *Verdict) String() string {
	var failed []string
	for _, c := range v.Checks {
		if !c.Pass {
			failed = append(failed, fmt.Sprintf("%s %.6g, limit %s %.6g", c.Name, c.Value, c.Op, c.Limit))
		}
	}
	if len(failed) == 0 {
		return "PASS"
	}
	return "FAIL: " + strings.Join(failed, "; ")
}
