package server_test

import (
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// maxStatusPage is the weight budget of the status page (issue 12).
const maxStatusPage = 40 << 10

func TestStatusPage(t *testing.T) {
	s := newServer(t, options{env: map[string]string{"AUTH_KEY": testAuthKey}})
	// No token: the page is public; the JSON it reads is not.
	resp, body := s.send(t, mustRequest(t, http.MethodGet, s.URL+"/status", ""))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /status without a token = %d %s; want 200", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type = %q; want text/html; charset=utf-8", ct)
	}
	if len(body) > maxStatusPage {
		t.Errorf("status page is %d bytes; want at most %d", len(body), maxStatusPage)
	}
	t.Logf("status page: %d bytes", len(body))
	page := string(body)

	t.Run("self-contained", func(t *testing.T) {
		// Nothing is loaded from anywhere: no src= or href= but the
		// empty data: icon, no @import, no url(.
		for _, m := range regexp.MustCompile(`(?i)\b(src|href)\s*=\s*"([^"]*)"`).FindAllStringSubmatch(page, -1) {
			if m[2] != "data:," {
				t.Errorf("status page loads %s=%q; want nothing external", m[1], m[2])
			}
		}
		// The SVG namespace is a name, not a resource.
		bare := strings.ReplaceAll(page, "'http://www.w3.org/2000/svg'", "")
		for _, bad := range []string{"@import", "url(", "http://", "https://", "//cdn"} {
			if strings.Contains(bare, bad) {
				t.Errorf("status page contains %q; want no external resource", bad)
			}
		}
		if strings.Contains(page, "{{") {
			t.Errorf("status page has an unfilled placeholder")
		}
	})

	t.Run("csp allows exactly the inline style and script", func(t *testing.T) {
		csp := resp.Header.Get("Content-Security-Policy")
		script := regexp.MustCompile(`(?s)<script>(.*?)</script>`).FindAllStringSubmatch(page, -1)
		style := regexp.MustCompile(`(?s)<style>(.*?)</style>`).FindAllStringSubmatch(page, -1)
		if len(script) != 1 || len(style) != 1 {
			t.Fatalf("page has %d scripts and %d styles; want one of each", len(script), len(style))
		}
		hash := func(s string) string {
			sum := sha256.Sum256([]byte(s))
			return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
		}
		directives := map[string]string{}
		for d := range strings.SplitSeq(csp, ";") {
			name, value, _ := strings.Cut(strings.TrimSpace(d), " ")
			directives[name] = value
		}
		want := map[string]string{
			"default-src":     "'none'",
			"script-src":      hash(script[0][1]),
			"style-src":       hash(style[0][1]),
			"connect-src":     "'self'",
			"img-src":         "data:",
			"base-uri":        "'none'",
			"form-action":     "'none'",
			"frame-ancestors": "'none'",
		}
		for name, v := range want {
			if directives[name] != v {
				t.Errorf("CSP %s = %q; want %q (policy %q)", name, directives[name], v, csp)
			}
		}
		if len(directives) != len(want) {
			t.Errorf("CSP = %q; want exactly %d directives", csp, len(want))
		}
		if m := regexp.MustCompile(`<[a-z][^<>]*\s(style|on[a-z]+)\s*=`).FindString(page); m != "" {
			t.Errorf("page has %q: inline style= and on*= attributes are blocked by the policy", m)
		}
		for h, want := range map[string]string{"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"} {
			if got := resp.Header.Get(h); got != want {
				t.Errorf("%s = %q; want %q", h, got, want)
			}
		}
	})

	t.Run("nothing secret", func(t *testing.T) {
		for _, secret := range append([]string{testAuthKey}, s.Raw...) {
			if strings.Contains(page, secret) {
				t.Errorf("status page contains a secret")
			}
		}
		checkNoRawKeys(t, "GET /status", page, s.Raw)
	})

	t.Run("conditional and HEAD", func(t *testing.T) {
		req := mustRequest(t, http.MethodGet, s.URL+"/status", "")
		req.Header.Set("If-None-Match", resp.Header.Get("ETag"))
		if r, _ := s.send(t, req); r.StatusCode != http.StatusNotModified {
			t.Errorf("GET /status with its ETag = %d; want 304", r.StatusCode)
		}
		r, b := s.send(t, mustRequest(t, http.MethodHead, s.URL+"/status", ""))
		if r.StatusCode != http.StatusOK || len(b) != 0 {
			t.Errorf("HEAD /status = %d with %d bytes; want 200 and none", r.StatusCode, len(b))
		}
	})

	if n := s.Up.Count(); n != 0 {
		t.Errorf("upstream got %d requests; want 0 (/status is answered by gpt-load)", n)
	}
}
