package classify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"os"
	"sync/atomic"
	"testing"

	"github.com/gpt-load/gpt-load/internal/testupstream"
)

// TestAttemptDNSFailure: a name that does not resolve is reported as a
// DNS failure, not as a refused connection, and retried elsewhere.
func TestAttemptDNSFailure(t *testing.T) {
	// A resolver whose server cannot be reached fails every lookup with
	// a *net.DNSError, as a broken or missing resolver does.
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
		return nil, errors.New("no resolver here")
	}}
	d := &net.Dialer{Resolver: r}
	err := get(t, transport(t, &http.Transport{DialContext: d.DialContext}), context.Background(), "http://api.openai.invalid/v1/models")
	var dns *net.DNSError
	if !errors.As(err, &dns) {
		t.Fatalf("error %v (%T) is not a *net.DNSError", err, err)
	}
	want := Verdict{Fault: TargetError, Retry: true, Reason: "dns failure"}
	if got := Attempt(Outcome{Err: err, Now: now}); got != want {
		t.Errorf("Attempt(%v) = %+v; want %+v", err, got, want)
	}
}

// TestAttemptBrokenConnection: a reset or close before the request was
// fully written is retried; after it, never (the upstream may be running
// the request).
func TestAttemptBrokenConnection(t *testing.T) {
	reset := &url.Error{Op: "Post", URL: "https://api.openai.com/v1/chat/completions",
		Err: &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", errConnReset)}}
	pipe := &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", errBrokenPipe)}
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", errConnRefused)}
	unreachable := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", errHostUnreachable)}
	netUnreachable := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", errNetUnreachable)}
	dialOther := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("socket: too many open files")}
	for _, tc := range []struct {
		name string
		o    Outcome
		want Verdict
	}{
		{"reset before sent", Outcome{Err: reset, Connected: true}, Verdict{Fault: TargetError, Retry: true, Reason: "connection reset"}},
		{"reset after sent", Outcome{Err: reset, Connected: true, Sent: true}, Verdict{Fault: TargetError, Reason: "connection reset"}},
		{"EOF before sent", Outcome{Err: fmt.Errorf("post: %w", io.EOF), Connected: true}, Verdict{Fault: TargetError, Retry: true, Reason: "connection closed"}},
		{"EOF after sent", Outcome{Err: fmt.Errorf("post: %w", io.EOF), Connected: true, Sent: true}, Verdict{Fault: TargetError, Reason: "connection closed"}},
		{"unexpected EOF after sent", Outcome{Err: io.ErrUnexpectedEOF, Connected: true, Sent: true}, Verdict{Fault: TargetError, Reason: "connection closed"}},
		{"broken pipe while writing", Outcome{Err: pipe, Connected: true}, Verdict{Fault: TargetError, Retry: true, Reason: "connection closed"}},
		{"opaque error after sent", Outcome{Err: errors.New("http2: stream closed"), Connected: true, Sent: true}, Verdict{Fault: TargetError, Reason: "connection failed"}},
		{"refused", Outcome{Err: refused}, Verdict{Fault: TargetError, Retry: true, Reason: "connection refused"}},
		{"host unreachable", Outcome{Err: unreachable}, Verdict{Fault: TargetError, Retry: true, Reason: "host unreachable"}},
		{"network unreachable", Outcome{Err: netUnreachable}, Verdict{Fault: TargetError, Retry: true, Reason: "network unreachable"}},
		{"other dial failure", Outcome{Err: dialOther}, Verdict{Fault: TargetError, Retry: true, Reason: "connection failed"}},
		{"timeout after sent", Outcome{Err: context.DeadlineExceeded, Sent: true}, Verdict{Fault: TargetError, Reason: "no response headers in time"}},
		{"DNS wrapped in a dial error", Outcome{Err: &net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: "api.openai.invalid", IsNotFound: true}}},
			Verdict{Fault: TargetError, Retry: true, Reason: "dns failure"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Attempt(tc.o); got != tc.want {
				t.Errorf("Attempt(%v, Sent=%v) = %+v; want %+v", tc.o.Err, tc.o.Sent, got, tc.want)
			}
		})
	}
}

// TestAttemptResetAfterRequestWritten: a real upstream that reads the
// whole request and then resets the connection. With the request written
// (as httptrace's WroteRequest reports), the attempt is not retried.
func TestAttemptResetAfterRequestWritten(t *testing.T) {
	up := testupstream.Raw(t, func(c net.Conn, _ *http.Request) {
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0) // reset, not a clean close
		}
	})
	var sent atomic.Bool
	req, err := http.NewRequest(http.MethodPost, up+"/v1/chat/completions", nil)
	if err != nil {
		t.Fatal(err)
	}
	req = req.WithContext(withWroteRequest(req.Context(), &sent))
	c := transport(t, &http.Transport{})
	resp, err := c.Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatal("got a response; want a transport error")
	}
	if !sent.Load() {
		t.Fatalf("request not reported written before %v", err)
	}
	if got := Attempt(Outcome{Err: err, Connected: true, Sent: sent.Load()}); got.Fault != TargetError || got.Retry {
		t.Errorf("Attempt(%v, Sent) = %+v; want TargetError without retry", err, got)
	}
}

// withWroteRequest records in *sent that the request was fully written,
// as the proxy does with httptrace.
func withWroteRequest(ctx context.Context, sent *atomic.Bool) context.Context {
	return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(i httptrace.WroteRequestInfo) { sent.Store(i.Err == nil) },
	})
}

// TestAttemptDNSServerRefused: a lookup whose DNS server refuses (a closed
// port: the error's text says "connection refused") is a DNS failure, not
// a refused connection to the upstream.
func TestAttemptDNSServerRefused(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := pc.LocalAddr().String()
	pc.Close()
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", closed)
	}}
	d := &net.Dialer{Resolver: r}
	err = get(t, transport(t, &http.Transport{DialContext: d.DialContext}), context.Background(), "http://api.openai.invalid/v1/models")
	t.Logf("error: %v", err)
	want := Verdict{Fault: TargetError, Retry: true, Reason: "dns failure"}
	if got := Attempt(Outcome{Err: err, Now: now}); got != want {
		t.Errorf("Attempt(%v) = %+v; want %+v", err, got, want)
	}
}
