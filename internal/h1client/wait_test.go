package h1client_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gpt-load/gpt-load/internal/h1client"
)

// readyWaiter is what the proxy asks of a stream's body.
type readyWaiter interface{ WaitReady() }

// streamHead is a chunked event stream's head.
const streamHead = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"

func chunk(s string) string { return fmt.Sprintf("%x\r\n%s\r\n", len(s), s) }

// TestWaitReadyLendsTheReadBuffer: between events, a body waiting for the
// upstream holds no read buffer; the next event, read after the wait,
// arrives whole, and the connection is reused afterwards.
func TestWaitReadyLendsTheReadBuffer(t *testing.T) {
	next := make(chan string)
	srv := newRawServer(t, func(c *rawConn) {
		if _, err := c.readRequest(); err != nil {
			return
		}
		c.write(streamHead + chunk("data: one\n\n"))
		c.write(<-next) // the second event
		c.write(<-next) // the end
		c.answerAll(answer("again"))
	})
	tr := newTransport(t, h1client.Options{Fallback: noFallback(t)})
	resp, err := tr.RoundTrip(newRequest(t, http.MethodGet, srv.URL, nil))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, err := resp.Body.Read(buf)
	if err != nil || string(buf[:n]) != "data: one\n\n" {
		t.Fatalf("first Read = %q, %v; want the first event", buf[:n], err)
	}
	waited := make(chan struct{})
	go func() {
		resp.Body.(readyWaiter).WaitReady()
		close(waited)
	}()
	waitFor(t, "the waiting body to give its read buffer back", func() bool { return !h1client.HoldsReadBuffer(resp.Body) })
	select {
	case <-waited:
		t.Fatal("WaitReady returned before the upstream sent anything")
	default:
	}
	next <- chunk("data: two\n\n")
	within(t, "WaitReady once the event came", func() { <-waited })
	n, err = resp.Body.Read(buf)
	if err != nil || string(buf[:n]) != "data: two\n\n" {
		t.Fatalf("Read after the wait = %q, %v; want the second event", buf[:n], err)
	}
	if !h1client.HoldsReadBuffer(resp.Body) {
		t.Error("the body reads without a read buffer")
	}
	next <- "0\r\n\r\n"
	resp.Body.(readyWaiter).WaitReady()
	if n, err := resp.Body.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("Read at the end = %d, %v; want 0, EOF", n, err)
	}
	if got := get(t, tr, srv.URL); got != "again" {
		t.Errorf("next request on the connection answered %q; want %q", got, "again")
	}
	if n := srv.accepted.Load(); n != 1 {
		t.Errorf("the server accepted %d connections; want 1, the stream's reused", n)
	}
}

// TestWaitReadyReturnsWhenBuffered: bytes already read from the socket
// need no wait, though the upstream sends nothing more.
func TestWaitReadyReturnsWhenBuffered(t *testing.T) {
	srv := newRawServer(t, func(c *rawConn) {
		if _, err := c.readRequest(); err != nil {
			return
		}
		c.write(streamHead + chunk("data: one\n\n") + chunk("data: two\n\n"))
		c.br.ReadByte() // holds the stream open until the client leaves
	})
	tr := newTransport(t, h1client.Options{Fallback: noFallback(t)})
	resp, err := tr.RoundTrip(newRequest(t, http.MethodGet, srv.URL, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 4)
	if _, err := io.ReadFull(resp.Body, buf); err != nil {
		t.Fatal(err)
	}
	within(t, "WaitReady with bytes buffered", resp.Body.(readyWaiter).WaitReady)
	rest := make([]byte, len("data: one\n\ndata: two\n\n")-4)
	if _, err := io.ReadFull(resp.Body, rest); err != nil || string(buf)+string(rest) != "data: one\n\ndata: two\n\n" {
		t.Errorf("read %q, %v; want both events", string(buf)+string(rest), err)
	}
}

// TestWaitReadyEnds: a wait ends when the body is closed from another
// goroutine (a stream's idle timer) or the request's context ends; the
// Read after it fails rather than blocking or passing for the end.
func TestWaitReadyEnds(t *testing.T) {
	for _, how := range []string{"Close", "cancel"} {
		t.Run(how, func(t *testing.T) {
			srv := newRawServer(t, func(c *rawConn) {
				if _, err := c.readRequest(); err != nil {
					return
				}
				c.write(streamHead + chunk("data: one\n\n"))
				c.br.ReadByte() // silent until the client leaves
			})
			tr := newTransport(t, h1client.Options{Fallback: noFallback(t)})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req := newRequest(t, http.MethodGet, srv.URL, nil).WithContext(ctx)
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 64)
			if _, err := resp.Body.Read(buf); err != nil {
				t.Fatal(err)
			}
			waited := make(chan struct{})
			go func() {
				resp.Body.(readyWaiter).WaitReady()
				close(waited)
			}()
			waitFor(t, "the body to wait", func() bool { return !h1client.HoldsReadBuffer(resp.Body) })
			if how == "Close" {
				resp.Body.Close()
			} else {
				cancel()
			}
			within(t, "WaitReady after "+how, func() { <-waited })
			if n, err := resp.Body.Read(buf); err == nil || err == io.EOF {
				t.Errorf("Read after %s = %d, %v; want an error", how, n, err)
			}
			waitFor(t, "the server to see the connection closed", func() bool { return srv.ended.Load() == 1 })
		})
	}
}

// TestWaitReadyChaos: a seeded run of bodies in every framing (chunked,
// length, to the connection's end), cut into pieces at random points
// (inside a chunk's size line, its CRLF, a chunk's data) and sent with
// random gaps, read by a client that waits before every Read and reads
// into buffers of random sizes. Every body must arrive exactly as sent,
// and a connection that may be reused is. A failure names its seed.
func TestWaitReadyChaos(t *testing.T) {
	seeds := 30
	if testing.Short() {
		seeds = 5
	}
	for seed := range uint64(seeds) {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) { waitChaos(t, seed) })
	}
}

func waitChaos(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	type exchange struct {
		framing string // "chunked", "length" or "close"
		body    []byte
		pieces  []string // the answer on the wire, cut
		gaps    []time.Duration
	}
	var exs []exchange
	for i := range 1 + rng.IntN(4) {
		ex := exchange{framing: []string{"chunked", "length"}[rng.IntN(2)]}
		if i == 3 || rng.IntN(6) == 0 {
			ex.framing = "close" // ends the connection: the last one
		}
		var wire strings.Builder
		var body bytes.Buffer
		for range 1 + rng.IntN(12) {
			ev := fmt.Sprintf("data: {\"n\":%d,\"pad\":%q}\n\n", rng.IntN(1000), strings.Repeat("x", rng.IntN(3000)))
			body.WriteString(ev)
		}
		ex.body = body.Bytes()
		switch ex.framing {
		case "chunked":
			wire.WriteString(streamHead)
			for rest := ex.body; len(rest) > 0; {
				n := min(len(rest), 1+rng.IntN(2500))
				wire.WriteString(chunk(string(rest[:n])))
				rest = rest[n:]
			}
			wire.WriteString("0\r\n\r\n")
		case "length":
			fmt.Fprintf(&wire, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: %d\r\n\r\n%s", len(ex.body), ex.body)
		case "close":
			fmt.Fprintf(&wire, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n%s", ex.body)
		}
		for s := wire.String(); len(s) > 0; {
			n := min(len(s), 1+rng.IntN(600))
			ex.pieces = append(ex.pieces, s[:n])
			ex.gaps = append(ex.gaps, time.Duration(rng.IntN(3))*time.Millisecond)
			s = s[n:]
		}
		exs = append(exs, ex)
		if ex.framing == "close" {
			break
		}
	}
	srv := newRawServer(t, func(c *rawConn) {
		for _, ex := range exs {
			if _, err := c.readRequest(); err != nil {
				return
			}
			for i, p := range ex.pieces {
				time.Sleep(ex.gaps[i]) // a gap between pieces, so reads find the socket empty
				c.write(p)
			}
			if ex.framing == "close" {
				return
			}
		}
	})
	tr := newTransport(t, h1client.Options{Fallback: noFallback(t)})
	for i, ex := range exs {
		resp, err := tr.RoundTrip(newRequest(t, http.MethodGet, srv.URL, nil))
		if err != nil {
			t.Fatalf("seed %d, exchange %d (%s): %v", seed, i, ex.framing, err)
		}
		// Bytes lost between the buffer and the socket would leave a
		// wait or a Read blocked for ever: the body is closed after a
		// deadline, and the run fails naming its seed.
		var stuck atomic.Bool
		timer := time.AfterFunc(10*time.Second, func() { stuck.Store(true); resp.Body.Close() })
		var got bytes.Buffer
		for {
			resp.Body.(readyWaiter).WaitReady()
			buf := make([]byte, 1+rng.IntN(5000))
			n, err := resp.Body.Read(buf)
			got.Write(buf[:n])
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("seed %d, exchange %d (%s): Read: %v after %d of %d bytes (stuck for 10 s: %v)", seed, i, ex.framing, err, got.Len(), len(ex.body), stuck.Load())
			}
		}
		timer.Stop()
		resp.Body.Close()
		if !bytes.Equal(got.Bytes(), ex.body) {
			t.Fatalf("seed %d, exchange %d (%s): got %d bytes, want %d; first difference at %d", seed, i, ex.framing,
				got.Len(), len(ex.body), firstDiff(got.Bytes(), ex.body))
		}
	}
	if n, want := srv.accepted.Load(), int32(1); n != want {
		t.Errorf("seed %d: the server accepted %d connections for %d exchanges; want %d, the connection reused", seed, n, len(exs), want)
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
