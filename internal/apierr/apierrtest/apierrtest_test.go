package apierrtest

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"

	"github.com/gpt-load/gpt-load/internal/apierr"
)

// recorder is a testing.TB that keeps the failures Check reports.
type recorder struct {
	testing.TB
	failures []string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.failures = append(r.failures, fmt.Sprintf(format, args...))
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	runtime.Goexit()
}

// check runs Check against a recorder in a goroutine of its own, so that a
// Fatalf ends only that goroutine, and returns what failed.
func check(resp *http.Response, body string, status int, code string) []string {
	r := &recorder{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Check(r, resp, []byte(body), status, code)
	}()
	<-done
	return r.failures
}

func answer(status int, contentType string) *http.Response {
	return &http.Response{StatusCode: status, Header: http.Header{"Content-Type": {contentType}}}
}

func TestCheckPassesWhatApierrWrites(t *testing.T) {
	w := httptest.NewRecorder()
	apierr.Write(w, apierr.New(http.StatusUnauthorized, apierr.CodeInvalidAuth, "no token"))
	if failed := check(w.Result(), w.Body.String(), http.StatusUnauthorized, apierr.CodeInvalidAuth); len(failed) > 0 {
		t.Errorf("Check(apierr.Write's answer) failed: %q", failed)
	}
}

func TestCheckCatches(t *testing.T) {
	const good = `{"error":{"message":"m","type":"gpt_load_error","code":"c"}}`
	for _, c := range []struct {
		name string
		resp *http.Response
		body string
	}{
		{"another status", answer(500, "application/json"), good},
		{"not JSON content", answer(401, "text/plain"), good},
		{"not a JSON object", answer(401, "application/json"), `[1]`},
		{"another top-level member", answer(401, "application/json"), `{"error":{"message":"m","type":"gpt_load_error","code":"c"},"x":1}`},
		{"error not an object", answer(401, "application/json"), `{"error":"c"}`},
		{"an extra error field", answer(401, "application/json"), `{"error":{"message":"m","type":"gpt_load_error","code":"c","param":null}}`},
		{"a provider's type", answer(401, "application/json"), `{"error":{"message":"m","type":"invalid_request_error","code":"c"}}`},
		{"another code", answer(401, "application/json"), `{"error":{"message":"m","type":"gpt_load_error","code":"d"}}`},
		{"an empty message", answer(401, "application/json"), `{"error":{"message":"","type":"gpt_load_error","code":"c"}}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			if failed := check(c.resp, c.body, 401, "c"); len(failed) == 0 {
				t.Errorf("Check(%s) passed; want a failure", c.body)
			}
		})
	}
	if failed := check(answer(401, "application/json; charset=utf-8"), good, 401, "c"); len(failed) > 0 {
		t.Errorf("Check(%s) failed: %q; want a pass", good, failed)
	}
}
