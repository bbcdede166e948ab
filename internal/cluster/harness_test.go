package cluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gpt-load/gpt-load/internal/testlog"
	"github.com/gpt-load/gpt-load/internal/testserver"

	"github.com/sirupsen/logrus"

	"github.com/gpt-load/gpt-load/internal/config"
	"github.com/gpt-load/gpt-load/internal/secret"
	"github.com/gpt-load/gpt-load/internal/server"
	"github.com/gpt-load/gpt-load/internal/testupstream"
)

// replicaHeader tells the upstream which replica a request came through:
// the proxy forwards client headers it does not own.
const replicaHeader = "X-Test-Replica"

// propagation is how long the tests wait for a replica to apply another's
// state change before calling it lost. Replicas take milliseconds
// (docs/operations.md, "Scaling out with Redis"; the tests log each time):
// the bound catches a change that never arrives, not a busy machine, on
// which a 1 s bound failed with nothing wrong.
const propagation = 15 * time.Second

// makeKeys returns n distinct keys, the same for the same seed. Every
// 20-character window of a key holds a letter that is not a hex digit, so a
// window can never be mistaken for part of a fingerprint or replica id.
func makeKeys(seed uint64, n int) []string {
	const nonHex = "ghijklmnopqrstuvwxyzGHIJKLMNOPQRSTUVWXYZ"
	const alnum = nonHex + "abcdefABCDEF0123456789"
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	keys := make([]string, n)
	for i := range keys {
		var b strings.Builder
		b.WriteString("sk-test-")
		for j := range 40 {
			if j%5 == 0 {
				b.WriteByte(nonHex[r.IntN(len(nonHex))])
			} else {
				b.WriteByte(alnum[r.IntN(len(alnum))])
			}
		}
		keys[i] = b.String()
	}
	return keys
}

// preview is how /blacklist and /stats show a key.
func preview(key string) string { return secret.NewKey(key).String() }

// writeKeysFile writes keys to a keys file in a temporary directory.
func writeKeysFile(t testing.TB, keys []string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "keys.txt")
	if err := os.WriteFile(path, []byte(strings.Join(keys, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// replica is one gpt-load process: the whole server behind real HTTP.
type replica struct {
	Name string
	URL  string
	App  *server.Server
	server.Parts
	Logs *testlog.Buffer
}

// replicaOpts configures startReplica.
type replicaOpts struct {
	RedisURL  string
	Prefix    string   // REDIS_PREFIX; empty: the default
	KeysFile  string   // from writeKeysFile
	Upstreams []string // OPENAI_BASE_URL
	Vars      map[string]string
	// Recheck, when set, overrides KEY_RECHECK_INTERVAL (whole seconds in
	// the environment) and runs the re-check loop until the test ends.
	Recheck time.Duration
	// TargetCooldown is a benched target's first cooldown; 0: default.
	TargetCooldown time.Duration
	// Clock is the replica's clock; nil: time.Now. Replicas' clocks may
	// differ by minutes (SPEC §17).
	Clock func() time.Time
}

// startReplica builds a replica as cmd/gpt-load does, from environment
// values over the defaults. It is closed at the end of the test, before
// anything started earlier (Redis, the upstream) is stopped.
func startReplica(t testing.TB, name string, o replicaOpts) *replica {
	t.Helper()
	env := map[string]string{
		"KEYS_FILE":                o.KeysFile,
		"OPENAI_BASE_URL":          strings.Join(o.Upstreams, ","),
		"REDIS_URL":                o.RedisURL,
		"REDIS_FINGERPRINT_SECRET": fpSecret,
		"LOG_LEVEL":                "debug",
		"LOG_FORMAT":               "json",
		"LOG_ENABLE_REQUEST":       "false",
	}
	if o.Prefix != "" {
		env["REDIS_PREFIX"] = o.Prefix
	}
	for k, v := range o.Vars {
		env[k] = v
	}
	var configure func(*config.Config)
	if o.Recheck > 0 {
		configure = func(cfg *config.Config) { cfg.KeyRecheckInterval = o.Recheck }
	}
	s := testserver.Start(t, testserver.Options{KeysFile: o.KeysFile, Env: env, Configure: configure,
		LogFields: logrus.Fields{"replica": name}, Server: server.Options{TargetCooldown: o.TargetCooldown, Now: o.Clock}})
	app := s.App
	if s.Cluster == nil {
		t.Fatalf("server.New(%s) with REDIS_URL made no cluster", name)
	}
	if o.Recheck > 0 {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			app.RunRecheck(ctx)
		}()
		t.Cleanup(func() { cancel(); <-done })
	}
	r := &replica{Name: name, URL: s.URL, App: app, Logs: s.Logs, Parts: s.Parts}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s's logs, without access lines:\n%s", name, r.logsWithout(`"msg":"request"`))
		}
	})
	return r
}

var httpClient = &http.Client{Timeout: 10 * time.Second}

// send proxies one chat completion through r and returns the status.
func (r *replica) send(t testing.TB) int {
	t.Helper()
	status, err := r.trySend()
	if err != nil {
		t.Fatalf("%s: %v", r.Name, err)
	}
	return status
}

// trySend is send for goroutines other than the test's.
func (r *replica) trySend() (int, error) {
	req, err := http.NewRequest(http.MethodPost, r.URL+"/v1/chat/completions",
		strings.NewReader(`{"model":"gpt-test","messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(replicaHeader, r.Name)
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// sendOK sends n requests through r, each of which must succeed.
func (r *replica) sendOK(t testing.TB, n int) {
	t.Helper()
	for i := range n {
		if status := r.send(t); status != http.StatusOK {
			t.Fatalf("%s: request %d answered %d; want 200", r.Name, i, status)
		}
	}
}

// do sends a management request and decodes its JSON answer into v.
func (r *replica) do(t testing.TB, method, path string, v any) int {
	t.Helper()
	req, err := http.NewRequest(method, r.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s %s: %v", r.Name, method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s %s: %v", r.Name, method, path, err)
	}
	if v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("%s %s %s: %v in %s", r.Name, method, path, err, body)
		}
	}
	return resp.StatusCode
}

func (r *replica) blacklist(t testing.TB) server.Blacklist {
	t.Helper()
	var b server.Blacklist
	if status := r.do(t, http.MethodGet, "/blacklist", &b); status != http.StatusOK {
		t.Fatalf("%s: /blacklist answered %d", r.Name, status)
	}
	return b
}

// benched returns r's /blacklist entry for key, if any.
func (r *replica) benched(t testing.TB, key string) (server.BlacklistedKey, bool) {
	t.Helper()
	for _, k := range r.blacklist(t).Keys {
		if k.Preview == preview(key) {
			return k, true
		}
	}
	return server.BlacklistedKey{}, false
}

func (r *replica) stats(t testing.TB) server.Stats {
	t.Helper()
	var s server.Stats
	if status := r.do(t, http.MethodGet, "/stats", &s); status != http.StatusOK {
		t.Fatalf("%s: /stats answered %d", r.Name, status)
	}
	return s
}

func (r *replica) health(t testing.TB) (int, server.Health) {
	t.Helper()
	var h server.Health
	status := r.do(t, http.MethodGet, "/health", &h)
	return status, h
}

// count counts the log lines of r from offset on whose message starts
// with msg.
func (r *replica) count(offset int, msg string) int {
	return strings.Count(r.Logs.String()[offset:], `"msg":"`+msg)
}

// redisLogs returns r's log lines from offset on that mention Redis.
func (r *replica) redisLogs(offset int) string {
	var b strings.Builder
	for _, line := range strings.SplitAfter(r.Logs.String()[offset:], "\n") {
		if strings.Contains(strings.ToLower(line), "redis") && !strings.Contains(line, `"msg":"request"`) {
			b.WriteString(line)
		}
	}
	return b.String()
}

// logsWithout returns r's log lines that do not contain skip.
func (r *replica) logsWithout(skip string) string {
	var b strings.Builder
	for _, line := range strings.SplitAfter(r.Logs.String(), "\n") {
		if !strings.Contains(line, skip) {
			b.WriteString(line)
		}
	}
	return b.String()
}

// waitFor polls cond until it holds, failing the test with what after
// timeout. It returns how long it took.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

// script is the upstream's behaviour per key: a key without a rule gets a
// normal answer. Rules may change while requests run.
type script struct {
	mu    sync.Mutex
	rules map[string]http.HandlerFunc
}

func newScript() *script { return &script{rules: map[string]http.HandlerFunc{}} }

func (s *script) set(key string, h http.HandlerFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h == nil {
		delete(s.rules, key)
		return
	}
	s.rules[key] = h
}

func (s *script) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	h := s.rules[testupstream.KeyOf(r.Header)]
	s.mu.Unlock()
	if h == nil {
		h = answerOK
	}
	h(w, r)
}

func answerOK(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	if r.Method == http.MethodGet {
		io.WriteString(w, `{"object":"list","data":[]}`)
		return
	}
	io.WriteString(w, `{"id":"chatcmpl-1","object":"chat.completion","choices":[]}`)
}

// invalidKey answers as OpenAI does for a revoked key, quoting the key in
// the message as OpenAI does.
func invalidKey(w http.ResponseWriter, r *http.Request) {
	writeError(w, http.StatusUnauthorized, fmt.Sprintf(
		`{"error":{"message":"Incorrect API key provided: %s. You can find your API key at https://platform.openai.com/account/api-keys.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}`,
		testupstream.KeyOf(r.Header)))
}

// rateLimited answers 429 with Retry-After in seconds.
func rateLimited(seconds int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", fmt.Sprint(seconds))
		writeError(w, http.StatusTooManyRequests,
			`{"error":{"message":"Rate limit reached for requests","type":"requests","param":null,"code":"rate_limit_exceeded"}}`)
	}
}

func writeError(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	io.WriteString(w, body)
}

// onlyFrom applies h to requests through the named replica and answers
// the others normally.
func onlyFrom(name string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(replicaHeader) == name {
			h(w, r)
			return
		}
		answerOK(w, r)
	}
}

// usedBy returns the keys the upstream saw in requests through the named
// replica, from the offset-th recorded request on.
func usedBy(up *testupstream.Server, offset int, name string) map[string]int {
	used := map[string]int{}
	for _, r := range up.Requests()[offset:] {
		if r.Header.Get(replicaHeader) == name {
			used[r.Key]++
		}
	}
	return used
}

// blacklistThrough drives traffic through r until r has taken key out of
// rotation (the upstream scripted to fail it).
func blacklistThrough(t testing.TB, r *replica, key string) server.BlacklistedKey {
	t.Helper()
	var got server.BlacklistedKey
	waitFor(t, 5*time.Second, r.Name+" benches "+preview(key), func() bool {
		r.send(t)
		var ok bool
		got, ok = r.benched(t, key)
		return ok
	})
	return got
}
