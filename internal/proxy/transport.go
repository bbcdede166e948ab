package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
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
