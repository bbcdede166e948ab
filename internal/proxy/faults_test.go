package proxy_test

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/gpt-load/gpt-load/internal/classify"
	"github.com/gpt-load/gpt-load/internal/keymanager"
	"github.com/gpt-load/gpt-load/internal/outcome"
	"github.com/gpt-load/gpt-load/internal/proxy"
	"github.com/gpt-load/gpt-load/internal/testupstream"
	"github.com/gpt-load/gpt-load/internal/upstream"
)

// Test1xxNotRelayed: an upstream 103 Early Hints does not reach the client
// and does not wipe the proxy's CORS headers; a client's Expect:
// 100-continue is answered once, by the proxy, and never forwarded.
func Test1xxNotRelayed(t *testing.T) {
	up := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"ok":true}`)
	})
	// Without AUTH_KEY, CORS needs an explicit ALLOWED_ORIGINS.
	e := start(t, testKeys, []string{up.URL}, map[string]string{"ALLOWED_ORIGINS": "*"})
	var got1xx []int
	var continues atomic.Int32
	trace := &httptrace.ClientTrace{
		Got1xxResponse: func(code int, _ textproto.MIMEHeader) error {
			got1xx = append(got1xx, code)
			return nil
		},
		Got100Continue: func() { continues.Add(1) },
	}
	req, _ := http.NewRequest(http.MethodPost, e.URL+"/v1/chat/completions", strings.NewReader(`{"model":"m"}`))
	req.Header.Set("Origin", "https://app.example")
	req.Header.Set("Expect", "100-continue")
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
	// The client holds the body back until a 100 comes, for up to 30 s: the
	// proxy answering at once shows as exactly one 100 below, not as a time
	// (the client sends anyway after 30 s, and the count is 0).
	c := &http.Client{Transport: &http.Transport{ExpectContinueTimeout: 30 * time.Second}}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != `{"ok":true}` {
		t.Fatalf("answer %d %q; want 200 {\"ok\":true}", resp.StatusCode, body)
	}
	if got := resp.Header.Get("Access-Control-Allow-Origin"); got == "" {
		t.Errorf("Access-Control-Allow-Origin missing after the upstream's 103; headers %v", resp.Header)
	}
	for _, code := range got1xx {
		if code != http.StatusContinue {
			t.Errorf("client received a %d; want no 1xx relayed", code)
		}
	}
	if n := continues.Load(); n != 1 {
		t.Errorf("client received %d 100 Continue; want exactly 1 (the proxy's)", n)
	}
	if h := up.Requests()[0].Header.Get("Expect"); h != "" {
		t.Errorf("upstream saw Expect: %q; want none", h)
	}
}

// rawUpstream runs script on each connection after reading its request,
// for upstreams that do not speak HTTP properly.
func rawUpstream(t *testing.T, script func(c net.Conn)) string {
	return testupstream.Raw(t, func(c net.Conn, _ *http.Request) { script(c) })
}

// reset closes c with a TCP RST rather than a FIN.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// TestUpstreamGarbageOrResetIsTargetFault: an upstream that resets the
// connection before answering, or answers with bytes that are not HTTP,
// is a target fault. It read the whole request first, so the attempt is
// not retried elsewhere (SPEC §8: the upstream may be running it, and a
// retry could pay twice): the client gets 502 and the other target
// nothing.
func TestUpstreamGarbageOrResetIsTargetFault(t *testing.T) {
	cases := []struct {
		name   string
		script func(c net.Conn)
	}{
		{"reset before headers", reset},
		{"garbage instead of HTTP", func(c net.Conn) { io.WriteString(c, "SSH-2.0-OpenSSH_9.6\r\n\x00\x01\x02 nonsense\r\n\r\n") }},
		{"closed before headers", func(c net.Conn) {}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bad := rawUpstream(t, tc.script)
			good := testupstream.New(t, nil)
			e := start(t, testKeys, []string{bad, good.URL}, nil)
			resp, err := client().Post(e.URL+"/v1/chat/completions", "application/json", strings.NewReader(`{}`))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadGateway || good.Count() != 0 {
				t.Errorf("status %d, good upstream got %d; want 502 and no retry once the request was written", resp.StatusCode, good.Count())
			}
			// Alone, the same upstream gives a 502 upstream_unavailable.
			e1 := start(t, testKeys, []string{bad}, map[string]string{"MAX_RETRIES": "0"})
			resp, err = client().Post(e1.URL+"/v1/chat/completions", "application/json", strings.NewReader(`{}`))
			if err != nil {
				t.Fatal(err)
			}
			assertErrorShape(t, resp, "upstream_unavailable")
			if resp.StatusCode != http.StatusBadGateway {
				t.Errorf("alone: %d; want 502", resp.StatusCode)
			}
		})
	}
}

// TestResetMidStreamEndsWithoutTerminator: an upstream that resets the
// connection in the middle of a chunked answer makes the proxy end the
// client's connection without the final chunk, so the client sees an
// error rather than a short answer; the access line says so.
func TestResetMidStreamEndsWithoutTerminator(t *testing.T) {
	bad := rawUpstream(t, func(c net.Conn) {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
		ev := "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n"
		fmt.Fprintf(c, "%x\r\n%s\r\n", len(ev), ev)
		fmt.Fprintf(c, "%x\r\n%s", 100, "data: partial") // a chunk cut short
		reset(c)
	})
	e := start(t, testKeys, []string{bad}, nil)
	resp, err := client().Post(e.URL+"/v1/chat/completions", "application/json", strings.NewReader(`{"stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil {
		t.Errorf("client read %q and a clean end; want an error (no final chunk)", body)
	}
	if !strings.Contains(string(body), `"hi"`) {
		t.Errorf("client got %q; want the event sent before the reset", body)
	}
	e.Logs.WaitFor(t, `"aborted":true`, 5*time.Second)
}

// TestLargeErrorBodyPassedThrough: an error body of any size reaches the
// client unchanged when it is the last upstream answer, also when it was
// held while later attempts found no upstream at all (bodies of 64 KiB and
// more used to be replaced by the proxy's own 502).
func TestLargeErrorBodyPassedThrough(t *testing.T) {
	for _, size := range []int{100, 64 << 10, 64<<10 + 1, 3 << 20} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			big := bytes.Repeat([]byte("e"), size)
			var n atomic.Int32
			up := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) {
				if n.Add(1) > 1 {
					// Later attempts: the connection drops, no answer.
					c, _, _ := http.NewResponseController(w).Hijack()
					reset(c)
					return
				}
				w.Header().Set("Content-Type", "text/plain")
				w.WriteHeader(http.StatusServiceUnavailable)
				w.Write(big)
			})
			e := start(t, testKeys, []string{up.URL}, map[string]string{"MAX_RETRIES": "2"})
			resp, err := client().Get(e.URL + "/v1/models")
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatalf("reading the body: %v", err)
			}
			if resp.StatusCode != http.StatusServiceUnavailable || !bytes.Equal(got, big) {
				t.Errorf("got %d with %d bytes; want 503 with the upstream's %d bytes", resp.StatusCode, len(got), size)
			}
			// The second attempt's connection drops after the request was
			// written: no retry follows it (SPEC §8). The transport itself
			// may resend a GET once on a reused connection that dropped.
			if up.Count() < 2 {
				t.Errorf("upstream got %d requests; want at least 2 attempts", up.Count())
			}
		})
	}
}

// TestUndecodableErrorBodyClassifiedByStatus: an error body in an encoding
// the proxy cannot read (brotli here, or a broken gzip) is classified by
// its status and passed on unchanged.
func TestUndecodableErrorBodyClassifiedByStatus(t *testing.T) {
	cases := []struct {
		name, encoding string
		status         int
		wantAttempts   int
	}{
		{"br 401 is the key's fault", "br", http.StatusUnauthorized, 2},
		{"broken gzip 503 is the target's", "gzip", http.StatusServiceUnavailable, 2},
		{"br 400 is the client's", "br", http.StatusBadRequest, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			raw := []byte("\x1b\x0b\x00\xf8\xa5\x04\x80\x00\x00\x00\x00not really brotli")
			up := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Encoding", tc.encoding)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tc.status)
				w.Write(raw)
			})
			e := start(t, testKeys, []string{up.URL}, map[string]string{"MAX_RETRIES": "1"})
			resp, err := client().Get(e.URL + "/v1/models")
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || !bytes.Equal(got, raw) || resp.Header.Get("Content-Encoding") != tc.encoding {
				t.Errorf("got %d %q (%s); want %d with the body unchanged", resp.StatusCode, got, resp.Header.Get("Content-Encoding"), tc.status)
			}
			if up.Count() != tc.wantAttempts {
				t.Errorf("upstream got %d attempts; want %d", up.Count(), tc.wantAttempts)
			}
		})
	}
}

// openSpoolFiles counts this process's descriptors open on request body
// spool files.
func openSpoolFiles() int {
	n := 0
	fds, _ := os.ReadDir("/proc/self/fd")
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err == nil && strings.Contains(target, "gpt-load-body-") {
			n++
		}
	}
	return n
}

// waitNoSpoolFiles waits until no spool file is open any more.
func waitNoSpoolFiles(t *testing.T, dir string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		named, _ := filepath.Glob(filepath.Join(dir, "gpt-load-body-*"))
		open := openSpoolFiles()
		if open == 0 && len(named) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d spool files still open, %q still named; want none", open, named)
		}
		time.Sleep(10 * time.Millisecond) // polling the condition, bounded above
	}
}

// TestSpooledBodyReplayedAndRemoved: a body over BODY_MEMORY_LIMIT goes to
// a file, each attempt sends the same bytes, and the file is gone when the
// request ends, however it ends.
func TestSpooledBodyReplayedAndRemoved(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("TMPDIR", dir)
	body := bytes.Repeat([]byte("0123456789abcdef"), (3<<20)/16) // 3 MiB
	cases := []struct {
		name         string
		status       int
		wantAttempts int
		hang         bool
	}{
		{"success", http.StatusOK, 1, false},
		{"retries exhausted", http.StatusServiceUnavailable, 3, false},
		{"client gone", http.StatusOK, 1, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			release := make(chan struct{})
			up := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) {
				if tc.hang {
					select {
					case <-r.Context().Done():
					case <-release:
					}
					return
				}
				w.WriteHeader(tc.status)
			})
			defer close(release)
			e := start(t, testKeys, []string{up.URL}, map[string]string{"MAX_RETRIES": "2", "BODY_MEMORY_LIMIT": "1"})
			req, _ := http.NewRequest(http.MethodPost, e.URL+"/v1/files", bytes.NewReader(body))
			if tc.hang {
				done := make(chan struct{})
				go func() {
					defer close(done)
					up.WaitFor(t, 1, 5*time.Second)
					if openSpoolFiles() == 0 {
						t.Errorf("no spool file open while the request runs; want one")
					}
					// Unlinked at creation: nothing to leave behind even
					// if the process died now.
					if named, _ := filepath.Glob(filepath.Join(dir, "gpt-load-body-*")); len(named) > 0 {
						t.Errorf("spool file %q has a name while in use; want it unlinked", named)
					}
					e.Transport.CloseIdleConnections()
				}()
				// Long enough for the 3 MiB to reach the upstream twice
				// over under the race detector on a busy machine before the
				// client gives up (500 ms failed about one run in twenty).
				c := &http.Client{Timeout: 2 * time.Second}
				if _, err := c.Do(req); err == nil {
					t.Fatalf("request to a hanging upstream answered; want the client to give up")
				}
				<-done
			} else {
				resp, err := client().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != tc.status {
					t.Errorf("status %d; want %d", resp.StatusCode, tc.status)
				}
				reqs := up.Requests()
				if len(reqs) != tc.wantAttempts {
					t.Fatalf("upstream got %d attempts; want %d", len(reqs), tc.wantAttempts)
				}
				for i, r := range reqs {
					if r.BodyLen != len(body) || r.BodySHA256 != sha(body) {
						t.Errorf("attempt %d sent %d bytes; want the same %d bytes each time", i+1, r.BodyLen, len(body))
					}
				}
			}
			waitNoSpoolFiles(t, dir)
		})
	}
}

func sha(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// TestPoolKeyInErrorBodyMasked: an upstream error body that quotes a pool
// key whole reaches the client (and the logs) with the key masked and a
// Content-Length that matches; a successful answer is passed as is.
func TestPoolKeyInErrorBodyMasked(t *testing.T) {
	key := testKeys[0]
	mask := "sk-tes…0001"
	quote := func(k string) string {
		return `{"error":{"message":"Incorrect API key provided: ` + k + `.","type":"invalid_request_error","code":"invalid_api_key"}}`
	}
	gz := func(s string) []byte {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		io.WriteString(zw, s)
		zw.Close()
		return b.Bytes()
	}
	big := strings.Repeat("x", 100<<10)
	cases := []struct {
		name     string
		status   int
		encoding string
		body     []byte
		want     string
	}{
		{"small 401", 401, "", []byte(quote(key)), quote(mask)},
		{"gzip 401", 401, "gzip", gz(quote(key)), quote(mask)},
		{"large 400, key after 64 KiB", 400, "", []byte(big + " " + key + " " + big), big + " " + mask + " " + big},
		{"large 400, key across the 64 KiB mark", 400, "", []byte(big[:64<<10-10] + " " + key + " " + big), big[:64<<10-10] + " " + mask + " " + big},
		{"success is not scanned", 200, "", []byte(`{"echo":"` + key + `"}`), `{"echo":"` + key + `"}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			up := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) {
				if tc.encoding != "" {
					w.Header().Set("Content-Encoding", tc.encoding)
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tc.status)
				w.Write(tc.body)
			})
			e := start(t, testKeys[:1], []string{up.URL}, map[string]string{"MAX_RETRIES": "0"})
			resp, err := client().Get(e.URL + "/v1/models")
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatalf("reading the body: %v", err)
			}
			if resp.StatusCode != tc.status {
				t.Errorf("status %d; want %d", resp.StatusCode, tc.status)
			}
			if resp.Header.Get("Content-Encoding") != "" && tc.status >= 400 {
				t.Errorf("Content-Encoding %q; want the masked plain text", resp.Header.Get("Content-Encoding"))
			}
			if string(got) != tc.want {
				t.Errorf("body (%d bytes) differs from the want (%d bytes); start %.120q", len(got), len(tc.want), got)
			}
			if cl := resp.Header.Get("Content-Length"); cl != "" && cl != fmt.Sprint(len(got)) {
				t.Errorf("Content-Length %s; body has %d bytes", cl, len(got))
			}
			if tc.status >= 400 {
				assertNoKeys(t, "client body", string(got), key)
				assertNoKeys(t, "logs", e.Logs.String(), key)
			}
		})
	}
}

// panicObserver panics on the first attempt, as a bug would.
type panicObserver struct{}

func (panicObserver) Attempt(*upstream.Target, classify.Fault) { panic("observer bug") }
func (panicObserver) Done(*outcome.Record)                     {}

// TestSpooledBodyRemovedOnPanic: a panic while a spooled body is in use
// still removes the file (the server recovers; the file must not leak).
func TestSpooledBodyRemovedOnPanic(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("TMPDIR", dir)
	up := testupstream.New(t, nil)
	u, _ := url.Parse(up.URL)
	targets := upstream.NewBalancer([]*upstream.Target{upstream.NewTarget(u, upstream.StyleForHost(u.Hostname()))}, upstream.Options{})
	keys := keymanager.New(testKeys, keymanager.Options{})
	tr, _ := proxy.NewTransport(proxy.TransportOptions{ConnectTimeout: time.Second, ResponseTimeout: 5 * time.Second, IdleConnTimeout: time.Second, MaxIdlePerHost: 4})
	l := logrus.New()
	l.SetOutput(io.Discard)
	p := proxy.New(proxy.Options{Observer: panicObserver{}, MaxBodySize: 32 << 20, BodyMemoryLimit: 1 << 20, MaxConcurrent: 10},
		keys, targets, tr, logrus.NewEntry(l))
	var panicked atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if recover() != nil {
				panicked.Store(true)
				w.WriteHeader(http.StatusInternalServerError)
			}
		}()
		p.ServeHTTP(w, r)
	}))
	defer srv.Close()
	resp, err := http.Post(srv.URL+"/v1/files", "application/octet-stream", bytes.NewReader(make([]byte, 3<<20)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if !panicked.Load() {
		t.Fatalf("the handler did not panic; the test proves nothing")
	}
	waitNoSpoolFiles(t, dir)
}

// TestHeadErrorKeepsContentLength: the answer to a HEAD has no body but
// may declare the length of the one a GET would get; reading the error
// body for classification must not rewrite that.
func TestHeadErrorKeepsContentLength(t *testing.T) {
	up := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1234")
		w.WriteHeader(http.StatusNotFound)
	})
	e := start(t, testKeys, []string{up.URL}, nil)
	req, _ := http.NewRequest(http.MethodHead, e.URL+"/v1/files/x", nil)
	resp, err := client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || resp.Header.Get("Content-Length") != "1234" {
		t.Errorf("HEAD: %d with Content-Length %q; want 404 with 1234", resp.StatusCode, resp.Header.Get("Content-Length"))
	}
}
