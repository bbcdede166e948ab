package proxy_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/gpt-load/gpt-load/internal/testupstream"
)

// BenchmarkStream sends a short event stream (role chunk, one token, the
// end) through the whole server and straight to the same in-process
// upstream. "proxied" minus "direct" is what a stream costs the proxy,
// commit window included; both include the client and the upstream.
func BenchmarkStream(b *testing.B) {
	stream := openaiRole + openaiToken + openaiDone
	up := testupstream.New(b, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		for _, part := range []string{openaiRole, openaiToken, openaiDone} {
			io.WriteString(w, part)
			rc.Flush()
		}
	})
	run := func(b *testing.B, url string) {
		c := client()
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				resp, err := c.Post(url, "application/json", strings.NewReader(`{"stream":true}`))
				if err != nil {
					b.Error(err)
					return
				}
				n, _ := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if n != int64(len(stream)) {
					b.Errorf("read %d bytes; want %d", n, len(stream))
					return
				}
			}
		})
	}
	b.Run("direct", func(b *testing.B) { run(b, up.URL+"/v1/chat/completions") })
	b.Run("proxied", func(b *testing.B) {
		run(b, startBench(b, []string{up.URL}, map[string]string{"LOG_ENABLE_REQUEST": "false"})+"/v1/chat/completions")
	})
}
