// Command bareproxy is the floor of gpt-load's design, measured beside it
// by the load test (scripts/loadtest.sh). It is not part of the proxy.
//
// It is the shape gpt-load is built on with nothing of gpt-load in it: a
// net/http server, configured with main's timeouts, and an
// httputil.ReverseProxy that sends every request to one upstream with one
// fixed key, through gpt-load's HTTP/1.1 client (internal/h1client) and
// with gpt-load's collector pacing (internal/gctune). No key rotation, no
// retries, no classification, deadlines, masking, middleware, access log,
// counters or metrics. What gpt-load costs above this is what its features
// cost; what this costs above nginx, no feature work can win back.
//
//	bareproxy -addr 127.0.0.1:8080 -upstream http://127.0.0.1:9000 [-key sk-…]
//
// The listen address actually used is the first line on stdout.
package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/gpt-load/gpt-load/internal/gctune"
	"github.com/gpt-load/gpt-load/internal/h1client"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	up := flag.String("upstream", "", "upstream base URL (http://host:port)")
	key := flag.String("key", "sk-bareproxy", "the one key every request carries upstream")
	flag.Parse()
	target, err := parseUpstream(*up)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bareproxy:", err)
		os.Exit(2)
	}
	gctune.Start(os.Getenv)
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bareproxy:", err)
		os.Exit(1)
	}
	fmt.Println(ln.Addr())
	if err := newServer(target, *key).Serve(ln); err != nil {
		fmt.Fprintln(os.Stderr, "bareproxy:", err)
		os.Exit(1)
	}
}

func parseUpstream(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("-upstream must be an http:// URL with a host, got %q", s)
	}
	return u, nil
}

// newServer is the floor: main's server timeouts around a ReverseProxy to
// target with key.
func newServer(target *url.URL, key string) *http.Server {
	bearer := "Bearer " + key
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Header["Authorization"] = []string{bearer}
		},
		// gpt-load's client for plain http upstreams, as gpt-load sizes it
		// in the load run (MAX_CONCURRENT_REQUESTS=4096 idle per host).
		Transport:  h1client.New(h1client.Options{MaxIdlePerHost: 4096}),
		BufferPool: &bufferPool{},
	}
	// The values main gives net/http's server (internal/server/http.go)
	// at the default configuration.
	return &http.Server{
		Handler:           rp,
		ReadHeaderTimeout: 30 * time.Second,
		ReadTimeout:       120 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    1 << 20,
	}
}

// bufferPool lends ReverseProxy 4 KiB copy buffers, as gpt-load does
// (internal/proxy/bufpool.go): without one, ReverseProxy allocates 32 KiB
// per response. Array pointers, so a Put allocates nothing.
type bufferPool struct{ p sync.Pool }

const bufSize = 4 << 10

func (b *bufferPool) Get() []byte {
	if a, ok := b.p.Get().(*[bufSize]byte); ok {
		return a[:]
	}
	return new([bufSize]byte)[:]
}

func (b *bufferPool) Put(s []byte) {
	if cap(s) >= bufSize {
		b.p.Put((*[bufSize]byte)(s[:bufSize]))
	}
}
