package h1client_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gpt-load/gpt-load/internal/h1client"
)

// pipeUpstream dials in-memory connections (net.Pipe) to an HTTP/1.1
// server on the other end, so that a transport runs inside a synctest
// bubble, its idle timer on the bubble's clock. A pipe cannot be peeked,
// which these tests do not need: the upstream never closes first.
type pipeUpstream struct {
	dials, closes atomic.Int32
}

func (u *pipeUpstream) dial(context.Context, string, string) (net.Conn, error) {
	cli, srv := net.Pipe()
	u.dials.Add(1)
	go func() {
		defer u.closes.Add(1)
		defer srv.Close()
		br := bufio.NewReader(srv)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return // the client closed the connection
			}
			io.Copy(io.Discard, req.Body)
			if _, err := io.WriteString(srv, okAnswer); err != nil {
				return
			}
		}
	}()
	return cli, nil
}

// getReused sends a GET and reports whether it went on a reused connection.
func getReused(t *testing.T, tr *h1client.Transport) bool {
	t.Helper()
	var reused bool
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused },
	})
	if _, body := fetch(t, tr, newRequest(t, http.MethodGet, "http://upstream.test/", nil).WithContext(ctx)); body != "ok" {
		t.Fatalf("body = %q; want ok", body)
	}
	return reused
}

// TestIdleTimeoutExact: an idle connection is kept for IdleTimeout to the
// nanosecond, then closed, without a request to find it.
func TestIdleTimeoutExact(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const idle = 90 * time.Second
		u := &pipeUpstream{}
		tr := h1client.New(h1client.Options{IdleTimeout: idle, Dial: u.dial, Fallback: noFallback(t)})
		defer tr.CloseIdleConnections()
		if getReused(t, tr) {
			t.Errorf("first request on a reused connection")
		}
		time.Sleep(idle - time.Nanosecond)
		synctest.Wait()
		if got, closes := tr.IdleConns(), u.closes.Load(); got != 1 || closes != 0 {
			t.Errorf("after %v idle: IdleConns() = %d, upstream saw %d closes; want 1, 0", idle-time.Nanosecond, got, closes)
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		if got, closes := tr.IdleConns(), u.closes.Load(); got != 0 || closes != 1 {
			t.Errorf("after %v idle: IdleConns() = %d, upstream saw %d closes; want 0, 1", idle, got, closes)
		}
	})
}

// TestIdleTimeoutOnTake: a connection idle past IdleTimeout is not used
// even when the reaper has not come round to it yet; one idle for less is.
func TestIdleTimeoutOnTake(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const idle = 90 * time.Second
		u := &pipeUpstream{}
		tr := h1client.New(h1client.Options{IdleTimeout: idle, Dial: u.dial, Fallback: noFallback(t)})
		defer tr.CloseIdleConnections()
		getReused(t, tr) // idle from 0 s; the reaper runs from 90 s on, then every 45 s
		time.Sleep(54 * time.Second)
		if !getReused(t, tr) {
			t.Errorf("a connection idle for 54 s of 90 was not reused")
		}
		// Idle again from 54 s: kept at the reaper's 90 s and 135 s rounds.
		time.Sleep(99 * time.Second) // 153 s: idle for 99 s
		synctest.Wait()
		if got := tr.IdleConns(); got != 1 {
			t.Fatalf("test premise: IdleConns() = %d at 153 s; want 1, not yet reaped", got)
		}
		if getReused(t, tr) {
			t.Errorf("a connection idle for 99 s of 90 was reused")
		}
		synctest.Wait()
		if got, want := u.dials.Load(), int32(2); got != want {
			t.Errorf("dials = %d; want %d", got, want)
		}
		if got := u.closes.Load(); got != 1 {
			t.Errorf("upstream saw %d closes; want 1 (the expired connection)", got)
		}
	})
}
