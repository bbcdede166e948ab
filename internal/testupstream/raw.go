package testupstream

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
)

// Raw starts an upstream that does not go through net/http's server, for
// answers a real server would not send (resets, broken framing) or tests
// that need the upstream's goroutines shallow. For each connection it
// reads one request, its body included, so the client is not reset while
// it writes, then runs script with the connection, which is closed when
// script returns. It returns the base URL; the listener is closed at the
// end of the test.
func Raw(t testing.TB, script func(c net.Conn, r *http.Request)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				io.Copy(io.Discard, req.Body)
				script(c, req)
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}
