package proxy_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gpt-load/gpt-load/internal/testupstream"
)

// TestStreamChunksArriveAsSent has the upstream send the next SSE event only
// after the client has read the previous one, so it fails, by hanging until
// the deadline, if any chunk is held back.
func TestStreamChunksArriveAsSent(t *testing.T) {
	const events = 5
	got := make(chan int)
	up := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		for i := range events {
			fmt.Fprintf(w, "data: {\"n\":%d}\n\n", i)
			rc.Flush()
			select {
			case n := <-got: // the client read event i before we send i+1
				if n != i {
					t.Errorf("client read event %d; want %d", n, i)
				}
			case <-time.After(5 * time.Second):
				t.Errorf("client did not receive event %d while the stream was open", i)
				return
			}
		}
		io.WriteString(w, "data: [DONE]\n\n")
	})
	e := start(t, testKeys, []string{up.URL}, nil)
	resp, err := client().Post(e.URL+"/v1/chat/completions", "application/json", strings.NewReader(`{"stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if v := resp.Header.Get("X-Accel-Buffering"); v != "no" {
		t.Errorf("X-Accel-Buffering = %q; want no", v)
	}
	sc := bufio.NewScanner(resp.Body)
	n := 0
	for sc.Scan() {
		line := sc.Text()
		if line == "data: [DONE]" {
			break
		}
		if strings.HasPrefix(line, "data: ") {
			got <- n
			n++
		}
	}
	if n != events {
		t.Errorf("client read %d events; want %d", n, events)
	}
}

// TestLongSSELine checks there is no line-length limit on the way through.
func TestLongSSELine(t *testing.T) {
	long := strings.Repeat("x", 1<<20)
	up := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: "+long+"\n\n")
	})
	e := start(t, testKeys, []string{up.URL}, nil)
	resp, err := client().Get(e.URL + "/v1/stream")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "data: "+long+"\n\n" {
		t.Errorf("client got %d bytes; want the %d-byte event intact", len(body), len(long)+8)
	}
}

func TestClientDisconnectCancelsUpstream(t *testing.T) {
	up := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: first\n\n")
		http.NewResponseController(w).Flush()
		<-r.Context().Done() // a stream that would go on for ever
	})
	e := start(t, testKeys, []string{up.URL}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.URL+"/v1/chat/completions", strings.NewReader("{}"))
	resp, err := client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(resp.Body).ReadString('\n')
	if line != "data: first\n" {
		t.Fatalf("first line = %q; want the first event", line)
	}
	cancel()
	resp.Body.Close()
	rec := up.Requests()[0]
	select {
	case <-rec.Cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("upstream request not cancelled within 10 s of the client leaving")
	}
	// The stream's access line is still written: status 200 (the headers
	// went out) with the bytes actually sent.
	e.Logs.WaitFor(t, `"msg":"request"`, 10*time.Second)
	if !strings.Contains(e.Logs.String(), `"path":"/v1/chat/completions","status":200`) {
		t.Errorf("access line for the abandoned stream missing or wrong:\n%s", e.Logs.String())
	}
}

// TestClientLeavingMidStreamIsNoError: clients that drop a stream while
// the upstream is still sending (a user closing the tab) end their
// requests quietly. Whether the proxy learns of it by the connection's
// end or by a write that fails, no warning is logged (a write to a client
// that left is nobody's fault), the upstream request is cancelled, and
// each stream gets its access line.
func TestClientLeavingMidStreamIsNoError(t *testing.T) {
	const streams = 20
	// ended counts upstream requests that ended: the handler runs until
	// the proxy drops its connection (a write fails, or the context ends).
	ended := make(chan struct{}, streams)
	up := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) {
		defer func() { ended <- struct{}{} }()
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		for {
			if _, err := io.WriteString(w, openaiToken); err != nil {
				return
			}
			rc.Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(time.Millisecond):
			}
		}
	})
	e := start(t, testKeys, []string{up.URL}, nil)
	for range streams {
		c, err := net.Dial("tcp", strings.TrimPrefix(e.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: gpt-load\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
		br := bufio.NewReader(c)
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("reading the stream: %v", err)
			}
			if strings.Contains(l, "Hello") {
				break
			}
		}
		c.(*net.TCPConn).SetLinger(0) // gone at once: a reset, as a killed client
		c.Close()
	}
	for i := range streams {
		select {
		case <-ended:
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of %d upstream requests still open 10 s after their clients left", streams-i, streams)
		}
	}
	deadline := time.After(10 * time.Second)
	for {
		changed := e.Logs.Changed() // before the check, so no write is missed
		if strings.Count(e.Logs.String(), `"msg":"request"`) >= streams {
			break
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("%d access lines within 10 s; want %d", strings.Count(e.Logs.String(), `"msg":"request"`), streams)
		}
	}
	logs := e.Logs.String()
	if strings.Contains(logs, `"level":"warning"`) || strings.Contains(logs, `"level":"error"`) {
		t.Errorf("clients leaving mid-stream logged warnings:\n%s", logs)
	}
}

// TestHTTP2ToTLSUpstream checks the transport speaks HTTP/2 to TLS upstreams.
func TestHTTP2ToTLSUpstream(t *testing.T) {
	up := testupstream.NewUnstarted(t, nil)
	up.EnableHTTP2 = true
	up.StartTLS()
	e := start(t, testKeys, []string{up.URL}, nil)
	certs := up.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	e.Transport.TLSClientConfig = &tls.Config{RootCAs: certs}
	proto := make(chan string, 2)
	up.SetHandler(func(w http.ResponseWriter, r *http.Request) { proto <- r.Proto })
	for range 2 {
		resp, err := client().Get(e.URL + "/v1/models")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status = %d; want 200", resp.StatusCode)
		}
		if p := <-proto; p != "HTTP/2.0" {
			t.Errorf("upstream saw %s; want HTTP/2.0", p)
		}
	}
}

func TestNoKeyInLogs(t *testing.T) {
	up := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprintf(w, `{"error":{"message":"Incorrect API key provided: %s","code":"invalid_api_key"}}`, testupstream.KeyOf(r.Header))
	})
	e := start(t, testKeys, []string{up.URL, "http://" + testupstream.ClosedAddr(t)}, map[string]string{"AUTH_KEY": "the-auth-token-1234567"})
	for i := range 6 {
		req, _ := http.NewRequest(http.MethodPost, e.URL+"/v1/chat/completions?key=the-auth-token-1234567", strings.NewReader("{}"))
		if i%2 == 0 {
			req.URL.RawQuery = ""
			req.Header.Set("Authorization", "Bearer the-auth-token-1234567")
		}
		resp, err := client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	logs := e.Logs.String()
	if !strings.Contains(logs, `"msg":"request"`) {
		t.Fatalf("no access lines logged:\n%s", logs)
	}
	assertNoKeys(t, "logs", logs, append(testKeys, "the-auth-token-1234567")...)
	if strings.Contains(logs, "key=the") {
		t.Error("logs contain a query string")
	}
}
