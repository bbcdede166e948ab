package apierr

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

// TestWriteDoesNotEscapeHTML: a 401's "Bearer <token>" reads as such in
// curl, not as \u003ctoken\u003e.
func TestWriteDoesNotEscapeHTML(t *testing.T) {
	rec := httptest.NewRecorder()
	Write(rec, New(http.StatusUnauthorized, "invalid_api_key", "send it as Authorization: Bearer <token> & co"))
	body := rec.Body.String()
	if !strings.Contains(body, `Bearer <token> & co`) || strings.Contains(body, `\u003c`) {
		t.Errorf("body %q; want <token> and & unescaped", body)
	}
	if n, _ := strconv.Atoi(rec.Header().Get("Content-Length")); n != len(body) || !strings.HasSuffix(body, "}\n") {
		t.Errorf("Content-Length %d for a %d-byte body %q", n, len(body), body)
	}
}
