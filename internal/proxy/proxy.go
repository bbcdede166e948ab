// Package proxy forwards client requests to the upstream targets on
// httputil.ReverseProxy, choosing a key and a target for each attempt.
package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/gpt-load/gpt-load/internal/apierr"
	"github.com/gpt-load/gpt-load/internal/classify"
	"github.com/gpt-load/gpt-load/internal/freshstack"
	"github.com/gpt-load/gpt-load/internal/keymanager"
	"github.com/gpt-load/gpt-load/internal/outcome"
	"github.com/gpt-load/gpt-load/internal/stdlog"
	"github.com/gpt-load/gpt-load/internal/upstream"
)

// HeaderAttempts carries the number of upstream attempts on every proxied
// response (docs/key-health.md, "Retries").
const HeaderAttempts = "X-Gpt-Load-Attempts"

// Observer is told about every attempt and every finished request, for
// metrics. Its methods are called on the request path: they must be cheap
// and safe for concurrent use.
type Observer interface {
	Attempt(t *upstream.Target, f classify.Fault)
	// Done reports a finished request. The record is the request's own:
	// it must not be kept after Done returns.
	Done(r *outcome.Record)
}

type nopObserver struct{}

func (nopObserver) Attempt(*upstream.Target, classify.Fault) {}
func (nopObserver) Done(*outcome.Record)                     {}

// Options configures a Proxy.
type Options struct {
	// Observer receives metrics events; nil means none.
	Observer    Observer
	MaxRetries  int
	MaxBodySize int64
	// BodyMemoryLimit is the largest request body held in memory for
	// retries; a larger one is spooled to a temporary file.
	BodyMemoryLimit   int64
	MaxConcurrent     int
	StripUpstreamCORS bool // the CORS middleware answers CORS itself
	// QueueTimeout bounds how long a request waits for a key when none is
	// usable; 0 answers 503 at once.
	QueueTimeout time.Duration
	// Streams (docs/api.md, "Streaming"): silence allowed between chunks
	// (0: no limit), the silence after which an event stream gets a
	// keepalive comment (0: off), and the commit window's time bound
	// (0: 10 s).
	StreamIdleTimeout time.Duration
	StreamKeepalive   time.Duration
	StreamWindow      time.Duration
	// ResponseTimeout bounds an attempt from the start of sending to its
	// response headers (RESPONSE_TIMEOUT; 0: no bound beyond the
	// transport's). ErrorBodyTimeout bounds the read of an error body
	// (0: 10 s). See deadline.go.
	ResponseTimeout  time.Duration
	ErrorBodyTimeout time.Duration
	// RedactKeys, when set, is every key answers are searched for and
	// masked (every group's, so that a key of one group is masked in
	// another's answers); nil: this proxy's keys.
	RedactKeys KeySource
	// InFlight, when set, is the count of requests being served that
	// MaxConcurrent bounds, shared with other proxies (one per group,
	// docs/groups.md); nil: this proxy's own.
	InFlight *atomic.Int64
}

// Proxy is the http.Handler that forwards requests. It is safe for
// concurrent use.
type Proxy struct {
	opts    Options
	keys    *keymanager.Manager
	targets *upstream.Balancer
	base    http.RoundTripper
	rp      *httputil.ReverseProxy
	bufs    *bufferPool
	log     *logrus.Entry

	health *health
	obs    Observer
	redact *redactor
	sobs   StreamObserver

	// inflight counts the requests being served, against MaxConcurrent;
	// shared by the proxies of every group (Options.InFlight).
	inflight *atomic.Int64
	counters outcome.Counters
	budget   retryBudget
	queue    keyQueue
	loop     *loopGuard
	// afterLook, when set (by tests), runs in nextKey between a look for
	// a key that found none and the wait for one.
	afterLook func()
}

// New returns a proxy that sends requests through base (see NewTransport).
func New(opts Options, keys *keymanager.Manager, targets *upstream.Balancer, base http.RoundTripper, log *logrus.Entry) *Proxy {
	p := &Proxy{opts: opts, keys: keys, targets: targets, base: base, log: log,
		health: newHealth(keys, targets, log), obs: opts.Observer, loop: newLoopGuard(),
		inflight: opts.InFlight}
	if opts.RedactKeys != nil {
		p.redact = newRedactor(opts.RedactKeys)
	} else {
		p.redact = newRedactor(keys)
	}
	if p.inflight == nil {
		p.inflight = new(atomic.Int64)
	}
	if p.obs == nil {
		p.obs = nopObserver{}
	}
	p.sobs = nopStreamObserver{}
	if so, ok := p.obs.(StreamObserver); ok {
		p.sobs = so
	}
	p.bufs = newBufferPool()
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			rewrite(pr)
			p.loop.mark(pr.In.Header, pr.Out.Header)
		},
		Transport:      attemptTransport{p},
		ModifyResponse: p.modifyResponse,
		ErrorHandler:   p.errorHandler,
		ErrorLog:       stdlog.New(log, logrus.WarnLevel),
		// BufferPool is set per request (reqState.bufs).
		// FlushInterval 0: ReverseProxy already flushes event streams and
		// bodies of unknown length after every write (docs/api.md,
		// "Streaming").
	}
	return p
}

// Totals returns the request counters: requests taken, succeeded, failed
// and retried.
func (p *Proxy) Totals() outcome.Totals { return p.counters.Totals() }

// InFlight is the number of proxied requests being served.
func (p *Proxy) InFlight() int64 { return p.inflight.Load() }

// reqState is what one client request carries through ReverseProxy to the
// attempt loop and back.
type reqState struct {
	body *body // nil: none
	// prior and more are what the server passed when it routed the
	// request among groups (handover.go).
	prior    int
	more     bool
	path     string // client path, unescaped and escaped
	rawPath  string
	attempts int
	key      *keymanager.Key
	target   *upstream.Target
	status   int
	fault    classify.Fault // the last attempt's verdict
	aborted  bool           // the response was cut off after it started
	// out counts the body bytes written to the client; ServeHTTP writes
	// through it.
	out countingWriter
	// rec is the outcome record when the request's context carries none.
	rec outcome.Record
	// connected is set by the client trace once the current attempt has
	// a connection, so a timeout after it means the request was sent.
	connected atomic.Bool
	// sent is set by the client trace once the current attempt's request
	// was written whole, so a connection that breaks after it may have
	// started the work (a retry could pay for it twice).
	sent atomic.Bool
	// suspect is the key whose unproven 403 this request was retried
	// after (docs/key-health.md, "How answers are classified"): if another
	// key serves the request, the key is suspected.
	suspect       *keymanager.Key
	suspectReason string
	// gotConns counts the connections the request was given, so that a
	// dial queued for it can tell it is no longer needed (ShareConns).
	gotConns atomic.Uint32
	// trace is the client trace of every attempt (see attemptContext).
	trace httptrace.ClientTrace
	// model is the model the request asks for, read once when needed;
	// contentType is the request's, for a multipart body's boundary.
	model       string
	modelRead   bool
	contentType string
	// queueDeadline bounds every wait for a key of this request.
	queueDeadline time.Time
	// For the overhead metric: when the body was read, when the response
	// headers were ready, and the time attempts spent waiting upstream.
	bodyRead, headersAt time.Time
	upstreamTime        time.Duration
	// For streams (stream.go): when the request arrived, a failure inside
	// the commit window that the next attempt counts as a failover, and
	// why a committed stream ended badly, for the access line.
	start         time.Time
	windowFailure string
	streamFailure string
	// trailers wraps the answer's body to mask the trailers that come
	// with its end (redact.go); part of the state so that it costs no
	// allocation.
	trailers trailerMasker
	// rp is the proxy's ReverseProxy, copied for this request so that its
	// copy buffer can be the request's own choice (bufs): a stream that
	// writes to the client itself (stream.relay) takes none.
	rp   httputil.ReverseProxy
	bufs requestBufs
	// dl bounds the phases of the attempts (deadline.go).
	dl deadlines
	// ctx is the request's context with st in it; swap is its attempts'
	// context with st.trace in place of ReverseProxy's (attemptContext);
	// body0 is the first attempt's reader over a body in memory. They
	// live here to spare allocations per request.
	ctx   stateContext
	swap  traceSwapContext
	body0 bytes.Reader
	// authSlot holds the first attempt's credential header value, and
	// fwd the X-Forwarded-* values (rewrite), for the same reason.
	authSlot [1]string
	fwd      [2]string
}

// modelName reads the requested model, once.
func (st *reqState) modelName() string {
	if !st.modelRead {
		st.model, st.modelRead = st.body.model(st.path, st.contentType), true
	}
	return st.model
}

// modelIfNeeded is the model when some key is excluded for a model, and ""
// (nothing read) while none is: the common case costs nothing.
func (st *reqState) modelIfNeeded(keys *keymanager.Manager) string {
	if !keys.AnyModelExcluded() {
		return ""
	}
	return st.modelName()
}

type stateKey struct{}

func stateOf(ctx context.Context) *reqState {
	st, _ := ctx.Value(stateKey{}).(*reqState)
	return st
}

// stateContext is the client request's context carrying its reqState,
// as context.WithValue would, but made inside the reqState: one
// allocation less per request, which pays for the attempts' own contexts
// (deadline.go).
type stateContext struct {
	context.Context
	st *reqState
}

func (c *stateContext) Value(key any) any {
	if _, ok := key.(stateKey); ok {
		return c.st
	}
	return c.Context.Value(key)
}

// ServeHTTP enforces the concurrency and body limits, buffers the body so
// it can be replayed, and forwards.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) { p.serve(w, r, nil) }

// ServeRouted is ServeHTTP for a request the server routed among groups,
// with what routing learned (handover.go). Passed as an argument, not in
// the request's context: no allocation.
func (p *Proxy) ServeRouted(w http.ResponseWriter, r *http.Request, h Handover) { p.serve(w, r, &h) }

func (p *Proxy) serve(w http.ResponseWriter, r *http.Request, h *Handover) {
	start := time.Now()
	p.counters.Started()
	st := &reqState{path: r.URL.Path, rawPath: r.URL.RawPath, queueDeadline: start.Add(p.opts.QueueTimeout),
		start: start, contentType: r.Header.Get("Content-Type")}
	st.out.ResponseWriter = w
	w = &st.out
	st.dl.st = st
	defer p.finish(r, st)
	defer st.dl.release()

	if p.inflight.Add(1) > int64(p.opts.MaxConcurrent) {
		p.inflight.Add(-1)
		p.fail(w, st, &apierr.Error{Status: http.StatusTooManyRequests, Code: apierr.CodeTooManyRequests,
			Message: "too many concurrent requests; retry shortly", RetryAfter: 1})
		return
	}
	defer p.inflight.Add(-1)

	var body *body
	read := false
	if h != nil {
		st.prior, st.more = h.Prior, h.More
		body, read = h.Body, h.Read
	}
	if !read {
		var err error
		body, err = p.readBody(r)
		if err != nil {
			var ae *apierr.Error
			if errors.As(err, &ae) {
				p.fail(w, st, ae)
			} else {
				st.status = outcome.StatusClientClosed
			}
			return
		}
		// Deferred here, so the body's file goes on every path out, a
		// panic further in included.
		defer body.Close()
	}
	st.body = body
	st.bodyRead = time.Now()
	st.ctx = stateContext{Context: r.Context(), st: st}
	ctx := context.Context(&st.ctx)
	// The attempts' client trace is installed per attempt (attemptContext),
	// in place of ReverseProxy's: one trace, no composing of two.
	st.trace.GotConn = func(httptrace.GotConnInfo) {
		st.connected.Store(true)
		st.gotConns.Add(1)
		st.dl.armSend(p.opts.ResponseTimeout)
	}
	st.trace.WroteRequest = func(i httptrace.WroteRequestInfo) {
		if i.Err == nil {
			st.sent.Store(true)
		}
	}
	returned := false
	defer func() {
		// Not returning after the response started means ReverseProxy
		// aborted it (http.ErrAbortHandler): the upstream broke off
		// mid-body and the client's connection was cut without the final
		// chunk (docs/api.md, "Bad input and faults"), or the client
		// itself left.
		st.aborted = !returned && !st.headersAt.IsZero()
	}()
	st.rp = *p.rp
	st.bufs.pool, st.bufs.out = p.bufs, &st.out
	st.rp.BufferPool = &st.bufs
	st.rp.ServeHTTP(w, r.WithContext(ctx))
	returned = true
}

// finish produces the request's outcome record and hands it to the
// counters, the metrics and, through the request's context, the access log.
func (p *Proxy) finish(r *http.Request, st *reqState) {
	rec := outcome.FromContext(r.Context())
	if rec == nil {
		// Nobody asked for it (no access line can be written): the
		// counters and metrics still read it.
		rec = &st.rec
	}
	*rec = outcome.Record{Start: st.start, Status: st.status, Attempts: st.prior + st.attempts, Target: st.target,
		Fault: st.fault, Took: time.Since(st.start), Overhead: -1, Bytes: st.out.n}
	if st.key != nil {
		rec.Key = st.key.Secret()
	}
	if st.target != nil && p.log.Logger.IsLevelEnabled(logrus.DebugLevel) {
		rec.UpstreamURL = st.upstreamURL(st.target)
	}
	// A stream the client left keeps its status: the client, not the
	// upstream, ended it.
	if st.aborted && r.Context().Err() == nil {
		rec.Aborted, rec.Error = true, st.streamFailure
	}
	if !st.headersAt.IsZero() && !st.bodyRead.IsZero() {
		rec.Overhead = max(0, st.headersAt.Sub(st.bodyRead)-st.upstreamTime)
	}
	p.obs.Done(rec)
	p.counters.Finished(rec)
}

// countingWriter counts the body bytes written through it. It implements
// Unwrap so http.ResponseController reaches the real Flush and Hijack.
type countingWriter struct {
	http.ResponseWriter
	n int64
	// stream: the answer is an event stream, whose first flush writes the
	// head on a fresh stack (internal/freshstack); headOut: that flush was made.
	stream, headOut bool
	// relay: the stream writes to the client itself (stream.relay), while
	// ReverseProxy's timer may flush the head from another goroutine; mu
	// keeps the two apart. Set before ReverseProxy writes anything.
	relay bool
	mu    sync.Mutex
}

// FlushError flushes through to the server's writer; an event stream's
// first flush, which writes the head, runs on a fresh stack (internal/freshstack).
func (c *countingWriter) FlushError() error {
	if c.relay {
		c.mu.Lock()
		defer c.mu.Unlock()
	}
	return c.flush()
}

// send writes b and flushes it, for a stream that writes to the client
// itself.
func (c *countingWriter) send(b []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := c.ResponseWriter.Write(b)
	c.n += int64(n)
	if err != nil {
		return err
	}
	return c.flush()
}

func (c *countingWriter) flush() error {
	if !c.stream || c.headOut {
		// Made here, not shared with the call below, so that it stays on
		// the stack: no allocation per flushed event.
		return http.NewResponseController(c.ResponseWriter).Flush()
	}
	c.headOut = true
	var err error
	freshstack.Call(func() { err = http.NewResponseController(c.ResponseWriter).Flush() })
	return err
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	return n, err
}

func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

func (p *Proxy) fail(w http.ResponseWriter, st *reqState, e *apierr.Error) {
	st.status = e.Status
	st.headersAt = time.Now()
	w.Header().Set(HeaderAttempts, strconv.Itoa(st.prior+st.attempts))
	apierr.Write(w, e)
}

// readBody reads the whole request body, up to MaxBodySize, into memory or
// a temporary file (see body). A larger body is a 413 and a body stalled
// past SERVER_READ_TIMEOUT a 408, both before anything goes upstream; a
// body that cannot be read is a 400, or, when the client went away, a
// plain error; a body that cannot be written to its file is a 503.
func (p *Proxy) readBody(r *http.Request) (*body, error) {
	tooLarge := func() error {
		return &apierr.Error{Status: http.StatusRequestEntityTooLarge, Code: apierr.CodeRequestTooLarge,
			Message: "request body larger than MAX_REQUEST_BODY_SIZE (" + strconv.FormatInt(p.opts.MaxBodySize>>20, 10) + " MiB)"}
	}
	if r.ContentLength > p.opts.MaxBodySize {
		return nil, tooLarge()
	}
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return nil, nil
	}
	b, err := readBody(r.Body, r.ContentLength, p.opts.BodyMemoryLimit, p.opts.MaxBodySize)
	switch {
	case err == nil:
		return b, nil
	case errors.Is(err, errBodyTooLarge):
		return nil, tooLarge()
	case isBodyTimeout(err):
		// The read deadline cancels the request's context too: test for
		// it before taking the cancellation for a client that left.
		return nil, &apierr.Error{Status: http.StatusRequestTimeout, Code: apierr.CodeRequestTimeout,
			Message: "the request body did not arrive within SERVER_READ_TIMEOUT", Err: err}
	case r.Context().Err() != nil:
		return nil, err
	}
	var spool *spoolError
	if errors.As(err, &spool) {
		// The proxy's own trouble, not the client's: logged, and a 503
		// the client may retry (docs/api.md, "Bad input and faults").
		p.log.WithError(err).Error("request body could not be kept for retries")
		return nil, &apierr.Error{Status: http.StatusServiceUnavailable, Code: apierr.CodeSpoolFailed,
			Message: "the proxy could not store the request body; retry later", Err: err}
	}
	return nil, &apierr.Error{Status: http.StatusBadRequest, Code: apierr.CodeInvalidRequest,
		Message: "could not read the request body", Err: err}
}

// rewrite strips the client's credentials and adds X-Forwarded-*. It runs
// after ReverseProxy removed hop-by-hop headers; the key and target are set
// per attempt.
func rewrite(pr *httputil.ProxyRequest) {
	for _, name := range upstream.CredentialHeaders {
		delete(pr.Out.Header, name)
	}
	// The pool's keys belong to other accounts than the client's: headers
	// that bind a request to an organization or project go like
	// credentials.
	delete(pr.Out.Header, "Openai-Organization")
	delete(pr.Out.Header, "Openai-Project")
	pr.Out.URL.RawQuery = withoutKeyParam(pr.Out.URL.RawQuery)
	// The body is already in hand: the client's Expect: 100-continue was
	// answered when it was read, and asking the upstream again would make
	// each attempt wait for a 100 (docs/key-health.md, "Retries").
	delete(pr.Out.Header, "Expect")
	// Only codings the proxy can read, so that no error body escapes the
	// search for pool keys (encoding.go).
	pr.Out.Header["Accept-Encoding"] = upstreamAcceptEncoding(pr.In.Header["Accept-Encoding"])
	// Rewrite starts without the inbound X-Forwarded-*; keep the chain of
	// earlier proxies and append the client (docs/api.md, "Forwarding").
	setXForwarded(pr)
}

// Values of X-Forwarded-Proto, shared by every request: header values are
// only ever read.
var (
	protoHTTP  = []string{"http"}
	protoHTTPS = []string{"https"}
)

// setXForwarded does what httputil.ProxyRequest.SetXForwarded does, the
// client appended to the chain of earlier proxies, with the values held in
// the request's state (no allocation but the chain's, when there is one).
func setXForwarded(pr *httputil.ProxyRequest) {
	h := pr.Out.Header
	var fwd *[2]string
	if st := stateOf(pr.In.Context()); st != nil {
		fwd = &st.fwd
	} else {
		fwd = new([2]string)
	}
	if clientIP, _, err := net.SplitHostPort(pr.In.RemoteAddr); err == nil {
		if prior := pr.In.Header["X-Forwarded-For"]; len(prior) > 0 {
			clientIP = strings.Join(prior, ", ") + ", " + clientIP
		}
		fwd[0] = clientIP
		h["X-Forwarded-For"] = fwd[0:1:1]
	} else {
		delete(h, "X-Forwarded-For")
	}
	fwd[1] = pr.In.Host
	h["X-Forwarded-Host"] = fwd[1:2:2]
	if pr.In.TLS == nil {
		h["X-Forwarded-Proto"] = protoHTTP
	} else {
		h["X-Forwarded-Proto"] = protoHTTPS
	}
}

// withoutKeyParam removes every parameter whose percent-decoded name is
// "key" in any case (key=, KEY=, k%65y=: docs/api.md, "Client
// authentication") from a raw query, leaving the rest byte for byte
// (re-encoding would reorder and re-escape it).
func withoutKeyParam(q string) string {
	if !mayHoldKeyParam(q) {
		return q
	}
	var b strings.Builder
	first := true
	for part := range strings.SplitSeq(q, "&") {
		name, _, _ := strings.Cut(part, "=")
		if isKeyName(name) {
			continue
		}
		if !first {
			b.WriteByte('&')
		}
		first = false
		b.WriteString(part)
	}
	return b.String()
}

// mayHoldKeyParam is the fast path: a query without a "k" or a "%" cannot
// name the parameter.
func mayHoldKeyParam(q string) bool {
	return strings.ContainsAny(q, "kK%")
}

func isKeyName(name string) bool {
	if len(name) < 3 {
		return false
	}
	if n, err := url.QueryUnescape(name); err == nil {
		name = n
	}
	return strings.EqualFold(name, "key")
}

// upstreamURL is the URL prepare sends to target, without the query: a
// doubled /v1/v1/ shows in it, a key never does (the query, which may
// carry one, is left out).
func (st *reqState) upstreamURL(target *upstream.Target) string {
	var u url.URL
	st.pointAt(&u, target)
	return u.String()
}

// pointAt sets u's scheme, host and path to the client's path on target.
func (st *reqState) pointAt(u *url.URL, target *upstream.Target) {
	u.Scheme = target.URL.Scheme
	u.Host = target.URL.Host
	u.Path = target.JoinPath(st.path)
	u.RawPath = ""
	if st.rawPath != "" {
		u.RawPath = target.URL.EscapedPath() + st.rawPath
	}
}

// prepare points req at target with key, and gives it a fresh reader over
// the buffered body.
func (st *reqState) prepare(req *http.Request, key *keymanager.Key, target *upstream.Target) {
	st.pointAt(req.URL, target)
	req.Host = ""
	// The first attempt's header value lives in st (no allocation); a
	// retry's gets its own, since an earlier attempt's request may still
	// be read by its transport.
	var slot *[1]string
	if st.attempts == 0 {
		slot = &st.authSlot
	}
	target.Style.Apply(req.Header, key.Secret().Reveal(), slot)
	if st.body.Len() == 0 {
		req.Body = nil
		req.GetBody = nil
		req.ContentLength = 0
		return
	}
	body := st.body
	req.ContentLength = body.Len()
	if st.attempts == 0 && body.file == nil {
		// NopCloser over a bytes.Reader, which net/http knows to be in
		// memory: the headers go out with the body in one write.
		st.body0.Reset(body.mem)
		req.Body = io.NopCloser(&st.body0)
	} else {
		req.Body = body.reader()
	}
	req.GetBody = func() (io.ReadCloser, error) { return body.reader(), nil }
}

func noKeysError(err error) *apierr.Error {
	e := &apierr.Error{Status: http.StatusServiceUnavailable, Code: apierr.CodeNoAvailableKeys,
		Message: "no usable API key: every key is cooling down or blacklisted", Err: err}
	var nk *keymanager.NoKeysError
	if errors.As(err, &nk) && !nk.RetryAt.IsZero() {
		e.RetryAfter = max(1, int(math.Ceil(time.Until(nk.RetryAt).Seconds())))
	}
	return e
}

// budgetError is the answer of a group fallen back to when the retry
// budget allows it no attempt (docs/groups.md, "Fallback").
func budgetError() *apierr.Error {
	return &apierr.Error{Status: http.StatusServiceUnavailable, Code: apierr.CodeUpstreamUnavail,
		Message: "the retry budget is spent: the request was not sent to the fallback group", RetryAfter: 1}
}

// noTargetError is the answer of a group whose upstreams are all benched
// when another group follows to serve the request.
func noTargetError() *apierr.Error {
	return &apierr.Error{Status: http.StatusServiceUnavailable, Code: apierr.CodeUpstreamUnavail,
		Message: "every upstream of the group is benched"}
}

// noTargetUsable reports whether every target is benched (none in
// rotation, none due for a probe).
func (p *Proxy) noTargetUsable() bool {
	usable, _ := p.targets.Usable()
	return usable == 0
}

// Header values set on every upstream answer, made once. ReverseProxy
// copies the answer's headers into the client's, value by value, so these
// slices are only ever read.
var (
	noBuffering    = []string{"no"}
	attemptsValues = func() (v [maxAttempts + 1][]string) {
		for i := range v {
			v[i] = []string{strconv.Itoa(i)}
		}
		return v
	}()
)

// maxAttempts is the most attempts a request makes: the first and
// MAX_RETRIES (at most 10) retries.
const maxAttempts = 11

func attemptsValue(n int) []string {
	if n >= 0 && n <= maxAttempts {
		return attemptsValues[n]
	}
	return []string{strconv.Itoa(n)}
}

// modifyResponse marks the answer for the client: pool keys masked in its
// headers, attempts, no buffering in a proxy in front for event streams,
// and our CORS in place of the upstream's. A stream whose error event is
// the answer is recorded with that error's status.
func (p *Proxy) modifyResponse(resp *http.Response) error {
	st := stateOf(resp.Request.Context())
	st.status = resp.StatusCode
	if es, ok := resp.Body.(*errorStream); ok {
		// Every attempt failed inside the commit window: the client gets
		// the last error event under the 200 already promised, and the
		// request is recorded with the status that error carries
		// (docs/api.md, "Streaming").
		st.status = es.status
	}
	st.headersAt = time.Now()
	st.dl.watchBody(resp, p.opts.StreamIdleTimeout)
	h := resp.Header
	set := p.redact.set()
	maskHeader(set, h)
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		maskRedirectBody(resp, set)
	}
	if s, ok := resp.Body.(*stream); ok && s.keepalive <= 0 {
		if w, ok := s.body.(readyWaiter); ok {
			// The stream writes to the client itself (stream.relay). Only
			// over a body that can wait without a buffer: over another
			// (HTTP/2's) a read holds its buffer while it waits, as
			// ReverseProxy's copy does, so nothing would be saved.
			s.out, s.ready = &st.out, w
			st.out.relay = true
		}
	}
	if resp.Body != nil && resp.Body != http.NoBody && resp.StatusCode != http.StatusSwitchingProtocols {
		// A 101's body is the upgraded connection, which ReverseProxy
		// needs as it is.
		st.trailers = trailerMasker{ReadCloser: resp.Body, resp: resp, p: p}
		resp.Body = &st.trailers
	}
	h[HeaderAttempts] = attemptsValue(st.prior + st.attempts)
	if strings.HasPrefix(h.Get("Content-Type"), "text/event-stream") {
		h["X-Accel-Buffering"] = noBuffering
	}
	if p.opts.StripUpstreamCORS {
		for name := range h {
			if strings.HasPrefix(name, "Access-Control-") {
				delete(h, name)
			}
		}
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		// A 101's headers stay: ReverseProxy checks its Upgrade against
		// the request's before joining the connections.
		moveHeader(st.out.Header(), h)
	}
	return nil
}

// moveHeader moves the answer's header fields into the client's header
// map, which ReverseProxy would otherwise copy value by value (an
// allocation per field, after the transport made each of them). Fields
// the client's map already holds (our CORS, say) get the answer's values
// appended, as ReverseProxy would. Content-Type stays in the answer too:
// ReverseProxy reads it there to flush event streams as they come.
func moveHeader(dst, src http.Header) {
	for name, vv := range src {
		if name == "Content-Type" {
			continue
		}
		if prior, ok := dst[name]; ok {
			dst[name] = append(prior, vv...)
		} else {
			dst[name] = vv
		}
		delete(src, name)
	}
}

// errorHandler answers when no upstream response can be passed on.
func (p *Proxy) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	st := stateOf(r.Context())
	if r.Context().Err() != nil {
		st.status = outcome.StatusClientClosed
		return // the client went away: nobody to answer
	}
	var ae *apierr.Error
	switch {
	case errors.As(err, &ae):
	case classify.IsTimeout(err):
		ae = &apierr.Error{Status: http.StatusGatewayTimeout, Code: apierr.CodeUpstreamTimeout,
			Message: "the upstream did not answer in time", Err: err}
	default:
		ae = &apierr.Error{Status: http.StatusBadGateway, Code: apierr.CodeUpstreamUnavail,
			Message: "no answer from the upstream", Err: err}
	}
	if p.log.Logger.IsLevelEnabled(logrus.WarnLevel) && ae.Status != http.StatusServiceUnavailable {
		f := logrus.Fields{"attempts": st.attempts, "error": err.Error()}
		if ae.Err == err {
			// The class first, as /stats and the status page name it: a
			// lookup whose DNS server refused reads "connection refused"
			// in the error's text, yet it is a DNS failure.
			f["reason"] = classify.Attempt(classify.Outcome{Err: err}).Reason
		}
		if st.target != nil {
			f["upstream"] = st.target.Host()
		}
		p.log.WithFields(f).Warn("upstream request failed")
	}
	p.fail(w, st, ae)
}
