package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// TransportOptions are the upstream connection settings (SPEC §2).
type TransportOptions struct {
	// ConnectTimeout bounds the dial and the TLS handshake (REQUEST_TIMEOUT).
	ConnectTimeout time.Duration
	// ResponseTimeout bounds the wait for response headers once the request
	// is written (RESPONSE_TIMEOUT). It never cuts a body that is flowing.
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
		ResponseHeaderTimeout: o.ResponseTimeout,
		IdleConnTimeout:       o.IdleConnTimeout,
		MaxIdleConns:          0, // no global cap; per host below
		MaxIdleConnsPerHost:   o.MaxIdlePerHost,
		ExpectContinueTimeout: time.Second,
		// The client's Accept-Encoding is passed as is and the answer is
		// not decoded: compressed stays compressed (SPEC §4).
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

// ShareFirstConn returns t behind a gate that lets a burst of requests to an
// https upstream share its first connection. net/http dials one connection
// per request that finds none idle, and only learns after the TLS handshake
// that the upstream speaks HTTP/2 and one connection would have served them
// all: a hundred requests arriving at a cold proxy cost a hundred
// handshakes, of which all but one connection are closed again. Behind the
// gate, while an https upstream has no established HTTP/2 connection (at
// start, or after the upstream closed them), one request goes ahead and the
// others wait until it holds a connection; then they go too, and find it.
// Once an upstream is known to answer with HTTP/1.1 its requests pass
// straight through, as do plain http ones. The gate is per upstream
// host:port; requests past it cost one sync.Map lookup and an atomic load.
//
// ShareFirstConn wraps t.DialContext, to notice when t dials an upstream
// that was thought to have a live HTTP/2 connection; call it before t is
// used. The returned RoundTripper is safe for concurrent use.
func ShareFirstConn(t *http.Transport) http.RoundTripper {
	s := &connSharer{base: t}
	dial := t.DialContext
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if g, ok := s.byAddr.Load(addr); ok {
			// A new connection to an upstream with a live HTTP/2 one means
			// that one is gone or full: gate the next requests again
			// until a connection is in hand.
			g.(*hostGate).established.Store(false)
		}
		return dial(ctx, network, addr)
	}
	return s
}

type connSharer struct {
	base   *http.Transport
	byHost sync.Map // URL host (as in requests) → *hostGate
	byAddr sync.Map // dial address host:port → the same *hostGate
}

// hostGate is the state of one https upstream. Fields are accessed
// atomically or under mu.
type hostGate struct {
	http1       atomic.Bool // the upstream answered a TLS handshake with HTTP/1.1
	established atomic.Bool // an HTTP/2 connection is in the pool

	mu      sync.Mutex
	warming chan struct{} // closed once the request that went ahead has a connection
}

func (s *connSharer) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "https" {
		return s.base.RoundTrip(req)
	}
	g := s.gate(req.URL)
	if g.http1.Load() || g.established.Load() {
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
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		if tc, ok := info.Conn.(*tls.Conn); ok {
			if tc.ConnectionState().NegotiatedProtocol == "h2" {
				g.established.Store(true)
			} else {
				g.http1.Store(true)
			}
		}
		release()
	}}
	return s.base.RoundTrip(req.WithContext(httptrace.WithClientTrace(req.Context(), trace)))
}

// gate returns the gate of u's host, made on first use.
func (s *connSharer) gate(u *url.URL) *hostGate {
	if g, ok := s.byHost.Load(u.Host); ok {
		return g.(*hostGate)
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "443")
	}
	g, loaded := s.byHost.LoadOrStore(u.Host, &hostGate{})
	if !loaded {
		s.byAddr.Store(addr, g)
	}
	return g.(*hostGate)
}
