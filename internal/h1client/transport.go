// Package h1client is an HTTP/1.1 client transport that runs each exchange
// on the calling goroutine: it writes the request, reads the answer's
// headers and hands back a body that reads straight from the connection.
//
// net/http's Transport gives every connection a reading and a writing
// goroutine, and each request hands its work to them and waits on
// channels; on a busy proxy those hand-offs, and the threads woken for
// them, cost more CPU than the exchange itself, and every open stream
// keeps both goroutines' stacks and a write buffer alive. This transport
// serves plain http:// upstreams with none of that, and passes everything
// else (https with its HTTP/2, a forward proxy from the environment,
// protocol upgrades) to a fallback RoundTripper, net/http's.
//
// What it keeps of net/http's behaviour: connections are reused and kept
// idle per host up to a cap and a timeout; an idle connection the upstream
// closed is found before it is used (a non-blocking peek at the socket,
// where net/http's reading goroutine would have seen the close); a request
// that can be replayed is sent again on a fresh connection when a reused
// one breaks before the first byte of an answer; the client trace hooks
// GetConn, GotConn, WroteHeaders, WroteRequest, GotFirstResponseByte and
// Got1xxResponse are called; the request's context cancels the exchange
// at any point, body included, and a body closed early closes its
// connection (never drains it).
package h1client

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gpt-load/gpt-load/internal/freshstack"
)

// Options configure a Transport.
type Options struct {
	// Dial opens a connection; nil means a net.Dialer's DialContext.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Proxy, when it names a proxy for a request, sends the request to
	// Fallback (net/http speaks to forward proxies); nil means none.
	Proxy func(*http.Request) (*url.URL, error)
	// IdleTimeout is how long an idle connection is kept; 0 means 90 s.
	IdleTimeout time.Duration
	// MaxIdlePerHost is how many idle connections are kept per host;
	// 0 means 2, as net/http.
	MaxIdlePerHost int
	// Fallback serves what this transport does not: other schemes,
	// proxied requests and protocol upgrades.
	Fallback http.RoundTripper
}

// Transport is an HTTP/1.1 RoundTripper for http:// URLs (see the package
// documentation). It is safe for concurrent use.
type Transport struct {
	o Options

	mu     sync.Mutex
	idle   map[string][]*conn // URL host → idle connections, most recent last
	nidle  int
	reaper *time.Timer
	closed bool // CloseIdleConnections ran; later idle conns are kept again
}

// New returns a Transport with options o.
func New(o Options) *Transport {
	if o.Dial == nil {
		o.Dial = (&net.Dialer{}).DialContext
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 90 * time.Second
	}
	if o.MaxIdlePerHost <= 0 {
		o.MaxIdlePerHost = 2
	}
	if o.Fallback == nil {
		o.Fallback = http.DefaultTransport
	}
	return &Transport{o: o, idle: make(map[string][]*conn)}
}

var _ http.RoundTripper = (*Transport)(nil)

// conn is one upstream connection.
type conn struct {
	nc        net.Conn
	br        *bufio.Reader
	peeker    // liveness check of an idle connection (peek_*.go)
	key       string
	idleSince time.Time
	// bufferless: br's buffer is in readBuffers while the answer's body
	// waits for the upstream (body.WaitReady); br reads nothing until
	// takeBuffer. Written by the reading goroutine only; atomic so that
	// tests may look from another.
	bufferless atomic.Bool
	// stop ends the watch of the current exchange's context (see watch).
	stop func() bool
}

// RoundTrip sends req and returns the answer, its body reading from the
// connection; closing the body, or reading it to its end, ends the
// exchange. It closes req.Body, as every RoundTripper does.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !t.serves(req) {
		return t.o.Fallback.RoundTrip(req)
	}
	ctx := req.Context()
	trace := httptrace.ContextClientTrace(ctx)
	for retried := false; ; retried = true {
		c, reused, err := t.conn(ctx, req, trace, retried)
		if err != nil {
			closeBody(req)
			return nil, err
		}
		resp, err := t.exchange(ctx, c, req, trace)
		if err == nil {
			return resp, nil
		}
		var sf *staleError
		if !errors.As(err, &sf) {
			return nil, err
		}
		// A reused connection broke before the first byte of an answer:
		// the upstream closed it as it went idle. A request that can be
		// replayed goes again, on a fresh connection, as net/http does.
		if !reused || retried || !replayable(req) {
			return nil, sf.err
		}
		if req.Body != nil && req.Body != http.NoBody {
			body, gerr := req.GetBody()
			if gerr != nil {
				return nil, sf.err
			}
			r2 := *req
			r2.Body = body
			req = &r2
		}
	}
}

// serves reports whether req is this transport's to send.
func (t *Transport) serves(req *http.Request) bool {
	if !supported || req.URL == nil || req.URL.Scheme != "http" || req.URL.Host == "" {
		return false
	}
	if len(req.Header["Upgrade"]) > 0 || len(req.Trailer) > 0 {
		return false
	}
	if t.o.Proxy != nil {
		if u, err := t.o.Proxy(req); err != nil || u != nil {
			return false
		}
	}
	return true
}

// replayable: sending req twice is harmless (RFC 9110, 9.2.2), and its
// body can be had again.
func replayable(req *http.Request) bool {
	if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
		return false
	}
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return len(req.Header["Idempotency-Key"]) > 0 || len(req.Header["X-Idempotency-Key"]) > 0
}

// conn returns an idle connection to req's host that is still open, or a
// new one.
func (t *Transport) conn(ctx context.Context, req *http.Request, trace *httptrace.ClientTrace, fresh bool) (*conn, bool, error) {
	key := req.URL.Host
	if ctx.Err() != nil {
		return nil, false, context.Cause(ctx)
	}
	if trace != nil && trace.GetConn != nil {
		trace.GetConn(key)
	}
	if !fresh {
		for {
			c := t.take(key)
			if c == nil {
				break
			}
			if c.alive() {
				if trace != nil && trace.GotConn != nil {
					trace.GotConn(httptrace.GotConnInfo{Conn: c.nc, Reused: true, WasIdle: true, IdleTime: time.Since(c.idleSince)})
				}
				return c, true, nil
			}
			c.nc.Close()
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, false, context.Cause(ctx)
	}
	addr := key
	if req.URL.Port() == "" {
		addr = net.JoinHostPort(req.URL.Hostname(), "80")
	}
	// A dial goes 2.5 KB deep or more (a name to resolve), past what a
	// stream's goroutine otherwise needs (freshstack).
	var nc net.Conn
	var err error
	freshstack.Run(func() { nc, err = t.o.Dial(ctx, "tcp", addr) })
	if err != nil {
		return nil, false, err
	}
	c := &conn{nc: nc, br: bufio.NewReaderSize(nc, readBufferSize), key: key}
	c.peeker.init(nc)
	if trace != nil && trace.GotConn != nil {
		trace.GotConn(httptrace.GotConnInfo{Conn: nc})
	}
	return c, false, nil
}

// readBufferSize is a connection's read buffer. An open stream holds it,
// so it is small: a provider's answer head (1 to 2 KB) takes one read or
// two, an event one read; a read larger than the buffer (a large body
// copied through ReverseProxy) bypasses it.
const readBufferSize = 2 << 10

// A stream waiting for its next event lends its connection's read buffer
// back (body.WaitReady): readBuffers holds the buffers, in readers made for
// them, and shells the readers emptied of theirs. The framing that
// http.ReadResponse set up keeps the connection's *bufio.Reader, so the
// buffer moves by copying the reader's value, never the pointer.
var (
	readBuffers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBufferSize) }}
	shells      = sync.Pool{New: func() any { return new(bufio.Reader) }}
)

// lendBuffer puts c's read buffer in readBuffers. c.br must hold nothing
// unread.
func (c *conn) lendBuffer() {
	r := shells.Get().(*bufio.Reader)
	*r = *c.br
	*c.br = bufio.Reader{}
	readBuffers.Put(r)
	c.bufferless.Store(true)
}

// takeBuffer gives c a read buffer again, empty, reading from c.nc.
func (c *conn) takeBuffer() {
	r := readBuffers.Get().(*bufio.Reader)
	r.Reset(c.nc)
	*c.br = *r
	*r = bufio.Reader{}
	shells.Put(r)
	c.bufferless.Store(false)
}

// staleError is a reused connection that broke before the first byte of
// an answer came.
type staleError struct{ err error }

func (e *staleError) Error() string { return e.err.Error() }
func (e *staleError) Unwrap() error { return e.err }

// errNoAnswer wraps io.EOF: the upstream closed the connection without
// answering.
var errNoAnswer = fmt.Errorf("upstream closed the connection before answering: %w", io.EOF)

// exchange sends req on c and reads the answer's headers. On an error c is
// closed.
func (t *Transport) exchange(ctx context.Context, c *conn, req *http.Request, trace *httptrace.ClientTrace) (*http.Response, error) {
	c.stop = watch(ctx, c.nc)
	fail := func(err error) (*http.Response, error) {
		c.stop()
		c.nc.Close()
		if ctx.Err() != nil {
			// Cancelled: the closed connection's error says less than
			// why it was closed.
			return nil, context.Cause(ctx)
		}
		return nil, err
	}
	if ctx.Err() != nil {
		// Cancelled while the connection was being had: nothing goes
		// out for a caller who has given up.
		closeBody(req)
		return fail(context.Cause(ctx))
	}
	closing := wantsClose(req)
	werr := writeRequest(c.nc, req, closing, trace)
	if trace != nil && trace.WroteRequest != nil {
		trace.WroteRequest(httptrace.WroteRequestInfo{Err: werr})
	}
	if werr != nil {
		return fail(werr)
	}
	first := true
	for {
		if _, err := c.br.Peek(1); err != nil {
			if first {
				if errors.Is(err, io.EOF) {
					err = errNoAnswer
				}
				if ctx.Err() == nil {
					err = &staleError{err}
				}
			}
			return fail(err)
		}
		if first && trace != nil && trace.GotFirstResponseByte != nil {
			trace.GotFirstResponseByte()
		}
		first = false
		resp, err := http.ReadResponse(c.br, req)
		if err != nil {
			return fail(err)
		}
		if resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
			// An informational answer; the final one follows.
			if trace != nil && trace.Got1xxResponse != nil {
				if err := trace.Got1xxResponse(resp.StatusCode, textproto.MIMEHeader(resp.Header)); err != nil {
					return fail(err)
				}
			}
			continue
		}
		if resp.StatusCode == http.StatusSwitchingProtocols {
			// Upgrades go to the fallback; an upstream that switches
			// unasked is not followed.
			return fail(errors.New("upstream switched protocols unasked"))
		}
		keep := !resp.Close && !closing
		if resp.Body == http.NoBody {
			// Nothing to read: the exchange is over.
			if c.stop() && keep && c.br.Buffered() == 0 {
				t.put(c)
			} else {
				c.nc.Close()
			}
			return resp, nil
		}
		resp.Body = &body{t: t, c: c, ctx: ctx, rc: resp.Body, keep: keep}
		return resp, nil
	}
}

// watch closes nc when ctx ends, until the returned stop is called; stop
// reports whether it came first (nc was not closed by the watch).
func watch(ctx context.Context, nc net.Conn) func() bool {
	if ctx.Done() == nil {
		return func() bool { return true }
	}
	return context.AfterFunc(ctx, func() { nc.Close() })
}

// closeBody closes req's body, if it has one.
func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}
