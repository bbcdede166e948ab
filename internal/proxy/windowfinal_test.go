package proxy_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/gpt-load/gpt-load/internal/testupstream"
)

// TestWindowErrorFinalAnswerIsAFailure: a stream whose every attempt
// failed inside the commit window gives the client the last error event
// as its answer (with the 200 already in its headers), and the request is
// recorded with the status that error carries: a failure in /stats, a 5xx
// in the metrics and the access line.
func TestWindowErrorFinalAnswerIsAFailure(t *testing.T) {
	overloaded := anthropicStart + "event: error\n" +
		`data: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}` + "\n\n"
	up := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) { writeEvents(w, overloaded) })
	e := start(t, testKeys, []string{up.URL}, map[string]string{"MAX_RETRIES": "1"})
	resp, body := post(t, e.URL+"/v1/messages", `{"stream":true}`)
	if resp.StatusCode != http.StatusOK || body != overloaded {
		t.Fatalf("client got %d %q; want 200 and the stream as sent", resp.StatusCode, body)
	}
	e.Logs.WaitFor(t, `"msg":"request"`, 5*time.Second)
	if d := stats(t, e); d.Requests.Success != 0 || d.Requests.Failure != 1 {
		t.Errorf("/stats: %d succeeded, %d failed; want the request counted as a failure", d.Requests.Success, d.Requests.Failure)
	}
	if got := metric(t, e, `gpt_load_requests_total{code="5xx",target="`+up.URL+`"}`); got != 1 {
		t.Errorf(`requests_total{code="5xx"} = %v; want 1`, got)
	}
	e.Logs.WaitFor(t, `"status":529`, 10*time.Second)
}
