package middleware_test

import (
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/gpt-load/gpt-load/internal/apierr/apierrtest"
	"github.com/gpt-load/gpt-load/internal/middleware"
	"github.com/gpt-load/gpt-load/internal/secret"
)

const testToken = "gl-client-token-7f3a9c21e5"

// authServer serves next behind Auth(token, exempt) and counts the calls
// that reach next.
func authServer(t *testing.T, token string, exempt func(*http.Request) bool) (url string, calls *atomic.Int64) {
	t.Helper()
	calls = new(atomic.Int64)
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Write([]byte("next"))
	})
	if exempt == nil {
		exempt = func(*http.Request) bool { return false }
	}
	srv := newServer(t, middleware.Auth(secret.NewKey(token), exempt)(next))
	return srv.URL, calls
}

func TestAuthAcceptsEveryForm(t *testing.T) {
	url, calls := authServer(t, testToken, nil)
	tests := []struct {
		name   string
		path   string
		header map[string]string
	}{
		{"bearer", "/v1/models", map[string]string{"Authorization": "Bearer " + testToken}},
		{"bearer scheme in lower case", "/v1/models", map[string]string{"Authorization": "bearer " + testToken}},
		{"x-api-key", "/v1/models", map[string]string{"x-api-key": testToken}},
		{"x-goog-api-key", "/v1/models", map[string]string{"x-goog-api-key": testToken}},
		{"api-key", "/v1/models", map[string]string{"api-key": testToken}},
		{"key query parameter", "/v1/models?key=" + testToken, nil},
		{"key query parameter among others", "/v1/models?alt=sse&key=" + testToken + "&x=1", nil},
		{"wrong bearer but right x-api-key", "/v1/models", map[string]string{"Authorization": "Bearer nope", "x-api-key": testToken}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := calls.Load()
			resp, body := do(t, newRequest(t, http.MethodPost, url+tt.path, tt.header))
			if resp.StatusCode != http.StatusOK || string(body) != "next" {
				t.Errorf("POST %s with %v = %d %q; want 200 %q", tt.path, tt.header, resp.StatusCode, body, "next")
			}
			if got := calls.Load() - before; got != 1 {
				t.Errorf("next called %d times; want 1", got)
			}
		})
	}
}

func TestAuthRejects(t *testing.T) {
	url, calls := authServer(t, testToken, nil)
	tests := []struct {
		name   string
		path   string
		header map[string]string
	}{
		{"no credentials", "/v1/models", nil},
		{"wrong bearer", "/v1/models", map[string]string{"Authorization": "Bearer " + testToken + "x"}},
		{"token prefix only", "/v1/models", map[string]string{"Authorization": "Bearer " + testToken[:len(testToken)-1]}},
		{"bearer without token", "/v1/models", map[string]string{"Authorization": "Bearer "}},
		{"token without scheme", "/v1/models", map[string]string{"Authorization": testToken}},
		{"basic scheme", "/v1/models", map[string]string{"Authorization": "Basic " + testToken}},
		{"wrong x-api-key", "/v1/models", map[string]string{"x-api-key": "wrong"}},
		{"wrong x-goog-api-key", "/v1/models", map[string]string{"x-goog-api-key": "wrong"}},
		{"wrong api-key", "/v1/models", map[string]string{"api-key": "wrong"}},
		{"wrong key query parameter", "/v1/models?key=wrong", nil},
		{"empty key query parameter", "/v1/models?key=", nil},
		{"token in another query parameter", "/v1/models?api_key=" + testToken, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := calls.Load()
			resp, body := do(t, newRequest(t, http.MethodGet, url+tt.path, tt.header))
			apierrtest.Check(t, resp, body, http.StatusUnauthorized, "invalid_auth")
			if got := calls.Load() - before; got != 0 {
				t.Errorf("next called %d times; want 0", got)
			}
		})
	}
}

func TestAuthExempt(t *testing.T) {
	url, calls := authServer(t, testToken, func(r *http.Request) bool { return r.URL.Path == "/health" })
	tests := []struct {
		path       string
		wantStatus int
		wantCalls  int64
	}{
		{"/health", http.StatusOK, 1},
		{"/stats", http.StatusUnauthorized, 0},
		{"/health/x", http.StatusUnauthorized, 0},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			before := calls.Load()
			resp, _ := do(t, newRequest(t, http.MethodGet, url+tt.path, nil))
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("GET %s without token = %d; want %d", tt.path, resp.StatusCode, tt.wantStatus)
			}
			if got := calls.Load() - before; got != tt.wantCalls {
				t.Errorf("next called %d times; want %d", got, tt.wantCalls)
			}
		})
	}
}

func TestAuthEmptyTokenIsOff(t *testing.T) {
	url, calls := authServer(t, "", nil)
	tests := []struct {
		name   string
		header map[string]string
	}{
		{"no credentials", nil},
		{"any bearer", map[string]string{"Authorization": "Bearer whatever"}},
		{"empty bearer", map[string]string{"Authorization": "Bearer "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := calls.Load()
			resp, body := do(t, newRequest(t, http.MethodGet, url+"/v1/models", tt.header))
			if resp.StatusCode != http.StatusOK || string(body) != "next" {
				t.Errorf("GET /v1/models with %v = %d %q; want 200 %q", tt.header, resp.StatusCode, body, "next")
			}
			if got := calls.Load() - before; got != 1 {
				t.Errorf("next called %d times; want 1", got)
			}
		})
	}
}
