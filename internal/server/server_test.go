package server_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gpt-load/gpt-load/internal/testlog"

	"github.com/gpt-load/gpt-load/internal/keymanager"
	appserver "github.com/gpt-load/gpt-load/internal/server"
	"github.com/gpt-load/gpt-load/internal/testserver"
	"github.com/gpt-load/gpt-load/internal/testupstream"
)

// waitTimeout bounds every wait on a condition in these tests.
const waitTimeout = 5 * time.Second

// testAuthKey is the AUTH_KEY of servers that turn client auth on.
const testAuthKey = "gl-auth-9c4e1b7d2a6f08e3"

// logBuffer is the log output of a server under test; tests read it while
// the server writes. It is safe for concurrent use.
type logBuffer struct{ testlog.Buffer }

// entries parses the buffer as JSON lines.
func (b *logBuffer) entries(t *testing.T) []map[string]any { return b.Entries(t) }

// accessLines returns the access lines of proxied requests.
func (b *logBuffer) accessLines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, e := range b.entries(t) {
		if _, proxied := e["upstream"]; e["msg"] == "request" && proxied {
			out = append(out, e)
		}
	}
	return out
}

// waitAccess waits until n proxied requests were logged, which happens
// after the proxy updated its counters and returned.
func (b *logBuffer) waitAccess(t *testing.T, n int) []map[string]any {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		if got := b.accessLines(t); len(got) >= n {
			return got
		}
		select {
		case <-b.Changed():
		case <-deadline.C:
			t.Fatalf("%d access lines after %v; want %d\n%s", len(b.accessLines(t)), waitTimeout, n, b.String())
		}
	}
}

// options shape a server under test. The zero value is three keys, the
// default configuration and an upstream answering 200.
type options struct {
	keys     []string
	env      map[string]string
	upstream http.HandlerFunc
	// resetKeys, when set, replaces the /reset-keys action.
	resetKeys func() error
}

// server is gpt-load wired as cmd/gpt-load does it, behind a real HTTP
// server, in front of a recording upstream.
type server struct {
	URL      string
	Up       *testupstream.Server
	Keys     *keymanager.Manager
	KeysFile string
	Raw      []string // raw keys in file order
	Log      *logBuffer
	AuthKey  string
	client   *http.Client
}

// newServer starts a server through the shared harness, in front of a
// recording upstream.
func newServer(t *testing.T, o options) *server {
	t.Helper()
	if o.keys == nil {
		o.keys = rawKeys("k", 3)
	}
	up := testupstream.New(t, o.upstream)
	logs := &logBuffer{}
	s := testserver.Start(t, testserver.Options{Keys: o.keys, Upstreams: []string{up.URL}, Env: o.env,
		Logs: logs, Server: appserver.Options{ResetKeys: o.resetKeys}})
	client := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(client.CloseIdleConnections)
	return &server{
		URL: s.URL, Up: up, Keys: s.Keys, KeysFile: s.KeysFile, Raw: s.Raw,
		Log: logs, AuthKey: s.Config.AuthKey.Reveal(), client: client,
	}
}

// rawKeys returns n distinct realistic keys whose masks differ.
func rawKeys(seed string, n int) []string {
	out := make([]string, n)
	for i := range out {
		sum := sha256.Sum256(fmt.Appendf(nil, "%s-%d", seed, i))
		out[i] = "sk-proj-" + hex.EncodeToString(sum[:])[:40]
	}
	return out
}

func writeKeys(t *testing.T, path string, keys []string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(strings.Join(keys, "\n")+"\n"), 0o600); err != nil {
		t.Fatalf("write keys file: %v", err)
	}
}

// do sends a request with the server's AUTH_KEY, if any, and returns the
// response with its body read.
func (s *server) do(t *testing.T, method, path string, body io.Reader) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, s.URL+path, body)
	if err != nil {
		t.Fatalf("NewRequest(%q, %q): %v", method, path, err)
	}
	if s.AuthKey != "" {
		req.Header.Set("Authorization", "Bearer "+s.AuthKey)
	}
	return s.send(t, req)
}

// send sends req as is.
func (s *server) send(t *testing.T, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", req.Method, req.URL.Path, err)
	}
	return resp, b
}

// getJSON GETs path, expects status and a JSON body, and decodes it into v.
func (s *server) getJSON(t *testing.T, path string, status int, v any) []byte {
	t.Helper()
	resp, body := s.do(t, http.MethodGet, path, nil)
	if resp.StatusCode != status {
		t.Fatalf("GET %s = %d %s; want %d", path, resp.StatusCode, body, status)
	}
	checkJSONType(t, resp)
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: body %s: %v", path, body, err)
	}
	return body
}

// nextKey takes the next key from the rotation, to change its state.
func (s *server) nextKey(t *testing.T) *keymanager.Key {
	t.Helper()
	k, err := s.Keys.Next()
	if err != nil {
		t.Fatalf("Keys.Next() = %v; want a key", err)
	}
	return k
}

func checkJSONType(t *testing.T, resp *http.Response) {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q; want application/json", ct)
	}
}

// keysOf returns the sorted member names of the JSON object in data.
func keysOf(t *testing.T, data []byte) []string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("%s is not a JSON object: %v", data, err)
	}
	return slices.Sorted(maps.Keys(m))
}

// checkTimestamp checks that s is an RFC 3339 time close to now.
func checkTimestamp(t *testing.T, name, s string) {
	t.Helper()
	ts, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Errorf("%s = %q; want RFC 3339: %v", name, s, err)
		return
	}
	if d := time.Since(ts); d < -time.Minute || d > time.Minute {
		t.Errorf("%s = %v; want within a minute of now", name, ts)
	}
}

// checkUptime checks that s is a Go duration.
func checkUptime(t *testing.T, s string) {
	t.Helper()
	if d, err := time.ParseDuration(s); err != nil || d < 0 {
		t.Errorf("uptime = %q; want a duration like 1h2m3s", s)
	}
}
