// Package scripts holds the tests of the helper scripts in this folder. They
// run each script as a user would, against a local recording upstream.
package scripts

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gpt-load/gpt-load/internal/testupstream"
)

// Keys the scripted upstream knows, one per answer. Long enough that their
// masks (first 6, last 4) never contain them.
const (
	keyValid   = "sk-valid-4f1c2a9e7b3d5a8c6e0f1a2b3c4d"
	keyValid2  = "sk-valid-9a8b7c6d5e4f3a2b1c0d9e8f7a6b"
	keyInvalid = "sk-invalid-0a1b2c3d4e5f6a7b8c9d0e1f2a3b"
	keyQuota   = "sk-quota-5e6f7a8b9c0d1e2f3a4b5c6d7e8f"
	keyRate    = "sk-ratelimited-1a2b3c4d5e6f7a8b9c0d1e2f"
	keyGemini  = "AIzaSyBadKey-0123456789abcdefghijklmnop"
	keyHang    = "sk-hang-7c6b5a4f3e2d1c0b9a8f7e6d5c4b"
	keyServer  = "sk-server-3c2b1a0f9e8d7c6b5a4f3e2d1c0b"
)

var allKeys = []string{keyValid, keyValid2, keyInvalid, keyQuota, keyRate, keyGemini, keyHang, keyServer}

// scripted answers per key, like the providers do.
func scripted(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	switch testupstream.KeyOf(r.Header) {
	case keyValid, keyValid2:
		io.WriteString(w, `{"object":"list","data":[{"id":"gpt-test","object":"model"}]}`)
	case keyInvalid:
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"error":{"message":"Incorrect API key provided: sk-inval***********2a3b.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}`)
	case keyQuota:
		w.WriteHeader(http.StatusTooManyRequests)
		io.WriteString(w, `{"error":{"message":"You exceeded your current quota.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}`)
	case keyRate:
		w.Header().Set("Retry-After", "20")
		w.WriteHeader(http.StatusTooManyRequests)
		io.WriteString(w, `{"error":{"message":"Rate limit reached for requests","type":"requests","param":null,"code":"rate_limit_exceeded"}}`)
	case keyGemini:
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID","domain":"googleapis.com"}]}}`)
	case keyHang:
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	case keyServer:
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, `{"error":{"message":"overloaded","type":"server_error"}}`)
	default:
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"error":{"message":"no key","type":"invalid_request_error","code":"invalid_api_key"}}`)
	}
}

type result struct {
	code           int
	stdout, stderr string
}

// run runs the script in dir with the given extra environment. Variables
// the script reads are cleared first, and proxies too, so that the outer
// environment cannot change the outcome.
func run(t *testing.T, dir string, env []string, args ...string) result {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not installed")
	}
	script, err := filepath.Abs("validate-keys.py")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, append([]string{script}, args...)...)
	cmd.Dir = dir
	cleared := []string{"KEYS_FILE", "OPENAI_BASE_URL", "UPSTREAM_AUTH_STYLE",
		"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"}
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !slices.Contains(cleared, strings.ToUpper(name)) {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "PYTHONDONTWRITEBYTECODE=1")
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	res := result{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		res.code = exit.ExitCode()
	default:
		t.Fatalf("running the script: %v", err)
	}
	if ctx.Err() != nil {
		t.Fatalf("the script did not finish in time\nstdout:\n%s\nstderr:\n%s", res.stdout, res.stderr)
	}
	for _, k := range allKeys {
		if strings.Contains(res.stdout, k) || strings.Contains(res.stderr, k) {
			t.Errorf("output shows the whole key %s…", k[:6])
		}
	}
	t.Logf("exit %d\nstdout:\n%s\nstderr:\n%s", res.code, res.stdout, res.stderr)
	return res
}

// defaultOut is where the result files go without -o: a folder that
// .gitignore lists.
const defaultOut = "validated-keys"

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// keysIn reads a result file, checks its mode, and returns its keys sorted.
func keysIn(t *testing.T, path string) []string {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatalf("result file: %v", err)
	}
	if mode := st.Mode().Perm(); mode != 0o600 {
		t.Errorf("%s has mode %o; want 600", filepath.Base(path), mode)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	keys := strings.Fields(string(data))
	slices.Sort(keys)
	return keys
}

func wantKeys(t *testing.T, dir, name string, want ...string) {
	t.Helper()
	got := keysIn(t, filepath.Join(dir, name))
	want = slices.Clone(want)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("%s = %s; want %s", name, masks(got), masks(want))
	}
}

// masks shortens keys for failure messages.
func masks(keys []string) string {
	var out []string
	for _, k := range keys {
		out = append(out, k[:min(12, len(k))]+"…")
	}
	return "[" + strings.Join(out, " ") + "]"
}

// mask mirrors secret.Mask (for ASCII keys).
func mask(k string) string {
	n := utf8.RuneCountInString(k)
	return k[:min(6, n/4)] + "…" + k[n-min(4, n/5):]
}

// counted reports the number the summary shows for label.
func counted(t *testing.T, stdout, label string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^\s+` + regexp.QuoteMeta(label) + `\s+(\d+)`).FindStringSubmatch(stdout)
	if m == nil {
		t.Fatalf("summary has no %q line", label)
	}
	return m[1]
}

func TestClassifiesEachKey(t *testing.T) {
	t.Parallel()
	up := testupstream.New(t, scripted)
	dir := t.TempDir()
	out := filepath.Join(dir, "out", "sub") // created by the script
	// BOM, CRLF, comments, blank lines, surrounding spaces and duplicates.
	writeFile(t, filepath.Join(dir, "keys.txt"), "\ufeff# production keys\r\n"+
		keyValid+"\r\n\r\n  "+keyInvalid+"  \n"+keyQuota+"\n#"+keyValid2+"\n"+keyRate+"\n"+keyGemini+"\n"+
		keyValid+"\n"+keyInvalid+"\n"+keyValid+"\n")

	res := run(t, dir, nil, "-u", up.URL, "-o", out, "-c", "4")
	if res.code != 1 {
		t.Errorf("exit status %d; want 1 (some keys invalid)", res.code)
	}
	wantKeys(t, out, "valid_keys.txt", keyValid, keyRate)
	wantKeys(t, out, "invalid_keys.txt", keyInvalid, keyQuota, keyGemini)
	wantKeys(t, out, "duplicate_keys.txt", keyValid, keyInvalid)
	wantKeys(t, out, "error_keys.txt")

	for label, want := range map[string]string{"valid": "1", "rate-limited": "1", "quota-exhausted": "1",
		"invalid": "2", "error": "0", "duplicates": "3"} {
		if got := counted(t, res.stdout, label); got != want {
			t.Errorf("summary: %s %s; want %s", label, got, want)
		}
	}
	if !strings.Contains(res.stdout, "keys/s") {
		t.Error("summary does not show keys/s")
	}
	// Not a terminal: progress comes as lines, the last at 100%.
	if !strings.Contains(res.stderr, "100%") || strings.Contains(res.stderr, "\r") {
		t.Errorf("progress on a non-terminal: want lines ending at 100%%, no \\r")
	}

	reqs := up.Requests()
	if len(reqs) != 5 {
		t.Fatalf("upstream got %d requests; want 5 (one per distinct key)", len(reqs))
	}
	var seen []string
	for _, r := range reqs {
		if r.Method != http.MethodGet || r.Path != "/v1/models" || r.RawQuery != "" {
			t.Errorf("upstream saw %s %s?%s; want GET /v1/models", r.Method, r.Path, r.RawQuery)
		}
		if got := r.Header.Get("Authorization"); got != "Bearer "+r.Key {
			t.Errorf("Authorization header is not the bearer key")
		}
		for _, h := range []string{"Api-Key", "X-Api-Key", "X-Goog-Api-Key"} {
			if r.Header.Get(h) != "" {
				t.Errorf("bearer style also sent %s", h)
			}
		}
		seen = append(seen, r.Key)
	}
	slices.Sort(seen)
	want := []string{keyValid, keyInvalid, keyQuota, keyRate, keyGemini}
	slices.Sort(want)
	if !slices.Equal(seen, want) {
		t.Errorf("upstream saw keys %s; want %s", masks(seen), masks(want))
	}
}

func TestAllUsableExitsZero(t *testing.T) {
	t.Parallel()
	up := testupstream.New(t, scripted)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "k.txt"), keyValid+"\n"+keyRate+"\n"+keyValid2+"\n")

	// A base ending in a version segment gets /models, not /v1/models.
	res := run(t, dir, nil, "-f", "k.txt", "-u", up.URL+"/gw/v1/")
	if res.code != 0 {
		t.Errorf("exit status %d; want 0", res.code)
	}
	wantKeys(t, filepath.Join(dir, defaultOut), "valid_keys.txt", keyValid, keyValid2, keyRate)
	wantKeys(t, filepath.Join(dir, defaultOut), "invalid_keys.txt")
	wantKeys(t, filepath.Join(dir, defaultOut), "duplicate_keys.txt")
	for _, r := range up.Requests() {
		if r.Path != "/gw/v1/models" {
			t.Errorf("upstream saw %s; want /gw/v1/models", r.Path)
		}
	}
}

func TestAuthStyles(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		env, args   []string
		header      string // where the key must be
		path, query string
		extra       [2]string // another header that must be sent
	}{
		{name: "azure by option", args: []string{"--auth-style", "azure"},
			header: "Api-Key", path: "/openai/models", query: "api-version=2024-10-21"},
		{name: "anthropic by environment", env: []string{"UPSTREAM_AUTH_STYLE=anthropic"},
			header: "X-Api-Key", path: "/v1/models", extra: [2]string{"Anthropic-Version", "2023-06-01"}},
		{name: "gemini by option", args: []string{"--auth-style", "gemini"},
			header: "X-Goog-Api-Key", path: "/v1beta/models"},
		{name: "option beats environment", env: []string{"UPSTREAM_AUTH_STYLE=azure"}, args: []string{"--auth-style", "bearer"},
			header: "Authorization", path: "/v1/models"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			up := testupstream.New(t, scripted)
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, "keys.txt"), keyValid+"\n"+keyInvalid+"\n")
			res := run(t, dir, tt.env, append([]string{"-u", up.URL}, tt.args...)...)
			if res.code != 1 {
				t.Errorf("exit status %d; want 1", res.code)
			}
			wantKeys(t, filepath.Join(dir, defaultOut), "valid_keys.txt", keyValid)
			wantKeys(t, filepath.Join(dir, defaultOut), "invalid_keys.txt", keyInvalid)
			reqs := up.Requests()
			if len(reqs) != 2 {
				t.Fatalf("upstream got %d requests; want 2", len(reqs))
			}
			for _, r := range reqs {
				if r.Method != http.MethodGet || r.Path != tt.path || r.RawQuery != tt.query {
					t.Errorf("upstream saw %s %s?%s; want GET %s?%s", r.Method, r.Path, r.RawQuery, tt.path, tt.query)
				}
				want := r.Key
				if tt.header == "Authorization" {
					want = "Bearer " + r.Key
				}
				if r.Key == "" || r.Header.Get(tt.header) != want {
					t.Errorf("key not sent in %s", tt.header)
				}
				for _, h := range []string{"Authorization", "Api-Key", "X-Api-Key", "X-Goog-Api-Key"} {
					if h != tt.header && r.Header.Get(h) != "" {
						t.Errorf("%s style also sent %s", tt.header, h)
					}
				}
				if tt.extra[0] != "" && r.Header.Get(tt.extra[0]) != tt.extra[1] {
					t.Errorf("%s = %q; want %q", tt.extra[0], r.Header.Get(tt.extra[0]), tt.extra[1])
				}
			}
		})
	}
}

func TestDotEnvAndEnvironment(t *testing.T) {
	t.Parallel()
	fromFile := testupstream.New(t, scripted)
	fromEnv := testupstream.New(t, scripted)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, ".env"), "# settings\n"+
		"export KEYS_FILE=\"my keys.txt\"\n"+
		"OPENAI_BASE_URL='"+fromFile.URL+","+fromEnv.URL+"/v1'  # the first one is used\n"+
		"PORT=3000\n")
	writeFile(t, filepath.Join(dir, "my keys.txt"), keyValid+"\n")
	writeFile(t, filepath.Join(dir, "env-keys.txt"), keyInvalid+"\n"+keyValid2+"\n")

	t.Run("dotenv", func(t *testing.T) {
		res := run(t, dir, nil)
		if res.code != 0 {
			t.Errorf("exit status %d; want 0", res.code)
		}
		wantKeys(t, filepath.Join(dir, defaultOut), "valid_keys.txt", keyValid)
		if n := fromFile.Count(); n != 1 {
			t.Errorf("upstream of .env got %d requests; want 1", n)
		}
		if n := fromEnv.Count(); n != 0 {
			t.Errorf("the second upstream got %d requests; want 0", n)
		}
	})
	t.Run("environment wins", func(t *testing.T) {
		out := filepath.Join(dir, "env-out")
		res := run(t, dir, []string{"KEYS_FILE=env-keys.txt", "OPENAI_BASE_URL=" + fromEnv.URL + "/v1"}, "-o", out)
		if res.code != 1 {
			t.Errorf("exit status %d; want 1", res.code)
		}
		wantKeys(t, out, "valid_keys.txt", keyValid2)
		wantKeys(t, out, "invalid_keys.txt", keyInvalid)
		if n := fromFile.Count(); n != 1 {
			t.Errorf("upstream of .env got %d requests in all; want 1", n)
		}
		for _, r := range fromEnv.Requests() {
			if r.Path != "/v1/models" {
				t.Errorf("upstream saw %s; want /v1/models", r.Path)
			}
		}
		if n := fromEnv.Count(); n != 2 {
			t.Errorf("upstream of the environment got %d requests; want 2", n)
		}
	})
}

func TestModelSendsOneTokenCompletion(t *testing.T) {
	t.Parallel()
	up := testupstream.New(t, scripted)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "keys.txt"), keyValid+"\n"+keyQuota+"\n")
	res := run(t, dir, nil, "-u", up.URL, "--model", "gpt-test")
	if res.code != 1 {
		t.Errorf("exit status %d; want 1", res.code)
	}
	wantKeys(t, filepath.Join(dir, defaultOut), "valid_keys.txt", keyValid)
	wantKeys(t, filepath.Join(dir, defaultOut), "invalid_keys.txt", keyQuota)
	body := `{"model":"gpt-test","messages":[{"role":"user","content":"hi"}],"max_tokens":1}`
	sum := sha256.Sum256([]byte(body))
	reqs := up.Requests()
	if len(reqs) != 2 {
		t.Fatalf("upstream got %d requests; want 2", len(reqs))
	}
	for _, r := range reqs {
		if r.Method != http.MethodPost || r.Path != "/v1/chat/completions" {
			t.Errorf("upstream saw %s %s; want POST /v1/chat/completions", r.Method, r.Path)
		}
		if r.BodySHA256 != hex.EncodeToString(sum[:]) {
			t.Errorf("body (%d bytes) is not %s", r.BodyLen, body)
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type %q; want application/json", ct)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	up := testupstream.New(t, scripted)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "empty.txt"), "\ufeff# nothing here\n\n   \n")
	writeFile(t, filepath.Join(dir, "keys.txt"), keyValid+"\n")
	tests := []struct {
		name string
		args []string
		want []string // in stderr
	}{
		{"missing file", []string{"-f", "nope.txt", "-u", up.URL}, []string{`"nope.txt"`, "not found"}},
		{"empty file", []string{"-f", "empty.txt", "-u", up.URL}, []string{`"empty.txt"`, "no keys"}},
		{"bad scheme", []string{"-u", "ftp://example.com"}, []string{`"ftp://example.com"`, "http or https"}},
		{"no host", []string{"-u", "http://"}, []string{`"http://"`, "no host"}},
		{"bad style", []string{"-u", up.URL, "--auth-style", "basic"}, []string{"--auth-style"}},
		{"bad concurrency", []string{"-u", up.URL, "-c", "0"}, []string{"--concurrency"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := run(t, dir, nil, tt.args...)
			if res.code != 2 {
				t.Errorf("exit status %d; want 2", res.code)
			}
			for _, w := range tt.want {
				if !strings.Contains(res.stderr, w) {
					t.Errorf("stderr does not say %s", w)
				}
			}
		})
	}
	if n := up.Count(); n != 0 {
		t.Errorf("upstream got %d requests; want none", n)
	}
	if _, err := os.Stat(filepath.Join(dir, defaultOut, "valid_keys.txt")); err == nil {
		t.Error("a usage error wrote result files")
	}
}

func TestUnreachableBaseURL(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "keys.txt"), keyValid+"\n"+keyInvalid+"\n"+keyValid+"\n")
	url := "http://" + testupstream.ClosedAddr(t)
	res := run(t, dir, nil, "-u", url, "-t", "2")
	if res.code != 3 {
		t.Errorf("exit status %d; want 3", res.code)
	}
	wantKeys(t, filepath.Join(dir, defaultOut), "error_keys.txt", keyValid, keyInvalid)
	wantKeys(t, filepath.Join(dir, defaultOut), "valid_keys.txt")
	wantKeys(t, filepath.Join(dir, defaultOut), "invalid_keys.txt")
	wantKeys(t, filepath.Join(dir, defaultOut), "duplicate_keys.txt", keyValid)
	if !strings.Contains(res.stderr, "could not reach "+url) {
		t.Errorf("stderr does not say the URL could not be reached")
	}
	if !strings.Contains(res.stdout, mask(keyValid)+"  connection refused") {
		t.Errorf("summary does not list %s as connection refused", mask(keyValid))
	}
}

func TestTimeoutIsAnErrorForThatKeyOnly(t *testing.T) {
	t.Parallel()
	up := testupstream.New(t, scripted)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "keys.txt"), keyHang+"\n"+keyValid+"\n"+keyRate+"\n"+keyServer+"\n")
	// -t 1 is shown to work by the result, not by a stopwatch: the hanging
	// key is answered after 10 s only, so without the timeout it would not
	// be listed as "timeout" below. run's own 20 s deadline catches a hang.
	res := run(t, dir, nil, "-u", up.URL, "-t", "1", "-o", "res")
	if res.code != 3 {
		t.Errorf("exit status %d; want 3 (some keys not checked, none invalid)", res.code)
	}
	out := filepath.Join(dir, "res")
	wantKeys(t, out, "valid_keys.txt", keyValid, keyRate)
	wantKeys(t, out, "invalid_keys.txt")
	wantKeys(t, out, "error_keys.txt", keyHang, keyServer)
	if !strings.Contains(res.stdout, mask(keyHang)+"  timeout") {
		t.Errorf("summary does not list %s as a timeout", mask(keyHang))
	}
	if !strings.Contains(res.stdout, mask(keyServer)+"  status 503 server_error") {
		t.Errorf("summary does not list %s with the upstream's reason", mask(keyServer))
	}
	if got := counted(t, res.stdout, "error"); got != "2" {
		t.Errorf("summary: error %s; want 2", got)
	}
	if strings.Contains(res.stderr, "could not reach") {
		t.Error("a timeout of one key is reported as an unreachable upstream")
	}
}

// TestResultsGoWhereGitIgnores: without -o the result files, raw keys, go
// into a folder that the repository's .gitignore ignores, mode 0700, and
// the output says where. A keys-file line's trailing comment is cut as the
// proxy does, and a line with a space inside is no key.
func TestResultsGoWhereGitIgnores(t *testing.T) {
	t.Parallel()
	up := testupstream.New(t, scripted)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "keys.txt"), keyValid+" # team A\nBearer "+keyValid2+"\n")
	res := run(t, dir, nil, "-u", up.URL)
	if res.code != 0 {
		t.Errorf("exit status %d; want 0", res.code)
	}
	out := filepath.Join(dir, defaultOut)
	wantKeys(t, out, "valid_keys.txt", keyValid)
	if st, err := os.Stat(out); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("result folder: %v, mode %o; want 700", err, st.Mode().Perm())
	}
	if !strings.Contains(res.stdout, out+"/") {
		t.Errorf("stdout does not say the results are in %s/", out)
	}
	if !strings.Contains(res.stderr, "line 2") {
		t.Errorf("stderr does not name line 2, the line with a space inside")
	}
	git, err := exec.LookPath("git")
	if err != nil {
		t.Skip("git is not installed")
	}
	// The repository root is the parent of scripts/.
	for _, f := range []string{"valid_keys.txt", "invalid_keys.txt", "duplicate_keys.txt", "error_keys.txt"} {
		cmd := exec.Command(git, "check-ignore", "-q", "--no-index", defaultOut+"/"+f)
		cmd.Dir = ".."
		if err := cmd.Run(); err != nil {
			t.Errorf("git check-ignore %s/%s: %v; want it ignored", defaultOut, f, err)
		}
	}
}
