package server_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gpt-load/gpt-load/internal/procstat"
	"github.com/gpt-load/gpt-load/internal/testserver"
	"github.com/gpt-load/gpt-load/internal/testupstream"
)

// streamMemoryEnv makes the test binary the child of TestOpenStreamMemory;
// its value is the upstream's URL.
const streamMemoryEnv = "GPTLOAD_STREAM_MEMORY_PROBE"

// openStreamHeapLimit bounds the heap one open stream keeps in gpt-load
// while it waits for the upstream's next event: net/http's server buffers
// (10 KB) and the request's state (about 10 KB). A stream that kept a copy
// buffer and the upstream connection's read buffer as well measured 6 KB
// more (docs/performance.md, "A stream's memory").
const openStreamHeapLimit = 24 << 10

// TestOpenStreamMemory: streams served as main serves them, each waiting
// for its upstream's next event, keep at most openStreamHeapLimit of heap
// each, read from gpt-load's own process. gpt-load runs in a child process
// (this test binary again), so that neither the clients nor the upstream
// are counted; the child measures itself after a collection when asked.
//
// Without the race detector only, whose shadow memory and wider objects
// are not what production keeps. make test runs it again without it.
func TestOpenStreamMemory(t *testing.T) {
	if up := os.Getenv(streamMemoryEnv); up != "" {
		streamMemoryChild(t, up)
		return
	}
	if raceEnabled {
		t.Skip("the race detector changes what the heap holds; make test runs this test again without -race")
	}
	const n = 200
	release := make(chan struct{})
	up := testupstream.Raw(t, func(c net.Conn, _ *http.Request) {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n")
		event := func(s string) { fmt.Fprintf(c, "%x\r\n%s\r\n", len(s), s) }
		event(`data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}` + "\n\n")
		event(`data: {"choices":[{"index":0,"delta":{"content":"tok0"}}]}` + "\n\n")
		<-release // the model thinks
		event(`data: {"choices":[{"index":0,"delta":{"content":"tok1"}}]}` + "\n\n")
		event("data: [DONE]\n\n")
		io.WriteString(c, "0\r\n\r\n")
	})
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestOpenStreamMemory$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), streamMemoryEnv+"="+up)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer stdin.Close() // the child ends when its stdin does
	var addr, probe string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if _, err := fmt.Sscanf(sc.Text(), "serving %s probe %s", &addr, &probe); err == nil {
			break
		}
	}
	if probe == "" {
		t.Fatal("the child did not say where it serves")
	}
	go io.Copy(io.Discard, stdout)

	// Paths run once per process (pools, type caches) are behind a
	// long-running server: one stream first, read to its end.
	first := openStream(t, addr)
	close(release)
	released = true
	finishStream(t, first)
	release = make(chan struct{})
	released = false

	base := childMemory(t, probe)
	streams := make([]*openedStream, n)
	for i := range streams {
		streams[i] = openStream(t, addr)
	}
	open := childMemory(t, probe)
	rss, _ := procstat.RSS(cmd.Process.Pid)
	close(release)
	released = true
	for _, s := range streams {
		finishStream(t, s)
	}

	heap := (open.heap - base.heap) / n
	stacks := (open.stacks - base.stacks) / n
	t.Logf("%d open streams: heap %d B each (%.1f → %.1f MiB), goroutine stacks %d B each; the process's RSS %.1f MiB",
		n, heap, mib(base.heap), mib(open.heap), stacks, mib(rss))
	if heap > openStreamHeapLimit {
		t.Errorf("an open stream keeps %d B of heap; want at most %d", heap, openStreamHeapLimit)
	}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// streamMemoryChild serves gpt-load as main does, in front of up, and
// answers its probe with the heap and stacks in use after a collection.
func streamMemoryChild(t *testing.T, up string) {
	srv := testserver.Start(t, testserver.Options{Keys: []string{"sk-memory-0123456789abcdef"},
		Upstreams: []string{up}, Live: true, Logs: io.Discard})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		runtime.GC()
		runtime.GC() // the second frees what the first left to finalizers
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		fmt.Fprintf(w, "%d %d", ms.HeapAlloc, ms.StackInuse)
	}))
	fmt.Printf("serving %s probe %s\n", srv.Addr, ln.Addr())
	io.Copy(io.Discard, os.Stdin)
	ln.Close()
}

type childMem struct{ heap, stacks int64 }

// childMemory asks the child for its memory three times and keeps the
// least: a stream caught between its write to the client and its next
// wait holds a buffer for that moment.
func childMemory(t *testing.T, probe string) childMem {
	t.Helper()
	var least childMem
	for i := range 3 {
		resp, err := http.Get("http://" + probe)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		f := strings.Fields(string(b))
		if len(f) != 2 {
			t.Fatalf("probe answered %q", b)
		}
		heap, _ := strconv.ParseInt(f[0], 10, 64)
		stacks, _ := strconv.ParseInt(f[1], 10, 64)
		if i == 0 || heap < least.heap {
			least = childMem{heap, stacks}
		}
	}
	return least
}

type openedStream struct {
	c  net.Conn
	br *bufio.Reader
}

// sendStream sends a streaming chat request on a new connection to addr,
// from a raw socket (whose reading keeps the client's own stacks small).
func sendStream(t *testing.T, addr string) *openedStream {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(time.Minute))
	body := `{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}`
	fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: gpt-load\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	return &openedStream{c: c, br: bufio.NewReaderSize(c, 512)}
}

// openStream sends a streaming request and reads the answer up to its
// first output, so the stream is committed and waiting.
func openStream(t *testing.T, addr string) *openedStream {
	t.Helper()
	s := sendStream(t, addr)
	s.readUntil(t, "tok0")
	return s
}

// finishStream reads the rest of the stream, to its last chunk.
func finishStream(t *testing.T, s *openedStream) {
	t.Helper()
	s.readUntil(t, "[DONE]")
	s.readUntil(t, "0\r\n")
	s.c.Close()
}

func (s *openedStream) readUntil(t *testing.T, want string) {
	t.Helper()
	var got strings.Builder
	for {
		l, err := s.br.ReadString('\n')
		got.WriteString(l)
		if err != nil {
			t.Fatalf("reading the stream: %v after %q", err, got.String())
		}
		if strings.Contains(l, want) && (want != "0\r\n" || l == want) {
			return
		}
	}
}
