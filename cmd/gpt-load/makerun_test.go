package main

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// ptyCtrlC runs its arguments in a pseudo-terminal, types Ctrl-C once the
// output holds the marker, and prints the output and then the exit status.
const ptyCtrlC = `
import os, pty, sys, time, select
marker = sys.argv[1].encode(); cmd = sys.argv[2:]
pid, fd = pty.fork()
if pid == 0:
    os.execvp(cmd[0], cmd)
out = b""; sent = False; deadline = time.time() + 240
while time.time() < deadline:
    r, _, _ = select.select([fd], [], [], 0.2)
    if r:
        try:
            d = os.read(fd, 4096)
        except OSError:
            break
        if not d:
            break
        out += d
    if not sent and marker in out:
        time.sleep(0.3); os.write(fd, b"\x03"); sent = True
if time.time() >= deadline:
    os.kill(pid, 9)
_, st = os.waitpid(pid, 0)
sys.stdout.write(out.decode(errors="replace"))
print("\nSTATUS %d" % os.waitstatus_to_exitcode(st))
`

// TestMakeRunCtrlCExitsZero: `make run` on a terminal, stopped with one
// Ctrl-C, says it is building first and ends with status 0, not with
// "make: *** Error 1" (go run's status) or make's own death by SIGINT.
func TestMakeRunCtrlCExitsZero(t *testing.T) {
	if testing.Short() {
		t.Skip("builds through make")
	}
	for _, tool := range []string{"make", "python3", "bash"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys.txt")
	writeKeys(t, keys, testKeys...)
	cmd := exec.Command("python3", "-c", ptyCtrlC, "gpt-load started", "make", "--no-print-directory", "run")
	cmd.Dir = "../.."
	cmd.Env = append(cmd.Environ(), "KEYS_FILE="+keys, "HOST=127.0.0.1", fmt.Sprintf("PORT=%d", freePort(t)),
		"LOG_FORMAT=json", "AUTH_KEY=", "ARGS=-env-file=")
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("pty helper: %v\n%s", err, out)
	}
	text := string(out)
	t.Logf("make run, %v:\n%s", time.Since(start).Round(time.Millisecond), text)
	building, started := strings.Index(text, "make run: building"), strings.Index(text, "gpt-load started")
	if building < 0 || started < building {
		t.Errorf("make run did not say it was building before it started")
	}
	if !strings.Contains(text, `"msg":"stopped"`) {
		t.Errorf("the server did not stop cleanly")
	}
	if !strings.HasSuffix(strings.TrimSpace(text), "STATUS 0") || strings.Contains(text, "make: ***") {
		t.Errorf("make run after one Ctrl-C: want status 0 and no make error")
	}
}
