package proxy_test

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gpt-load/gpt-load/internal/apierr/apierrtest"
	"github.com/gpt-load/gpt-load/internal/proxy"
	"github.com/gpt-load/gpt-load/internal/testupstream"
)

func TestForwardPathAndQuery(t *testing.T) {
	tests := []struct {
		name      string
		basePath  string
		reqPath   string
		wantPath  string
		wantQuery string
	}{
		{"root base", "", "/v1/chat/completions?a=1&b=2", "/v1/chat/completions", "a=1&b=2"},
		{"base with v1", "/v1", "/chat/completions", "/v1/chat/completions", ""},
		{"base with trailing slash", "/openai/", "/v1/models", "/openai/v1/models", ""},
		{"gateway base", "/v1/acct/gw/openai", "/chat/completions?x=%2F", "/v1/acct/gw/openai/chat/completions", "x=%2F"},
		{"key param removed", "", "/v1/models?key=client-token&limit=2", "/v1/models", "limit=2"},
		{"only key param", "", "/v1/models?key=client-token", "/v1/models", ""},
		{"key param in any case and encoding removed", "", "/v1/models?k%65y=a&KEY=b&Key=c&%6b%45%59=d&limit=2&x=%2F", "/v1/models", "limit=2&x=%2F"},
		{"escaped path kept", "", "/v1/files/a%2Fb", "/v1/files/a/b", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := testupstream.New(t, nil)
			e := start(t, testKeys, []string{up.URL + tt.basePath}, nil)
			resp, err := client().Get(e.URL + tt.reqPath)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status = %d; want 200", resp.StatusCode)
			}
			got := up.Requests()[0]
			if got.Path != tt.wantPath || got.RawQuery != tt.wantQuery {
				t.Errorf("upstream saw path %q query %q; want %q %q", got.Path, got.RawQuery, tt.wantPath, tt.wantQuery)
			}
			if strings.Contains(tt.reqPath, "%2F") && got.RawPath != "" && !strings.Contains(got.RawPath, "%2F") {
				t.Errorf("upstream raw path %q lost the escaping", got.RawPath)
			}
			if got.Host != strings.TrimPrefix(up.URL, "http://") {
				t.Errorf("upstream Host = %q; want %q", got.Host, strings.TrimPrefix(up.URL, "http://"))
			}
			if a := resp.Header.Get(proxy.HeaderAttempts); a != "1" {
				t.Errorf("%s = %q; want 1", proxy.HeaderAttempts, a)
			}
		})
	}
}

func TestRoundRobinOverKeysAndStartIndex(t *testing.T) {
	up := testupstream.New(t, nil)
	e := start(t, testKeys, []string{up.URL}, map[string]string{"START_INDEX": "1"})
	const n = 30
	for range n {
		resp, err := client().Get(e.URL + "/v1/models")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	reqs := up.Requests()
	if reqs[0].Key != testKeys[1] {
		t.Errorf("first key = %q; want testKeys[1] (START_INDEX=1)", reqs[0].Key)
	}
	count := map[string]int{}
	for i, r := range reqs {
		count[r.Key]++
		if want := testKeys[(i+1)%len(testKeys)]; r.Key != want {
			t.Errorf("request %d used key %q; want %q", i, r.Key, want)
		}
	}
	for _, k := range testKeys {
		if count[k] != n/len(testKeys) {
			t.Errorf("key %s used %d times; want %d", k, count[k], n/len(testKeys))
		}
	}
}

func TestMultiTargetAlternation(t *testing.T) {
	a := testupstream.New(t, nil)
	b := testupstream.New(t, nil)
	e := start(t, testKeys, []string{a.URL, b.URL}, nil)
	for range 10 {
		resp, err := client().Get(e.URL + "/v1/models")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if a.Count() != 5 || b.Count() != 5 {
		t.Errorf("targets got %d and %d requests; want 5 and 5", a.Count(), b.Count())
	}
}

func TestLargeBodyByteIdentical(t *testing.T) {
	up := testupstream.New(t, nil)
	e := start(t, testKeys, []string{up.URL}, nil)
	body := make([]byte, 20<<20)
	rand.Read(body)
	sum := sha256.Sum256(body)

	for _, chunked := range []bool{false, true} {
		var r io.Reader = bytes.NewReader(body)
		if chunked {
			r = io.MultiReader(r) // hides the length: sent chunked
		}
		req, _ := http.NewRequest(http.MethodPost, e.URL+"/v1/files", r)
		resp, err := client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("chunked=%v: status %d; want 200", chunked, resp.StatusCode)
		}
	}
	for i, got := range up.Requests() {
		if got.BodyLen != len(body) || got.BodySHA256 != hex.EncodeToString(sum[:]) {
			t.Errorf("request %d: upstream got %d bytes (sha %s); want %d bytes identical", i, got.BodyLen, got.BodySHA256[:8], len(body))
		}
	}
}

func TestHeadersBothWays(t *testing.T) {
	up := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Set-Cookie", "a=1")
		w.Header().Add("Set-Cookie", "b=2")
		w.Header().Set("Connection", "X-Upstream-Hop")
		w.Header().Set("X-Upstream-Hop", "secret-hop")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("Access-Control-Allow-Origin", "https://evil.example")
		w.Header().Set("X-Custom", "kept")
		w.WriteHeader(http.StatusCreated)
	})
	e := start(t, testKeys, []string{up.URL}, nil)
	req, _ := http.NewRequest(http.MethodPost, e.URL+"/v1/x", strings.NewReader("{}"))
	req.Header.Add("X-Multi", "one")
	req.Header.Add("X-Multi", "two")
	req.Header.Set("Connection", "X-Client-Hop")
	req.Header.Set("X-Client-Hop", "drop me")
	req.Header.Set("Te", "trailers, deflate")
	req.Header.Set("Proxy-Authorization", "Basic Zm9vOmJhcg==")
	req.Header.Set("X-Forwarded-For", "203.0.113.7")
	req.Header.Set("Anthropic-Version", "2023-06-01")
	resp, err := client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	got := up.Requests()[0].Header
	if v := got.Values("X-Multi"); len(v) != 2 || v[0] != "one" || v[1] != "two" {
		t.Errorf("upstream X-Multi = %q; want [one two]", v)
	}
	for _, h := range []string{"X-Client-Hop", "Proxy-Authorization"} {
		if v := got.Get(h); v != "" {
			t.Errorf("upstream got hop-by-hop %s = %q; want none", h, v)
		}
	}
	if v := got.Get("Te"); v != "" && v != "trailers" {
		t.Errorf("upstream Te = %q; want only trailers or none", v)
	}
	if v := got.Get("X-Forwarded-For"); v != "203.0.113.7, 127.0.0.1" {
		t.Errorf("upstream X-Forwarded-For = %q; want %q", v, "203.0.113.7, 127.0.0.1")
	}
	if v, want := got.Get("X-Forwarded-Host"), strings.TrimPrefix(e.URL, "http://"); v != want {
		t.Errorf("upstream X-Forwarded-Host = %q; want the client's Host %q", v, want)
	}
	if v := got.Values("X-Forwarded-Proto"); len(v) != 1 || v[0] != "http" {
		t.Errorf("upstream X-Forwarded-Proto = %q; want [http]", v)
	}
	if v := got.Get("Anthropic-Version"); v != "2023-06-01" {
		t.Errorf("upstream Anthropic-Version = %q; want passed through", v)
	}

	if resp.StatusCode != http.StatusCreated {
		t.Errorf("status = %d; want 201", resp.StatusCode)
	}
	if v := resp.Header.Values("Set-Cookie"); len(v) != 2 {
		t.Errorf("client Set-Cookie = %q; want both cookies", v)
	}
	if v := resp.Header.Get("X-Upstream-Hop"); v != "" {
		t.Errorf("client got hop-by-hop X-Upstream-Hop = %q", v)
	}
	if v := resp.Header.Get("Keep-Alive"); v != "" {
		t.Errorf("client got Keep-Alive = %q", v)
	}
	if v := resp.Header.Get("X-Custom"); v != "kept" {
		t.Errorf("client X-Custom = %q; want kept", v)
	}
	if v := resp.Header.Get("Access-Control-Allow-Origin"); v != "" {
		t.Errorf("upstream CORS header reached the client: %q", v)
	}
}

func TestClientCredentialsNeverForwarded(t *testing.T) {
	const token = "client-token-value-123"
	forms := []struct {
		name string
		set  func(r *http.Request)
	}{
		{"bearer", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token) }},
		{"x-api-key", func(r *http.Request) { r.Header.Set("x-api-key", token) }},
		{"x-goog-api-key", func(r *http.Request) { r.Header.Set("x-goog-api-key", token) }},
		{"api-key", func(r *http.Request) { r.Header.Set("api-key", token) }},
		{"query", func(r *http.Request) { r.URL.RawQuery = "key=" + token + "&keep=1" }},
	}
	styles := []struct {
		style, header, prefix string
	}{
		{"bearer", "Authorization", "Bearer "},
		{"azure", "Api-Key", ""},
		{"anthropic", "X-Api-Key", ""},
		{"gemini", "X-Goog-Api-Key", ""},
	}
	for _, s := range styles {
		for _, f := range forms {
			t.Run(s.style+"/"+f.name, func(t *testing.T) {
				up := testupstream.New(t, nil)
				e := start(t, testKeys, []string{up.URL}, map[string]string{"AUTH_KEY": token, "UPSTREAM_AUTH_STYLE": s.style})
				req, _ := http.NewRequest(http.MethodGet, e.URL+"/v1/models", nil)
				f.set(req)
				resp, err := client().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("status = %d; want 200", resp.StatusCode)
				}
				got := up.Requests()[0]
				for name, vals := range got.Header {
					for _, v := range vals {
						if strings.Contains(v, token) {
							t.Errorf("upstream header %s carries the client token", name)
						}
					}
				}
				if strings.Contains(got.RawQuery, token) {
					t.Errorf("upstream query %q carries the client token", got.RawQuery)
				}
				if v := got.Header.Get(s.header); v != s.prefix+testKeys[0] {
					t.Errorf("upstream %s = %q; want the key in %s style", s.header, v, s.style)
				}
				// Exactly one credential header reaches the upstream.
				n := 0
				for _, h := range []string{"Authorization", "Api-Key", "X-Api-Key", "X-Goog-Api-Key"} {
					if got.Header.Get(h) != "" {
						n++
					}
				}
				if n != 1 {
					t.Errorf("upstream got %d credential headers; want 1", n)
				}
			})
		}
	}
}

func TestUnauthorizedShape(t *testing.T) {
	up := testupstream.New(t, nil)
	e := start(t, testKeys, []string{up.URL}, map[string]string{"AUTH_KEY": "right-token"})
	req, _ := http.NewRequest(http.MethodPost, e.URL+"/v1/chat/completions", strings.NewReader("{}"))
	req.Header.Set("Authorization", "Bearer wrong-token")
	resp, err := client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("status = %d; want 401", resp.StatusCode)
	}
	assertErrorShape(t, resp, "invalid_auth")
	if up.Count() != 0 {
		t.Errorf("upstream got %d requests; want 0", up.Count())
	}
}

// assertErrorShape checks OpenAI's error JSON with our type and code. The
// callers check the status themselves.
func assertErrorShape(t *testing.T, resp *http.Response, code string) {
	t.Helper()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the error body: %v", err)
	}
	apierrtest.Check(t, resp, body, resp.StatusCode, code)
}

func TestCompressedStaysCompressed(t *testing.T) {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(`{"ok":true}`))
	zw.Close()
	up := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Set("Content-Type", "application/json")
		w.Write(gz.Bytes())
	})
	e := start(t, testKeys, []string{up.URL}, nil)
	req, _ := http.NewRequest(http.MethodGet, e.URL+"/v1/models", nil)
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(got, gz.Bytes()) || resp.Header.Get("Content-Encoding") != "gzip" {
		t.Errorf("client got %d bytes with Content-Encoding %q; want the upstream's %d gzip bytes", len(got), resp.Header.Get("Content-Encoding"), gz.Len())
	}
	if ae := up.Requests()[0].Header.Get("Accept-Encoding"); ae != "gzip" {
		t.Errorf("upstream Accept-Encoding = %q; want the client's gzip", ae)
	}
}

func TestRequestTooLarge(t *testing.T) {
	up := testupstream.New(t, nil)
	e := start(t, testKeys, []string{up.URL}, map[string]string{"MAX_REQUEST_BODY_SIZE": "1"})
	big := bytes.Repeat([]byte("a"), 1<<20+1)
	for _, chunked := range []bool{false, true} {
		var r io.Reader = bytes.NewReader(big)
		if chunked {
			r = io.MultiReader(r)
		}
		resp, err := client().Post(e.URL+"/v1/files", "application/octet-stream", r)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("chunked=%v: status = %d; want 413", chunked, resp.StatusCode)
		}
		assertErrorShape(t, resp, "request_too_large")
		resp.Body.Close()
	}
	// Exactly the limit passes.
	resp, err := client().Post(e.URL+"/v1/files", "application/octet-stream", bytes.NewReader(big[:1<<20]))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("body of exactly the limit: status %d; want 200", resp.StatusCode)
	}
	if up.Count() != 1 {
		t.Errorf("upstream got %d requests; want 1", up.Count())
	}
}

func TestConcurrencyLimit(t *testing.T) {
	release := make(chan struct{})
	up := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	e := start(t, testKeys, []string{up.URL}, map[string]string{"MAX_CONCURRENT_REQUESTS": "2"})
	done := make(chan error, 2)
	for range 2 {
		go func() {
			resp, err := client().Get(e.URL + "/v1/slow")
			if err == nil {
				resp.Body.Close()
			}
			done <- err
		}()
	}
	up.WaitFor(t, 2, 5*time.Second)
	resp, err := client().Get(e.URL + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "1" {
		t.Errorf("status %d Retry-After %q; want 429 and 1", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	assertErrorShape(t, resp, "too_many_concurrent_requests")
	resp.Body.Close()
	close(release)
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	// Capacity is back once they finish.
	resp, err = client().Get(e.URL + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("after release: status %d; want 200", resp.StatusCode)
	}
}

func TestUpstreamDownAndTimeout(t *testing.T) {
	t.Run("refused", func(t *testing.T) {
		e := start(t, testKeys, []string{"http://" + testupstream.ClosedAddr(t)}, nil)
		resp, err := client().Get(e.URL + "/v1/models")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusBadGateway {
			t.Errorf("status = %d; want 502", resp.StatusCode)
		}
		assertErrorShape(t, resp, "upstream_unavailable")
		if resp.Header.Get(proxy.HeaderAttempts) == "" {
			t.Errorf("no %s header on a proxy error", proxy.HeaderAttempts)
		}
	})
	t.Run("no headers in time", func(t *testing.T) {
		up := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
		e := start(t, testKeys, []string{up.URL}, map[string]string{"RESPONSE_TIMEOUT": "1"})
		resp, err := client().Get(e.URL + "/v1/models")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusGatewayTimeout {
			t.Errorf("status = %d; want 504", resp.StatusCode)
		}
		assertErrorShape(t, resp, "upstream_timeout")
	})
}
