package proxy_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gpt-load/gpt-load/internal/testlog"

	"github.com/sirupsen/logrus"

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
	dir := t.TempDir()
	keysFile := filepath.Join(dir, "keys.txt")
	if err := os.WriteFile(keysFile, []byte(strings.Join(keys, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	all := map[string]string{
		"KEYS_FILE":       keysFile,
		"OPENAI_BASE_URL": strings.Join(upstreams, ","),
		"LOG_LEVEL":       "debug",
	}
	for k, v := range vars {
		all[k] = v
	}
	cfg, err := config.Load(func(k string) string { return all[k] })
	if err != nil {
		t.Fatalf("config.Load: %v", err)
	}
	l := logrus.New()
	l.SetOutput(logOut)
	level, _ := logrus.ParseLevel(cfg.Log.Level)
	l.SetLevel(level)
	l.SetFormatter(&logrus.JSONFormatter{})
	app, err := server.New(context.Background(), cfg, keys, logrus.NewEntry(l), server.Options{TargetCooldown: benchCooldown(vars),
		StreamWindow: msVar(vars, "STREAM_WINDOW_MS")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(app.Close)
	srv := httptest.NewServer(app.Handler)
	t.Cleanup(srv.Close)
	return &env{URL: srv.URL, Keys: app.Keys, Proxy: app.Proxy, Transport: app.Transport, Config: cfg, App: app}
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
