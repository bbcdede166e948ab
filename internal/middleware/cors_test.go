package middleware_test

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/gpt-load/gpt-load/internal/middleware"
)

// corsServer serves a next handler behind CORS configured from env, and
// counts the calls that reach next.
func corsServer(t *testing.T, env map[string]string) (url string, calls *atomic.Int64) {
	t.Helper()
	calls = new(atomic.Int64)
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("X-Next", "1")
		w.Write([]byte("next"))
	})
	srv := newServer(t, middleware.CORS(loadConfig(t, env).CORS)(next))
	return srv.URL, calls
}

// corsHeaders returns the names of the Access-Control-* headers in h.
func corsHeaders(h http.Header) []string {
	var out []string
	for name := range h {
		if strings.HasPrefix(name, "Access-Control-") {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

func hasVary(h http.Header, name string) bool {
	for _, v := range h.Values("Vary") {
		for item := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(item), name) {
				return true
			}
		}
	}
	return false
}

func preflight(t *testing.T, url, origin, reqHeaders string) *http.Request {
	t.Helper()
	h := map[string]string{"Origin": origin, "Access-Control-Request-Method": "POST"}
	if reqHeaders != "" {
		h["Access-Control-Request-Headers"] = reqHeaders
	}
	return newRequest(t, http.MethodOptions, url+"/v1/chat/completions", h)
}

func TestCORSPreflightAllowed(t *testing.T) {
	const origin = "https://app.example.com"
	tests := []struct {
		name        string
		env         map[string]string
		reqHeaders  string
		wantOrigin  string
		wantHeaders string
		wantCreds   string
	}{
		{
			name:        "any origin echoes requested headers",
			env:         map[string]string{"AUTH_KEY": "t"}, // ALLOWED_ORIGINS unset: *
			reqHeaders:  "content-type, authorization, x-stainless-os",
			wantOrigin:  "*",
			wantHeaders: "content-type, authorization, x-stainless-os",
		},
		{
			name:        "listed origin",
			env:         map[string]string{"ALLOWED_ORIGINS": "https://other.example, " + origin},
			reqHeaders:  "content-type",
			wantOrigin:  origin,
			wantHeaders: "content-type",
		},
		{
			name:        "listed headers are sent as configured",
			env:         map[string]string{"ALLOWED_ORIGINS": origin, "ALLOWED_HEADERS": "Content-Type,Authorization"},
			reqHeaders:  "content-type",
			wantOrigin:  origin,
			wantHeaders: "Content-Type, Authorization",
		},
		{
			name:        "credentials echo the origin",
			env:         map[string]string{"ALLOWED_ORIGINS": origin, "ALLOW_CREDENTIALS": "true"},
			reqHeaders:  "authorization",
			wantOrigin:  origin,
			wantHeaders: "authorization",
			wantCreds:   "true",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url, calls := corsServer(t, tt.env)
			resp, body := do(t, preflight(t, url, origin, tt.reqHeaders))
			if resp.StatusCode != http.StatusNoContent {
				t.Errorf("preflight status = %d; want 204", resp.StatusCode)
			}
			if len(body) != 0 {
				t.Errorf("preflight body = %q; want empty", body)
			}
			if got := calls.Load(); got != 0 {
				t.Errorf("next called %d times on a preflight; want 0", got)
			}
			h := resp.Header
			if got := h.Get("Access-Control-Allow-Origin"); got != tt.wantOrigin {
				t.Errorf("Access-Control-Allow-Origin = %q; want %q", got, tt.wantOrigin)
			}
			if got, want := h.Get("Access-Control-Allow-Methods"), "GET, POST, PUT, DELETE, OPTIONS"; got != want {
				t.Errorf("Access-Control-Allow-Methods = %q; want %q", got, want)
			}
			if got := h.Get("Access-Control-Allow-Headers"); got != tt.wantHeaders {
				t.Errorf("Access-Control-Allow-Headers = %q; want %q", got, tt.wantHeaders)
			}
			if n, err := strconv.Atoi(h.Get("Access-Control-Max-Age")); err != nil || n <= 0 {
				t.Errorf("Access-Control-Max-Age = %q; want a positive number of seconds", h.Get("Access-Control-Max-Age"))
			}
			if !hasVary(h, "Origin") {
				t.Errorf("Vary = %q; want it to include Origin", h.Values("Vary"))
			}
			if got := h.Get("Access-Control-Allow-Credentials"); got != tt.wantCreds {
				t.Errorf("Access-Control-Allow-Credentials = %q; want %q", got, tt.wantCreds)
			}
		})
	}
}

func TestCORSSimpleRequest(t *testing.T) {
	const origin = "https://app.example.com"
	tests := []struct {
		name       string
		env        map[string]string
		origin     string
		wantOrigin string // "" means no CORS headers at all
		wantCreds  string
	}{
		{"any origin", map[string]string{"AUTH_KEY": "t"}, origin, "*", ""},
		{"any origin, explicit, without AUTH_KEY", map[string]string{"ALLOWED_ORIGINS": "*"}, origin, "*", ""},
		{"no AUTH_KEY, ALLOWED_ORIGINS unset", nil, "https://evil.example", "", ""},
		{"listed origin", map[string]string{"ALLOWED_ORIGINS": origin}, origin, origin, ""},
		{"listed origin in another case", map[string]string{"ALLOWED_ORIGINS": origin}, "https://APP.example.com", "https://APP.example.com", ""},
		{"credentials", map[string]string{"ALLOWED_ORIGINS": origin, "ALLOW_CREDENTIALS": "yes"}, origin, origin, "true"},
		{"disallowed origin", map[string]string{"ALLOWED_ORIGINS": origin}, "https://evil.example", "", ""},
		{"no origin", map[string]string{"ALLOWED_ORIGINS": origin}, "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url, calls := corsServer(t, tt.env)
			h := map[string]string{}
			if tt.origin != "" {
				h["Origin"] = tt.origin
			}
			resp, body := do(t, newRequest(t, http.MethodPost, url+"/v1/chat/completions", h))
			if resp.StatusCode != http.StatusOK || string(body) != "next" {
				t.Errorf("POST = %d %q; want 200 %q", resp.StatusCode, body, "next")
			}
			if got := calls.Load(); got != 1 {
				t.Errorf("next called %d times; want 1", got)
			}
			if got := resp.Header.Get("Access-Control-Allow-Origin"); got != tt.wantOrigin {
				t.Errorf("Access-Control-Allow-Origin = %q; want %q", got, tt.wantOrigin)
			}
			if got := resp.Header.Get("Access-Control-Allow-Credentials"); got != tt.wantCreds {
				t.Errorf("Access-Control-Allow-Credentials = %q; want %q", got, tt.wantCreds)
			}
			if tt.wantOrigin == "" {
				if got := corsHeaders(resp.Header); len(got) != 0 {
					t.Errorf("CORS headers %v on a response to origin %q; want none", got, tt.origin)
				}
			}
		})
	}
}

func TestCORSPreflightDisallowedOrigin(t *testing.T) {
	url, calls := corsServer(t, map[string]string{"ALLOWED_ORIGINS": "https://app.example.com"})
	resp, _ := do(t, preflight(t, url, "https://evil.example", "authorization"))
	if got := corsHeaders(resp.Header); len(got) != 0 {
		t.Errorf("CORS headers %v on a preflight from a disallowed origin; want none", got)
	}
	if got := calls.Load(); got != 0 {
		t.Errorf("next called %d times on a preflight; want 0", got)
	}
}

func TestCORSDisabled(t *testing.T) {
	url, calls := corsServer(t, map[string]string{"ENABLE_CORS": "false"})
	tests := []struct {
		name string
		req  func() *http.Request
	}{
		{"preflight reaches next", func() *http.Request { return preflight(t, url, "https://app.example.com", "authorization") }},
		{"simple request", func() *http.Request {
			return newRequest(t, http.MethodPost, url+"/v1/chat/completions", map[string]string{"Origin": "https://app.example.com"})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := calls.Load()
			resp, body := do(t, tt.req())
			if resp.StatusCode != http.StatusOK || string(body) != "next" || resp.Header.Get("X-Next") != "1" {
				t.Errorf("response = %d %q; want 200 %q from next", resp.StatusCode, body, "next")
			}
			if got := calls.Load() - before; got != 1 {
				t.Errorf("next called %d times; want 1", got)
			}
			if got := corsHeaders(resp.Header); len(got) != 0 {
				t.Errorf("CORS headers %v with CORS disabled; want none", got)
			}
		})
	}
}

// TestCORSNoOriginWithoutAuthKey (SPEC §6): without AUTH_KEY and with
// ALLOWED_ORIGINS unset, a page on any site gets neither a preflight's
// permission nor the POST's Access-Control-Allow-Origin; ALLOWED_ORIGINS set
// explicitly allows its origins as before.
func TestCORSNoOriginWithoutAuthKey(t *testing.T) {
	const evil = "https://evil.example"
	for _, tt := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"unset", nil, ""},
		{"blank", map[string]string{"ALLOWED_ORIGINS": " "}, ""},
		{"explicit *", map[string]string{"ALLOWED_ORIGINS": "*"}, "*"},
		{"explicit list", map[string]string{"ALLOWED_ORIGINS": evil}, evil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			url, calls := corsServer(t, tt.env)
			resp, _ := do(t, preflight(t, url, evil, "content-type"))
			if got := resp.Header.Get("Access-Control-Allow-Origin"); got != tt.want {
				t.Errorf("preflight Access-Control-Allow-Origin = %q; want %q", got, tt.want)
			}
			if tt.want == "" && len(corsHeaders(resp.Header)) != 0 {
				t.Errorf("preflight CORS headers %v; want none", corsHeaders(resp.Header))
			}
			resp, _ = do(t, newRequest(t, http.MethodPost, url+"/v1/chat/completions", map[string]string{"Origin": evil}))
			if got := resp.Header.Get("Access-Control-Allow-Origin"); got != tt.want {
				t.Errorf("POST Access-Control-Allow-Origin = %q; want %q", got, tt.want)
			}
			if calls.Load() != 1 {
				t.Errorf("next called %d times; want once, for the POST", calls.Load())
			}
		})
	}
}
