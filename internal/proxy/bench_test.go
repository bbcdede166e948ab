package proxy_test

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/gpt-load/gpt-load/internal/testupstream"
)

// chatReply is about the size of a short non-streaming chat completion.
var chatReply = `{"id":"chatcmpl-0123456789","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini",` +
	`"choices":[{"index":0,"message":{"role":"assistant","content":"` + strings.Repeat("hello ", 60) + `"},` +
	`"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":60,"total_tokens":72}}`

// BenchmarkProxy sends one small chat request through the whole server
// (recovery, access log, CORS, auth, proxy) to an in-process upstream, and
// the same request straight to that upstream. Both run in this process, so
// time and allocs/op include the client and the upstream; "proxied" minus
// "direct" is what the proxy adds. Access logging is on at info level, formatted as
// JSON and written to io.Discard, so formatting is paid as in production.
func BenchmarkProxy(b *testing.B) {
	up := testupstream.New(b, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, chatReply)
	})
	body := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`
	run := func(b *testing.B, url string) {
		c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer bench-token")
				req.Header.Set("Content-Type", "application/json")
				resp, err := c.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
		})
	}
	b.Run("direct", func(b *testing.B) { run(b, up.URL+"/v1/chat/completions") })
	b.Run("proxied", func(b *testing.B) {
		e := startBench(b, []string{up.URL}, map[string]string{"AUTH_KEY": "bench-token", "LOG_LEVEL": "info"})
		run(b, e+"/v1/chat/completions")
	})
}

// BenchmarkLargeAnswer: one 8 MiB answer at a time through the proxy
// (SetBytes: MB/s of answer), for what the copy buffer's and h1client's
// read buffer's size cost a large body (docs/performance.md, "A stream's
// memory").
func BenchmarkLargeAnswer(b *testing.B) {
	const size = 8 << 20
	answer := bytes.Repeat([]byte(`{"object":"embedding","index":0,"embedding":[0.0023064255,-0.009327292]},`), size/73+1)[:size]
	up := testupstream.New(b, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(answer)))
		w.Write(answer)
	})
	e := startBench(b, []string{up.URL}, map[string]string{"AUTH_KEY": "bench-token", "LOG_LEVEL": "warn"})
	c := &http.Client{}
	body := `{"model":"text-embedding-3-small","input":"hi"}`
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		req, _ := http.NewRequest(http.MethodPost, e+"/v1/embeddings", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer bench-token")
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || n != size {
			b.Fatalf("status %d, %d bytes; want 200, %d", resp.StatusCode, n, size)
		}
	}
}
