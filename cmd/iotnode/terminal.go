package main

import (
	"io"
	"os"
)

// isTerminal reports whether w is a character device (an interactive
// terminal), where the demo may redraw its status line in place.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
