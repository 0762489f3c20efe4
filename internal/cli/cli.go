// Package cli holds what kvant's three commands share: exit codes, JSON
// output and error reporting.
package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
)

// Exit codes, the same for every kvant command.
const (
	ExitOK = 0
	// ExitFailure: the operation failed (bad input, I/O error).
	ExitFailure = 1
	// ExitUsage: the command line was wrong.
	ExitUsage = 2
	// ExitCheckFailed: the command ran but a check it performs failed (a
	// checksum mismatch in verify, a quality verdict in compare).
	ExitCheckFailed = 3
)

// ExitError carries an exit code through cobra.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// CheckFailed wraps err so the command exits with ExitCheckFailed.
func CheckFailed(err error) error { return &ExitError{Code: ExitCheckFailed, Err: err} }

// usageError marks errors from flag and argument parsing.
type usageError struct{ error }

func (u usageError) Unwrap() error { return u.error }

// Execute runs a root command and exits with its code.
func Execute(root *cobra.Command) {
	os.Exit(Run(root, os.Args[1:], os.Stderr))
}

// Run runs a root command with args and returns a meaningful exit code,
// printing errors to stderr as "NAME: error". Tests call it directly.
func Run(root *cobra.Command, args []string, stderr io.Writer) int {
	root.SilenceUsage = true
	root.SilenceErrors = true
	root.SetArgs(args)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError{err} })
	wrapArgs(root)
	err := root.Execute()
	if err == nil {
		return ExitOK
	}
	fmt.Fprintf(stderr, "%s: %v\n", root.Name(), err)
	var ee *ExitError
	var ue usageError
	switch {
	case errors.As(err, &ee):
		return ee.Code
	case errors.As(err, &ue), isCobraUsage(err):
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", root.Name())
		return ExitUsage
	}
	return ExitFailure
}

// wrapArgs makes positional-argument errors usage errors.
func wrapArgs(c *cobra.Command) {
	if c.Args != nil {
		check := c.Args
		c.Args = func(cmd *cobra.Command, args []string) error {
			if err := check(cmd, args); err != nil {
				return usageError{err}
			}
			return nil
		}
	}
	for _, sub := range c.Commands() {
		wrapArgs(sub)
	}
}

func isCobraUsage(err error) bool {
	msg := err.Error()
	return len(msg) > 16 && msg[:16] == "unknown command "
}

// PrintJSON writes v as indented JSON.
func PrintJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
