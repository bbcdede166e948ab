package main

// gpt-load -demo (make demo): the provider simulator with demo keys and
// gpt-load in front of it, both on 127.0.0.1, so a new user can see it work
// without provider keys. The docs' snippet test (TestDocSnippets) runs every
// runnable snippet of README.md and docs/ against the same demo.

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gpt-load/gpt-load/internal/providersim"
)

// demoToken is the client token of the demo (AUTH_KEY). It guards nothing
// of value: the demo's keys are the simulator's.
const demoToken = "demo-token"

// demoSim is the simulated provider of the demo: three healthy keys, one
// revoked and one whose account allows one request a minute, so it is
// rate-limited from its second use on.
var demoSim = providersim.Config{
	Models:       []string{"gpt-4o-mini", "gpt-4o"},
	Latency:      providersim.Duration(50 * time.Millisecond),
	StreamChunks: 8, StreamGap: providersim.Duration(100 * time.Millisecond),
	Accounts: []providersim.Account{
		{Name: "team", Requests: 600, Window: providersim.Duration(time.Minute), Headers: true},
		{Name: "trial", Requests: 1, Window: providersim.Duration(time.Minute), Headers: true, RetryAfter: true},
	},
	Keys: []providersim.Key{
		{Key: "sk-demo-healthy-000000000000000001", Account: "team"},
		{Key: "sk-demo-healthy-000000000000000002", Account: "team"},
		{Key: "sk-demo-healthy-000000000000000003", Account: "team"},
		{Key: "sk-demo-revoked-000000000000000004", Account: "team", State: providersim.KeyRevoked},
		{Key: "sk-demo-limited-000000000000000005", Account: "trial"},
	},
}

// demoEnv is the whole configuration of the demo's gpt-load: nothing is
// read from the environment or a .env file except PORT, so a checkout's own
// settings and keys are never mixed in.
func demoEnv(keysFile, upstream, port string) map[string]string {
	return map[string]string{
		"HOST":            "127.0.0.1",
		"PORT":            port,
		"AUTH_KEY":        demoToken,
		"KEYS_FILE":       keysFile,
		"OPENAI_BASE_URL": upstream,
		"LOG_LEVEL":       "info",
	}
}

// runDemo starts the simulator, writes its keys to a temporary folder and
// runs gpt-load in front of it until ctx ends or SIGINT/SIGTERM arrives.
// PORT (default 3000) is where gpt-load listens.
func runDemo(ctx context.Context, name string, getenv func(string) string, stdout, stderr io.Writer, h hooks) error {
	port := getenv("PORT")
	if port == "" {
		port = "3000"
	}
	sim, err := providersim.Start(demoSim)
	if err != nil {
		return fmt.Errorf("demo: start the provider simulator: %w", err)
	}
	defer sim.Close()
	dir, err := os.MkdirTemp("", "gpt-load-demo-")
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer os.RemoveAll(dir)
	var keys strings.Builder
	keys.WriteString("# the provider simulator's keys (gpt-load -demo)\n")
	for _, k := range demoSim.Keys {
		keys.WriteString(k.Key + "\n")
	}
	keysFile := filepath.Join(dir, "keys.txt")
	if err := os.WriteFile(keysFile, []byte(keys.String()), 0o600); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	env := demoEnv(keysFile, sim.URLs()[0], port)
	ready := h.ready
	h.ready = func(addr string) {
		printDemo(stdout, "http://"+addr)
		if ready != nil {
			ready(addr)
		}
	}
	err = runWith(ctx, []string{name, "-env-file", ""}, func(k string) string { return env[k] }, stdout, stderr, h)
	if err != nil && strings.Contains(err.Error(), "address already in use") {
		return fmt.Errorf("%w\n(another program has port %s; choose another: make demo PORT=3001)", err, port)
	}
	return err
}

// printDemo prints what to try against the demo listening at base.
func printDemo(w io.Writer, base string) {
	fmt.Fprintf(w, `
gpt-load demo: %[1]s, in front of a simulated provider with 5 keys
(3 healthy, 1 revoked, 1 rate-limited). The client token is %[2]s.
Try, in another terminal:

  curl -s %[1]s/v1/chat/completions -H "Authorization: Bearer %[2]s" -H "Content-Type: application/json" -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello"}]}'
  curl -N %[1]s/v1/chat/completions -H "Authorization: Bearer %[2]s" -H "Content-Type: application/json" -d '{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Hello"}]}'
  open %[1]s/status in a browser (token: %[2]s)

For the snippets of README.md and docs/: export AUTH_KEY=%[2]s
Ctrl-C stops gpt-load and the simulator.

`, base, demoToken)
}
