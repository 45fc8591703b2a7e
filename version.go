package main

import (
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"

	"github.com/orderstream/orderstream/internal/buildinfo"
)

// printVersion prints the build: as lines of a name and a value ("unknown"
// where the build recorded nothing), or with asJSON as one document whose
// absent strings are "" and absent modified is null.
func printVersion(stdout io.Writer, info buildinfo.Info, asJSON bool) error {
	if asJSON {
		return writeJSON(stdout, info)
	}
	known := func(s string) string {
		if s == "" {
			return "unknown"
		}
		return s
	}
	modified := "unknown"
	if info.Modified != nil {
		modified = strconv.FormatBool(*info.Modified)
	}
	w := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "version\t%s\n", known(info.Version))
	fmt.Fprintf(w, "revision\t%s\n", known(info.Revision))
	fmt.Fprintf(w, "time\t%s\n", known(info.Time))
	fmt.Fprintf(w, "modified\t%s\n", modified)
	fmt.Fprintf(w, "go\t%s\n", known(info.GoVersion))
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write version: %w", err)
	}
	return nil
}
