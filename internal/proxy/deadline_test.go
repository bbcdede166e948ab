package proxy_test

import (
	"bufio"
	"bytes"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gpt-load/gpt-load/internal/config"
	"github.com/gpt-load/gpt-load/internal/server"
	"github.com/gpt-load/gpt-load/internal/testserver"
	"github.com/gpt-load/gpt-load/internal/testupstream"
)

// Every test here serves through the http.Server cmd/gpt-load serves with
// (testserver's Live), with every timeout at 1 s, against upstreams that
// really stall: raw TCP listeners that hold the connection open, reading or
// writing nothing more, until the test ends.

// shortTimeouts sets every timeout a stalled upstream meets to 1 s.
var shortTimeouts = map[string]string{
	"REQUEST_TIMEOUT":     "1",
	"RESPONSE_TIMEOUT":    "1",
	"STREAM_IDLE_TIMEOUT": "1",
	"LOG_LEVEL":           "debug",
}

// startLive starts the server as cmd/gpt-load serves it.
func startLive(t *testing.T, upstreams []string, vars map[string]string, opts server.Options) *testserver.Server {
	t.Helper()
	return testserver.Start(t, testserver.Options{Keys: testKeys, Upstreams: upstreams, Env: vars, Server: opts, Live: true})
}

// stallingUpstream accepts connections and runs script on each; the
// connection then stays open, silent, until the test ends. read says
// whether the request is read first (head and body); without it nothing
// is read at all. It returns the base URL and a count of connections.
func stallingUpstream(t *testing.T, read bool, script func(c net.Conn)) (string, *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { close(done); ln.Close() })
	var n atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			go func() {
				defer c.Close()
				if read {
					req, err := http.ReadRequest(bufio.NewReader(c))
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
				}
				script(c)
				<-done // the stall: until the test ends
			}()
		}
	}()
	return "http://" + ln.Addr().String(), &n
}

// timedClient gives up long after any bound under test, so that a proxy
// that hangs fails the test rather than hanging it.
//
// Its 20 s is the hang bound of every test here: the timeouts under test are
// 1 s, and what shows that one of them fired is the answer (a status, a cut
// body) and the access line's reason, never how long it took, which on a
// loaded machine is the machine's. Without them the stalled upstreams hold
// a request until the client gives up.
func timedClient() *http.Client {
	return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableCompression: true}}
}

// TestStalledErrorBodyRetriedElsewhere: an upstream that sends the headers
// of a 500 or a 503 and then stalls in its body has the attempt classified
// by its status once the error body's deadline passes, and retried: the
// healthy second target serves the request.
func TestStalledErrorBodyRetriedElsewhere(t *testing.T) {
	for _, tc := range []struct{ name, head string }{
		{"500 with a length", "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{\"error\":"},
		{"503 chunked", "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n9\r\n{\"error\":\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad, hits := stallingUpstream(t, true, func(c net.Conn) { io.WriteString(c, tc.head) })
			good := testupstream.New(t, nil)
			// STREAM_IDLE_TIMEOUT stays long: the error body's own
			// deadline (1 s here, 10 s by default) is what ends the wait.
			vars := map[string]string{"REQUEST_TIMEOUT": "1", "RESPONSE_TIMEOUT": "1", "STREAM_IDLE_TIMEOUT": "300"}
			s := startLive(t, []string{bad, good.URL}, vars, server.Options{ErrorBodyTimeout: time.Second})
			// Targets alternate: two requests, so one starts on the bad one.
			for i := range 2 {
				begin := time.Now()
				resp, err := timedClient().Post(s.URL+"/v1/chat/completions", "application/json", strings.NewReader(`{"model":"m"}`))
				if err != nil {
					t.Fatalf("request %d: %v after %v", i, err, time.Since(begin))
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK {
					t.Errorf("request %d: %d %q (%v) after %v; want the healthy target's 200", i, resp.StatusCode, body, err, time.Since(begin))
				}
			}
			if hits.Load() == 0 {
				t.Fatal("the stalling upstream was never tried; the test proves nothing")
			}
			waitUntil(t, 5*time.Second, "requests finished", func() bool { return s.Proxy.InFlight() == 0 })
		})
	}
}

// TestStalledErrorBodyFinalAnswer: when the stalled error answer is the
// last there is, the client gets its status and what of its body arrived,
// then a cut connection (never a whole-looking answer), cut by that deadline,
// and the access line says why.
func TestStalledErrorBodyFinalAnswer(t *testing.T) {
	bad, _ := stallingUpstream(t, true, func(c net.Conn) {
		io.WriteString(c, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{\"error\":")
	})
	vars := map[string]string{"MAX_RETRIES": "0", "STREAM_IDLE_TIMEOUT": "300"}
	s := startLive(t, []string{bad}, vars, server.Options{ErrorBodyTimeout: time.Second})
	begin := time.Now()
	resp, err := timedClient().Get(s.URL + "/v1/models")
	if err != nil {
		t.Fatalf("%v after %v", err, time.Since(begin))
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || err == nil || string(body) != `{"error":` {
		t.Errorf("got %d %q, read error %v after %v; want 503, the bytes that arrived, then an error", resp.StatusCode, body, err, time.Since(begin))
	}
	// The cut was the error body's deadline, not the client's timeout:
	s.Logs.WaitFor(t, `"error":"upstream error body stalled"`, 5*time.Second)
}

// TestStalledBodyCutByIdleTimeout: STREAM_IDLE_TIMEOUT bounds the silence
// in every response body, not only event streams: a chunked JSON 200 that
// stalls after its first chunk is cut, the client's connection ends
// without the final chunk, and the access line says why.
func TestStalledBodyCutByIdleTimeout(t *testing.T) {
	for _, tc := range []struct{ name, head string }{
		{"chunked JSON 200", "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n7\r\n{\"id\":1\r\n"},
		{"JSON 200 with a length", "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"id\":1"},
		{"large error body", "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 200000\r\n\r\n" + strings.Repeat("e", 100000)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad, _ := stallingUpstream(t, true, func(c net.Conn) { io.WriteString(c, tc.head) })
			s := startLive(t, []string{bad}, shortTimeouts, server.Options{})
			begin := time.Now()
			resp, err := timedClient().Post(s.URL+"/v1/chat/completions", "application/json", strings.NewReader(`{}`))
			var body []byte
			if err == nil {
				body, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			// A body with a declared length is not flushed before it
			// ends: the cut then comes before the headers reached the
			// client, which sees the connection close. Either way the
			// client sees an error, never a shortened answer.
			took := time.Since(begin)
			if err == nil {
				t.Errorf("body %q ended cleanly after %v; want an error (no final chunk)", body, took)
			}
			if _, sent, _ := strings.Cut(tc.head, "\r\n\r\n"); resp != nil && len(sent) > 1000 && string(body) != sent {
				t.Errorf("client got %d bytes; want the %d the upstream sent", len(body), len(sent))
			}
			// The cut was STREAM_IDLE_TIMEOUT's, not the client's timeout:
			s.Logs.WaitFor(t, `"error":"stream idle timeout"`, 5*time.Second)
			waitUntil(t, 5*time.Second, "the request finished", func() bool { return s.Proxy.InFlight() == 0 })
		})
	}
}

// TestUnreadBodyIsATimeout: an upstream that never reads a 24 MiB request
// body gets RESPONSE_TIMEOUT counted from the start of sending: the client
// gets 504, and the request's MAX_CONCURRENT_REQUESTS slot
// and spooled body are freed.
func TestUnreadBodyIsATimeout(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("TMPDIR", dir)
	bad, hits := stallingUpstream(t, false, func(net.Conn) {})
	s := startLive(t, []string{bad}, shortTimeouts, server.Options{})
	body := bytes.Repeat([]byte("0123456789abcdef"), (24<<20)/16)
	begin := time.Now()
	resp, err := timedClient().Post(s.URL+"/v1/files", "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("%v after %v", err, time.Since(begin))
	}
	resp.Body.Close()
	// 504 is RESPONSE_TIMEOUT's answer: without it the client's own
	// timeout would have ended the request with an error above.
	if resp.StatusCode != http.StatusGatewayTimeout {
		t.Errorf("status %d after %v; want 504", resp.StatusCode, time.Since(begin))
	}
	if hits.Load() != 1 {
		t.Errorf("upstream got %d connections; want 1 (a timeout after sending began is not retried)", hits.Load())
	}
	waitUntil(t, 5*time.Second, "the slot is free", func() bool { return s.Proxy.InFlight() == 0 })
	waitNoSpoolFiles(t, dir)
}

// TestDeadlinesOverHTTP2: the same deadlines hold on HTTP/2, the protocol
// of TLS upstreams, where one connection carries many requests and only
// the request's own stream may be cancelled: an upstream that never reads
// a 24 MiB body (flow control stops the sending), and one that stalls in a
// JSON body. Other requests on the same connection go on.
func TestDeadlinesOverHTTP2(t *testing.T) {
	done := make(chan struct{})
	var proto atomic.Int32
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proto.Store(int32(r.ProtoMajor))
		switch r.URL.Path {
		case "/v1/files": // never reads the body
		case "/v1/chat/completions":
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"id":1`)
			http.NewResponseController(w).Flush()
		default:
			io.Copy(io.Discard, r.Body)
			io.WriteString(w, `{"ok":true}`)
			return
		}
		select {
		case <-done:
		case <-r.Context().Done():
		}
	}))
	up.EnableHTTP2 = true
	up.StartTLS()
	t.Cleanup(func() { close(done); up.Close() })
	roots := x509.NewCertPool()
	roots.AddCert(up.Certificate())
	s := testserver.Start(t, testserver.Options{Keys: testKeys, Upstreams: []string{up.URL}, Env: shortTimeouts, Live: true,
		Configure: func(c *config.Config) { c.UpstreamRootCAs = roots }})

	begin := time.Now()
	resp, err := timedClient().Post(s.URL+"/v1/files", "application/octet-stream", bytes.NewReader(make([]byte, 24<<20)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusGatewayTimeout {
		t.Errorf("unread body: %d after %v; want 504 (RESPONSE_TIMEOUT)", resp.StatusCode, time.Since(begin))
	}
	if p := proto.Load(); p != 2 {
		t.Fatalf("the upstream saw HTTP/%d; the test is about HTTP/2", p)
	}

	begin = time.Now()
	resp, err = timedClient().Post(s.URL+"/v1/chat/completions", "application/json", strings.NewReader(`{}`))
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if err == nil {
		t.Errorf("stalled JSON body ended cleanly after %v; want the connection cut", time.Since(begin))
	}
	s.Logs.WaitFor(t, `"error":"stream idle timeout"`, 5*time.Second)

	resp, err = timedClient().Get(s.URL + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("after the cut requests: %d; want 200 from the same upstream", resp.StatusCode)
	}
	waitUntil(t, 5*time.Second, "requests finished", func() bool { return s.Proxy.InFlight() == 0 })
}
