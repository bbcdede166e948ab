// Package testredis runs real redis-server processes for tests: one per
// call of Start, on a free loopback port, without persistence, stopped at
// the end of the test. Stop and Restart simulate an outage and its end.
// StartSentinel and StartCluster run the highly available forms: a master
// with a replica watched by three sentinels, and a Redis Cluster.
package testredis

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gpt-load/gpt-load/internal/testlog"
)

// startTimeout bounds how long a redis-server may take to answer PING.
const startTimeout = 10 * time.Second

// Server is a redis-server process owned by a test. Its methods are safe
// for concurrent use.
type Server struct {
	// URL is redis://127.0.0.1:port/0; Addr is 127.0.0.1:port. Both stay
	// the same across Restart.
	URL, Addr string

	t    testing.TB
	bin  string
	port int
	dir  string
	// args come before the usual options: a config file first, if any,
	// then options of the kind of server (replica, sentinel, cluster node).
	args []string
	// persist: an append-only file synced on every write, so that a
	// Restart keeps what was written (StartPersistent).
	persist bool

	mu     sync.Mutex
	proc   *os.Process     // nil while stopped
	exited chan struct{}   // closed when proc has exited
	out    *testlog.Buffer // the output of the last run
}

// Output returns what the server printed since it last started.
func (s *Server) Output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.out == nil {
		return ""
	}
	return s.out.String()
}

// Start runs a redis-server for the test and waits until it answers PING.
// Without redis-server on PATH the test is skipped, or fails when the
// environment variable CI is set (CI must run these tests).
func Start(t testing.TB) *Server {
	t.Helper()
	return launch(t, lookPath(t, "redis-server", "redis-server"), nil)
}

// StartPersistent is Start with persistence (an append-only file synced
// on every write): Restart then keeps what was written, as a Redis with
// persistence does after a crash.
func StartPersistent(t testing.TB) *Server {
	t.Helper()
	return launch(t, lookPath(t, "redis-server", "redis-server"), func(s *Server) []string {
		s.persist = true
		return nil
	})
}

// lookPath finds a Redis program, skipping the test without it, or failing
// it when the environment variable CI is set (CI must run these tests).
func lookPath(t testing.TB, name, pkg string) string {
	t.Helper()
	bin, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not on PATH (CI must install it: apt-get install -y %s): %v", name, pkg, err)
		}
		t.Skipf("%s is not on PATH; install it (apt-get install -y %s) to run this test: %v", name, pkg, err)
	}
	return bin
}

// launch runs bin on a free port until it answers PING; args, if not nil,
// gives the arguments that come before the usual options, knowing the
// port and the server's directory.
func launch(t testing.TB, bin string, args func(s *Server) []string) *Server {
	t.Helper()
	s := &Server{t: t, bin: bin, dir: t.TempDir()}
	t.Cleanup(s.Stop)
	// A port found free may be taken before redis-server binds it; try a
	// few.
	var lastErr error
	for range 5 {
		s.port = freePort(t)
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
		s.URL = "redis://" + s.Addr + "/0"
		if args != nil {
			s.args = args(s)
		}
		if lastErr = s.run(); lastErr == nil {
			return s
		}
	}
	t.Fatalf("testredis: could not start %s: %v", bin, lastErr)
	return nil
}

// Stop kills the server (SIGKILL, as a crash would) and waits for it to
// exit. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return
	}
	s.proc.Kill()
	<-s.exited
	s.proc, s.exited = nil, nil
}

// Restart stops the server if it runs and starts an empty one on the same
// port, with the same arguments and directory (a cluster node finds its
// nodes.conf there), waiting until it answers PING. A failure fails the test that
// called Start.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	if err := s.run(); err != nil {
		s.t.Fatalf("testredis: could not restart %s on %s: %v", s.bin, s.Addr, err)
	}
}

// run starts redis-server on s.port and waits for PING; on failure the
// process is gone and the error carries its output.
func (s *Server) run() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := &testlog.Buffer{}
	aof := []string{"--appendonly", "no"}
	if s.persist {
		aof = []string{"--appendonly", "yes", "--appendfsync", "always"}
	}
	cmd := exec.Command(s.bin, append(append(slices.Clone(s.args),
		"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--dir", s.dir), aof...)...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	deadline := time.Now().Add(startTimeout)
	for {
		if ping(s.Addr) == nil {
			s.proc, s.exited, s.out = cmd.Process, exited, out
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("%s exited (%v): %s", s.bin, waitErr, out.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-exited
			return fmt.Errorf("%s did not answer PING within %v: %s", s.bin, startTimeout, out.String())
		}
	}
}

// ping sends PING and expects +PONG.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testredis: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
