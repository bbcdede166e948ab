package server_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/gpt-load/gpt-load/internal/testserver"
	"github.com/gpt-load/gpt-load/internal/testupstream"
)

// stackProbeEnv makes the test binary the child of
// TestStreamStackStaysSmall.
const stackProbeEnv = "GPTLOAD_STACK_PROBE"

// TestStreamStackStaysSmall: the goroutine that serves a stream never
// needs more than 8 KB of stack on the way a stream takes (a new upstream
// connection dialed, a role-only first event the commit window decodes,
// the head's first flush, then the events). Past 8 KB its stack doubles
// to 16 KB and stays so while the stream is open: 8 MB more per 1000
// streams (internal/freshstack, docs/performance.md). The stream runs in
// a child process under debug.SetMaxStack(8192), where any goroutine
// growing past 8 KB crashes it, naming the frame that did.
//
// Without the race detector only: it doubles the stack's guard and
// widens frames. make test runs this test a second time without it.
func TestStreamStackStaysSmall(t *testing.T) {
	if os.Getenv(stackProbeEnv) == "1" {
		stackProbe(t)
		return
	}
	if raceEnabled {
		t.Skip("the race detector's frames are larger; make test runs this test again without -race")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestStreamStackStaysSmall$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), stackProbeEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "streams served within 8 KB") {
		t.Fatalf("the child serving streams under an 8 KB stack limit failed (%v); a goroutine grew past 8 KB where it says so:\n%s",
			err, crashFrames(string(out)))
	}
}

// stackProbe is the child: gpt-load as main serves it, an upstream that
// answers each request with an OpenAI-shaped stream and closes its
// connection (so that every request dials), a client on raw sockets
// (whose own stacks stay small).
func stackProbe(t *testing.T) {
	up := testupstream.Raw(t, streamOnce)
	srv := testserver.Start(t, testserver.Options{Keys: []string{"sk-stack-0123456789abcdef"},
		Upstreams: []string{up}, Live: true})
	// The first requests take the paths run once per process (type
	// caches, pools), which a long-running server has behind it.
	for range 2 {
		streamThrough(t, srv.Addr)
	}
	debug.SetMaxStack(8192)
	for range 3 {
		streamThrough(t, srv.Addr)
	}
	debug.SetMaxStack(1 << 30)
	t.Log("streams served within 8 KB")
}

// streamOnce answers with a stream whose first event carries only the
// role, as OpenAI's do, and closes the connection.
func streamOnce(c net.Conn, _ *http.Request) {
	io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"+
		"Connection: close\r\nTransfer-Encoding: chunked\r\n\r\n")
	event := func(s string) { fmt.Fprintf(c, "%x\r\n%s\r\n", len(s), s) }
	event(`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1733400000,"model":"gpt-4o-mini-2024-07-18",` +
		`"system_fingerprint":"fp_0ba0d124f1","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},` +
		`"logprobs":null,"finish_reason":null}]}` + "\n\n")
	for i := range 3 {
		event(fmt.Sprintf(`data: {"choices":[{"index":0,"delta":{"content":"tok%d"}}]}`+"\n\n", i))
		time.Sleep(5 * time.Millisecond) // events apart, as a model sends them
	}
	event("data: [DONE]\n\n")
	io.WriteString(c, "0\r\n\r\n")
}

// streamThrough sends a streaming chat request on a new connection to addr
// and reads the answer to its last chunk.
func streamThrough(t *testing.T, addr string) {
	s := sendStream(t, addr)
	defer s.c.Close()
	var got strings.Builder
	for {
		l, err := s.br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the stream: %v after %q", err, got.String())
		}
		got.WriteString(l)
		if l == "0\r\n" {
			break
		}
	}
	if s := got.String(); !strings.HasPrefix(s, "HTTP/1.1 200") || !strings.Contains(s, "tok2") || !strings.Contains(s, "[DONE]") {
		t.Fatalf("stream answer:\n%s\nwant a 200 with every event", s)
	}
}

// crashFrames is the part of a crash's output that matters: the runtime's
// message and the crashing goroutine's frames, with how deep each is.
func crashFrames(out string) string {
	i := strings.Index(out, "runtime: goroutine stack exceeds")
	if i < 0 {
		return out
	}
	out = out[i:]
	if j := strings.Index(out, "\n\ngoroutine "); j >= 0 {
		if k := strings.Index(out[j+2:], "\n\ngoroutine "); k >= 0 {
			out = out[:j+2+k]
		}
	}
	return out
}
