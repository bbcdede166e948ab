package h1client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gpt-load/gpt-load/internal/h1client"
)

var errClientGone = errors.New("client went away")

// cancelCase is a way to end a request's context, and the error the
// transport must then return.
type cancelCase struct {
	name string
	// ctx returns the context, what ends it, and what releases it
	ctx  func() (ctx context.Context, end, release func())
	want error
}

var cancelCases = []cancelCase{
	{
		name: "cancel",
		ctx: func() (context.Context, func(), func()) {
			ctx, cancel := context.WithCancel(context.Background())
			return ctx, cancel, cancel
		},
		want: context.Canceled,
	},
	{
		name: "cancel with cause",
		ctx: func() (context.Context, func(), func()) {
			ctx, cancel := context.WithCancelCause(context.Background())
			return ctx, func() { cancel(errClientGone) }, func() { cancel(nil) }
		},
		want: errClientGone,
	},
}

// stallingServer answers headers, or headers and a first part of the body,
// then holds the exchange until the client closes the connection; ended
// counts the handlers that saw it closed.
func stallingServer(t *testing.T, part string) (url string, arrived <-chan struct{}, ended *atomic.Int32, cc *connCount) {
	t.Helper()
	arr := make(chan struct{}, 16)
	ended = &atomic.Int32{}
	rel := make(chan struct{})
	srv, cc := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		arr <- struct{}{}
		if part != "" {
			io.WriteString(w, part)
			http.NewResponseController(w).Flush()
		}
		select {
		case <-r.Context().Done():
			ended.Add(1)
		case <-rel:
		}
	}, nil)
	t.Cleanup(func() { close(rel) }) // before the server's Close, which waits for handlers
	return srv.URL, arr, ended, cc
}

func await(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(patience):
		t.Fatalf("timed out waiting for %s", what)
	}
}

func TestCancelWhileWaitingForHeaders(t *testing.T) {
	cases := append(slices.Clone(cancelCases), cancelCase{
		name: "deadline with cause",
		ctx: func() (context.Context, func(), func()) {
			ctx, cancel := context.WithTimeoutCause(context.Background(), 100*time.Millisecond, errClientGone)
			return ctx, func() {}, cancel // the deadline ends it
		},
		want: errClientGone,
	})
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			url, arrived, ended, _ := stallingServer(t, "")
			tr := newTransport(t, h1client.Options{})
			ctx, cancel, release := tt.ctx()
			defer release()
			errc := make(chan error, 1)
			go func() {
				resp, err := tr.RoundTrip(newRequest(t, http.MethodGet, url, nil).WithContext(ctx))
				if err == nil {
					resp.Body.Close()
				}
				errc <- err
			}()
			await(t, arrived, "the request to reach the server")
			cancel()
			var err error
			within(t, "RoundTrip after the cancel", func() { err = <-errc })
			if !errors.Is(err, tt.want) {
				t.Errorf("RoundTrip error = %v; want %v", err, tt.want)
			}
			if got := tr.IdleConns(); got != 0 {
				t.Errorf("IdleConns() = %d; want 0", got)
			}
			waitFor(t, "the server to see the connection closed", func() bool { return ended.Load() == 1 })
		})
	}
}

func TestCancelMidBody(t *testing.T) {
	for _, tt := range cancelCases {
		t.Run(tt.name, func(t *testing.T) {
			url, _, ended, _ := stallingServer(t, "part")
			tr := newTransport(t, h1client.Options{})
			ctx, cancel, release := tt.ctx()
			defer release()
			resp, err := tr.RoundTrip(newRequest(t, http.MethodGet, url, nil).WithContext(ctx))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			buf := make([]byte, 4)
			if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "part" {
				t.Fatalf("first read = %q, %v; want part", buf, err)
			}
			errc := make(chan error, 1)
			go func() {
				_, err := resp.Body.Read(buf)
				errc <- err
			}()
			cancel()
			within(t, "Read after the cancel", func() { err = <-errc })
			if !errors.Is(err, tt.want) {
				t.Errorf("Read error = %v; want %v", err, tt.want)
			}
			if _, err := resp.Body.Read(buf); err == nil || err == io.EOF {
				t.Errorf("Read after the failed one = %v; want an error", err)
			}
			if got := tr.IdleConns(); got != 0 {
				t.Errorf("IdleConns() = %d; want 0", got)
			}
			waitFor(t, "the server to see the connection closed", func() bool { return ended.Load() == 1 })
		})
	}
}

// TestCancelBeforeSend: a request whose context has already ended is not
// sent, whether a connection would be dialled or taken from the pool.
func TestCancelBeforeSend(t *testing.T) {
	// Were the request sent, the send would race the close that the
	// cancel causes; one attempt could miss it, twenty will not.
	const attempts = 20
	for _, pooled := range []bool{false, true} {
		name := "no idle connection"
		if pooled {
			name = "idle connection"
		}
		t.Run(name, func(t *testing.T) {
			s := newRawServer(t, func(c *rawConn) { c.answerAll(okAnswer) })
			tr := newTransport(t, h1client.Options{})
			ctx, cancel := context.WithCancelCause(context.Background())
			cancel(errClientGone)
			var want []string
			for i := range attempts {
				if pooled {
					get(t, tr, s.URL+"/first")
					want = append(want, fmt.Sprintf("%d GET /first", i+1))
				}
				req := newRequest(t, http.MethodPost, s.URL+"/cancelled", nil)
				// A body larger than the write buffer: no byte of it, nor
				// of the head, may reach the upstream.
				rec := withBody(req, strings.Repeat("side effect ", 16<<10))
				resp, err := tr.RoundTrip(req.WithContext(ctx))
				if err == nil {
					resp.Body.Close()
					t.Fatalf("RoundTrip with a cancelled context succeeded")
				}
				if !errors.Is(err, errClientGone) {
					t.Errorf("RoundTrip error = %v; want %v", err, errClientGone)
				}
				if rec.closes.Load() == 0 {
					t.Errorf("req.Body was not closed")
				}
				tr.CloseIdleConnections()
				waitFor(t, "every server connection to end", func() bool { return s.ended.Load() == s.accepted.Load() })
			}
			if got := s.paths(); !slices.Equal(got, want) {
				t.Errorf("server read %q; want %q: a cancelled request reached the upstream", got, want)
			}
			if errs := s.parseErrors(); len(errs) > 0 {
				t.Errorf("server read part of a cancelled request: %.300v", errs)
			}
		})
	}
}

func TestBodyCloseWhileReadBlocked(t *testing.T) {
	url, _, ended, _ := stallingServer(t, "part")
	tr := newTransport(t, h1client.Options{})
	resp, err := tr.RoundTrip(newRequest(t, http.MethodGet, url, nil))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(resp.Body, buf); err != nil {
		t.Fatal(err)
	}
	reading := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		close(reading)
		_, err := resp.Body.Read(buf) // the server sends nothing more
		errc <- err
	}()
	<-reading
	within(t, "Close", func() { resp.Body.Close() })
	within(t, "the blocked Read after Close", func() { err = <-errc })
	if err == nil || err == io.EOF {
		t.Errorf("Read ended by Close returned %v; want an error", err)
	}
	if got := tr.IdleConns(); got != 0 {
		t.Errorf("IdleConns() = %d; want 0", got)
	}
	waitFor(t, "the server to see the connection closed", func() bool { return ended.Load() == 1 })
}

// TestBodyCloseBeforeEOF: Close of an unfinished body closes the connection
// and never drains it: against a server that streams forever a drain would
// never return.
func TestBodyCloseBeforeEOF(t *testing.T) {
	tests := []struct {
		name   string
		length bool // a huge Content-Length, else chunked
	}{
		{name: "chunked"},
		{name: "content-length", length: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stopped atomic.Int32
			rel := make(chan struct{})
			srv, cc := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				defer stopped.Add(1)
				if tt.length {
					w.Header().Set("Content-Length", "1099511627776")
				}
				block := []byte(strings.Repeat("x", 32<<10))
				for {
					select {
					case <-rel:
						return
					default:
					}
					if _, err := w.Write(block); err != nil {
						return
					}
				}
			}, nil)
			t.Cleanup(func() { close(rel) }) // before the server's Close, which waits for handlers
			tr := newTransport(t, h1client.Options{})
			resp, err := tr.RoundTrip(newRequest(t, http.MethodGet, srv.URL, nil))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(resp.Body, make([]byte, 100<<10)); err != nil {
				t.Fatalf("reading the start of the stream: %v", err)
			}
			within(t, "Close of a body that never ends", func() {
				if err := resp.Body.Close(); err != nil {
					t.Errorf("Close() = %v; want nil", err)
				}
			})
			if _, err := resp.Body.Read(make([]byte, 10)); err == nil || err == io.EOF {
				t.Errorf("Read after Close = %v; want an error", err)
			}
			if got := tr.IdleConns(); got != 0 {
				t.Errorf("IdleConns() = %d; want 0", got)
			}
			waitFor(t, "the server to see the connection closed", func() bool {
				return stopped.Load() == 1 && cc.closed.Load() == 1
			})
		})
	}
}

// TestBodyReadToEOF: a body read to its end gives its connection back to
// the pool, whatever happens to the request's context afterwards.
func TestBodyReadToEOF(t *testing.T) {
	tests := []struct {
		name        string
		path        string
		cancelAfter bool
		closeTwice  bool
		wantBody    string
	}{
		{name: "content-length", path: "/length", wantBody: "hello"},
		{name: "chunked", path: "/chunked", wantBody: "hello"},
		{name: "context cancelled after EOF", path: "/chunked", cancelAfter: true, wantBody: "hello"},
		{name: "closed twice", path: "/length", closeTwice: true, wantBody: "hello"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, cc := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/chunked" {
					io.WriteString(w, "hel")
					http.NewResponseController(w).Flush()
					io.WriteString(w, "lo")
					return
				}
				w.Header().Set("Content-Length", "5")
				io.WriteString(w, "hello")
			}, nil)
			tr := newTransport(t, h1client.Options{})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			resp, err := tr.RoundTrip(newRequest(t, http.MethodGet, srv.URL+tt.path, nil).WithContext(ctx))
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(resp.Body)
			if err != nil || string(b) != tt.wantBody {
				t.Fatalf("body = %q, %v; want %q", b, err, tt.wantBody)
			}
			if got := tr.IdleConns(); got != 1 {
				t.Errorf("IdleConns() at EOF = %d; want 1", got)
			}
			if n, err := resp.Body.Read(make([]byte, 10)); n != 0 || err != io.EOF {
				t.Errorf("Read after EOF = %d, %v; want 0, EOF", n, err)
			}
			if tt.cancelAfter {
				cancel()
			}
			if err := resp.Body.Close(); err != nil {
				t.Errorf("Close() = %v; want nil", err)
			}
			if tt.closeTwice {
				if err := resp.Body.Close(); err != nil {
					t.Errorf("second Close() = %v; want nil", err)
				}
			}
			if _, err := resp.Body.Read(make([]byte, 10)); err == nil {
				t.Errorf("Read after Close = nil error; want one")
			}
			if got := tr.IdleConns(); got != 1 {
				t.Errorf("IdleConns() after Close = %d; want 1", got)
			}
			if got := get(t, tr, srv.URL+"/length"); got != "hello" {
				t.Errorf("next body = %q; want hello", got)
			}
			if got := cc.opened.Load(); got != 1 {
				t.Errorf("server saw %d connections; want 1 (the first reused)", got)
			}
		})
	}
}
