package h1client_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gpt-load/gpt-load/internal/h1client"
)

// okAnswer is a complete keep-alive answer.
const okAnswer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

// patience bounds every wait on a condition: far above what a healthy run
// needs (milliseconds), low enough that a hang fails the test, not the run.
const patience = 5 * time.Second

// waitFor polls cond until it holds, failing the test after patience.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", patience, what)
		}
		time.Sleep(time.Millisecond) // poll interval, not a synchronisation
	}
}

// within runs f on another goroutine and fails the test if it has not
// returned after patience: for calls that must return promptly (a Close
// that must not drain, a Read that a cancel must end).
func within(t testing.TB, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(patience):
		t.Fatalf("%s did not return within %v", what, patience)
	}
}

// rawServer is a TCP listener whose connections a test handles byte by
// byte: it decides what goes on the wire, and records what came.
type rawServer struct {
	URL  string
	Host string // host:port

	ln       net.Listener
	accepted atomic.Int32 // connections accepted
	ended    atomic.Int32 // connections whose handler returned; the server closed them

	mu      sync.Mutex
	closing bool
	conns   []net.Conn
	reqs    []seenRequest
	errs    []error // requests the server could not parse
	wg      sync.WaitGroup
}

// seenRequest is a request as the server read it.
type seenRequest struct {
	Conn int           // which connection, counted from 1 in accept order
	Head string        // request line and header lines as sent, blank line included
	Req  *http.Request // Head parsed (its body is empty: see Body)
	Body []byte        // the body, chunked framing removed
}

// rawConn is one accepted connection.
type rawConn struct {
	N  int // accept order, from 1
	nc net.Conn
	br *bufio.Reader
	s  *rawServer
}

// newRawServer listens on a loopback port and runs handle for each
// connection on its own goroutine; the connection is closed when handle
// returns. The listener and every connection are closed at cleanup.
func newRawServer(t testing.TB, handle func(c *rawConn)) *rawServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &rawServer{URL: "http://" + ln.Addr().String(), Host: ln.Addr().String(), ln: ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			n := int(s.accepted.Add(1))
			s.mu.Lock()
			if s.closing {
				s.mu.Unlock()
				nc.Close()
				continue
			}
			s.conns = append(s.conns, nc)
			s.wg.Add(1)
			s.mu.Unlock()
			go func() {
				defer s.wg.Done()
				defer s.ended.Add(1)
				defer nc.Close()
				handle(&rawConn{N: n, nc: nc, br: bufio.NewReader(nc), s: s})
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		s.closing = true
		for _, c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

// requests returns the requests read so far, in order.
func (s *rawServer) requests() []seenRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]seenRequest(nil), s.reqs...)
}

// parseErrors returns what the server could not parse as a request.
func (s *rawServer) parseErrors() []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]error(nil), s.errs...)
}

// paths lists the request URIs read so far, each prefixed by its
// connection: "1 GET /a".
func (s *rawServer) paths() []string {
	var out []string
	for _, r := range s.requests() {
		out = append(out, fmt.Sprintf("%d %s %s", r.Conn, r.Req.Method, r.Req.RequestURI))
	}
	return out
}

// readRequest reads one request, body included. It returns io.EOF when the
// connection ended cleanly between two requests; anything else that is not
// a whole request is recorded as a parse error.
func (c *rawConn) readRequest() (*seenRequest, error) {
	sr, err := c.readRequestLocked()
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	switch {
	case err == io.EOF:
	case err != nil:
		c.s.errs = append(c.s.errs, fmt.Errorf("conn %d: %w", c.N, err))
	default:
		c.s.reqs = append(c.s.reqs, *sr)
	}
	return sr, err
}

func (c *rawConn) readRequestLocked() (*seenRequest, error) {
	var head strings.Builder
	for {
		line, err := c.br.ReadString('\n')
		head.WriteString(line)
		if err != nil {
			if head.Len() == 0 {
				return nil, io.EOF // closed between requests
			}
			return nil, fmt.Errorf("partial request %q: %w", head.String(), err)
		}
		if line == "\r\n" || line == "\n" {
			break
		}
	}
	req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(head.String())))
	if err != nil {
		return nil, fmt.Errorf("malformed request %q: %w", head.String(), err)
	}
	var body []byte
	switch {
	case len(req.TransferEncoding) > 0:
		body, err = io.ReadAll(httputil.NewChunkedReader(c.br))
		for err == nil { // trailer section, up to its blank line
			var line string
			line, err = c.br.ReadString('\n')
			if line == "\r\n" {
				break
			}
		}
	case req.ContentLength > 0:
		body = make([]byte, req.ContentLength)
		_, err = io.ReadFull(c.br, body)
	}
	if err != nil {
		return nil, fmt.Errorf("request body after %q: %w", head.String(), err)
	}
	return &seenRequest{Conn: c.N, Head: head.String(), Req: req, Body: body}, nil
}

// write puts s on the wire; a failed write shows in the test's own checks.
func (c *rawConn) write(s string) {
	c.nc.Write([]byte(s))
}

// answerAll answers every request on the connection with answer, until the
// client closes it.
func (c *rawConn) answerAll(answer string) {
	for {
		if _, err := c.readRequest(); err != nil {
			return
		}
		c.write(answer)
	}
}

// answer builds a keep-alive 200 answer carrying body.
func answer(body string) string {
	return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
}

// connCount counts a httptest server's connections by state.
type connCount struct {
	opened, closed atomic.Int32
}

// newServer starts a httptest server that counts its connections; mod,
// when not nil, adjusts the server before it starts.
func newServer(t testing.TB, h http.HandlerFunc, mod func(*http.Server)) (*httptest.Server, *connCount) {
	t.Helper()
	cc := &connCount{}
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			cc.opened.Add(1)
		case http.StateClosed, http.StateHijacked:
			cc.closed.Add(1)
		}
	}
	if mod != nil {
		mod(srv.Config)
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, cc
}

// roundTripFunc is a RoundTripper made of a function.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// noFallback fails the test when the transport hands a request to its
// fallback: a test of the wire must not pass through net/http.
func noFallback(t testing.TB) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		t.Errorf("request for %s went to the fallback", r.URL)
		return nil, fmt.Errorf("unexpected fallback for %s", r.URL)
	})
}

// newTransport returns a transport whose idle connections are closed at
// cleanup (before the servers started earlier close); a nil Fallback
// becomes noFallback.
func newTransport(t testing.TB, o h1client.Options) *h1client.Transport {
	t.Helper()
	if o.Fallback == nil {
		o.Fallback = noFallback(t)
	}
	tr := h1client.New(o)
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

// newRequest builds a request or fails the test.
func newRequest(t testing.TB, method, url string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// fetch sends req, reads the body to its end and closes it.
func fetch(t testing.TB, tr http.RoundTripper, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatalf("RoundTrip(%s %s) error: %v", req.Method, req.URL, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("reading the body of %s %s: %v", req.Method, req.URL, err)
	}
	return resp, string(b)
}

// get fetches url with GET and returns the body.
func get(t testing.TB, tr http.RoundTripper, url string) string {
	t.Helper()
	_, body := fetch(t, tr, newRequest(t, http.MethodGet, url, nil))
	return body
}

// bodyRecorder is a request body that records its Close.
type bodyRecorder struct {
	io.Reader
	closes atomic.Int32
}

func (b *bodyRecorder) Close() error {
	b.closes.Add(1)
	return nil
}

// withBody sets a body of known length that has no GetBody: it cannot be
// replayed.
func withBody(req *http.Request, s string) *bodyRecorder {
	b := &bodyRecorder{Reader: strings.NewReader(s)}
	req.Body = b
	req.ContentLength = int64(len(s))
	req.GetBody = nil
	return b
}
