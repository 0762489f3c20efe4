// Package progress reports the advance of long operations on stderr: a bar
// when stderr is a terminal, plain lines otherwise (logs, CI), and nothing
// when quiet.
package progress

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// Reporter tracks progress through a known amount of work.
type Reporter struct {
	bar      *progressbar.ProgressBar
	out      io.Writer
	total    int64
	done     int64
	what     string
	lastLine time.Time
}

// New starts reporting on stderr. total is in bytes; what describes the
// operation ("convert", "quantize").
func New(what string, total int64, quiet bool) *Reporter {
	r := &Reporter{total: total, what: what}
	if quiet {
		return r
	}
	if term.IsTerminal(int(os.Stderr.Fd())) {
		r.bar = progressbar.NewOptions64(total,
			progressbar.OptionSetWriter(os.Stderr),
			progressbar.OptionSetDescription(what),
			progressbar.OptionShowBytes(true),
			progressbar.OptionSetWidth(30),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionClearOnFinish(),
		)
		return r
	}
	r.out = os.Stderr
	return r
}

// Step records that n more bytes are done, with the item now in progress.
func (r *Reporter) Step(item string, n int64) {
	r.done += n
	switch {
	case r.bar != nil:
		r.bar.Describe(fmt.Sprintf("%s %-28.28s", r.what, item))
		r.bar.Add64(n)
	case r.out != nil:
		// Plain output: one line at most every 2 seconds, so logs stay
		// readable for models with thousands of tensors.
		if time.Since(r.lastLine) >= 2*time.Second || r.done == r.total {
			pct := 100.0
			if r.total > 0 {
				pct = 100 * float64(r.done) / float64(r.total)
			}
			fmt.Fprintf(r.out, "%s: %5.1f%% %s\n", r.what, pct, item)
			r.lastLine = time.Now()
		}
	}
}

// Done ends the report.
func (r *Reporter) Done() {
	if r.bar != nil {
		r.bar.Finish()
	}
}
