// Package apierrtest checks, in tests, that an answer is gpt-load's own
// error: the shape apierr.Write renders.
package apierrtest

import (
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/gpt-load/gpt-load/internal/apierr"
)

// Check asserts that resp, whose body was read into body, is exactly
// OpenAI's error shape as gpt-load answers it: the status, a JSON content
// type, "error" as the only top-level member, and an error object of
// exactly a non-empty message, type apierr.Type and code.
func Check(t testing.TB, resp *http.Response, body []byte, status int, code string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Errorf("status = %d; want %d (body %s)", resp.StatusCode, status, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q; want application/json", ct)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		t.Fatalf("body %q is not a JSON object: %v", body, err)
	}
	if got := slices.Sorted(maps.Keys(top)); !slices.Equal(got, []string{"error"}) {
		t.Errorf("top-level keys = %v; want [error]", got)
	}
	var e map[string]any
	if err := json.Unmarshal(top["error"], &e); err != nil {
		t.Fatalf("error member %s is not an object: %v", top["error"], err)
	}
	if got, want := slices.Sorted(maps.Keys(e)), []string{"code", "message", "type"}; !slices.Equal(got, want) {
		t.Errorf("error keys = %v; want %v", got, want)
	}
	if got := e["type"]; got != apierr.Type {
		t.Errorf("error.type = %v; want %s", got, apierr.Type)
	}
	if got := e["code"]; got != code {
		t.Errorf("error.code = %v; want %s", got, code)
	}
	if msg, _ := e["message"].(string); msg == "" {
		t.Errorf("error.message = %v; want a non-empty string", e["message"])
	}
}
