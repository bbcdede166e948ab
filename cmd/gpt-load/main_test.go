package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gpt-load/gpt-load/internal/testlog"

	"github.com/gpt-load/gpt-load/internal/testupstream"
)

var testKeys = []string{
	"sk-main-00000000000000000000000000000000000000000001",
	"sk-main-00000000000000000000000000000000000000000002",
	"sk-main-00000000000000000000000000000000000000000003",
}

// binary is the gpt-load binary built once for the process-level tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gpt-load-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "gpt-load")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building gpt-load: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func writeKeys(t *testing.T, path string, keys ...string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(strings.Join(keys, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

func mapEnv(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestRunConfigErrors(t *testing.T) {
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys.txt")
	writeKeys(t, keys, testKeys...)
	empty := filepath.Join(dir, "empty.txt")
	os.WriteFile(empty, []byte("# only a comment\n\n"), 0o600)

	tests := []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"bad values all reported", map[string]string{"KEYS_FILE": keys, "PORT": "abc", "MAX_RETRIES": "11", "ENABLE_CORS": "maybe"},
			[]string{`PORT="abc": not a number`, `MAX_RETRIES="11"`, `ENABLE_CORS="maybe"`}},
		{"missing keys file", map[string]string{"KEYS_FILE": filepath.Join(dir, "nope.txt")}, []string{"nope.txt"}},
		{"config and keys file together", map[string]string{"KEYS_FILE": filepath.Join(dir, "nope.txt"), "PORT": "0"},
			[]string{`PORT="0"`, "nope.txt"}},
		{"start index with a bad value", map[string]string{"KEYS_FILE": keys, "START_INDEX": "7", "LOG_LEVEL": "loud"},
			[]string{`START_INDEX="7"`, `LOG_LEVEL="loud"`}},
		{"empty keys file", map[string]string{"KEYS_FILE": empty}, []string{"empty.txt", "no keys"}},
		{"start index too large", map[string]string{"KEYS_FILE": keys, "START_INDEX": "3"}, []string{`START_INDEX="3"`, "key count (3)"}},
		{"bad upstream", map[string]string{"KEYS_FILE": keys, "OPENAI_BASE_URL": "ftp://x"}, []string{`OPENAI_BASE_URL="ftp://x"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			listened := false
			err := runWith(context.Background(), []string{"gpt-load", "-env-file", ""}, mapEnv(tt.env), &stdout, &stderr,
				hooks{listen: func(string) (net.Listener, error) { listened = true; return nil, errors.New("must not listen") }})
			if err == nil {
				t.Fatal("run succeeded; want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if listened {
				t.Error("run listened before failing on bad configuration")
			}
			for _, k := range testKeys {
				if strings.Contains(err.Error()+stdout.String()+stderr.String(), k) {
					t.Error("output contains a raw key")
				}
			}
		})
	}
}

func TestBinaryExitsNonZeroOnBadConfig(t *testing.T) {
	cmd := exec.Command(binary)
	cmd.Dir = t.TempDir()
	cmd.Env = []string{"PORT=abc", "LOG_FORMAT=xml", "KEYS_FILE=none.txt"}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() == 0 {
		t.Fatalf("exit: %v; want a non-zero exit status\n%s", err, out)
	}
	for _, w := range []string{`PORT="abc": not a number`, `LOG_FORMAT="xml"`} {
		if !bytes.Contains(out, []byte(w)) {
			t.Errorf("output does not mention %q:\n%s", w, out)
		}
	}
}

func TestVersionAndHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"gpt-load", "-version"}, mapEnv(nil), &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(stdout.String(), "gpt-load ") {
		t.Errorf("-version printed %q", stdout.String())
	}
	err := run(context.Background(), []string{"gpt-load", "-h"}, mapEnv(nil), &stdout, &stderr)
	if !errors.Is(err, flag.ErrHelp) || exitCode(err) != 0 {
		t.Errorf("-h: err %v, exit %d; want ErrHelp and 0", err, exitCode(err))
	}
	for _, w := range []string{"-version", "PORT", "OPENAI_BASE_URL", "KEYS_FILE"} {
		if !strings.Contains(stderr.String(), w) {
			t.Errorf("-h output does not mention %s", w)
		}
	}
	if err := run(context.Background(), []string{"gpt-load", "-bogus"}, mapEnv(nil), &stdout, &stderr); exitCode(err) != 2 {
		t.Errorf("unknown flag: exit %d; want 2", exitCode(err))
	}
}

// serving runs run in-process on a loopback port and returns its URL; the
// server stops, and run's error is checked, at the end of the test.
func serving(t *testing.T, env map[string]string, stdout io.Writer) (string, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- runWith(ctx, []string{"gpt-load", "-env-file", env["ENV_FILE"]}, mapEnv(env), stdout, io.Discard, hooks{
			listen: func(string) (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") },
			ready:  func(a string) { addr <- a },
		})
	}()
	var url string
	select {
	case a := <-addr:
		url = "http://" + a
	case err := <-done:
		t.Fatalf("run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("server did not start")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run returned %v; want nil after a clean shutdown", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("run did not return after cancel")
		}
	})
	return url, cancel
}

func TestEnvFilePrecedence(t *testing.T) {
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys.txt")
	writeKeys(t, keys, testKeys...)
	up := testupstream.New(t, nil)
	envFile := filepath.Join(dir, ".env")
	os.WriteFile(envFile, []byte("KEYS_FILE="+keys+"\nOPENAI_BASE_URL=http://"+testupstream.ClosedAddr(t)+"\nAUTH_KEY=from-env-file\n"), 0o600)
	// The environment's OPENAI_BASE_URL wins over the file's; AUTH_KEY comes
	// from the file.
	url, _ := serving(t, map[string]string{"ENV_FILE": envFile, "OPENAI_BASE_URL": up.URL}, io.Discard)
	req, _ := http.NewRequest(http.MethodGet, url+"/v1/models", nil)
	req.Header.Set("Authorization", "Bearer from-env-file")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || up.Count() != 1 {
		t.Errorf("status %d, upstream saw %d requests; want 200 via the environment's upstream", resp.StatusCode, up.Count())
	}
}

func TestStartupLogNamesEverythingButKeys(t *testing.T) {
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys.txt")
	writeKeys(t, keys, append(testKeys, testKeys[0])...)
	var out testlog.Buffer
	serving(t, map[string]string{"KEYS_FILE": keys, "AUTH_KEY": "auth-token-abcdefgh-123", "OPENAI_BASE_URL": "https://api.openai.com,https://x.openai.azure.com/openai", "LOG_FORMAT": "json"}, &out)
	logs := out.String()
	for _, w := range []string{`"version"`, `"listen"`, `"keys":3`, "https://api.openai.com", "x.openai.azure.com", `"auth_style":"azure"`, `"auth":true`, `"cors":true`, `"count":1`} {
		if !strings.Contains(logs, w) {
			t.Errorf("startup log lacks %s:\n%s", w, logs)
		}
	}
	for _, s := range append(testKeys, "auth-token-abcdefgh-123") {
		if strings.Contains(logs, s) {
			t.Errorf("startup log contains a secret")
		}
	}
}

// process is the real binary, started with env in dir.
type process struct {
	cmd  *exec.Cmd
	url  string
	out  *testlog.Buffer
	done chan error
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func startBinary(t *testing.T, env ...string) *process {
	t.Helper()
	port := freePort(t)
	p := &process{out: &testlog.Buffer{}, done: make(chan error, 1), url: fmt.Sprintf("http://127.0.0.1:%d", port)}
	p.cmd = exec.Command(binary)
	p.cmd.Dir = t.TempDir()
	p.cmd.Env = append([]string{"HOST=127.0.0.1", fmt.Sprintf("PORT=%d", port)}, env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
	})
	// Only a hang reaches this deadline: a start takes about a second,
	// longer on a loaded machine (a million keys), never a minute.
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(p.url + "/health")
		if err == nil {
			resp.Body.Close()
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("binary did not answer /health within 60 s (a hang): %v\n%s", err, p.out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (p *process) wait(t *testing.T, timeout time.Duration) error {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err // for the cleanup
		return err
	case <-time.After(timeout):
		t.Fatalf("process did not exit within %v\n%s", timeout, p.out.String())
		return nil
	}
}

func TestSIGTERMDrainsOpenStream(t *testing.T) {
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys.txt")
	writeKeys(t, keys, testKeys...)
	next := make(chan struct{})
	up := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		for i := range 3 {
			fmt.Fprintf(w, "data: %d\n\n", i)
			rc.Flush()
			<-next
		}
		io.WriteString(w, "data: [DONE]\n\n")
	})
	p := startBinary(t, "KEYS_FILE="+keys, "OPENAI_BASE_URL="+up.URL)
	resp, err := http.Post(p.url+"/v1/chat/completions", "application/json", strings.NewReader(`{"stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	if line, _ := r.ReadString('\n'); line != "data: 0\n" {
		t.Fatalf("first line %q", line)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// New connections are refused once shutdown began.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("tcp", strings.TrimPrefix(p.url, "http://"))
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("still accepting connections 5s after SIGTERM")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for range 3 {
		next <- struct{}{}
	}
	rest, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("stream cut during drain: %v", err)
	}
	if want := "\ndata: 1\n\ndata: 2\n\ndata: [DONE]\n\n"; string(rest) != want {
		t.Errorf("rest of stream = %q; want %q", rest, want)
	}
	if err := p.wait(t, 10*time.Second); err != nil {
		t.Errorf("exit: %v; want status 0\n%s", err, p.out.String())
	}
}

func TestSIGHUPReloadUnderLoad(t *testing.T) {
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys.txt")
	writeKeys(t, keys, testKeys...)
	up := testupstream.New(t, nil)
	p := startBinary(t, "KEYS_FILE="+keys, "OPENAI_BASE_URL="+up.URL, "LOG_ENABLE_REQUEST=false")

	newKey := "sk-main-00000000000000000000000000000000000000000004"
	var failures, sent atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := http.Get(p.url + "/v1/models")
				sent.Add(1)
				if err != nil {
					failures.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					failures.Add(1)
				}
			}
		}()
	}
	up.WaitFor(t, 20, 5*time.Second)
	// Remove the first key, add a new one.
	writeKeys(t, keys, testKeys[1], testKeys[2], newKey)
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	seenAt := -1
	for seenAt < 0 {
		for i, r := range up.Requests() {
			if r.Key == newKey {
				seenAt = i
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("new key never used after SIGHUP\n%s", p.out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	n := up.Count()
	up.WaitFor(t, n+30, 5*time.Second)
	close(stop)
	wg.Wait()
	if f := failures.Load(); f != 0 {
		t.Errorf("%d of %d requests failed during the reload", f, sent.Load())
	}
	reqs := up.Requests()
	for _, r := range reqs[n:] {
		if r.Key == testKeys[0] {
			t.Fatal("removed key still used after the reload")
		}
	}
	if !strings.Contains(p.out.String(), "keys reloaded") {
		t.Errorf("no reload log line:\n%s", p.out.String())
	}
	// A bad file keeps the old set.
	os.WriteFile(keys, nil, 0o600)
	p.cmd.Process.Signal(syscall.SIGHUP)
	p.out.WaitFor(t, "keeping the old keys", 5*time.Second)
	resp, err := http.Get(p.url + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("after a bad reload: status %d; want 200 on the old keys", resp.StatusCode)
	}
	for _, k := range append(testKeys, newKey) {
		if strings.Contains(p.out.String(), k) {
			t.Error("process output contains a raw key")
		}
	}
}

// TestGroupsStartup: with GROUPS_DIR, every problem of every group is
// reported at once, naming the group, the file and the variable, before
// listening; a good GROUPS_DIR serves each group, and the startup log
// names them without their keys or tokens.
func TestGroupsStartup(t *testing.T) {
	dir := t.TempDir()
	mk := func(name, keys, env string) {
		t.Helper()
		os.MkdirAll(filepath.Join(dir, name), 0o700)
		os.WriteFile(filepath.Join(dir, name, "keys.txt"), []byte(keys), 0o600)
		if env != "" {
			os.WriteFile(filepath.Join(dir, name, "group.env"), []byte(env), 0o600)
		}
	}
	mk("alpha", "sk-alpha-0000000000000001\n", "MAX_RETRIES=99\nFALLBACK=nosuch\n")
	mk("beta", "", "PORT=1\n")
	listened := false
	err := runWith(context.Background(), []string{"gpt-load", "-env-file", ""}, mapEnv(map[string]string{"GROUPS_DIR": dir}),
		io.Discard, io.Discard, hooks{listen: func(string) (net.Listener, error) { listened = true; return nil, errors.New("must not listen") }})
	if err == nil || listened {
		t.Fatalf("run = %v, listened %v; want every group's problems before listening", err, listened)
	}
	for _, w := range []string{`group "alpha"`, `MAX_RETRIES="99"`, `FALLBACK="nosuch"`, `group "beta"`, "keys.txt", "PORT"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error does not mention %s:\n%v", w, err)
		}
	}

	good := t.TempDir()
	up := testupstream.New(t, nil)
	for _, name := range []string{"alpha", "beta"} {
		os.MkdirAll(filepath.Join(good, name), 0o700)
		os.WriteFile(filepath.Join(good, name, "keys.txt"), []byte("sk-"+name+"-0000000000000001\n"), 0o600)
		os.WriteFile(filepath.Join(good, name, "group.env"), []byte("OPENAI_BASE_URL="+up.URL+"\nAUTH_KEY=tok-"+name+"-123456\n"), 0o600)
	}
	var out testlog.Buffer
	url, _ := serving(t, map[string]string{"GROUPS_DIR": good, "LOG_FORMAT": "json"}, &out)
	req, _ := http.NewRequest(http.MethodPost, url+"/proxy/beta/v1/chat/completions", strings.NewReader(`{"model":"m"}`))
	req.Header.Set("Authorization", "Bearer tok-beta-123456")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || up.Count() != 1 || up.Requests()[0].Key != "sk-beta-0000000000000001" {
		t.Errorf("POST /proxy/beta/…: %d, upstream saw %d; want 200 with beta's key", resp.StatusCode, up.Count())
	}
	logs := out.String()
	for _, w := range []string{`"groups":2`, `"group":"alpha"`, `"group":"beta"`, `"tokens":1`} {
		if !strings.Contains(logs, w) {
			t.Errorf("startup log lacks %s:\n%s", w, logs)
		}
	}
	for _, secret := range []string{"sk-alpha-0000000000000001", "sk-beta-0000000000000001", "tok-alpha-123456", "tok-beta-123456"} {
		if strings.Contains(logs, secret) {
			t.Errorf("startup log holds a secret")
		}
	}
}

// A named env file that does not exist stops startup with its name (it may
// be the one holding AUTH_KEY); the default .env may be missing.
func TestNamedEnvFileMissingIsAnError(t *testing.T) {
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys.txt")
	writeKeys(t, keys, testKeys...)
	listened := false
	noListen := hooks{listen: func(string) (net.Listener, error) { listened = true; return nil, errors.New("must not listen") }}
	err := runWith(context.Background(), []string{"gpt-load", "-env-file", filepath.Join(dir, "nosuch.env")},
		mapEnv(map[string]string{"KEYS_FILE": keys}), io.Discard, io.Discard, noListen)
	if err == nil || !strings.Contains(err.Error(), "nosuch.env") || exitCode(err) == 0 {
		t.Errorf("err %v (exit %d); want a non-zero exit naming nosuch.env", err, exitCode(err))
	}
	if listened {
		t.Error("listened before failing on a missing env file")
	}

	// The binary, in a directory without .env and no -env-file: starts.
	startBinary(t, "KEYS_FILE="+keys)
}

// An unknown variable in the env file is named at startup with the known
// one it most resembles, never with its value.
func TestUnknownEnvFileVariableIsWarned(t *testing.T) {
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys.txt")
	writeKeys(t, keys, testKeys...)
	envFile := filepath.Join(dir, "my.env")
	os.WriteFile(envFile, []byte("KEYS_FILE="+keys+"\nOPENAI_BASEURL=http://secret-value.example\nMAX_RETRY=sk-value-not-shown\nGOGC=400\n"), 0o600)
	var out testlog.Buffer
	serving(t, map[string]string{"ENV_FILE": envFile}, &out)
	logs := out.String()
	// The Go runtime's own settings are named as such: it reads them
	// from the process's environment before gpt-load starts.
	for _, w := range []string{"OPENAI_BASEURL", "did you mean OPENAI_BASE_URL?", "MAX_RETRY", "did you mean MAX_RETRIES?",
		"GOGC in the env file is ignored: the Go runtime reads it from the process's environment only"} {
		if !strings.Contains(logs, w) {
			t.Errorf("startup log lacks %q:\n%s", w, logs)
		}
	}
	for _, s := range []string{"secret-value", "sk-value-not-shown"} {
		if strings.Contains(logs, s) {
			t.Errorf("startup log shows a value of an unknown variable:\n%s", logs)
		}
	}
}

// A keys-file line with a trailing comment is its key; a line that still
// holds whitespace is skipped with a warning naming its number, not text.
func TestKeysFileCommentsAndSpacedLines(t *testing.T) {
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys.txt")
	os.WriteFile(keys, []byte(testKeys[0]+" # trailing comment\nBearer sk-spaced-secret-1234\n"+testKeys[1]+"\n"), 0o600)
	up := testupstream.New(t, nil)
	var out testlog.Buffer
	url, _ := serving(t, map[string]string{"KEYS_FILE": keys, "OPENAI_BASE_URL": up.URL, "LOG_FORMAT": "json"}, &out)
	logs := out.String()
	for _, w := range []string{`"keys":2`, "whitespace inside", `"lines":"[2]"`} {
		if !strings.Contains(logs, w) {
			t.Errorf("startup log lacks %s:\n%s", w, logs)
		}
	}
	if strings.Contains(logs, "sk-spaced-secret") || strings.Contains(logs, "trailing comment") {
		t.Errorf("startup log shows a line's text:\n%s", logs)
	}
	resp, err := http.Get(url + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("status %d; want 200 with the commented key", resp.StatusCode)
	}
}

// TestNoCORSWithoutAuthKey (SPEC §6): with no AUTH_KEY and ALLOWED_ORIGINS
// unset, a page on https://evil.example cannot call the proxy from a local
// browser; set explicitly, ALLOWED_ORIGINS works as before.
func TestNoCORSWithoutAuthKey(t *testing.T) {
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys.txt")
	writeKeys(t, keys, testKeys...)
	up := testupstream.New(t, nil)
	for _, tt := range []struct {
		name, origins, want string
	}{
		{"unset", "", ""},
		{"explicit", "https://evil.example", "https://evil.example"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out testlog.Buffer
			url, _ := serving(t, map[string]string{"KEYS_FILE": keys, "OPENAI_BASE_URL": up.URL, "ALLOWED_ORIGINS": tt.origins}, &out)
			pre, _ := http.NewRequest(http.MethodOptions, url+"/v1/chat/completions", nil)
			pre.Header.Set("Origin", "https://evil.example")
			pre.Header.Set("Access-Control-Request-Method", "POST")
			pre.Header.Set("Access-Control-Request-Headers", "content-type")
			resp, err := http.DefaultClient.Do(pre)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := resp.Header.Get("Access-Control-Allow-Origin"); got != tt.want {
				t.Errorf("preflight: Access-Control-Allow-Origin %q; want %q", got, tt.want)
			}
			post, _ := http.NewRequest(http.MethodPost, url+"/v1/chat/completions", strings.NewReader(`{"model":"m"}`))
			post.Header.Set("Origin", "https://evil.example")
			post.Header.Set("Content-Type", "application/json")
			resp, err = http.DefaultClient.Do(post)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := resp.Header.Get("Access-Control-Allow-Origin"); got != tt.want {
				t.Errorf("POST: Access-Control-Allow-Origin %q; want %q", got, tt.want)
			}
			if off := strings.Contains(out.String(), "CORS: no origin allowed"); off != (tt.want == "") {
				t.Errorf("startup says CORS is off: %v; want %v\n%s", off, tt.want == "", out.String())
			}
		})
	}
}

// TestStartupShowsHostAsGiven: HOST=0.0.0.0 is shown as 0.0.0.0, not as
// the [::] Go reports for a listener on every interface.
func TestStartupShowsHostAsGiven(t *testing.T) {
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys.txt")
	writeKeys(t, keys, testKeys...)
	p := startBinary(t, "KEYS_FILE="+keys, "HOST=0.0.0.0", "AUTH_KEY=t")
	port := p.url[strings.LastIndex(p.url, ":")+1:]
	if want := `listen="0.0.0.0:` + port + `"`; !strings.Contains(p.out.String(), want) {
		t.Errorf("startup line lacks %s:\n%s", want, p.out.String())
	}
}
