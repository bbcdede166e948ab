package middleware_test

import (
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
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

// checkAPIError checks that resp and body are exactly OpenAI's error shape
// with type gpt_load_error and code, with a JSON content type.
func checkAPIError(t *testing.T, resp *http.Response, body []byte, status int, code string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Errorf("status = %d; want %d (body %s)", resp.StatusCode, status, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q; want application/json", ct)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		t.Fatalf("body %q is not a JSON object: %v", body, err)
	}
	if got := slices.Sorted(maps.Keys(top)); !slices.Equal(got, []string{"error"}) {
		t.Errorf("top-level keys = %v; want [error]", got)
	}
	var e map[string]any
	if err := json.Unmarshal(top["error"], &e); err != nil {
		t.Fatalf("error member %s is not an object: %v", top["error"], err)
	}
	if got, want := slices.Sorted(maps.Keys(e)), []string{"code", "message", "type"}; !slices.Equal(got, want) {
		t.Errorf("error keys = %v; want %v", got, want)
	}
	if got := e["type"]; got != "gpt_load_error" {
		t.Errorf("error.type = %v; want gpt_load_error", got)
	}
	if got := e["code"]; got != code {
		t.Errorf("error.code = %v; want %s", got, code)
	}
	if msg, _ := e["message"].(string); msg == "" {
		t.Errorf("error.message = %v; want a non-empty string", e["message"])
	}
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
