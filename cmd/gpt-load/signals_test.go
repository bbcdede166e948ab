package main

import (
	"bufio"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gpt-load/gpt-load/internal/testupstream"
)

// TestSecondSIGINTEndsDrain: a second Ctrl-C during the drain ends the
// process at once, killed by SIGINT (a shell's 130), as docs/operations.md,
// "Signals", lists among the exit statuses.
func TestSecondSIGINTEndsDrain(t *testing.T) {
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys.txt")
	writeKeys(t, keys, testKeys...)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	up := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: 0\n\n")
		http.NewResponseController(w).Flush()
		select { // a stream that would keep the drain going to its end
		case <-release:
		case <-r.Context().Done():
		}
	})
	p := startBinary(t, "KEYS_FILE="+keys, "OPENAI_BASE_URL="+up.URL, "SERVER_GRACEFUL_SHUTDOWN_TIMEOUT=300")
	resp, err := http.Post(p.url+"/v1/chat/completions", "application/json", strings.NewReader(`{"stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if line, _ := bufio.NewReader(resp.Body).ReadString('\n'); line != "data: 0\n" {
		t.Fatalf("first line %q", line)
	}
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	// The second signal must come once the first one's handler has let go.
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(p.out.String(), "shutting down"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no \"shutting down\" line 30 s after SIGINT (a hang, not slowness)\n%s", p.out.String())
		}
	}
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	// The drain would last 300 s; 60 s only catches a process that ignored
	// the second signal.
	err = p.wait(t, 60*time.Second)
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("exit after a second SIGINT: %v; want killed by SIGINT\n%s", err, p.out.String())
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGINT {
		t.Errorf("exit after a second SIGINT: %v; want killed by SIGINT (a shell's 130)", err)
	}
}
