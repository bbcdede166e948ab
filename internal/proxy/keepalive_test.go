package proxy_test

import (
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gpt-load/gpt-load/internal/testupstream"
)

// serveLikeMain serves e's app on the http.Server cmd/gpt-load uses, with
// the timeouts of the configuration, and returns its URL.
func serveLikeMain(t *testing.T, e *env) string {
	t.Helper()
	srv := e.App.HTTPServer(log.New(io.Discard, "", 0))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

// TestStreamOutlivesWriteTimeout: a stream that keeps moving runs well past
// SERVER_WRITE_TIMEOUT and arrives whole (docs/api.md, "Streaming").
func TestStreamOutlivesWriteTimeout(t *testing.T) {
	const events = 25 // 100 ms apart: 2.5 s, past the 1 s write timeout
	up := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) {
		writeEvents(w, openaiRole)
		for range events {
			time.Sleep(100 * time.Millisecond) // the pace under test
			writeEvents(w, openaiToken)
		}
		writeEvents(w, openaiDone)
	})
	e := start(t, testKeys, []string{up.URL}, map[string]string{"SERVER_WRITE_TIMEOUT": "1"})
	url := serveLikeMain(t, e)
	resp, body := post(t, url+"/v1/chat/completions", `{"stream":true}`)
	if want := openaiRole + strings.Repeat(openaiToken, events) + openaiDone; resp.StatusCode != 200 || body != want {
		t.Errorf("stream: got %d, %d bytes; want 200 and all %d bytes", resp.StatusCode, len(body), len(want))
	}
}

// TestKeepalive: while the upstream is silent after the commit, comment
// lines go out, only between events; the upstream's bytes pass unchanged.
func TestKeepalive(t *testing.T) {
	sawKeepalive := make(chan struct{})
	up := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) {
		writeEvents(w, openaiRole, openaiToken)
		select {
		case <-sawKeepalive:
		case <-time.After(5 * time.Second):
			t.Error("no keepalive reached the client during a silence")
		}
		writeEvents(w, openaiDone)
	})
	e := start(t, testKeys, []string{up.URL}, map[string]string{"STREAM_KEEPALIVE": "1"})
	resp, err := client().Post(e.URL+"/v1/chat/completions", "application/json", strings.NewReader(`{"stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	head := make([]byte, len(openaiRole+openaiToken)+len(": keepalive\n\n"))
	if _, err := io.ReadFull(resp.Body, head); err != nil {
		t.Fatal(err)
	}
	close(sawKeepalive)
	rest, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	got := string(head) + string(rest)
	if want := openaiRole + openaiToken + ": keepalive\n\n"; string(head) != want {
		t.Errorf("client got %q first; want the events then a keepalive", head)
	}
	if without := strings.ReplaceAll(got, ": keepalive\n\n", ""); without != goodStream {
		t.Errorf("without keepalives the client got %q; want the upstream's bytes %q", without, goodStream)
	}
}

// TestKeepaliveOnlyBetweenEvents: a silence in the middle of an event, or
// on a response that is not an event stream, gets no comment.
func TestKeepaliveOnlyBetweenEvents(t *testing.T) {
	for _, tc := range []struct{ name, ctype, before, after string }{
		{"inside an event", "text/event-stream", openaiRole + openaiToken + openaiToken[:40], openaiToken[40:] + openaiDone},
		{"not an event stream", "application/x-ndjson", `{"a":1}` + "\n", `{"b":2}` + "\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tc.ctype)
				io.WriteString(w, tc.before)
				http.NewResponseController(w).Flush()
				time.Sleep(2200 * time.Millisecond) // the silence under test: two keepalive intervals
				io.WriteString(w, tc.after)
			})
			e := start(t, testKeys, []string{up.URL}, map[string]string{"STREAM_KEEPALIVE": "1"})
			if _, body := post(t, e.URL+"/v1/chat/completions", `{"stream":true}`); body != tc.before+tc.after {
				t.Errorf("client got %q; want the upstream's bytes alone", body)
			}
		})
	}
}
