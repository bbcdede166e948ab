package proxy_test

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/gpt-load/gpt-load/internal/server"
	"github.com/gpt-load/gpt-load/internal/testupstream"
)

// TestSpoolFailureIs503: a request body that cannot be written to its
// temporary file is the proxy's own fault: 503 in the proxy's error shape,
// logged, nothing sent upstream and no file left behind; never the 400 a
// client's unreadable body gets.
func TestSpoolFailureIs503(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T) string // returns TMPDIR
	}{
		{"temp dir cannot be written", func(t *testing.T) string {
			dir := t.TempDir()
			if os.Geteuid() == 0 {
				// Permissions do not stop root: a temp dir that is a
				// file fails alike.
				f := filepath.Join(dir, "not-a-dir")
				if err := os.WriteFile(f, nil, 0o600); err != nil {
					t.Fatal(err)
				}
				return f
			}
			if err := os.Chmod(dir, 0o500); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Chmod(dir, 0o700) })
			return dir
		}},
		{"disk full mid-write", func(t *testing.T) string {
			// Files of this process may grow to 2 MiB (Go ignores
			// SIGXFSZ, so a write past it fails with EFBIG as on a full
			// disk); the 3 MiB body stops half-way into its file.
			var old syscall.Rlimit
			if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
				t.Skipf("no RLIMIT_FSIZE: %v", err)
			}
			lim := old
			lim.Cur = 2 << 20
			if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
				t.Skipf("cannot set RLIMIT_FSIZE: %v", err)
			}
			t.Cleanup(func() { syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old) })
			return t.TempDir()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmp := tc.setup(t)
			t.Setenv("TMPDIR", tmp)
			up := testupstream.New(t, nil)
			s := startLive(t, []string{up.URL}, map[string]string{"BODY_MEMORY_LIMIT": "1"}, server.Options{})
			body := bytes.Repeat([]byte("0123456789abcdef"), (3<<20)/16)
			resp, err := timedClient().Post(s.URL+"/v1/files", "application/octet-stream", bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusServiceUnavailable || !bytes.Contains(got, []byte(`"code":"body_storage_unavailable"`)) ||
				!bytes.Contains(got, []byte(`"type":"gpt_load_error"`)) {
				t.Errorf("got %d %s; want 503 body_storage_unavailable in the proxy's error shape", resp.StatusCode, got)
			}
			if up.Count() != 0 {
				t.Errorf("upstream got %d requests; want none", up.Count())
			}
			s.Logs.WaitFor(t, "request body could not be kept for retries", 10*time.Second)
			if open := openSpoolFiles(); open != 0 {
				t.Errorf("%d spool files open after the request; want none", open)
			}
		})
	}
}
