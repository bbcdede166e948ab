// Package testredis runs real redis-server processes for tests: one per
// call of Start, on a free loopback port, without persistence, stopped at
// the end of the test. Stop and Restart simulate an outage and its end.
package testredis

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
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

	persist bool // appendonly, fsync always: a restart keeps the data

	mu     sync.Mutex
	proc   *os.Process   // nil while stopped
	exited chan struct{} // closed when proc has exited
}

// Start runs a redis-server for the test and waits until it answers PING.
// Without redis-server on PATH the test is skipped, or fails when the
// environment variable CI is set (CI must run these tests).
func Start(t testing.TB) *Server {
	t.Helper()
	return start(t, false)
}

// StartPersistent is Start with persistence (an append-only file synced
// on every write): Restart then keeps what was written, as a Redis with
// persistence does after a crash.
func StartPersistent(t testing.TB) *Server {
	t.Helper()
	return start(t, true)
}

func start(t testing.TB, persist bool) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("redis-server is not on PATH (CI must install it: apt-get install -y redis-server): %v", err)
		}
		t.Skipf("redis-server is not on PATH; install it (apt-get install -y redis-server) to run this test: %v", err)
	}
	s := &Server{t: t, bin: bin, dir: t.TempDir(), persist: persist}
	t.Cleanup(s.Stop)
	// A port found free may be taken before redis-server binds it; try a
	// few.
	var lastErr error
	for range 5 {
		s.port = freePort(t)
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
		s.URL = "redis://" + s.Addr + "/0"
		if lastErr = s.run(); lastErr == nil {
			return s
		}
	}
	t.Fatalf("testredis: could not start redis-server: %v", lastErr)
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
// port, waiting until it answers PING. A failure fails the test that
// called Start.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	if err := s.run(); err != nil {
		s.t.Fatalf("testredis: could not restart redis-server on %s: %v", s.Addr, err)
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
	cmd := exec.Command(s.bin, append([]string{
		"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--dir", s.dir}, aof...)...)
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
			s.proc, s.exited = cmd.Process, exited
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("redis-server exited (%v): %s", waitErr, out.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-exited
			return fmt.Errorf("redis-server did not answer PING within %v: %s", startTimeout, out.String())
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
