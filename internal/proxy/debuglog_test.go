package proxy_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/gpt-load/gpt-load/internal/testupstream"
)

// TestAccessLineShowsUpstreamURLAtDebug: at debug level the access line
// has the URL sent upstream, path included (a doubled /v1/v1/ shows), never
// its query (which may carry a key); above debug it does not.
func TestAccessLineShowsUpstreamURLAtDebug(t *testing.T) {
	up := testupstream.New(t, nil)
	for _, level := range []string{"debug", "info"} {
		t.Run(level, func(t *testing.T) {
			e := start(t, testKeys, []string{up.URL + "/v1"}, map[string]string{"LOG_LEVEL": level})
			resp, _ := do(t, http.MethodPost, e.URL+"/v1/chat/completions?key=sk-query-secret-1234&x=1", `{"model":"m"}`)
			_ = resp
			logs := e.Logs.String()
			want := `"upstream_url":"` + up.URL + `/v1/v1/chat/completions"`
			if got := strings.Contains(logs, want); got != (level == "debug") {
				t.Errorf("access line has %s: %v; want %v\n%s", want, got, level == "debug", logs)
			}
			if strings.Contains(logs, "sk-query-secret") {
				t.Errorf("logs show the query's key:\n%s", logs)
			}
		})
	}
}

// TestDNSFailureLogNamesIt: a name that does not resolve is logged with
// reason "dns failure", and /stats names it so, whatever the resolver's
// error text says ("connection refused" when the DNS server refuses).
func TestDNSFailureLogNamesIt(t *testing.T) {
	e := start(t, testKeys, []string{"http://gpt-load-test.invalid"}, nil)
	do(t, http.MethodPost, e.URL+"/v1/chat/completions", `{"model":"m"}`)
	logs := e.Logs.String()
	if strings.Contains(logs, "i/o timeout") {
		t.Skip("no DNS answer here (a lookup timed out)")
	}
	if !strings.Contains(logs, `"msg":"upstream request failed","reason":"dns failure"`) {
		t.Errorf("the failure's log line does not give reason dns failure:\n%s", logs)
	}
	_, stats := do(t, http.MethodGet, e.URL+"/stats", "")
	if !strings.Contains(stats, `"reason": "dns failure"`) {
		t.Errorf("/stats does not name the dns failure:\n%s", stats)
	}
}
