package proxy_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gpt-load/gpt-load/internal/testupstream"
)

// serveLikeMain serves e's handler on a real http.Server with the timeouts
// cmd/gpt-load sets from the configuration, and returns its URL.
func serveLikeMain(t *testing.T, e *env) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(e.Handler)
	srv.Config.ReadHeaderTimeout = 30 * time.Second
	srv.Config.ReadTimeout = e.Config.ServerReadTimeout
	srv.Config.WriteTimeout = e.Config.ServerWriteTimeout
	srv.Config.IdleTimeout = e.Config.ServerIdleTimeout
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestStreamOutlivesWriteTimeout: a stream that keeps moving runs past
// SERVER_WRITE_TIMEOUT, while a plain response that takes longer is still
// cut by it (which shows the timeout is in force).
func TestStreamOutlivesWriteTimeout(t *testing.T) {
	const events = 25 // 100 ms apart: 2.5 s, past the 1 s write timeout
	up := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		if r.URL.Path == "/v1/files" {
			// Not a stream: the same slow pace as an unknown-length body.
			w.Header().Set("Content-Type", "application/octet-stream")
			for range events {
				io.WriteString(w, "x")
				rc.Flush()
				time.Sleep(100 * time.Millisecond)
			}
			return
		}
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

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/v1/files", nil)
	resp, err := client().Do(req)
	if err != nil {
		return // cut before the headers: also a cut
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil && len(b) == events {
		t.Errorf("a plain %d-byte response over 2.5 s was not cut by SERVER_WRITE_TIMEOUT=1", len(b))
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
