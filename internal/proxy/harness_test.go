package proxy_test

import (
	"io"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gpt-load/gpt-load/internal/testlog"
	"github.com/gpt-load/gpt-load/internal/testserver"

	"github.com/gpt-load/gpt-load/internal/config"
	"github.com/gpt-load/gpt-load/internal/keymanager"
	"github.com/gpt-load/gpt-load/internal/proxy"
	"github.com/gpt-load/gpt-load/internal/server"
)

// testKeys are long enough that a mask never shows them whole.
var testKeys = []string{
	"sk-test-0000000000000000000000000000000000000000000001",
	"sk-test-0000000000000000000000000000000000000000000002",
	"sk-test-0000000000000000000000000000000000000000000003",
}

// env is a proxy under test: the whole server handler in front of the
// given upstreams.
type env struct {
	URL       string
	Keys      *keymanager.Manager
	Proxy     *proxy.Proxy
	Transport *http.Transport
	Logs      *testlog.Buffer
	Config    *config.Config
	App       *server.Server // what the test server serves
}

// start builds the server as cmd/gpt-load does, from environment values
// (vars) over the defaults, with keys and upstream URLs.
func start(t testing.TB, keys []string, upstreams []string, vars map[string]string) *env {
	t.Helper()
	logs := &testlog.Buffer{}
	e := startWith(t, keys, upstreams, vars, logs)
	e.Logs = logs
	return e
}

// startBench starts a server whose logs are discarded and returns its URL.
func startBench(b *testing.B, upstreams []string, vars map[string]string) string {
	b.Helper()
	return startWith(b, testKeys, upstreams, vars, io.Discard).URL
}

func startWith(t testing.TB, keys []string, upstreams []string, vars map[string]string, logOut io.Writer) *env {
	t.Helper()
	all := map[string]string{"LOG_LEVEL": "debug", "HOST": ""}
	maps.Copy(all, vars)
	s := testserver.Start(t, testserver.Options{Keys: keys, Upstreams: upstreams, Env: all, Logs: logOut,
		Server: server.Options{TargetCooldown: benchCooldown(vars), StreamWindow: msVar(vars, "STREAM_WINDOW_MS")}})
	return &env{URL: s.URL, Keys: s.Keys, Proxy: s.Proxy, Transport: s.Transport, Config: s.Config, App: s.App}
}

// benchCooldown reads the test-only TARGET_COOLDOWN_MS from vars.
func benchCooldown(vars map[string]string) time.Duration {
	return msVar(vars, "TARGET_COOLDOWN_MS")
}

// msVar reads a test-only duration in milliseconds from vars.
func msVar(vars map[string]string, name string) time.Duration {
	ms, _ := strconv.Atoi(vars[name])
	return time.Duration(ms) * time.Millisecond
}

// client is an HTTP client that leaves compression alone, so tests see the
// bytes exactly as the proxy sent them.
func client() *http.Client {
	return &http.Client{Transport: &http.Transport{DisableCompression: true}}
}

// assertNoKeys fails if any raw test key appears in s.
func assertNoKeys(t *testing.T, what, s string, keys ...string) {
	t.Helper()
	if len(keys) == 0 {
		keys = testKeys
	}
	for _, k := range keys {
		if strings.Contains(s, k) {
			t.Errorf("%s contains the raw key %q", what, k)
		}
	}
}
