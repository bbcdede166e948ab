package h1client_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gpt-load/gpt-load/internal/h1client"
)

func TestFraming(t *testing.T) {
	tests := []struct {
		name        string
		method      string
		answer      string // to the first request
		closeAfter  bool   // the server closes the connection after answer
		wantBody    string
		wantLen     int64
		wantTrailer http.Header
		reuse       bool // the connection carries the next request
	}{
		{name: "content-length", answer: answer("hello world"), wantBody: "hello world", wantLen: 11, reuse: true},
		{name: "empty content-length", answer: "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", wantLen: 0, reuse: true},
		{
			name:        "chunked with trailers",
			answer:      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum, X-Count\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\nX-Sum: 42\r\nX-Count: 2\r\n\r\n",
			wantBody:    "hello world",
			wantLen:     -1,
			wantTrailer: http.Header{"X-Sum": {"42"}, "X-Count": {"2"}},
			reuse:       true,
		},
		{name: "close-delimited", answer: "HTTP/1.1 200 OK\r\n\r\nuntil the end", closeAfter: true, wantBody: "until the end", wantLen: -1},
		{name: "connection close", answer: "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", wantBody: "ok", wantLen: 2},
		{name: "http/1.0 without keep-alive", answer: "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", wantBody: "ok", wantLen: 2},
		{name: "head", method: http.MethodHead, answer: "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", wantLen: 1000, reuse: true},
		{name: "head chunked", method: http.MethodHead, answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", wantLen: -1, reuse: true},
		{name: "204", answer: "HTTP/1.1 204 No Content\r\n\r\n", wantLen: 0, reuse: true},
		{name: "304 with the representation's length", answer: "HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 50\r\n\r\n", wantLen: 0, reuse: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newRawServer(t, func(c *rawConn) {
				if c.N == 1 {
					if _, err := c.readRequest(); err != nil {
						return
					}
					c.write(tt.answer)
					if tt.closeAfter {
						return
					}
				}
				c.answerAll(okAnswer)
			})
			tr := newTransport(t, h1client.Options{})
			method := cmp.Or(tt.method, http.MethodGet)
			resp, err := tr.RoundTrip(newRequest(t, method, s.URL+"/first", nil))
			if err != nil {
				t.Fatalf("RoundTrip(%s) error: %v", method, err)
			}
			if tt.wantTrailer != nil {
				for k := range tt.wantTrailer {
					if v, ok := resp.Trailer[k]; !ok || v != nil {
						t.Errorf("before EOF, Trailer[%q] = %q, %v; want declared (nil, true)", k, v, ok)
					}
				}
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatalf("reading the body: %v", err)
			}
			if string(b) != tt.wantBody {
				t.Errorf("body = %q; want %q", b, tt.wantBody)
			}
			if resp.ContentLength != tt.wantLen {
				t.Errorf("ContentLength = %d; want %d", resp.ContentLength, tt.wantLen)
			}
			if tt.wantTrailer != nil && !reflect.DeepEqual(resp.Trailer, tt.wantTrailer) {
				t.Errorf("after EOF, Trailer = %v; want %v", resp.Trailer, tt.wantTrailer)
			}
			wantIdle := 0
			if tt.reuse {
				wantIdle = 1
			}
			if got := tr.IdleConns(); got != wantIdle {
				t.Errorf("IdleConns() after the body = %d; want %d", got, wantIdle)
			}
			if !tt.reuse {
				waitFor(t, "the first connection to end", func() bool { return s.ended.Load() >= 1 })
			}
			if got := get(t, tr, s.URL+"/second"); got != "ok" {
				t.Errorf("second body = %q; want %q", got, "ok")
			}
			wantConns := int32(2)
			if tt.reuse {
				wantConns = 1
			}
			if got := s.accepted.Load(); got != wantConns {
				t.Errorf("server accepted %d connections; want %d (requests: %q)", got, wantConns, s.paths())
			}
		})
	}
}

func TestRequestWriting(t *testing.T) {
	tests := []struct {
		name     string
		method   string
		path     string
		prepare  func(req *http.Request) *bodyRecorder // may be nil
		wantLine string
		want     []string // in the head
		notWant  []string // not in the head
		wantBody string
		check    func(t *testing.T, sr seenRequest)
		closed   bool // the connection is not pooled
	}{
		{
			name:     "get with query",
			path:     "/a/b?x=1&y=%2F%20",
			wantLine: "GET /a/b?x=1&y=%2F%20 HTTP/1.1\r\n",
			notWant:  []string{"Content-Length", "Transfer-Encoding", "Connection"},
		},
		{
			name:     "custom method",
			method:   "PURGE",
			path:     "/cache/item",
			wantLine: "PURGE /cache/item HTTP/1.1\r\n",
		},
		{
			name:    "req.Host overrides the URL's host",
			prepare: func(req *http.Request) *bodyRecorder { req.Host = "api.example.test"; return nil },
			want:    []string{"\r\nHost: api.example.test\r\n"},
			check: func(t *testing.T, sr seenRequest) {
				if n := strings.Count(sr.Head, "Host:"); n != 1 {
					t.Errorf("head has %d Host lines; want 1:\n%s", n, sr.Head)
				}
			},
		},
		{
			name: "headers with several values",
			prepare: func(req *http.Request) *bodyRecorder {
				req.Header["X-Multi"] = []string{"a", "b, c"}
				req.Header.Set("X-One", "1")
				req.Header.Set("X-Tab", "x\ty")
				req.Header.Set("X-Utf8", "caf\xc3\xa9")
				return nil
			},
			want: []string{"\r\nX-Multi: a\r\nX-Multi: b, c\r\n", "\r\nX-One: 1\r\n", "\r\nX-Tab: x\ty\r\n", "\r\nX-Utf8: caf\xc3\xa9\r\n"},
			check: func(t *testing.T, sr seenRequest) {
				if got, want := sr.Req.Header["X-Multi"], []string{"a", "b, c"}; !slices.Equal(got, want) {
					t.Errorf("server saw X-Multi %q; want %q", got, want)
				}
			},
		},
		{
			name:     "body of known length",
			method:   http.MethodPost,
			prepare:  func(req *http.Request) *bodyRecorder { return withBody(req, "payload") },
			want:     []string{"\r\nContent-Length: 7\r\n"},
			notWant:  []string{"Transfer-Encoding"},
			wantBody: "payload",
		},
		{
			name:   "body of unknown length",
			method: http.MethodPut,
			prepare: func(req *http.Request) *bodyRecorder {
				b := withBody(req, "a body of unknown length")
				req.ContentLength = -1
				return b
			},
			want:     []string{"\r\nTransfer-Encoding: chunked\r\n"},
			notWant:  []string{"Content-Length"},
			wantBody: "a body of unknown length",
		},
		{name: "bodiless post", method: http.MethodPost, want: []string{"\r\nContent-Length: 0\r\n"}, notWant: []string{"Transfer-Encoding"}},
		{name: "bodiless put", method: http.MethodPut, want: []string{"\r\nContent-Length: 0\r\n"}},
		{name: "bodiless patch", method: http.MethodPatch, want: []string{"\r\nContent-Length: 0\r\n"}},
		{
			name:    "post with NoBody",
			method:  http.MethodPost,
			prepare: func(req *http.Request) *bodyRecorder { req.Body = http.NoBody; return nil },
			want:    []string{"\r\nContent-Length: 0\r\n"},
			notWant: []string{"Transfer-Encoding"},
		},
		{
			name:    "empty user agent means none",
			prepare: func(req *http.Request) *bodyRecorder { req.Header.Set("User-Agent", ""); return nil },
			notWant: []string{"User-Agent"},
		},
		{
			name:    "user agent",
			prepare: func(req *http.Request) *bodyRecorder { req.Header.Set("User-Agent", "probe/1.0"); return nil },
			want:    []string{"\r\nUser-Agent: probe/1.0\r\n"},
		},
		{
			name:   "framing headers come from the request, not its header",
			method: http.MethodPost,
			prepare: func(req *http.Request) *bodyRecorder {
				b := withBody(req, "abc")
				req.Header.Set("Content-Length", "99")
				req.Header.Set("Transfer-Encoding", "chunked")
				return b
			},
			want:     []string{"\r\nContent-Length: 3\r\n"},
			notWant:  []string{"Content-Length: 99", "Transfer-Encoding"},
			wantBody: "abc",
		},
		{
			name:    "close",
			prepare: func(req *http.Request) *bodyRecorder { req.Close = true; return nil },
			want:    []string{"\r\nConnection: close\r\n"},
			closed:  true,
		},
		{
			// The header form, as net/http honours it: sent once, as
			// "close", and the connection is not pooled.
			name:    "close in the header",
			prepare: func(req *http.Request) *bodyRecorder { req.Header.Set("Connection", "keep-alive, Close"); return nil },
			want:    []string{"\r\nConnection: close\r\n"},
			notWant: []string{"keep-alive"},
			closed:  true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newRawServer(t, func(c *rawConn) { c.answerAll(okAnswer) })
			tr := newTransport(t, h1client.Options{})
			req := newRequest(t, cmp.Or(tt.method, http.MethodGet), s.URL+cmp.Or(tt.path, "/"), nil)
			var rec *bodyRecorder
			if tt.prepare != nil {
				rec = tt.prepare(req)
			}
			if _, body := fetch(t, tr, req); body != "ok" {
				t.Errorf("answer body = %q; want %q", body, "ok")
			}
			if rec != nil && rec.closes.Load() == 0 {
				t.Errorf("req.Body was not closed")
			}
			reqs := s.requests()
			if len(reqs) != 1 {
				t.Fatalf("server read %d requests; want 1 (parse errors: %v)", len(reqs), s.parseErrors())
			}
			sr := reqs[0]
			if tt.wantLine != "" && !strings.HasPrefix(sr.Head, tt.wantLine) {
				t.Errorf("request line of %q; want %q", sr.Head, tt.wantLine)
			}
			if want := "\r\nHost: "; req.Host == "" && !strings.Contains(sr.Head, want+s.Host+"\r\n") {
				t.Errorf("head %q has no Host: %s", sr.Head, s.Host)
			}
			for _, w := range tt.want {
				if !strings.Contains(sr.Head, w) {
					t.Errorf("head %q lacks %q", sr.Head, w)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(sr.Head, w) {
					t.Errorf("head %q has %q", sr.Head, w)
				}
			}
			if string(sr.Body) != tt.wantBody {
				t.Errorf("server read body %q; want %q", sr.Body, tt.wantBody)
			}
			if tt.check != nil {
				tt.check(t, sr)
			}
			if tt.closed {
				if got := tr.IdleConns(); got != 0 {
					t.Errorf("IdleConns() = %d; want 0 after Connection: close", got)
				}
				waitFor(t, "the server to see the connection closed", func() bool { return s.ended.Load() == 1 })
			} else if got := tr.IdleConns(); got != 1 {
				t.Errorf("IdleConns() = %d; want 1", got)
			}
		})
	}
}

func TestInvalidHeaderRefused(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(req *http.Request)
	}{
		{"CRLF in a value", func(r *http.Request) { r.Header.Set("X-Evil", "a\r\nX-Injected: 1") }},
		{"LF in a value", func(r *http.Request) { r.Header.Set("X-Evil", "a\nX-Injected: 1") }},
		{"CR in a value", func(r *http.Request) { r.Header.Set("X-Evil", "a\rb") }},
		{"NUL in a value", func(r *http.Request) { r.Header.Set("X-Evil", "a\x00b") }},
		{"DEL in a value", func(r *http.Request) { r.Header.Set("X-Evil", "a\x7fb") }},
		{"CRLF in a second value", func(r *http.Request) { r.Header["X-Evil"] = []string{"fine", "b\r\nX-Injected: 1"} }},
		{"CRLF in the user agent", func(r *http.Request) { r.Header.Set("User-Agent", "ua\r\nX-Injected: 1") }},
		{"space in a name", func(r *http.Request) { r.Header["Bad Name"] = []string{"v"} }},
		{"colon in a name", func(r *http.Request) { r.Header["X-Bad:Name"] = []string{"v"} }},
		{"CRLF in a name", func(r *http.Request) { r.Header["X-A\r\nX-Injected"] = []string{"1"} }},
		{"empty name", func(r *http.Request) { r.Header[""] = []string{"v"} }},
		{"CRLF in req.Host", func(r *http.Request) { r.Host = "h.test\r\nX-Injected: 1" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newRawServer(t, func(c *rawConn) { c.answerAll(okAnswer) })
			tr := newTransport(t, h1client.Options{})
			req := newRequest(t, http.MethodPost, s.URL+"/evil", nil)
			rec := withBody(req, "body")
			tt.prepare(req)
			resp, err := tr.RoundTrip(req)
			if err == nil {
				resp.Body.Close()
				t.Fatalf("RoundTrip with %s succeeded; want an error", tt.name)
			}
			if rec.closes.Load() == 0 {
				t.Errorf("req.Body was not closed after the refusal")
			}
			if got := tr.IdleConns(); got != 0 {
				t.Errorf("IdleConns() = %d; want 0", got)
			}
			// The transport still works, and once every connection has
			// ended the server has read that request alone.
			if got := get(t, tr, s.URL+"/ok"); got != "ok" {
				t.Errorf("next body = %q; want ok", got)
			}
			tr.CloseIdleConnections()
			waitFor(t, "every server connection to end", func() bool { return s.ended.Load() == s.accepted.Load() })
			if errs := s.parseErrors(); len(errs) > 0 {
				t.Errorf("server read malformed bytes: %v", errs)
			}
			if got, want := s.paths(), []string{fmt.Sprintf("%d GET /ok", s.accepted.Load())}; !slices.Equal(got, want) {
				t.Errorf("server read %q; want %q", got, want)
			}
		})
	}
}

// TestRequestBodyLongerThanContentLength: a body that has more bytes than
// its Content-Length says must fail without those bytes reaching the
// upstream, which would read them as the start of a next request (request
// smuggling). net/http sends at most Content-Length bytes.
func TestRequestBodyLongerThanContentLength(t *testing.T) {
	const declared = "hello"
	smuggled := "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
	got := make(chan string, 1)
	s := newRawServer(t, func(c *rawConn) {
		b, _ := io.ReadAll(c.br)
		got <- string(b)
	})
	tr := newTransport(t, h1client.Options{})
	req := newRequest(t, http.MethodPost, s.URL+"/upload", nil)
	withBody(req, declared+smuggled+strings.Repeat("x", 16<<10))
	req.ContentLength = int64(len(declared))
	if resp, err := tr.RoundTrip(req); err == nil {
		resp.Body.Close()
		t.Fatalf("RoundTrip with a body longer than its Content-Length succeeded; want an error")
	}
	var wire string
	select {
	case wire = <-got:
	case <-time.After(patience):
		t.Fatalf("the server did not see the connection end")
	}
	head, body, _ := strings.Cut(wire, "\r\n\r\n")
	if len(body) > len(declared) {
		t.Errorf("the server received %d body bytes after a head declaring Content-Length: %d (%q...): the excess reaches the upstream as a next request",
			len(body), len(declared), body[:min(len(body), 48)])
	}
	if strings.Contains(wire, "/smuggled") {
		t.Errorf("the smuggled request line reached the server after head %q", head)
	}
}

func TestRequestBodyShorterThanContentLength(t *testing.T) {
	s := newRawServer(t, func(c *rawConn) { c.answerAll(okAnswer) })
	tr := newTransport(t, h1client.Options{})
	req := newRequest(t, http.MethodPost, s.URL+"/upload", nil)
	rec := withBody(req, "short")
	req.ContentLength = 10
	if resp, err := tr.RoundTrip(req); err == nil {
		resp.Body.Close()
		t.Fatalf("RoundTrip with a body shorter than its Content-Length succeeded; want an error")
	}
	if rec.closes.Load() == 0 {
		t.Errorf("req.Body was not closed")
	}
	if got := tr.IdleConns(); got != 0 {
		t.Errorf("IdleConns() = %d; want 0", got)
	}
	waitFor(t, "the server to see the connection end", func() bool { return s.ended.Load() == s.accepted.Load() })
	if got := s.requests(); len(got) != 0 {
		t.Errorf("server read %d whole requests; want none", len(got))
	}
}

func TestSequentialRequestsReuseOneConnection(t *testing.T) {
	srv, cc := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.Path, b)
	}, nil)
	tr := newTransport(t, h1client.Options{})
	for i := range 6 {
		method := []string{http.MethodGet, http.MethodPost, http.MethodPut}[i%3]
		var body io.Reader
		if method != http.MethodGet {
			body = strings.NewReader(fmt.Sprint("body", i))
		}
		_, got := fetch(t, tr, newRequest(t, method, fmt.Sprintf("%s/r%d", srv.URL, i), body))
		want := fmt.Sprintf("%s /r%d ", method, i)
		if body != nil {
			want += fmt.Sprint("body", i)
		}
		if got != want {
			t.Errorf("request %d: body = %q; want %q", i, got, want)
		}
		if n := tr.IdleConns(); n != 1 {
			t.Errorf("after request %d: IdleConns() = %d; want 1", i, n)
		}
	}
	if got := cc.opened.Load(); got != 1 {
		t.Errorf("server saw %d connections; want 1", got)
	}
}

func TestMaxIdlePerHost(t *testing.T) {
	const n = 6
	tests := []struct {
		maxIdle, want int
	}{
		{maxIdle: 0, want: 2}, // the default
		{maxIdle: 1, want: 1},
		{maxIdle: 4, want: 4},
		{maxIdle: 10, want: n},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint("max ", tt.maxIdle), func(t *testing.T) {
			var arrived atomic.Int32
			all := make(chan struct{})
			rel := make(chan struct{})
			srv, cc := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				// Hold every answer until all n requests are in, so each
				// has its own connection.
				if arrived.Add(1) == n {
					close(all)
				}
				select {
				case <-all:
				case <-rel:
				}
				io.WriteString(w, "ok")
			}, nil)
			t.Cleanup(func() { close(rel) }) // before the server's Close, which waits for handlers
			tr := newTransport(t, h1client.Options{MaxIdlePerHost: tt.maxIdle})
			var wg sync.WaitGroup
			for range n {
				wg.Go(func() {
					resp, err := tr.RoundTrip(newRequest(t, http.MethodGet, srv.URL, nil))
					if err != nil {
						t.Errorf("RoundTrip error: %v", err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				})
			}
			wg.Wait()
			if got := cc.opened.Load(); got != n {
				t.Errorf("server saw %d connections; want %d", got, n)
			}
			if got := tr.IdleConns(); got != tt.want {
				t.Errorf("IdleConns() = %d; want %d", got, tt.want)
			}
			waitFor(t, fmt.Sprintf("%d connections over the cap to be closed", n-tt.want), func() bool {
				return cc.closed.Load() == int32(n-tt.want)
			})
		})
	}
}

// TestIdleConnClosedByUpstream: a connection the upstream closed while it
// was idle is found before it carries a request; a POST that cannot be
// replayed goes on a fresh one without error.
func TestIdleConnClosedByUpstream(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T) (url string, closedIdle func() bool, conns func() int32)
	}{
		{
			name: "server idle timeout",
			setup: func(t *testing.T) (string, func() bool, func() int32) {
				srv, cc := newServer(t, func(w http.ResponseWriter, r *http.Request) {
					b, _ := io.ReadAll(r.Body)
					fmt.Fprintf(w, "got %s", b)
				}, func(s *http.Server) { s.IdleTimeout = 20 * time.Millisecond })
				return srv.URL, func() bool { return cc.closed.Load() == 1 }, cc.opened.Load
			},
		},
		{
			name: "closed after a keep-alive answer",
			setup: func(t *testing.T) (string, func() bool, func() int32) {
				s := newRawServer(t, func(c *rawConn) {
					for {
						sr, err := c.readRequest()
						if err != nil {
							return
						}
						c.write(answer("got " + string(sr.Body)))
						if c.N == 1 {
							return // no Connection: close: the client learns it from the socket
						}
					}
				})
				return s.URL, func() bool { return s.ended.Load() == 1 }, s.accepted.Load
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url, closedIdle, conns := tt.setup(t)
			tr := newTransport(t, h1client.Options{})
			if got := get(t, tr, url); got != "got " {
				t.Fatalf("first body = %q; want %q", got, "got ")
			}
			waitFor(t, "the upstream to close the idle connection", closedIdle)
			req := newRequest(t, http.MethodPost, url, nil)
			withBody(req, "once")
			if _, got := fetch(t, tr, req); got != "got once" {
				t.Errorf("POST body = %q; want %q", got, "got once")
			}
			if got := conns(); got != 2 {
				t.Errorf("server saw %d connections; want 2", got)
			}
		})
	}
}

// TestIdleConnWithUnaskedBytes: bytes an upstream sends that no request
// asked for mean the connection is out of step; it is not used again.
func TestIdleConnWithUnaskedBytes(t *testing.T) {
	const unasked = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstale"
	tests := []struct {
		name       string
		withAnswer bool // sent in the same write as the answer, else once idle
	}{
		{name: "sent with the answer", withAnswer: true},
		{name: "sent while idle", withAnswer: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			idle := make(chan struct{})
			sent := make(chan struct{})
			rel := make(chan struct{})
			s := newRawServer(t, func(c *rawConn) {
				if c.N > 1 {
					c.answerAll(answer("fresh"))
					return
				}
				if _, err := c.readRequest(); err != nil {
					return
				}
				if tt.withAnswer {
					c.write(okAnswer + unasked)
				} else {
					c.write(okAnswer)
					select {
					case <-idle:
					case <-rel:
						return
					}
					c.write(unasked)
				}
				close(sent)
				c.answerAll(answer("reused"))
			})
			t.Cleanup(func() { close(rel) }) // before the server's cleanup, which waits for handlers
			tr := newTransport(t, h1client.Options{})
			if got := get(t, tr, s.URL+"/first"); got != "ok" {
				t.Fatalf("first body = %q; want ok", got)
			}
			if tt.withAnswer {
				if got := tr.IdleConns(); got != 0 {
					t.Errorf("IdleConns() = %d; want 0 when bytes follow the answer", got)
				}
			} else {
				if got := tr.IdleConns(); got != 1 {
					t.Fatalf("IdleConns() = %d; want 1 before the unasked bytes", got)
				}
				close(idle)
			}
			<-sent
			req := newRequest(t, http.MethodPost, s.URL+"/second", nil)
			withBody(req, "x")
			if _, got := fetch(t, tr, req); got != "fresh" {
				t.Errorf("POST body = %q; want %q (from a fresh connection)", got, "fresh")
			}
			if got, want := s.paths(), []string{"1 GET /first", "2 POST /second"}; !slices.Equal(got, want) {
				t.Errorf("server read %q; want %q", got, want)
			}
			waitFor(t, "the client to close the out-of-step connection", func() bool { return s.ended.Load() == 1 })
		})
	}
}

func TestIdleTimeout(t *testing.T) {
	srv, cc := newServer(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }, nil)
	tr := newTransport(t, h1client.Options{IdleTimeout: 50 * time.Millisecond})
	get(t, tr, srv.URL)
	if got := tr.IdleConns(); got != 1 {
		t.Fatalf("IdleConns() right after the answer = %d; want 1", got)
	}
	waitFor(t, "the idle connection to be closed", func() bool {
		return tr.IdleConns() == 0 && cc.closed.Load() == 1
	})
	get(t, tr, srv.URL)
	if got := cc.opened.Load(); got != 2 {
		t.Errorf("server saw %d connections; want 2", got)
	}
}

// recordingFallback counts what reaches the fallback.
type recordingFallback struct {
	mu         sync.Mutex
	urls       []string
	closeIdles atomic.Int32
}

func (f *recordingFallback) RoundTrip(r *http.Request) (*http.Response, error) {
	f.mu.Lock()
	f.urls = append(f.urls, r.URL.String())
	f.mu.Unlock()
	if r.Body != nil {
		r.Body.Close()
	}
	return &http.Response{
		StatusCode: http.StatusOK,
		Header:     http.Header{},
		Body:       io.NopCloser(strings.NewReader("fallback")),
		Request:    r,
	}, nil
}

func (f *recordingFallback) CloseIdleConnections() { f.closeIdles.Add(1) }

func (f *recordingFallback) calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.urls)
}

func TestCloseIdleConnections(t *testing.T) {
	var arrived atomic.Int32
	both := make(chan struct{})
	rel := make(chan struct{})
	srv, cc := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if arrived.Add(1) == 2 {
			close(both)
		}
		select {
		case <-both:
		case <-rel:
		}
		io.WriteString(w, "ok")
	}, nil)
	t.Cleanup(func() { close(rel) }) // before the server's Close, which waits for handlers
	fb := &recordingFallback{}
	tr := newTransport(t, h1client.Options{Fallback: fb})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() { get(t, tr, srv.URL) })
	}
	wg.Wait()
	if got := tr.IdleConns(); got != 2 {
		t.Fatalf("IdleConns() = %d; want 2", got)
	}
	tr.CloseIdleConnections()
	if got := tr.IdleConns(); got != 0 {
		t.Errorf("IdleConns() after CloseIdleConnections = %d; want 0", got)
	}
	if got := fb.closeIdles.Load(); got != 1 {
		t.Errorf("fallback's CloseIdleConnections called %d times; want 1", got)
	}
	waitFor(t, "the server to see both connections closed", func() bool { return cc.closed.Load() == 2 })
	get(t, tr, srv.URL)
	if got := tr.IdleConns(); got != 1 {
		t.Errorf("IdleConns() after a later request = %d; want 1", got)
	}
	if got := cc.opened.Load(); got != 3 {
		t.Errorf("server saw %d connections; want 3", got)
	}
}

// TestStaleRetry: the first request leaves a connection idle; the server
// reads the second request on it and closes it without answering, so the
// client's peek at the idle socket could not have seen it coming.
func TestStaleRetry(t *testing.T) {
	tests := []struct {
		name         string
		req          func(t *testing.T, url string) *http.Request
		partial      string // what the first connection sends before it closes
		secondDrops  bool   // the fresh connection closes without answering too
		wantErr      bool
		wantAccepted int32
		wantBody     string // the request body the answering connection read
	}{
		{
			name:         "GET is retried",
			req:          func(t *testing.T, url string) *http.Request { return newRequest(t, http.MethodGet, url, nil) },
			wantAccepted: 2,
		},
		{
			name:         "HEAD is retried",
			req:          func(t *testing.T, url string) *http.Request { return newRequest(t, http.MethodHead, url, nil) },
			wantAccepted: 2,
		},
		{
			name: "POST is not retried",
			req: func(t *testing.T, url string) *http.Request {
				return newRequest(t, http.MethodPost, url, strings.NewReader("payload"))
			},
			wantErr:      true,
			wantAccepted: 1,
		},
		{
			name: "POST with Idempotency-Key is retried",
			req: func(t *testing.T, url string) *http.Request {
				req := newRequest(t, http.MethodPost, url, strings.NewReader("payload"))
				req.Header.Set("Idempotency-Key", "k-1")
				return req
			},
			wantAccepted: 2,
			wantBody:     "payload",
		},
		{
			name: "POST with X-Idempotency-Key is retried",
			req: func(t *testing.T, url string) *http.Request {
				req := newRequest(t, http.MethodPost, url, strings.NewReader("payload"))
				req.Header.Set("X-Idempotency-Key", "k-1")
				return req
			},
			wantAccepted: 2,
			wantBody:     "payload",
		},
		{
			name: "GET with a body and no GetBody is not retried",
			req: func(t *testing.T, url string) *http.Request {
				req := newRequest(t, http.MethodGet, url, nil)
				withBody(req, "payload")
				return req
			},
			wantErr:      true,
			wantAccepted: 1,
		},
		{
			name: "POST with Idempotency-Key and no GetBody is not retried",
			req: func(t *testing.T, url string) *http.Request {
				req := newRequest(t, http.MethodPost, url, nil)
				withBody(req, "payload")
				req.Header.Set("Idempotency-Key", "k-1")
				return req
			},
			wantErr:      true,
			wantAccepted: 1,
		},
		{
			name:         "broken after a 1xx answer is not retried",
			req:          func(t *testing.T, url string) *http.Request { return newRequest(t, http.MethodGet, url, nil) },
			partial:      "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
			wantErr:      true,
			wantAccepted: 1,
		},
		{
			name:         "retried once only",
			req:          func(t *testing.T, url string) *http.Request { return newRequest(t, http.MethodGet, url, nil) },
			secondDrops:  true,
			wantErr:      true,
			wantAccepted: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newRawServer(t, func(c *rawConn) {
				switch {
				case c.N == 1:
					if _, err := c.readRequest(); err != nil {
						return
					}
					c.write(okAnswer)
					if _, err := c.readRequest(); err == nil {
						c.write(tt.partial)
					} // then close, without a final answer
				case tt.secondDrops:
					c.readRequest()
				default:
					for {
						sr, err := c.readRequest()
						if err != nil {
							return
						}
						if sr.Req.Method == http.MethodHead {
							c.write("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
						} else {
							c.write(answer("fresh"))
						}
					}
				}
			})
			var reused []bool
			var mu sync.Mutex
			ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
				GotConn: func(i httptrace.GotConnInfo) {
					mu.Lock()
					reused = append(reused, i.Reused)
					mu.Unlock()
				},
			})
			tr := newTransport(t, h1client.Options{})
			get(t, tr, s.URL+"/first")
			if got := tr.IdleConns(); got != 1 {
				t.Fatalf("IdleConns() = %d; want 1", got)
			}
			req := tt.req(t, s.URL+"/second").WithContext(ctx)
			resp, err := tr.RoundTrip(req)
			if tt.wantErr {
				if err == nil {
					resp.Body.Close()
					t.Fatalf("RoundTrip succeeded; want an error")
				}
				if !errors.Is(err, io.EOF) {
					t.Errorf("RoundTrip error = %v; want one wrapping io.EOF", err)
				}
			} else {
				if err != nil {
					t.Fatalf("RoundTrip error: %v; want the retry's answer", err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if want := "fresh"; req.Method == http.MethodHead {
					if len(b) != 0 {
						t.Errorf("HEAD body = %q; want none", b)
					}
				} else if string(b) != want {
					t.Errorf("body = %q; want %q", b, want)
				}
			}
			if got := s.accepted.Load(); got != tt.wantAccepted {
				t.Errorf("server accepted %d connections; want %d", got, tt.wantAccepted)
			}
			wantPaths := []string{"1 GET /first", "1 " + req.Method + " /second"}
			wantReused := []bool{true}
			if tt.wantAccepted == 2 {
				wantPaths = append(wantPaths, "2 "+req.Method+" /second")
				wantReused = append(wantReused, false)
			}
			waitFor(t, "every server connection to end", func() bool {
				return s.ended.Load()+int32(tr.IdleConns()) == s.accepted.Load()
			})
			if got := s.paths(); !slices.Equal(got, wantPaths) {
				t.Errorf("server read %q; want %q", got, wantPaths)
			}
			if tt.wantBody != "" {
				if reqs := s.requests(); string(reqs[len(reqs)-1].Body) != tt.wantBody {
					t.Errorf("the retry carried body %q; want %q", reqs[len(reqs)-1].Body, tt.wantBody)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if !slices.Equal(reused, wantReused) {
				t.Errorf("GotConn Reused = %v; want %v", reused, wantReused)
			}
		})
	}
}

// TestStaleRetryGoesOnAFreshConn: the replay of a request whose reused
// connection broke goes on a new connection, not on another idle one that
// may be just as stale.
func TestStaleRetryGoesOnAFreshConn(t *testing.T) {
	var arrived atomic.Int32
	both := make(chan struct{})
	rel := make(chan struct{})
	s := newRawServer(t, func(c *rawConn) {
		if c.N > 2 {
			c.answerAll(answer("fresh"))
			return
		}
		// Connections 1 and 2 answer one request each, once both are in,
		// then close on the next request without answering.
		if _, err := c.readRequest(); err != nil {
			return
		}
		if arrived.Add(1) == 2 {
			close(both)
		}
		select {
		case <-both:
		case <-rel:
			return
		}
		c.write(okAnswer)
		c.readRequest()
	})
	t.Cleanup(func() { close(rel) }) // before the server's cleanup, which waits for handlers
	tr := newTransport(t, h1client.Options{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() { get(t, tr, s.URL+"/first") })
	}
	wg.Wait()
	if got := tr.IdleConns(); got != 2 {
		t.Fatalf("IdleConns() = %d; want 2", got)
	}
	if got := get(t, tr, s.URL+"/second"); got != "fresh" {
		t.Errorf("body = %q; want %q", got, "fresh")
	}
	var onIdle, onFresh int
	for _, r := range s.requests() {
		if r.Req.URL.Path != "/second" {
			continue
		}
		if r.Conn <= 2 {
			onIdle++
		} else {
			onFresh++
		}
	}
	if onIdle != 1 || onFresh != 1 {
		t.Errorf("the GET went on %d idle and %d new connections (%q); want 1 and 1", onIdle, onFresh, s.paths())
	}
}

func TestFreshConnWithoutAnswerIsNotRetried(t *testing.T) {
	s := newRawServer(t, func(c *rawConn) { c.readRequest() })
	tr := newTransport(t, h1client.Options{})
	resp, err := tr.RoundTrip(newRequest(t, http.MethodGet, s.URL+"/x", nil))
	if err == nil {
		resp.Body.Close()
		t.Fatalf("RoundTrip succeeded; want an error")
	}
	if !errors.Is(err, io.EOF) {
		t.Errorf("RoundTrip error = %v; want one wrapping io.EOF", err)
	}
	if got, want := s.paths(), []string{"1 GET /x"}; !slices.Equal(got, want) {
		t.Errorf("server read %q; want %q", got, want)
	}
	if got := s.accepted.Load(); got != 1 {
		t.Errorf("server accepted %d connections; want 1", got)
	}
}

func TestFallback(t *testing.T) {
	proxyURL, _ := url.Parse("http://proxy.test:3128")
	tests := []struct {
		name         string
		proxy        func(*http.Request) (*url.URL, error)
		prepare      func(req *http.Request) // may be nil
		https        bool
		wantFallback bool
	}{
		{name: "http goes on the wire"},
		{name: "https", https: true, wantFallback: true},
		{
			name:         "upgrade",
			prepare:      func(r *http.Request) { r.Header.Set("Connection", "Upgrade"); r.Header.Set("Upgrade", "websocket") },
			wantFallback: true,
		},
		{
			name:         "proxy names a proxy",
			proxy:        func(*http.Request) (*url.URL, error) { return proxyURL, nil },
			wantFallback: true,
		},
		{
			name:  "proxy names none",
			proxy: func(*http.Request) (*url.URL, error) { return nil, nil },
		},
		{
			name: "request trailers",
			prepare: func(r *http.Request) {
				r.Method = http.MethodPost
				withBody(r, "x")
				r.ContentLength = -1
				r.Trailer = http.Header{"X-Sum": nil}
			},
			wantFallback: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newRawServer(t, func(c *rawConn) { c.answerAll(answer("wire")) })
			fb := &recordingFallback{}
			var proxied atomic.Int32
			var proxy func(*http.Request) (*url.URL, error)
			if tt.proxy != nil {
				proxy = func(r *http.Request) (*url.URL, error) {
					proxied.Add(1)
					return tt.proxy(r)
				}
			}
			tr := newTransport(t, h1client.Options{Fallback: fb, Proxy: proxy})
			u := s.URL + "/x"
			if tt.https {
				u = "https://" + s.Host + "/x"
			}
			req := newRequest(t, http.MethodGet, u, nil)
			if tt.prepare != nil {
				tt.prepare(req)
			}
			_, body := fetch(t, tr, req)
			want, wantCalls, wantWire := "wire", 0, 1
			if tt.wantFallback {
				want, wantCalls, wantWire = "fallback", 1, 0
			}
			if body != want {
				t.Errorf("body = %q; want %q", body, want)
			}
			if got := fb.calls(); len(got) != wantCalls {
				t.Errorf("fallback got %q; want %d requests", got, wantCalls)
			}
			if tt.proxy != nil && proxied.Load() == 0 {
				t.Errorf("Options.Proxy was not consulted")
			}
			if got := len(s.requests()); got != wantWire {
				t.Errorf("server read %d requests; want %d", got, wantWire)
			}
		})
	}
}

func TestDialError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // a port bound then closed: connection refused
	tr := newTransport(t, h1client.Options{})
	req := newRequest(t, http.MethodPost, "http://"+addr+"/x", nil)
	rec := withBody(req, "body")
	resp, err := tr.RoundTrip(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("RoundTrip to a closed port succeeded")
	}
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "dial" {
		t.Errorf("RoundTrip error = %#v; want a *net.OpError with Op dial", err)
	}
	if rec.closes.Load() == 0 {
		t.Errorf("req.Body was not closed after the dial failed")
	}
}

func TestDialAddress(t *testing.T) {
	tests := []struct {
		url, want string
	}{
		{"http://upstream.test/x", "upstream.test:80"},
		{"http://upstream.test:8080/x", "upstream.test:8080"},
		{"http://[::1]/x", "[::1]:80"},
		{"http://10.0.0.1:81/x", "10.0.0.1:81"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			errDial := errors.New("no network in this test")
			var network, addr string
			tr := newTransport(t, h1client.Options{Dial: func(_ context.Context, n, a string) (net.Conn, error) {
				network, addr = n, a
				return nil, errDial
			}})
			_, err := tr.RoundTrip(newRequest(t, http.MethodGet, tt.url, nil))
			if !errors.Is(err, errDial) {
				t.Errorf("RoundTrip error = %v; want the dial's", err)
			}
			if network != "tcp" || addr != tt.want {
				t.Errorf("Dial(%q, %q); want (tcp, %q)", network, addr, tt.want)
			}
		})
	}
}

func TestMalformedAnswer(t *testing.T) {
	tests := []struct {
		name        string
		answer      string
		closeAfter  bool
		wantBodyErr bool // the headers parse; the body fails
	}{
		{name: "bad status code", answer: "HTTP/1.1 abc OK\r\nContent-Length: 2\r\n\r\nok"},
		{name: "not http", answer: "SSH-2.0-OpenSSH_9.6\r\n\r\n"},
		{name: "bad content-length", answer: "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"},
		{name: "bad header line", answer: "HTTP/1.1 200 OK\r\nno colon here\r\nContent-Length: 2\r\n\r\nok"},
		{name: "101 unasked", answer: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"},
		{name: "headers cut short", answer: "HTTP/1.1 200 OK\r\nContent-Le", closeAfter: true},
		{name: "bad chunk size", answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", wantBodyErr: true},
		{name: "body cut short", answer: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello", closeAfter: true, wantBodyErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newRawServer(t, func(c *rawConn) {
				if c.N > 1 {
					c.answerAll(okAnswer)
					return
				}
				if _, err := c.readRequest(); err != nil {
					return
				}
				c.write(tt.answer)
				if !tt.closeAfter {
					c.answerAll(answer("same connection"))
				}
			})
			tr := newTransport(t, h1client.Options{})
			resp, err := tr.RoundTrip(newRequest(t, http.MethodGet, s.URL+"/x", nil))
			if tt.wantBodyErr {
				if err != nil {
					t.Fatalf("RoundTrip error: %v; want the headers, then a body error", err)
				}
				_, err = io.ReadAll(resp.Body)
				resp.Body.Close()
				if err == nil {
					t.Errorf("reading the body succeeded; want an error")
				}
			} else if err == nil {
				resp.Body.Close()
				t.Fatalf("RoundTrip succeeded with status %d; want an error", resp.StatusCode)
			}
			if got := tr.IdleConns(); got != 0 {
				t.Errorf("IdleConns() = %d; want 0", got)
			}
			waitFor(t, "the broken connection to end", func() bool { return s.ended.Load() == 1 })
			if got := get(t, tr, s.URL+"/next"); got != "ok" {
				t.Errorf("next body = %q; want ok from a fresh connection", got)
			}
			if got := s.accepted.Load(); got != 2 {
				t.Errorf("server accepted %d connections; want 2", got)
			}
		})
	}
}

// traceRecorder records the client trace hooks in order.
type traceRecorder struct {
	mu     sync.Mutex
	events []string
	err1xx error // what Got1xxResponse returns
}

func (r *traceRecorder) add(format string, args ...any) {
	r.mu.Lock()
	r.events = append(r.events, fmt.Sprintf(format, args...))
	r.mu.Unlock()
}

func (r *traceRecorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	ev := r.events
	r.events = nil
	return ev
}

func (r *traceRecorder) context() context.Context {
	return httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		GetConn: func(hostPort string) { r.add("GetConn %s", hostPort) },
		GotConn: func(i httptrace.GotConnInfo) {
			r.add("GotConn reused=%v idle=%v conn=%v", i.Reused, i.WasIdle, i.Conn != nil)
		},
		WroteHeaders:         func() { r.add("WroteHeaders") },
		WroteRequest:         func(i httptrace.WroteRequestInfo) { r.add("WroteRequest err=%v", i.Err) },
		GotFirstResponseByte: func() { r.add("GotFirstResponseByte") },
		Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			r.add("Got1xxResponse %d %s", code, h.Get("Link"))
			return r.err1xx
		},
	})
}

func TestTrace(t *testing.T) {
	const hints = "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
	s := newRawServer(t, func(c *rawConn) {
		for i := 0; ; i++ {
			if _, err := c.readRequest(); err != nil {
				return
			}
			switch i {
			case 0:
				c.write(hints + okAnswer)
			case 1:
				c.write("HTTP/1.1 100 Continue\r\n\r\n" + hints + answer("second"))
			default:
				c.write(okAnswer)
			}
		}
	})
	tr := newTransport(t, h1client.Options{})
	rec := &traceRecorder{}
	ctx := rec.context()

	req := newRequest(t, http.MethodPost, s.URL+"/first", strings.NewReader("body"))
	resp, body := fetch(t, tr, req.WithContext(ctx))
	if resp.StatusCode != http.StatusOK || body != "ok" {
		t.Errorf("first answer = %d %q; want 200 ok", resp.StatusCode, body)
	}
	if got := resp.Header.Get("Link"); got != "" {
		t.Errorf("the final answer has the 103's Link %q", got)
	}
	want := []string{
		"GetConn " + s.Host,
		"GotConn reused=false idle=false conn=true",
		"WroteHeaders",
		"WroteRequest err=<nil>",
		"GotFirstResponseByte",
		"Got1xxResponse 103 </style.css>; rel=preload",
	}
	if got := rec.take(); !slices.Equal(got, want) {
		t.Errorf("first request's trace:\n got %q\nwant %q", got, want)
	}

	resp, body = fetch(t, tr, newRequest(t, http.MethodGet, s.URL+"/second", nil).WithContext(ctx))
	if resp.StatusCode != http.StatusOK || body != "second" {
		t.Errorf("second answer = %d %q; want 200 second", resp.StatusCode, body)
	}
	want = []string{
		"GetConn " + s.Host,
		"GotConn reused=true idle=true conn=true",
		"WroteHeaders",
		"WroteRequest err=<nil>",
		"GotFirstResponseByte",
		"Got1xxResponse 100 ",
		"Got1xxResponse 103 </style.css>; rel=preload",
	}
	if got := rec.take(); !slices.Equal(got, want) {
		t.Errorf("second request's trace:\n got %q\nwant %q", got, want)
	}
}

func TestGot1xxResponseErrorAborts(t *testing.T) {
	s := newRawServer(t, func(c *rawConn) {
		if _, err := c.readRequest(); err != nil {
			return
		}
		c.write("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + okAnswer)
		c.answerAll(okAnswer)
	})
	tr := newTransport(t, h1client.Options{})
	errStop := errors.New("too many hints")
	rec := &traceRecorder{err1xx: errStop}
	resp, err := tr.RoundTrip(newRequest(t, http.MethodGet, s.URL, nil).WithContext(rec.context()))
	if err == nil {
		resp.Body.Close()
		t.Fatalf("RoundTrip succeeded; want the hook's error")
	}
	if !errors.Is(err, errStop) {
		t.Errorf("RoundTrip error = %v; want %v", err, errStop)
	}
	if got := tr.IdleConns(); got != 0 {
		t.Errorf("IdleConns() = %d; want 0", got)
	}
	waitFor(t, "the connection to be closed", func() bool { return s.ended.Load() == 1 })
}

// TestConcurrent runs many exchanges at once, small answers and streams,
// against one server; run it under -race.
func TestConcurrent(t *testing.T) {
	const (
		n       = 200
		maxIdle = 4
		chunks  = 8
	)
	srv, _ := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		id := r.URL.Query().Get("id")
		if r.URL.Path == "/small" {
			b, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "small %s %s", id, b)
			return
		}
		rc := http.NewResponseController(w)
		for i := range chunks {
			fmt.Fprintf(w, "chunk %s %d\n", id, i)
			if err := rc.Flush(); err != nil {
				return
			}
		}
	}, nil)
	tr := h1client.New(h1client.Options{MaxIdlePerHost: maxIdle, Fallback: noFallback(t)})
	before := runtime.NumGoroutine()

	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			var req *http.Request
			var want strings.Builder
			if i%2 == 0 {
				req = newRequest(t, http.MethodPost, fmt.Sprintf("%s/small?id=%d", srv.URL, i), strings.NewReader(fmt.Sprint("b", i)))
				fmt.Fprintf(&want, "small %d b%d", i, i)
			} else {
				req = newRequest(t, http.MethodGet, fmt.Sprintf("%s/stream?id=%d", srv.URL, i), nil)
				for j := range chunks {
					fmt.Fprintf(&want, "chunk %d %d\n", i, j)
				}
			}
			// A context that can end, so that the transport watches it.
			resp, err := tr.RoundTrip(req.WithContext(t.Context()))
			if err != nil {
				t.Errorf("request %d: %v", i, err)
				return
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || string(b) != want.String() {
				t.Errorf("request %d: body %q, %v; want %q", i, b, err, want.String())
			}
		})
	}
	wg.Wait()
	if got := tr.IdleConns(); got > maxIdle || got == 0 {
		t.Errorf("IdleConns() = %d; want 1 to %d", got, maxIdle)
	}
	tr.CloseIdleConnections()
	// Every client connection is closed, so the server's goroutines end;
	// the transport itself must have left none behind.
	deadline := time.Now().Add(patience)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines after, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(time.Millisecond) // poll interval
	}
}

// FuzzHeaderValue: a header value is refused exactly when it holds a
// control byte other than tab; one that is sent arrives as one header line
// with that value.
func FuzzHeaderValue(f *testing.F) {
	for _, v := range []string{
		"plain", "a\tb", " padded\t", "", "caf\xc3\xa9", "\xff\xfe",
		"a\r\nX-Injected: 1", "a\nb", "a\rb", "a\x00b", "a\x7fb", "\x01", "a\r\n\r\nGET /smuggled HTTP/1.1",
	} {
		f.Add(v)
	}
	s := newRawServer(f, func(c *rawConn) { c.answerAll(okAnswer) })
	tr := newTransport(f, h1client.Options{})
	f.Fuzz(func(t *testing.T, v string) {
		valid := true
		for i := 0; i < len(v); i++ {
			if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
				valid = false
			}
		}
		before := len(s.requests())
		req := newRequest(t, http.MethodGet, s.URL+"/fuzz", nil)
		req.Header.Set("X-Fuzz", v)
		resp, err := tr.RoundTrip(req)
		if !valid {
			if err == nil {
				resp.Body.Close()
				t.Fatalf("header value %q was sent; want it refused", v)
			}
			return
		}
		if err != nil {
			t.Fatalf("header value %q refused: %v", v, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		reqs := s.requests()
		if len(reqs) != before+1 {
			t.Fatalf("server read %d requests for one sent (value %q): %q", len(reqs)-before, v, s.paths()[before:])
		}
		if got, want := reqs[before].Req.Header["X-Fuzz"], []string{strings.Trim(v, " \t")}; !slices.Equal(got, want) {
			t.Errorf("server read X-Fuzz %q; want %q", got, want)
		}
		if errs := s.parseErrors(); len(errs) > 0 {
			t.Fatalf("server read malformed bytes: %v", errs)
		}
	})
}
