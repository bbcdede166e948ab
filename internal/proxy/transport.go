package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// TransportOptions are the upstream connection settings
// (docs/configuration.md, "Settings").
type TransportOptions struct {
	// ConnectTimeout bounds the dial and the TLS handshake (REQUEST_TIMEOUT).
	ConnectTimeout time.Duration
	// ResponseTimeout is RESPONSE_TIMEOUT. The transport does not enforce
	// it: the proxy's own deadline does, from the start of sending
	// (deadline.go), which always ends before the transport's header timer,
	// started once the body is written, would; that timer was a second
	// timer per request that never fired first. Re-checks are bounded by
	// recheckTimeout.
	ResponseTimeout time.Duration
	// IdleConnTimeout is how long an idle connection is kept.
	IdleConnTimeout time.Duration
	// MaxIdlePerHost is how many idle connections to keep per upstream; it
	// should match the expected concurrency, or busy periods open a new
	// connection for most requests.
	MaxIdlePerHost int
	// RootCAs are the certificate authorities upstream TLS certificates
	// must chain to (UPSTREAM_CA_FILE); nil means the system's roots.
	// Verification is never skipped.
	RootCAs *x509.CertPool
}

// NewTransport returns the upstream transport: connection reuse with a pool
// as large as the proxy's concurrency, HTTP/2 to TLS upstreams with health
// pings, and no transparent decompression (compressed bodies pass through).
func NewTransport(o TransportOptions) (*http.Transport, error) {
	dialer := &net.Dialer{
		Timeout:   o.ConnectTimeout,
		KeepAlive: 30 * time.Second,
	}
	t := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		TLSHandshakeTimeout:   o.ConnectTimeout,
		IdleConnTimeout:       o.IdleConnTimeout,
		MaxIdleConns:          0, // no global cap; per host below
		MaxIdleConnsPerHost:   o.MaxIdlePerHost,
		ExpectContinueTimeout: time.Second,
		// The answer is not decoded: compressed stays compressed. The
		// Accept-Encoding sent is set by rewrite (encoding.go), to codings
		// the proxy can read (docs/api.md, "Forwarding").
		DisableCompression: true,
		// The 4 KiB default buffers stay: large bodies bypass them (bufio
		// passes big writes and reads straight through), and with a
		// thousand open streams every kilobyte per connection counts.
	}
	// HTTP/2 to TLS upstreams (negotiated by ALPN), HTTP/1.1 otherwise.
	// The standard library's own HTTP/2 is configured here rather than
	// golang.org/x/net/http2's ConfigureTransports, which is deprecated in
	// its favour. A silent HTTP/2 connection is pinged after 30 s and
	// dropped if the ping is not answered in 15 s, so a dead upstream
	// connection is found before a request waits on it for RESPONSE_TIMEOUT.
	if o.RootCAs != nil {
		// Only the roots change: with Protocols set below, a TLS config
		// of our own does not turn HTTP/2 off (net/http adds "h2" to its
		// NextProtos itself).
		t.TLSClientConfig = &tls.Config{RootCAs: o.RootCAs}
	}
	t.Protocols = new(http.Protocols)
	t.Protocols.SetHTTP1(true)
	t.Protocols.SetHTTP2(true)
	t.HTTP2 = &http.HTTP2Config{SendPingTimeout: 30 * time.Second, PingTimeout: 15 * time.Second}
	return t, nil
}

// ShareConns puts t behind a gate that lets concurrent requests to an
// HTTP/2 upstream share connections instead of each opening its own.
//
// net/http dials one connection per request that finds none idle, and
// learns only after the TLS handshake that the upstream speaks HTTP/2 and
// one connection would have served them all: a hundred requests arriving
// at a cold proxy cost a hundred handshakes, and when a connection's
// streams run out (servers allow 100 to 250), every request then waiting
// dials again. Extra HTTP/2 connections are closed as soon as they are
// found surplus, but the handshakes are paid on both sides.
//
// Two things change that. While the protocol of an https upstream is not
// known yet, one request goes ahead and the others wait until it holds a
// connection; they then find it in the pool. And once the upstream is known
// to speak HTTP/2, its dials run one at a time, and a dial whose request
// got a connection while it waited is not made. Upstreams that answered the
// handshake with HTTP/1.1, and plain http ones, pass straight through;
// proxied (HTTPS_PROXY) connections are left to net/http.
//
// ShareConns sets t.DialTLSContext: it dials with t.DialContext and
// does the handshake itself, with t.TLSClientConfig (which net/http
// completes with the ALPN protocols on first use) and t.TLSHandshakeTimeout,
// as net/http would. Call it before t is used. The returned RoundTripper is
// safe for concurrent use.
func ShareConns(t *http.Transport) http.RoundTripper {
	s := &connSharer{base: t, dial: t.DialContext}
	if s.dial == nil {
		s.dial = (&net.Dialer{}).DialContext
	}
	t.DialTLSContext = s.dialTLS
	return s
}

// errConnNotNeeded fails a dial whose request got a connection while the
// dial waited its turn. Nobody sees it: net/http hands a failed dial's
// error only to a request still waiting for that dial.
var errConnNotNeeded = errors.New("upstream connection no longer needed")

type connSharer struct {
	base   *http.Transport
	dial   func(ctx context.Context, network, addr string) (net.Conn, error)
	byHost sync.Map // URL host (as in requests) → *hostGate
	byAddr sync.Map // dial address host:port → the same *hostGate
}

// hostGate is what the sharer knows of one https upstream. Fields are
// accessed atomically, or under mu.
type hostGate struct {
	// ready: the first request to the upstream got its connection, which
	// is now in the pool; requests go straight to the transport.
	ready atomic.Bool
	http2 atomic.Bool // the last handshake chose HTTP/2: dial one at a time

	dialing chan struct{} // one slot: the dial in progress to an HTTP/2 upstream

	mu      sync.Mutex
	warming chan struct{} // closed once the request that went first has a connection
}

func (s *connSharer) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "https" {
		return s.base.RoundTrip(req)
	}
	g := s.gate(req.URL)
	if g.ready.Load() {
		return s.base.RoundTrip(req)
	}
	g.mu.Lock()
	if ch := g.warming; ch != nil {
		g.mu.Unlock()
		select {
		case <-ch:
		case <-req.Context().Done():
			return nil, req.Context().Err()
		}
		return s.base.RoundTrip(req)
	}
	ch := make(chan struct{})
	g.warming = ch
	g.mu.Unlock()
	var once sync.Once
	release := func() {
		once.Do(func() {
			g.mu.Lock()
			g.warming = nil
			g.mu.Unlock()
			close(ch)
		})
	}
	// Whatever happens to this request, the others stop waiting once it
	// is over; a failed dial leaves them to try their own.
	defer release()
	trace := &httptrace.ClientTrace{GotConn: func(httptrace.GotConnInfo) {
		g.ready.Store(true)
		release()
	}}
	return s.base.RoundTrip(req.WithContext(httptrace.WithClientTrace(req.Context(), trace)))
}

// CloseIdleConnections closes the transport's idle connections.
func (s *connSharer) CloseIdleConnections() { s.base.CloseIdleConnections() }

// gate returns the gate of u's host, made on first use.
func (s *connSharer) gate(u *url.URL) *hostGate {
	if g, ok := s.byHost.Load(u.Host); ok {
		return g.(*hostGate)
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "443")
	}
	g, loaded := s.byHost.LoadOrStore(u.Host, &hostGate{dialing: make(chan struct{}, 1)})
	if !loaded {
		s.byAddr.Store(addr, g)
	}
	return g.(*hostGate)
}

// dialTLS dials addr and does the TLS handshake, one dial at a time to an
// upstream known to speak HTTP/2 (see ShareConns). ctx carries the
// values of the request the dial is for.
func (s *connSharer) dialTLS(ctx context.Context, network, addr string) (net.Conn, error) {
	var g *hostGate
	if v, ok := s.byAddr.Load(addr); ok {
		g = v.(*hostGate)
	}
	if g != nil && g.http2.Load() {
		// A request that gets a connection while this dial waits has no
		// use for it: its count of connections moves on.
		st := stateOf(ctx)
		var had uint32
		if st != nil {
			had = st.gotConns.Load()
		}
		// The dial ahead takes at most its dial and handshake timeouts; a
		// wait longer than a connection attempt of its own would have
		// taken fails like one.
		wait := time.NewTimer(s.connectTimeout())
		select {
		case g.dialing <- struct{}{}:
			wait.Stop()
		case <-wait.C:
			return nil, &net.OpError{Op: "dial", Net: network, Err: errDialQueueTimeout}
		case <-ctx.Done():
			wait.Stop()
			return nil, ctx.Err()
		}
		defer func() { <-g.dialing }()
		if st != nil && st.gotConns.Load() != had {
			return nil, errConnNotNeeded
		}
	}
	conn, err := s.dial(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	cfg := s.base.TLSClientConfig.Clone()
	if cfg == nil {
		cfg = &tls.Config{}
	}
	if cfg.ServerName == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			host = addr
		}
		cfg.ServerName = host
	}
	tc := tls.Client(conn, cfg)
	if d := s.base.TLSHandshakeTimeout; d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, err
	}
	if g != nil {
		g.http2.Store(tc.ConnectionState().NegotiatedProtocol == "h2")
	}
	return tc, nil
}

// connectTimeout is how long a connection attempt may take: the TCP dial
// and the TLS handshake, each bounded by REQUEST_TIMEOUT.
func (s *connSharer) connectTimeout() time.Duration {
	if d := s.base.TLSHandshakeTimeout; d > 0 {
		return 2 * d
	}
	return 30 * time.Second
}

// errDialQueueTimeout: the dial before this one to the same upstream took
// longer than a connection attempt may. It is a timeout, so the attempt is
// classified as a connect timeout.
var errDialQueueTimeout = dialQueueTimeout{}

type dialQueueTimeout struct{}

func (dialQueueTimeout) Error() string {
	return "waited REQUEST_TIMEOUT for an earlier dial to the upstream"
}
func (dialQueueTimeout) Timeout() bool   { return true }
func (dialQueueTimeout) Temporary() bool { return true }
