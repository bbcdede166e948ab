package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// snippet is one fenced shell or Node block of README.md or docs/*.md.
type snippet struct {
	file string // README.md, docs/api.md, …
	line int    // of the opening fence
	lang string // sh, bash, js, mjs
	text string
	skip string // the reason of its <!-- not run: … --> marker; empty: it runs
}

func (s snippet) String() string { return fmt.Sprintf("%s:%d (```%s)", s.file, s.line, s.lang) }

var (
	fenceRe  = regexp.MustCompile("^```([a-z]*)\\s*$")
	notRunRe = regexp.MustCompile(`^<!-- not run: (.+?) -->$`)
)

// docSnippets returns every ```sh, ```bash, ```js and ```mjs block of
// README.md and docs/*.md with the reason it is not run, if the line before
// its fence (blank lines aside) is a <!-- not run: REASON --> marker.
func docSnippets(t *testing.T) []snippet {
	t.Helper()
	files := []string{readmePath}
	md, err := filepath.Glob(filepath.Join(docsDir, "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, md...)
	var out []snippet
	for _, f := range files {
		name, _ := filepath.Rel("../..", f)
		lines := strings.Split(readDeployFile(t, f), "\n")
		for i := 0; i < len(lines); i++ {
			m := fenceRe.FindStringSubmatch(lines[i])
			if m == nil {
				if strings.HasPrefix(lines[i], "```") { // ```json, ```python, …: skip over the block
					for i++; i < len(lines) && !strings.HasPrefix(lines[i], "```"); i++ {
					}
				}
				continue
			}
			start, lang := i, m[1]
			var body []string
			for i++; i < len(lines) && !strings.HasPrefix(lines[i], "```"); i++ {
				body = append(body, lines[i])
			}
			switch lang {
			case "sh", "bash", "js", "mjs":
			default:
				continue
			}
			s := snippet{file: name, line: start + 1, lang: lang, text: strings.Join(body, "\n") + "\n"}
			for j := start - 1; j >= 0; j-- {
				if strings.TrimSpace(lines[j]) == "" {
					continue
				}
				if mm := notRunRe.FindStringSubmatch(strings.TrimSpace(lines[j])); mm != nil {
					s.skip = mm[1]
				}
				break
			}
			out = append(out, s)
		}
	}
	return out
}

// TestDocSnippets runs every shell and Node snippet of README.md and
// docs/*.md, as a user pastes them after the quick start (AUTH_KEY
// exported, a .env with it in the current folder), against the demo that
// `make demo` runs, on a free loopback port that replaces localhost:3000.
// A snippet fails when it exits non-zero; curl runs with --fail-with-body,
// so an HTTP error fails it too. Snippets that cannot run here carry a
// <!-- not run: REASON --> line before their fence; each is logged.
func TestDocSnippets(t *testing.T) {
	snips := docSnippets(t)
	if len(snips) == 0 {
		t.Fatal("no snippets found in README.md and docs/")
	}
	var runnable []snippet
	skipped := 0
	for _, s := range snips {
		if s.skip != "" {
			skipped++
			t.Logf("not run: %s: %s", s, s.skip)
			continue
		}
		runnable = append(runnable, s)
	}

	base := startDemo(t)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(base, "http://"))
	dir := t.TempDir()
	// What the quick start leaves in the current folder.
	if err := os.WriteFile(filepath.Join(dir, ".env"), []byte("AUTH_KEY="+demoToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The shell has what the quick start exports, nothing else of ours.
	env := quickStartEnv(t, snips, dir, []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "LANG=C.UTF-8", "PORT=" + port,
	})
	var nodeModules string
	ran, failed := map[string]int{}, 0
	for _, s := range runnable {
		text := strings.ReplaceAll(s.text, "localhost:3000", "localhost:"+port)
		var cmd *exec.Cmd
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		switch s.lang {
		case "sh", "bash":
			// A failing command anywhere fails the snippet, and an HTTP
			// error fails curl.
			prelude := "set -e\ncurl() { command curl --fail-with-body --silent --show-error --max-time 30 \"$@\"; }\n"
			cmd = exec.CommandContext(ctx, s.lang, "-c", prelude+text)
		case "js", "mjs":
			if nodeModules == "" {
				// An ES module finds "openai" in node_modules beside it
				// (NODE_PATH is for require only).
				if nodeModules = openaiSDKModules(t); nodeModules != "-" {
					if err := os.Symlink(nodeModules, filepath.Join(dir, "node_modules")); err != nil {
						t.Fatal(err)
					}
				}
			}
			if nodeModules == "-" {
				cancel()
				skipped++
				t.Logf("not run: %s: node or npm is not installed", s)
				continue
			}
			f := filepath.Join(dir, fmt.Sprintf("snippet-%d.mjs", len(ran)+skipped))
			if err := os.WriteFile(f, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
			cmd = exec.CommandContext(ctx, "node", f)
		}
		cmd.Dir, cmd.Env = dir, env
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		cancel()
		if err != nil {
			failed++
			t.Errorf("%s failed: %v (if it cannot run against the demo, put <!-- not run: REASON --> on the line before its fence)\n--- snippet (localhost:3000 as localhost:%s)\n%s--- output\n%s", s, err, port, text, out.String())
			continue
		}
		ran[s.lang]++
	}
	t.Logf("snippets: %d found; %d not run; run: %d sh, %d bash, %d js, %d mjs passed, %d failed",
		len(snips), skipped, ran["sh"], ran["bash"], ran["js"], ran["mjs"], failed)
}

// quickStartEnv is base plus what the runnable shell snippets of README's
// quick start export (their `export NAME=…` lines, run in dir), so a
// snippet that reads a variable the quick start never exports fails.
func quickStartEnv(t *testing.T, snips []snippet, dir string, base []string) []string {
	t.Helper()
	readme := strings.Split(readDeployFile(t, readmePath), "\n")
	from, to := 0, len(readme)
	for i, l := range readme {
		if l == "## Quick start" {
			from = i + 1
		} else if from > 0 && strings.HasPrefix(l, "## ") {
			to = i + 1
			break
		}
	}
	if from == 0 {
		t.Fatal("README.md has no \"## Quick start\"")
	}
	var exports []string
	for _, s := range snips {
		if s.file != "README.md" || s.skip != "" || s.line < from || s.line > to || s.lang != "sh" {
			continue
		}
		for _, l := range strings.Split(s.text, "\n") {
			if strings.HasPrefix(l, "export ") {
				exports = append(exports, l)
			}
		}
	}
	if len(exports) == 0 {
		return base
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", "set -e\n"+strings.Join(exports, "\n")+"\nenv")
	cmd.Dir, cmd.Env = dir, base
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("the quick start's exports %q: %v", exports, err)
	}
	env := slices.Clone(base)
	for _, l := range strings.Split(string(out), "\n") {
		name, _, ok := strings.Cut(l, "=")
		if ok && !slices.ContainsFunc(base, func(b string) bool { return strings.HasPrefix(b, name+"=") }) &&
			name != "PWD" && name != "OLDPWD" && name != "SHLVL" && name != "_" {
			env = append(env, l)
		}
	}
	t.Logf("the quick start exports: %q", exports)
	return env
}

// startDemo runs runDemo in-process on a free loopback port and returns its
// base URL; it is stopped at the end of the test.
func startDemo(t *testing.T) string {
	t.Helper()
	var logs demoOutput
	return startDemoTo(t, &logs)
}

// startDemoTo is startDemo writing the demo's output to logs.
func startDemoTo(t *testing.T, logs *demoOutput) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- runDemo(ctx, "gpt-load", mapEnv(nil), logs, logs, hooks{
			listen: func(string) (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") },
			ready:  func(a string) { addr <- a },
		})
	}()
	var base string
	select {
	case a := <-addr:
		base = "http://" + a
	case err := <-done:
		t.Fatalf("demo: %v\n%s", err, logs.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("the demo did not start in 30 s\n%s", logs.String())
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("demo returned %v; want nil after a clean stop", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("the demo did not stop within 30 s of its context's end")
		}
		if t.Failed() {
			t.Logf("demo output:\n%s", logs.String())
		}
	})
	return base
}

// openaiSDKModules returns a node_modules folder holding the openai npm
// package pinned in internal/proxy/testdata/openai-sdk: that folder's own
// when installed, else one installed with npm ci from a copy of its lock
// file in a temporary folder (internal/proxy's test may be installing the
// original at the same moment). "-" when node or npm is not installed
// outside CI.
func openaiSDKModules(t *testing.T) string {
	t.Helper()
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is not installed (.ci/run installs nodejs and npm)", tool)
			}
			return "-"
		}
	}
	sdk, err := filepath.Abs(filepath.Join("..", "..", "internal", "proxy", "testdata", "openai-sdk"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(sdk, "node_modules", "openai", "package.json")); err == nil {
		return filepath.Join(sdk, "node_modules")
	}
	dir := t.TempDir()
	for _, f := range []string{"package.json", "package-lock.json"} {
		b, err := os.ReadFile(filepath.Join(sdk, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci of %s's lock file: %v\n%s", sdk, err, out)
	}
	return filepath.Join(dir, "node_modules")
}

// demoOutput is a bytes.Buffer safe for the demo's goroutines.
type demoOutput struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *demoOutput) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *demoOutput) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestDemoPrintsWhatWorks: the lines `make demo` prints to try work as
// printed (on the demo's port), and the pool shows what the demo promises:
// three healthy keys, one revoked (blacklisted), one rate-limited (cooling).
func TestDemoPrintsWhatWorks(t *testing.T) {
	var out demoOutput
	base := startDemoTo(t, &out)
	var tried int
	for _, l := range strings.Split(out.String(), "\n") {
		l = strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(l, "curl "):
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			b, err := exec.CommandContext(ctx, "sh", "-c", "curl() { command curl --fail-with-body --silent --show-error --max-time 20 \"$@\"; }\n"+l).CombinedOutput()
			cancel()
			if err != nil || !strings.Contains(string(b), `"content"`) {
				t.Errorf("%s: %v\n%s", l, err, b)
			}
			tried++
		case strings.HasPrefix(l, "open "):
			u := strings.Fields(l)[1]
			if !strings.HasPrefix(u, base) {
				t.Errorf("status page %s is not on the demo's address %s", u, base)
			}
			code, body := demoGet(t, u, "")
			if code != 200 || !strings.Contains(body, "<html") {
				t.Errorf("GET %s: %d; want 200 and the status page", u, code)
			}
			tried++
		}
	}
	if tried != 3 || !strings.Contains(out.String(), demoToken) {
		t.Fatalf("the demo printed %d lines to try (want 3: chat, stream, status page) and must name its token:\n%s", tried, out.String())
	}
	// Every key used at least once (round robin, a revoked key's attempt
	// retried on the next), then the rate-limited one a second time.
	for i := 0; i < 2*len(demoSim.Keys); i++ {
		if code, body := demoPost(t, base+"/v1/chat/completions", `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello"}]}`); code != 200 {
			t.Fatalf("chat completion %d: %d %s; want 200 (the pool retries past the revoked and limited keys)", i, code, body)
		}
	}
	var st struct {
		Keys struct{ Total, Healthy, Cooling, Blacklisted int }
	}
	_, body := demoGet(t, base+"/stats", demoToken)
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("/stats: %v\n%s", err, body)
	}
	if st.Keys.Total != 5 || st.Keys.Healthy != 3 || st.Keys.Cooling != 1 || st.Keys.Blacklisted != 1 {
		t.Errorf("demo keys after use: %+v; want 5: 3 healthy, 1 cooling, 1 blacklisted", st.Keys)
	}
}

func demoGet(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return demoDo(t, req)
}

func demoPost(t *testing.T, url, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+demoToken)
	req.Header.Set("Content-Type", "application/json")
	return demoDo(t, req)
}

func demoDo(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 30 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
