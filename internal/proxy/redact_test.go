package proxy

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/gpt-load/gpt-load/internal/keymanager"
	"github.com/gpt-load/gpt-load/internal/secret"
)

// openAIHeaders are the headers of an OpenAI chat completion as it reaches
// the proxy (values shortened only where they identify an account),
// Cloudflare's cookies included: what a 2xx pays the header search on.
func openAIHeaders() http.Header {
	return http.Header{
		"Date":                           {"Sat, 05 Dec 2026 11:16:42 GMT"},
		"Content-Type":                   {"application/json"},
		"Access-Control-Expose-Headers":  {"X-Request-ID"},
		"Openai-Organization":            {"user-abcdefghijklmnopqrstuvwx"},
		"Openai-Processing-Ms":           {"412"},
		"Openai-Version":                 {"2020-10-01"},
		"X-Ratelimit-Limit-Requests":     {"10000"},
		"X-Ratelimit-Limit-Tokens":       {"30000000"},
		"X-Ratelimit-Remaining-Requests": {"9999"},
		"X-Ratelimit-Remaining-Tokens":   {"29999975"},
		"X-Ratelimit-Reset-Requests":     {"6ms"},
		"X-Ratelimit-Reset-Tokens":       {"0s"},
		"X-Request-Id":                   {"req_0123456789abcdef0123456789abcdef"},
		"Strict-Transport-Security":      {"max-age=31536000; includeSubDomains; preload"},
		"Cf-Cache-Status":                {"DYNAMIC"},
		"Set-Cookie": {
			"__cf_bm=Zx8kT0d3qQ5nP1YfLwB2mVcH7sJ4rA6eG9uK3oI.tN0-1733397402-1.0.1.1-aB3dE5fG7hI9jK1lM3nO5pQ7rS9tU1vW3xY5zA7bC9dE1fG3hI5jK7lM9nO1pQ3rS5tU7vW9xY1zA3bC5dE7f; path=/; expires=Sat, 05-Dec-26 11:46:42 GMT; domain=.api.openai.com; HttpOnly; Secure; SameSite=None",
			"_cfuvid=Qw3eR5tY7uI9oP1aS3dF5gH7jK9lZ1xC3vB5nM7q-1733397402123-0.0.1.1-604800000; path=/; domain=.api.openai.com; HttpOnly; Secure; SameSite=None",
		},
		"X-Content-Type-Options": {"nosniff"},
		"Server":                 {"cloudflare"},
		"Cf-Ray":                 {"8ed3c0a1b2c3d4e5-AMS"},
		"Alt-Svc":                {`h3=":443"; ma=86400`},
	}
}

func TestMaskHeader(t *testing.T) {
	key := "sk-proj-" + fmt.Sprintf("%048d", 7)
	set := secret.NewSet([]string{key, "AIzaSyA1234567890abcdefghijklmnopqrstu"})
	h := openAIHeaders()
	h.Set("Location", "/v1beta/models?key="+key+"&alt=sse")
	h.Set("X-Api-Key", key)
	h.Set("X-Echo-"+key, "1") // a name as some servers send it, not canonicalized
	h["X-Echo-"+key] = []string{"1"}
	maskHeader(set, h)
	if got, want := h.Get("Location"), "/v1beta/models?key="+secret.Mask(key)+"&alt=sse"; got != want {
		t.Errorf("Location = %q; want %q", got, want)
	}
	if got := h.Get("X-Api-Key"); got != secret.Mask(key) {
		t.Errorf("X-Api-Key = %q; want %q", got, secret.Mask(key))
	}
	if _, ok := h["X-Echo-"+key]; ok {
		t.Errorf("a header named with a key was kept")
	}
	clean := openAIHeaders()
	h = openAIHeaders()
	if n := testing.AllocsPerRun(100, func() { maskHeader(set, h) }); n != 0 {
		t.Errorf("maskHeader allocations on ordinary headers = %v; want 0", n)
	}
	for name, vs := range clean {
		if fmt.Sprint(h[name]) != fmt.Sprint(vs) {
			t.Errorf("%s changed to %q; want %q", name, h[name], vs)
		}
	}
}

// BenchmarkMaskHeader is what every answer, a 2xx included, pays to have
// its headers searched, against a pool of a million keys: OpenAI's header
// set (the long Cloudflare cookies are the only values searched), and
// BenchmarkProxy's, where only lengths are compared.
func BenchmarkMaskHeader(b *testing.B) {
	keys := make([]string, 1000000)
	for i := range keys {
		keys[i] = fmt.Sprintf("sk-proj-%048d", i)
	}
	set := secret.NewSet(keys)
	for _, tc := range []struct {
		name string
		h    http.Header
	}{
		{"openai", openAIHeaders()},
		// BenchmarkProxy's upstream: every value shorter than a key.
		{"plain", http.Header{"Content-Type": {"application/json"}, "Content-Length": {"580"},
			"Date": {"Sat, 05 Dec 2026 11:16:42 GMT"}}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				maskHeader(set, tc.h)
			}
		})
	}
}

// BenchmarkReadErrorBody is the whole cost of masking an error body at a
// million keys, as the attempt loop pays it: read, decode (gzip), search,
// mask. The body quotes the key sent, as OpenAI's 401 does; "64KiB" puts
// that answer at the end of 64 KiB of text made of key bytes (every byte
// could end a key: the search's worst case). The upstream's bytes come
// from memory, so only the proxy's own work is measured.
func BenchmarkReadErrorBody(b *testing.B) {
	keys := make([]string, 1000000)
	for i := range keys {
		keys[i] = fmt.Sprintf("sk-proj-%048d", i)
	}
	p := &Proxy{redact: newRedactor(keymanager.New(keys, keymanager.Options{}))}
	typical := []byte(`{"error":{"message":"Incorrect API key provided: ` + keys[len(keys)/2] + `. You can find your API key at https://platform.openai.com/account/api-keys.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}`)
	large := append(bytes.Repeat([]byte("abcdefghij0123456789"), (64<<10-len(typical))/20), typical...)
	gz := func(b []byte) []byte {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Write(b)
		zw.Close()
		return buf.Bytes()
	}
	for _, tc := range []struct {
		name, encoding string
		body           []byte
	}{
		{"typical", "", typical},
		{"typical-gzip", "gzip", gz(typical)},
		{"64KiB", "", large},
		{"64KiB-gzip", "gzip", gz(large)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				resp := &http.Response{StatusCode: http.StatusUnauthorized, Header: http.Header{},
					Body: io.NopCloser(bytes.NewReader(tc.body)), ContentLength: int64(len(tc.body))}
				if tc.encoding != "" {
					resp.Header.Set("Content-Encoding", tc.encoding)
				}
				p.readErrorBody(resp)
				io.Copy(io.Discard, resp.Body)
			}
		})
	}
}

func TestDecoded(t *testing.T) {
	text := strings.Repeat("The server had an error while processing your request. ", 200)
	var gz, zl, raw bytes.Buffer
	zw := gzip.NewWriter(&gz)
	io.WriteString(zw, text)
	zw.Close()
	lw := zlib.NewWriter(&zl)
	io.WriteString(lw, text)
	lw.Close()
	fw, _ := flate.NewWriter(&raw, flate.BestSpeed)
	io.WriteString(fw, text)
	fw.Close()
	corrupt := bytes.Clone(gz.Bytes())
	for i := len(corrupt) / 2; i < len(corrupt); i++ {
		corrupt[i] ^= 0x5a
	}
	for _, tc := range []struct {
		name     string
		enc      contentEncoding
		body     []byte
		want     decodeState
		wantText bool // plain is text, whole
	}{
		{"identity", encIdentity, []byte(text), decodedWhole, true},
		{"gzip", encGzip, gz.Bytes(), decodedWhole, true},
		{"gzip truncated", encGzip, gz.Bytes()[:gz.Len()/2], decodedWhole, false},
		{"gzip corrupt", encGzip, corrupt, broken, false},
		{"not gzip", encGzip, []byte(text), undecodable, false},
		{"deflate zlib", encDeflate, zl.Bytes(), decodedWhole, true},
		{"deflate raw", encDeflate, raw.Bytes(), decodedWhole, true},
		{"br", encOther, []byte(text), undecodable, false},
	} {
		plain, state := decoded(tc.enc, tc.body)
		if state != tc.want {
			t.Errorf("decoded(%s) state = %d; want %d", tc.name, state, tc.want)
		}
		if tc.wantText && string(plain) != text {
			t.Errorf("decoded(%s) = %d bytes; want the %d bytes of text", tc.name, len(plain), len(text))
		}
		if state == undecodable && plain != nil {
			t.Errorf("decoded(%s) = %d bytes; want nil when undecodable", tc.name, len(plain))
		}
	}
}

// TestLargePoolSetBuiltInBackground: a large pool's key set is built
// while the server starts, and an answer that needs it first waits for
// it: the very first error body is masked like any other.
func TestLargePoolSetBuiltInBackground(t *testing.T) {
	n := asyncSetKeys + 1
	raw := make([]string, n)
	for i := range raw {
		raw[i] = fmt.Sprintf("sk-proj-bg-%032d", i)
	}
	r := newRedactor(keymanager.New(raw, keymanager.Options{}))
	body := `{"error":{"message":"Incorrect API key provided: ` + raw[n-1] + `."}}`
	if got := string(r.set().Redact([]byte(body))); strings.Contains(got, raw[n-1]) {
		t.Errorf("first answer after start: %s; want the key masked", got)
	}
}
