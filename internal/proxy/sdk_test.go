package proxy_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gpt-load/gpt-load/internal/testupstream"
)

// TestOpenAISDKStreamsThroughKeepalives runs the official openai npm SDK
// (testdata/openai-sdk, installed with npm ci from its lock file) against
// gpt-load: a first attempt overloaded inside the commit window, then a
// stream with a silence long enough for keepalive comments. The SDK must
// yield the text whole and raise nothing. .ci/run installs node and npm.
func TestOpenAISDKStreamsThroughKeepalives(t *testing.T) {
	dir := sdkDir(t)
	var n atomic.Int32
	var sent atomic.Int64
	up := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			writeEvents(w, openaiRole, `data: {"error":{"message":"The server is overloaded or not ready yet.","type":"server_error","param":null,"code":"server_is_overloaded"}}`+"\n\n")
			return
		}
		hel := `data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}` + "\n\n"
		lo := `data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":null}]}` + "\n\n"
		writeEvents(w, openaiRole, hel)
		time.Sleep(2500 * time.Millisecond) // the silence under test: keepalives every second
		writeEvents(w, lo, openaiDone)
		sent.Store(int64(len(openaiRole + hel + lo + openaiDone)))
	})
	e := start(t, testKeys, []string{up.URL}, map[string]string{"STREAM_KEEPALIVE": "1"})

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "stream.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GPT_LOAD_URL="+e.URL)
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("node stream.mjs: %v\n%s", err, stderr)
	}
	var got struct {
		Text   string `json:"text"`
		Chunks int    `json:"chunks"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("SDK output %q: %v", out, err)
	}
	if got.Text != "Hello" || got.Chunks != 4 {
		t.Errorf("SDK yielded %q in %d chunks; want \"Hello\" in 4", got.Text, got.Chunks)
	}
	// The access line counts what went to the client: more than the
	// upstream sent, by the keepalive comments.
	e.Logs.WaitFor(t, `"msg":"request"`, 10*time.Second)
	m := regexp.MustCompile(`"bytes":(\d+)`).FindStringSubmatch(e.Logs.String())
	if m == nil {
		t.Fatalf("no bytes in the access line:\n%s", e.Logs.String())
	}
	if b, _ := strconv.ParseInt(m[1], 10, 64); b < sent.Load()+int64(len(": keepalive\n\n")) {
		t.Errorf("client was sent %d bytes for %d upstream bytes; want a keepalive more at least", b, sent.Load())
	}
}

// sdkDir returns the SDK test directory with its modules installed. Without
// node or npm the test is skipped, except in CI, where .ci/run installs them.
func sdkDir(t *testing.T) string {
	t.Helper()
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is not installed (.ci/run installs nodejs and npm)", tool)
			}
			t.Skipf("%s is not installed; apt-get install nodejs npm to run this test", tool)
		}
	}
	dir, err := filepath.Abs(filepath.Join("testdata", "openai-sdk"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "openai", "package.json")); err == nil {
		return dir
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci in %s: %v\n%s", dir, err, out)
	}
	return dir
}
