package middleware_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gpt-load/gpt-load/internal/testlog"

	"github.com/sirupsen/logrus"

	"github.com/gpt-load/gpt-load/internal/config"
)

// waitTimeout bounds every wait on a condition in these tests.
const waitTimeout = 5 * time.Second

// logBuffer is an io.Writer for a logger that tests can read while the
// server writes to it. It is safe for concurrent use.
type logBuffer struct{ testlog.Buffer }

// entries parses the buffer as JSON lines.
func (b *logBuffer) entries(t *testing.T) []map[string]any { return b.Entries(t) }

// withMsg returns the entries whose msg is msg.
func (b *logBuffer) withMsg(t *testing.T, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, e := range b.entries(t) {
		if e["msg"] == msg {
			out = append(out, e)
		}
	}
	return out
}

// waitMsg waits until n entries with msg were logged and returns them.
func (b *logBuffer) waitMsg(t *testing.T, msg string, n int) []map[string]any {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		if got := b.withMsg(t, msg); len(got) >= n {
			return got
		}
		select {
		case <-b.Changed():
		case <-deadline.C:
			t.Fatalf("log has %d %q lines after %v; want %d\n%s", len(b.withMsg(t, msg)), msg, waitTimeout, n, b.String())
		}
	}
}

// newLogger returns a JSON logger at level writing to a fresh buffer.
func newLogger(t *testing.T, level logrus.Level) (*logrus.Entry, *logBuffer) {
	t.Helper()
	buf := &logBuffer{}
	l := logrus.New()
	l.SetOutput(buf)
	l.SetLevel(level)
	l.SetFormatter(&logrus.JSONFormatter{})
	return logrus.NewEntry(l), buf
}

// served wraps h so that every call is reported on the returned channel
// once h has returned: the moment deferred work in h (an access line) is
// done, which the client cannot observe by itself.
func served(h http.Handler) (http.Handler, <-chan struct{}) {
	done := make(chan struct{}, 100)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r)
		done <- struct{}{}
	}), done
}

// waitServed waits for one report from served.
func waitServed(t *testing.T, done <-chan struct{}) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(waitTimeout):
		t.Fatalf("handler did not return within %v", waitTimeout)
	}
}

// newServer serves h over real HTTP until the test ends.
func newServer(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// do sends req with a client of its own and returns the response with its
// body read.
func do(t *testing.T, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(c.CloseIdleConnections)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", req.Method, req.URL, err)
	}
	return resp, body
}

func newRequest(t *testing.T, method, url string, header map[string]string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatalf("NewRequest(%q, %q): %v", method, url, err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	return req
}

// loadConfig loads the configuration from env alone, as the binary does.
func loadConfig(t *testing.T, env map[string]string) *config.Config {
	t.Helper()
	cfg, err := config.Load(func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("config.Load(%v): %v", env, err)
	}
	return cfg
}
