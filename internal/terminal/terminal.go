// Package terminal tells whether a writer is a terminal: the test that
// decides if log text is coloured and written directly.
package terminal

import (
	"io"
	"os"
)

// Is reports whether w is an *os.File open on a character device (a
// terminal). Any other writer, or a file it cannot stat, is not.
func Is(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
