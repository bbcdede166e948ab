package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// serve runs the floor in front of upstream on a loopback listener, as
// main does, and returns its base URL.
func serve(t *testing.T, upstream string) string {
	t.Helper()
	target, err := parseUpstream(upstream)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(target, "sk-floor")
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

func TestForwardsWithItsKey(t *testing.T) {
	type seen struct{ auth, path, query, body string }
	got := make(chan seen, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{r.Header.Get("Authorization"), r.URL.Path, r.URL.RawQuery, string(b)}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"ok":true}`)
	}))
	defer up.Close()
	base := serve(t, up.URL)

	req, _ := http.NewRequest("POST", base+"/v1/chat/completions?x=1", strings.NewReader(`{"model":"m"}`))
	req.Header.Set("Authorization", "Bearer client-secret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != `{"ok":true}` {
		t.Fatalf("client got %d %q", resp.StatusCode, body)
	}
	s := <-got
	want := seen{"Bearer sk-floor", "/v1/chat/completions", "x=1", `{"model":"m"}`}
	if s != want {
		t.Fatalf("upstream saw %+v, want %+v", s, want)
	}
}

// An event stream passes event by event: the upstream sends its second
// event only once the client has read the first, so a proxy that held
// the stream back would leave both waiting until the deadline.
func TestStreamsEventByEvent(t *testing.T) {
	firstRead := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-firstRead:
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, "data: [DONE]\n\n")
	}))
	defer up.Close()
	base := serve(t, up.URL)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", base+"/v1/chat/completions", strings.NewReader(`{"stream":true}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	if err != nil || line != "data: one\n" {
		t.Fatalf("first event: %q, %v", line, err)
	}
	close(firstRead)
	rest, err := io.ReadAll(br)
	if err != nil || string(rest) != "\ndata: [DONE]\n\n" {
		t.Fatalf("rest: %q, %v", rest, err)
	}
}

func TestParseUpstream(t *testing.T) {
	for _, bad := range []string{"", "127.0.0.1:9000", "https://api.openai.com", "http://", "ftp://x"} {
		if _, err := parseUpstream(bad); err == nil || !strings.Contains(err.Error(), "-upstream") {
			t.Errorf("parseUpstream(%q) = %v, want an error naming -upstream", bad, err)
		}
	}
	if u, err := parseUpstream("http://127.0.0.1:9000"); err != nil || u.Host != "127.0.0.1:9000" {
		t.Errorf("parseUpstream(http://127.0.0.1:9000) = %v, %v", u, err)
	}
}
