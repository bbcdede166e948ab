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
	"net/http/httputil"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
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
	nc, err := t.o.Dial(ctx, "tcp", addr)
	if err != nil {
		return nil, false, err
	}
	c := &conn{nc: nc, br: bufio.NewReaderSize(nc, 4<<10), key: key}
	c.peeker.init(nc)
	if trace != nil && trace.GotConn != nil {
		trace.GotConn(httptrace.GotConnInfo{Conn: nc})
	}
	return c, false, nil
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

// body is an answer's body. It reads from the connection through the
// framing http.ReadResponse set up (length, chunks or the connection's
// end); at its end the connection goes back to the idle pool.
type body struct {
	t    *Transport
	c    *conn
	ctx  context.Context
	rc   io.ReadCloser
	keep bool // the connection may carry another exchange
	// state: bodyOpen, then bodyEnded (read to its end) or bodyClosed.
	// Close may come from another goroutine while a Read is blocked (a
	// deadline's timer): the connection's close ends that Read.
	state atomic.Int32
}

const (
	bodyOpen int32 = iota
	bodyEnded
	bodyClosed
)

// errBodyClosed is a Read after Close.
var errBodyClosed = errors.New("h1client: read on closed response body")

func (b *body) Read(p []byte) (int, error) {
	switch b.state.Load() {
	case bodyEnded:
		return 0, io.EOF
	case bodyClosed:
		return 0, errBodyClosed
	}
	n, err := b.rc.Read(p)
	switch {
	case err == nil:
		return n, nil
	case err == io.EOF:
		b.end(true)
		return n, io.EOF
	}
	if b.ctx.Err() != nil {
		err = context.Cause(b.ctx)
	}
	b.end(false)
	return n, err
}

// Close ends the exchange: the connection is closed unless the body was
// read to its end. It never drains what is left.
func (b *body) Close() error {
	b.end(false)
	return nil
}

func (b *body) end(eof bool) {
	next := bodyClosed
	if eof {
		next = bodyEnded
	}
	if !b.state.CompareAndSwap(bodyOpen, next) {
		return
	}
	c := b.c
	if c.stop() && eof && b.keep && c.br.Buffered() == 0 {
		b.t.put(c)
		return
	}
	c.nc.Close()
}

// take pops the most recently idle connection to key, closing those idle
// past the timeout; nil when none.
func (t *Transport) take(key string) *conn {
	var stale []*conn
	var c *conn
	t.mu.Lock()
	list := t.idle[key]
	for len(list) > 0 {
		c = list[len(list)-1]
		list[len(list)-1] = nil
		list = list[:len(list)-1]
		t.nidle--
		if time.Since(c.idleSince) < t.o.IdleTimeout {
			break
		}
		stale = append(stale, c)
		c = nil
	}
	t.idle[key] = list
	t.mu.Unlock()
	for _, s := range stale {
		s.nc.Close()
	}
	return c
}

// put keeps c idle for reuse, or closes it when its host has enough.
func (t *Transport) put(c *conn) {
	c.stop = nil
	c.idleSince = time.Now()
	t.mu.Lock()
	list := t.idle[c.key]
	if len(list) >= t.o.MaxIdlePerHost {
		t.mu.Unlock()
		c.nc.Close()
		return
	}
	t.idle[c.key] = append(list, c)
	t.nidle++
	if t.reaper == nil {
		t.reaper = time.AfterFunc(t.o.IdleTimeout, t.reap)
	}
	t.mu.Unlock()
}

// reap closes connections idle past the timeout; it runs while any
// connection is idle.
func (t *Transport) reap() {
	var stale []*conn
	t.mu.Lock()
	for key, list := range t.idle {
		kept := list[:0]
		for _, c := range list {
			if time.Since(c.idleSince) >= t.o.IdleTimeout {
				stale = append(stale, c)
			} else {
				kept = append(kept, c)
			}
		}
		clear(list[len(kept):])
		t.nidle -= len(list) - len(kept)
		if len(kept) == 0 {
			delete(t.idle, key)
		} else {
			t.idle[key] = kept
		}
	}
	if t.nidle > 0 {
		t.reaper.Reset(t.o.IdleTimeout / 2)
	} else {
		t.reaper = nil
	}
	t.mu.Unlock()
	for _, c := range stale {
		c.nc.Close()
	}
}

// CloseIdleConnections closes the idle connections, and the fallback's.
func (t *Transport) CloseIdleConnections() {
	t.mu.Lock()
	all := t.idle
	t.idle = make(map[string][]*conn)
	t.nidle = 0
	t.mu.Unlock()
	for _, list := range all {
		for _, c := range list {
			c.nc.Close()
		}
	}
	if ci, ok := t.o.Fallback.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

// IdleConns is the number of idle connections kept, for tests.
func (t *Transport) IdleConns() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.nidle
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

// wantsClose reports whether req asks for its connection to close after
// it: Close set, or "close" among its Connection header's tokens (the
// header itself is hop-by-hop and not sent as is).
func wantsClose(req *http.Request) bool {
	if req.Close {
		return true
	}
	for _, v := range req.Header["Connection"] {
		for tok := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), "close") {
				return true
			}
		}
	}
	return false
}

// writers are request write buffers, taken for the write alone: an open
// stream keeps none.
var writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }}

// writeRequest writes req's request line, headers and body to nc, with
// Connection: close when closing, and closes req.Body.
func writeRequest(nc net.Conn, req *http.Request, closing bool, trace *httptrace.ClientTrace) (err error) {
	defer closeBody(req)
	bw := writers.Get().(*bufio.Writer)
	bw.Reset(nc)
	defer func() {
		bw.Reset(nil)
		writers.Put(bw)
	}()
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	if err := validValue(host); err != nil {
		return err
	}
	bw.WriteString(method)
	bw.WriteByte(' ')
	bw.WriteString(req.URL.RequestURI())
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(host)
	bw.WriteString("\r\n")
	hasBody := req.Body != nil && req.Body != http.NoBody
	chunked := false
	switch {
	case hasBody && req.ContentLength > 0:
		bw.WriteString("Content-Length: ")
		var num [20]byte
		bw.Write(strconv.AppendInt(num[:0], req.ContentLength, 10))
		bw.WriteString("\r\n")
	case hasBody:
		chunked = true
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	case method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch:
		bw.WriteString("Content-Length: 0\r\n")
	}
	if closing {
		bw.WriteString("Connection: close\r\n")
	}
	for k, vv := range req.Header {
		switch k {
		case "Host", "Content-Length", "Transfer-Encoding", "Trailer", "Connection":
			continue
		case "User-Agent":
			// An empty User-Agent means none (ReverseProxy sets it so
			// that no default is sent).
			if len(vv) == 0 || vv[0] == "" {
				continue
			}
		}
		if !validName(k) {
			return fmt.Errorf("h1client: invalid header name %q", k)
		}
		for _, v := range vv {
			if err := validValue(v); err != nil {
				return fmt.Errorf("h1client: header %s: %w", k, err)
			}
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
	if _, err := bw.WriteString("\r\n"); err != nil {
		return err
	}
	if trace != nil && trace.WroteHeaders != nil {
		trace.WroteHeaders()
	}
	if hasBody {
		if chunked {
			cw := httputil.NewChunkedWriter(bw)
			if _, err := io.Copy(cw, req.Body); err != nil {
				return err
			}
			if err := cw.Close(); err != nil {
				return err
			}
			if _, err := bw.WriteString("\r\n"); err != nil {
				return err
			}
		} else if err := writeBody(bw, nc, req.Body, req.ContentLength); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// writeBody writes exactly n bytes of body after the headers in bw, and
// fails if body has fewer or more: never a byte past the length the
// headers announced, which the upstream would read as a request of its
// own. A body that fits in bw's free space is read straight into it (no
// allocation); a larger one goes to the connection after the headers,
// through a LimitedReader, so that a file is sent by sendfile and a
// buffer by large writes.
func writeBody(bw *bufio.Writer, nc net.Conn, body io.Reader, n int64) error {
	var got int64
	var err error
	if n <= int64(bw.Available()) {
		buf := bw.AvailableBuffer()[:n]
		var k int
		k, err = io.ReadFull(body, buf)
		got = int64(k)
		bw.Write(buf[:k])
	} else {
		if err = bw.Flush(); err != nil {
			return err
		}
		lr := &io.LimitedReader{R: body, N: n}
		got, err = io.Copy(nc, lr)
	}
	if err == io.ErrUnexpectedEOF || err == io.EOF {
		err = nil
	}
	if err != nil {
		return err
	}
	var extra [1]byte
	if got < n {
		return fmt.Errorf("h1client: request body has %d bytes, Content-Length says %d", got, n)
	}
	if k, _ := body.Read(extra[:]); k > 0 {
		return fmt.Errorf("h1client: request body is longer than its Content-Length, %d", n)
	}
	return nil
}

// validName reports whether k is a header field name (an RFC 9110 token).
func validName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		if !tokenByte[k[i]] {
			return false
		}
	}
	return true
}

// validValue refuses what would end or break a header line: CR, LF, NUL
// and other controls but tab.
func validValue(v string) error {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return fmt.Errorf("invalid byte %#x in header value", c)
		}
	}
	return nil
}

var tokenByte = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()
