package h1client

import "io"

// HoldsReadBuffer reports whether the connection under an answer's body
// holds its read buffer (false while WaitReady lent it back).
func HoldsReadBuffer(b io.ReadCloser) bool { return !b.(*body).c.bufferless.Load() }
