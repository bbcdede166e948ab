package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/gpt-load/gpt-load/internal/config"
	appserver "github.com/gpt-load/gpt-load/internal/server"
	"github.com/gpt-load/gpt-load/internal/testlog"
	"github.com/gpt-load/gpt-load/internal/testredis"
	"github.com/gpt-load/gpt-load/internal/testserver"
	"github.com/gpt-load/gpt-load/internal/testupstream"
)

var testKeys = []string{
	"sk-test-0000000000000000000000000000000000000000000001",
	"sk-test-0000000000000000000000000000000000000000000002",
}

// live is gpt-load served by the very http.Server cmd/gpt-load serves
// with, on a loopback port: the read and header timeouts that httptest's
// defaults would hide are in force.
type live struct {
	Addr string
	URL  string
	Logs *testlog.Buffer
	App  *appserver.Server
}

func serve(t *testing.T, upstream string, vars map[string]string) *live {
	t.Helper()
	env := map[string]string{"LOG_LEVEL": "debug"}
	maps.Copy(env, vars)
	s := testserver.Start(t, testserver.Options{Keys: testKeys, Upstreams: []string{upstream}, Env: env, Live: true})
	return &live{Addr: s.Addr, URL: s.URL, Logs: s.Logs, App: s.App}
}

// dial opens a raw connection, closed at the end of the test.
func (l *live) dial(t *testing.T) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", l.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readResponse reads one response from c within timeout.
func readResponse(t *testing.T, c net.Conn, timeout time.Duration) (*http.Response, string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(timeout))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

func errorCode(t *testing.T, body string) string {
	t.Helper()
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("body %q is not the JSON error shape: %v", body, err)
	}
	return e.Error.Code
}

// TestStalledBodyIs408: a client that stops in the middle of its body
// gets 408 request_timeout once SERVER_READ_TIMEOUT is up, and nothing
// goes upstream (it used to get an empty 200).
func TestStalledBodyIs408(t *testing.T) {
	up := testupstream.New(t, nil)
	l := serve(t, up.URL, map[string]string{"SERVER_READ_TIMEOUT": "1"})
	c := l.dial(t)
	start := time.Now()
	fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"model\":")
	resp, body := readResponse(t, c, 10*time.Second)
	if resp.StatusCode != http.StatusRequestTimeout || errorCode(t, body) != "request_timeout" {
		t.Errorf("stalled body: %d %s; want 408 request_timeout", resp.StatusCode, body)
	}
	if took := time.Since(start); took < 900*time.Millisecond {
		t.Errorf("answered after %v; want after SERVER_READ_TIMEOUT (1s)", took)
	}
	if n := up.Count(); n != 0 {
		t.Errorf("upstream got %d requests; want 0", n)
	}
	l.Logs.WaitFor(t, `"status":408`, 5*time.Second)
}

// TestHugeHeadersAre431: a header block over 1 MiB gets 431.
func TestHugeHeadersAre431(t *testing.T) {
	up := testupstream.New(t, nil)
	l := serve(t, up.URL, nil)
	c := l.dial(t)
	go func() {
		w := bufio.NewWriter(c)
		fmt.Fprintf(w, "GET /v1/models HTTP/1.1\r\nHost: x\r\n")
		line := "X-Filler: " + strings.Repeat("a", 1000) + "\r\n"
		for range (1<<20)/len(line) + 10 {
			w.WriteString(line)
		}
		w.WriteString("\r\n")
		w.Flush() // may fail once the server answered and closed
	}()
	resp, _ := readResponse(t, c, 10*time.Second)
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("1 MiB of headers: %d; want 431", resp.StatusCode)
	}
	if n := up.Count(); n != 0 {
		t.Errorf("upstream got %d requests; want 0", n)
	}
}

// TestOversizedBodyIs413: a body over MAX_REQUEST_BODY_SIZE, declared or
// sent chunked, is 413 before anything goes upstream.
func TestOversizedBodyIs413(t *testing.T) {
	up := testupstream.New(t, nil)
	l := serve(t, up.URL, map[string]string{"MAX_REQUEST_BODY_SIZE": "1"})
	big := strings.Repeat("x", 1<<20+1)
	cases := []struct {
		name string
		body io.Reader
	}{
		{"declared", strings.NewReader(big)},
		// A reader of unknown length makes the client send it chunked.
		{"chunked", io.MultiReader(strings.NewReader(big))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := http.Post(l.URL+"/v1/chat/completions", "application/json", tc.body)
			if err != nil {
				t.Fatalf("POST: %v", err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusRequestEntityTooLarge || errorCode(t, string(b)) != "request_too_large" {
				t.Errorf("%s body over the limit: %d %s; want 413 request_too_large", tc.name, resp.StatusCode, b)
			}
			if n := up.Count(); n != 0 {
				t.Errorf("upstream got %d requests; want 0", n)
			}
		})
	}
}

// TestSlowLorisHoldsOneConnection: a client that sends its headers a few
// bytes at a time is cut off after the header timeout, however steadily it
// trickles, and other clients are served meanwhile.
func TestSlowLorisHoldsOneConnection(t *testing.T) {
	up := testupstream.New(t, nil)
	// The header timeout is min(30 s, SERVER_READ_TIMEOUT).
	l := serve(t, up.URL, map[string]string{"SERVER_READ_TIMEOUT": "1"})
	c := l.dial(t)
	closed := make(chan time.Duration, 1)
	start := time.Now()
	go func() {
		io.Copy(io.Discard, c) // returns when the server closes c
		closed <- time.Since(start)
	}()
	fmt.Fprintf(c, "GET /v1/models HTTP/1.1\r\nHost: x\r\n")
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	served := 0
	// The header timeout is 1 s. If trickling moved it, the connection
	// would stay open as long as the trickle goes on: the 30 s below can
	// only be reached that way (or by a hang), not by a slow machine. (One
	// timer for the whole loop: a time.After in the select would restart
	// with every tick and never fire.)
	hang := time.After(30 * time.Second)
	for took := time.Duration(0); took == 0; {
		select {
		case took = <-closed:
		case <-tick.C:
			fmt.Fprintf(c, "X-Slow: %d\r\n", served)
			resp, err := http.Get(l.URL + "/v1/models")
			if err != nil {
				t.Fatalf("another client while the slow one trickles: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("another client: %d; want 200", resp.StatusCode)
			}
			served++
		case <-hang:
			t.Fatal("the slow-loris connection is still open after 30 s of trickling with a 1 s header timeout: trickling keeps it open")
		}
	}
	if served == 0 {
		t.Errorf("no other client was served while the slow one trickled")
	}
}

// TestIdleKeepAliveConnections: a thousand idle keep-alive connections
// cost the server little memory each, and SERVER_IDLE_TIMEOUT closes them.
func TestIdleKeepAliveConnections(t *testing.T) {
	if testing.Short() {
		t.Skip("opens a thousand connections")
	}
	const n = 1000
	up := testupstream.New(t, nil)
	l := serve(t, up.URL, map[string]string{"SERVER_IDLE_TIMEOUT": "2"})
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	conns := make([]net.Conn, n)
	for i := range conns {
		conns[i] = l.dial(t)
		// One management request each, then idle.
		fmt.Fprintf(conns[i], "GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
	}
	readers := make([]*bufio.Reader, n)
	for i, c := range conns {
		readers[i] = bufio.NewReaderSize(c, 16)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(readers[i], nil)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	// Both ends live in this process; the client's side is a socket and a
	// 16-byte reader per connection, so nearly all of this is the server's.
	grew := int64(after.HeapInuse+after.StackInuse) - int64(before.HeapInuse+before.StackInuse)
	per := grew / n
	t.Logf("%d idle keep-alive connections: %d KiB in all, %d bytes each", n, grew>>10, per)
	if per > 64<<10 {
		t.Errorf("each idle connection costs %d bytes; want under 64 KiB", per)
	}
	// Every one of them is closed by the server once idle for 2 s.
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := readers[i].ReadByte(); err != io.EOF {
				t.Errorf("idle connection %d: read %v; want EOF (closed by the server)", i, err)
			}
		}()
	}
	wg.Wait()
}

// TestWriteTimeoutSparesMovingStream: SERVER_WRITE_TIMEOUT is 1 s and a
// stream runs for 3 s, an event every 100 ms: it arrives whole.
func TestWriteTimeoutSparesMovingStream(t *testing.T) {
	const events = 30
	up := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		for i := range events {
			fmt.Fprintf(w, "data: {\"choices\":[{\"delta\":{\"content\":\"%d\"}}]}\n\n", i)
			rc.Flush()
			time.Sleep(100 * time.Millisecond) // the upstream's pace, not a wait on the test
		}
		io.WriteString(w, "data: [DONE]\n\n")
	})
	l := serve(t, up.URL, map[string]string{"SERVER_WRITE_TIMEOUT": "1"})
	resp, err := http.Post(l.URL+"/v1/chat/completions", "application/json", strings.NewReader(`{"stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("stream cut after %d bytes: %v", len(b), err)
	}
	if got := strings.Count(string(b), "data: "); got != events+1 {
		t.Errorf("got %d events; want %d", got, events+1)
	}
}

// TestWriteTimeoutCutsStalledReader: a client that stops reading a large
// answer is cut once no write has moved for SERVER_WRITE_TIMEOUT.
func TestWriteTimeoutCutsStalledReader(t *testing.T) {
	const size = 256 << 20 // far more than loopback socket buffers hold
	chunk := make([]byte, 64<<10)
	up := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		for sent := 0; sent < size; sent += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	l := serve(t, up.URL, map[string]string{"SERVER_WRITE_TIMEOUT": "1"})
	c := l.dial(t)
	fmt.Fprintf(c, "GET /v1/files/x/content HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Stop reading until the server gave up on us; the proxy logs the cut.
	l.Logs.WaitFor(t, `"status":200`, 15*time.Second)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := io.Copy(io.Discard, resp.Body)
	if err == nil && n == size {
		t.Errorf("a reader that stalled got all %d bytes; want the answer cut", n)
	}
}

// TestResetDuringStartup: another replica resets the keys again and again
// while this one starts. The reset can reach this replica's subscriber
// before server.New has set its fields; the race detector must stay quiet
// and every replica must come up whole.
func TestResetDuringStartup(t *testing.T) {
	rs := testredis.Start(t)
	up := testupstream.New(t, nil)
	dir := t.TempDir()
	keysFile := filepath.Join(dir, "keys.txt")
	if err := os.WriteFile(keysFile, []byte(strings.Join(testKeys, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	newReplica := func(logs io.Writer) *appserver.Server {
		vars := map[string]string{"KEYS_FILE": keysFile, "OPENAI_BASE_URL": up.URL, "REDIS_URL": rs.URL}
		cfg, err := config.Load(func(k string) string { return vars[k] })
		if err != nil {
			t.Fatal(err)
		}
		l := logrus.New()
		l.SetOutput(logs)
		app, err := appserver.New(context.Background(), cfg, testKeys, logrus.NewEntry(l), appserver.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return app
	}
	a := newReplica(io.Discard)
	defer a.Close()
	stop := make(chan struct{})
	resetting := make(chan struct{})
	go func() {
		defer close(resetting)
		for {
			select {
			case <-stop:
				return
			default:
			}
			req, _ := http.NewRequest(http.MethodPost, "/reset-keys", nil)
			rec := &discardWriter{h: http.Header{}}
			a.Handler().ServeHTTP(rec, req)
		}
	}()
	for range 5 {
		logs := &testlog.Buffer{}
		b := newReplica(logs)
		if b.Parts().Cluster == nil || b.Handler() == nil {
			t.Fatalf("replica started without its parts")
		}
		// It heard at least one of the other replica's resets.
		logs.WaitFor(t, "keys reset", 10*time.Second)
		b.Close()
	}
	close(stop)
	<-resetting
}

// discardWriter is a ResponseWriter that keeps nothing.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardWriter) WriteHeader(int)             {}
