package proxy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gpt-load/gpt-load/internal/keymanager"
	"github.com/gpt-load/gpt-load/internal/proxy"
	"github.com/gpt-load/gpt-load/internal/testupstream"
)

// Real error bodies, as the providers send them.
const (
	openAIInvalidKey  = `{"error":{"message":"Incorrect API key provided: sk-test-***0001. You can find your API key at https://platform.openai.com/account/api-keys.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}`
	openAIQuota       = `{"error":{"message":"You exceeded your current quota, please check your plan and billing details.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}`
	openAIRateLimit   = `{"error":{"message":"Rate limit reached for gpt-4o-mini in organization org-x on requests per min (RPM): Limit 3, Used 3, Requested 1.","type":"requests","param":null,"code":"rate_limit_exceeded"}}`
	openAIBadRequest  = `{"error":{"message":"This model's maximum context length is 8192 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}`
	geminiInvalidKey  = `{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID","domain":"googleapis.com"}]}}`
	anthropicOverload = `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`
)

// answer is a scripted upstream reply.
type answer struct {
	status int
	body   string
	header map[string]string
}

// byKey scripts the upstream per key; keys not in the map get 200.
func byKey(script map[string]answer) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		a, ok := script[testupstream.KeyOf(r.Header)]
		if !ok {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"ok":true}`)
			return
		}
		for k, v := range a.header {
			w.Header().Set(k, v)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(a.status)
		io.WriteString(w, a.body)
	}
}

func do(t *testing.T, method, url, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

type blacklistDoc struct {
	Keys []struct {
		Preview   string `json:"preview"`
		Reason    string `json:"reason"`
		Type      string `json:"type"`
		Status    int    `json:"status"`
		At        string `json:"blacklistAt"`
		Until     string `json:"until"`
		FailCount int    `json:"failCount"`
	} `json:"blacklisted_keys"`
	Count int `json:"count"`
}

func blacklist(t *testing.T, e *env) blacklistDoc {
	t.Helper()
	_, body := do(t, http.MethodGet, e.URL+"/blacklist", "")
	var d blacklistDoc
	if err := json.Unmarshal([]byte(body), &d); err != nil {
		t.Fatalf("/blacklist: %v\n%s", err, body)
	}
	assertNoKeys(t, "/blacklist", body)
	return d
}

type statsDoc struct {
	Keys struct {
		Total, Healthy, Cooling, Blacklisted int
	} `json:"keys"`
	Requests struct {
		Total   uint64 `json:"total_count"`
		Success uint64 `json:"success_count"`
		Failure uint64 `json:"failure_count"`
		Retry   uint64 `json:"retry_count"`
	} `json:"requests"`
	Targets []struct {
		URL      string `json:"url"`
		Requests uint64 `json:"requests"`
		Failures uint64 `json:"failures"`
		State    string `json:"state"`
	} `json:"targets"`
	KeyDetails []struct {
		Preview    string `json:"preview"`
		State      string `json:"state"`
		LastStatus int    `json:"last_status"`
	} `json:"key_details"`
}

func stats(t *testing.T, e *env) statsDoc {
	t.Helper()
	_, body := do(t, http.MethodGet, e.URL+"/stats?keys=1", "")
	var d statsDoc
	if err := json.Unmarshal([]byte(body), &d); err != nil {
		t.Fatalf("/stats: %v\n%s", err, body)
	}
	assertNoKeys(t, "/stats", body)
	return d
}

// attemptsByKey counts what the upstream saw per key.
func attemptsByKey(up *testupstream.Server) map[string]int {
	m := map[string]int{}
	for _, r := range up.Requests() {
		m[r.Key]++
	}
	return m
}

func TestKeyFaultsRetryOnNextKey(t *testing.T) {
	tests := []struct {
		name      string
		answer    answer
		wantType  string // in /blacklist
		wantReson string
	}{
		{"401", answer{status: 401, body: openAIInvalidKey}, "permanent", "invalid_api_key"},
		// A 403 counts against the key only when its error names the key
		// or its account (SPEC §8); Anthropic's bare permission_error is
		// unproven now, and the proxy's suspicion logic decides about it.
		{"403", answer{status: 403, body: `{"error":{"code":403,"message":"Permission denied: Consumer 'api_key:AIzaSyD3xAmPlEkEy0123456789abcdefghijk' has been suspended.","status":"PERMISSION_DENIED","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"CONSUMER_SUSPENDED","domain":"googleapis.com","metadata":{"consumer":"projects/123456789012","service":"generativelanguage.googleapis.com"}}]}}`}, "permanent", "consumer_suspended"},
		{"429 quota", answer{status: 429, body: openAIQuota}, "permanent", "insufficient_quota"},
		{"400 API_KEY_INVALID", answer{status: 400, body: geminiInvalidKey}, "permanent", "api_key_invalid"},
		{"429 with Retry-After", answer{status: 429, body: openAIRateLimit, header: map[string]string{"Retry-After": "20"}}, "temporary", "rate_limit_exceeded"},
		{"429 without Retry-After", answer{status: 429, body: openAIRateLimit}, "temporary", "rate_limit_exceeded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := testupstream.New(t, byKey(map[string]answer{testKeys[0]: tt.answer}))
			e := start(t, testKeys, []string{up.URL}, nil)
			body := `{"model":"gpt-4o-mini","messages":[]}`
			before := time.Now()
			resp, got := do(t, http.MethodPost, e.URL+"/v1/chat/completions", body)
			if resp.StatusCode != 200 || got != `{"ok":true}` {
				t.Fatalf("client got %d %q; want the next key's 200", resp.StatusCode, got)
			}
			if a := resp.Header.Get(proxy.HeaderAttempts); a != "2" {
				t.Errorf("%s = %q; want 2", proxy.HeaderAttempts, a)
			}
			reqs := up.Requests()
			if len(reqs) != 2 || reqs[0].Key != testKeys[0] || reqs[1].Key == testKeys[0] {
				t.Fatalf("upstream saw %d attempts with keys %v; want the first key then another", len(reqs), attemptsByKey(up))
			}
			if reqs[0].BodySHA256 != reqs[1].BodySHA256 || reqs[1].BodyLen != len(body) {
				t.Error("the retry did not carry the same body bytes")
			}
			bl := blacklist(t, e)
			if bl.Count != 1 || len(bl.Keys) != 1 {
				t.Fatalf("/blacklist count %d; want 1", bl.Count)
			}
			k := bl.Keys[0]
			if k.Type != tt.wantType || k.Reason != tt.wantReson || k.Status != tt.answer.status || k.At == "" {
				t.Errorf("/blacklist entry = %+v; want type %s reason %s status %d", k, tt.wantType, tt.wantReson, tt.answer.status)
			}
			if tt.wantType == "temporary" && k.Until == "" {
				t.Error("cooling key without an until")
			}
			if tt.name == "429 with Retry-After" {
				until, _ := time.Parse(time.RFC3339, k.Until)
				restFrom(t, "the upstream's Retry-After", until, before, 20*time.Second)
			}
			if tt.name == "429 without Retry-After" {
				until, _ := time.Parse(time.RFC3339, k.Until)
				restFrom(t, "KEY_COOLDOWN", until, before, 60*time.Second)
			}
			// The benched key is not used again.
			for range 6 {
				do(t, http.MethodGet, e.URL+"/v1/models", "")
			}
			if n := attemptsByKey(up)[testKeys[0]]; n != 1 {
				t.Errorf("benched key used %d times; want 1", n)
			}
			st := stats(t, e)
			if st.Requests.Total != 7 || st.Requests.Retry != 1 || st.Requests.Success != 7 {
				t.Errorf("/stats requests = %+v; want 7 client requests, 1 retry, 7 successes", st.Requests)
			}
		})
	}
}

func TestClientErrorPassesThroughUntouched(t *testing.T) {
	up := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Request-Id", "req_123")
		w.WriteHeader(400)
		io.WriteString(w, openAIBadRequest)
	})
	e := start(t, testKeys, []string{up.URL}, nil)
	resp, body := do(t, http.MethodPost, e.URL+"/v1/chat/completions", "{}")
	if resp.StatusCode != 400 || body != openAIBadRequest || resp.Header.Get("X-Request-Id") != "req_123" {
		t.Errorf("client got %d %q; want the upstream's 400 unchanged", resp.StatusCode, body)
	}
	if up.Count() != 1 {
		t.Errorf("upstream saw %d attempts; want 1 (a client error is not retried)", up.Count())
	}
	if bl := blacklist(t, e); bl.Count != 0 {
		t.Errorf("/blacklist count = %d; want 0", bl.Count)
	}
}

func TestBlacklistThresholdCountsConsecutive(t *testing.T) {
	var fail atomic.Bool
	up := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) {
		if fail.Load() {
			w.WriteHeader(401)
			io.WriteString(w, openAIInvalidKey)
		}
	})
	one := testKeys[:1]
	e := start(t, one, []string{up.URL}, map[string]string{"BLACKLIST_THRESHOLD": "2", "MAX_RETRIES": "0"})
	step := func(f bool, want int) {
		t.Helper()
		fail.Store(f)
		resp, _ := do(t, http.MethodGet, e.URL+"/v1/models", "")
		if resp.StatusCode != want {
			t.Fatalf("status %d; want %d", resp.StatusCode, want)
		}
	}
	step(true, 401)  // 1 failure
	step(false, 200) // success resets
	step(true, 401)  // 1 failure again
	if bl := blacklist(t, e); bl.Count != 0 {
		t.Fatalf("blacklisted after non-consecutive failures")
	}
	step(true, 401) // 2 in a row
	if bl := blacklist(t, e); bl.Count != 1 || bl.Keys[0].FailCount != 2 {
		t.Fatalf("/blacklist = %+v; want the key with failCount 2", bl)
	}
	resp, body := do(t, http.MethodGet, e.URL+"/v1/models", "")
	if resp.StatusCode != 503 || !strings.Contains(body, "no_available_keys") {
		t.Errorf("with every key blacklisted: %d %s; want 503 no_available_keys", resp.StatusCode, body)
	}
	if resp.Header.Get("Retry-After") != "" {
		t.Errorf("Retry-After = %q with nothing cooling; want none", resp.Header.Get("Retry-After"))
	}
}

func TestCoolingRecoversAndDoubles(t *testing.T) {
	var limited atomic.Bool
	limited.Store(true)
	up := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) {
		if limited.Load() {
			w.WriteHeader(429)
			io.WriteString(w, openAIRateLimit)
		}
	})
	e := start(t, testKeys[:1], []string{up.URL}, map[string]string{"KEY_COOLDOWN": "1", "MAX_RETRIES": "0"})
	resp, _ := do(t, http.MethodGet, e.URL+"/v1/models", "")
	if resp.StatusCode != 429 {
		t.Fatalf("status %d; want the upstream's 429 (no retries configured)", resp.StatusCode)
	}
	resp, body := do(t, http.MethodGet, e.URL+"/v1/models", "")
	if resp.StatusCode != 503 || !strings.Contains(body, "no_available_keys") {
		t.Fatalf("while cooling: %d %s; want 503 no_available_keys", resp.StatusCode, body)
	}
	if ra, _ := strconv.Atoi(resp.Header.Get("Retry-After")); ra < 1 || ra > 2 {
		t.Errorf("Retry-After = %q; want the cooling deadline, 1s away", resp.Header.Get("Retry-After"))
	}
	// It comes back by itself after the cooldown...
	waitStatus(t, e.URL+"/v1/models", 429, 5*time.Second)
	// ...and the second limit in a row rests twice as long.
	bl := blacklist(t, e)
	if bl.Count != 1 {
		t.Fatalf("/blacklist count %d; want 1", bl.Count)
	}
	at, _ := time.Parse(time.RFC3339, bl.Keys[0].At)
	until, _ := time.Parse(time.RFC3339, bl.Keys[0].Until)
	if d := until.Sub(at); d < time.Second || d > 3*time.Second {
		t.Errorf("second cooldown %v; want about 2s", d)
	}
	limited.Store(false)
	waitStatus(t, e.URL+"/v1/models", 200, 5*time.Second)
	if bl := blacklist(t, e); bl.Count != 0 {
		t.Errorf("/blacklist count %d after recovery; want 0", bl.Count)
	}
}

// waitStatus polls url until it answers want, failing after timeout.
func waitStatus(t *testing.T, url string, want int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		resp, _ := do(t, http.MethodGet, url, "")
		if resp.StatusCode == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still answers %d after %v; want %d", url, resp.StatusCode, timeout, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestEvenRotationWithBenchedKey(t *testing.T) {
	keys := append([]string(nil), testKeys...)
	keys = append(keys, "sk-test-0000000000000000000000000000000000000000000004")
	up := testupstream.New(t, byKey(map[string]answer{keys[1]: {status: 401, body: openAIInvalidKey}}))
	e := start(t, keys, []string{up.URL}, nil)
	const n = 300
	for range n {
		do(t, http.MethodGet, e.URL+"/v1/models", "")
	}
	counts := attemptsByKey(up)
	if counts[keys[1]] != 1 {
		t.Errorf("blacklisted key used %d times; want 1", counts[keys[1]])
	}
	for _, k := range []string{keys[0], keys[2], keys[3]} {
		if c := counts[k]; c < n/3-1 || c > n/3+2 {
			t.Errorf("key %s served %d of %d; want %d±1 (the benched key's share spread evenly)", k[len(k)-4:], c, n, n/3)
		}
	}
}

// TestGatewayTimeoutNotRetried checks 504 and 524 reach the client as they
// are, after one attempt: the upstream may still be running (and billing)
// the request, so a retry could pay for it twice.
func TestGatewayTimeoutNotRetried(t *testing.T) {
	for _, status := range []int{504, 524} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			bad := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(status)
				io.WriteString(w, "<html>gateway time-out</html>")
			})
			good := testupstream.New(t, nil)
			e := start(t, testKeys, []string{bad.URL, good.URL}, nil)
			resp, body := do(t, http.MethodPost, e.URL+"/v1/chat/completions", `{"model":"gpt-4o"}`)
			if resp.StatusCode != status || body != "<html>gateway time-out</html>" || resp.Header.Get(proxy.HeaderAttempts) != "1" {
				t.Errorf("client got %d %q after %s attempts; want the upstream's %d after 1", resp.StatusCode, body, resp.Header.Get(proxy.HeaderAttempts), status)
			}
			if bad.Count() != 1 || good.Count() != 0 {
				t.Errorf("upstreams saw %d and %d attempts; want 1 and 0", bad.Count(), good.Count())
			}
		})
	}
}

func TestTargetFaultsRetryOnNextTarget(t *testing.T) {
	for _, status := range []int{500, 502, 503, 529} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			bad := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(status)
				io.WriteString(w, anthropicOverload)
			})
			good := testupstream.New(t, nil)
			e := start(t, testKeys, []string{bad.URL, good.URL}, map[string]string{"TARGET_COOLDOWN_MS": "60000"})
			for range 6 {
				resp, _ := do(t, http.MethodGet, e.URL+"/v1/models", "")
				if resp.StatusCode != 200 {
					t.Fatalf("status %d; want 200 from the healthy target", resp.StatusCode)
				}
			}
			if bad.Count() != 3 {
				t.Errorf("failing target saw %d attempts; want 3 (then benched)", bad.Count())
			}
			st := stats(t, e)
			if st.Targets[0].State != "benched" || st.Targets[1].State != "active" {
				t.Errorf("target states %s, %s; want benched, active", st.Targets[0].State, st.Targets[1].State)
			}
			if st.Keys.Healthy != len(testKeys) {
				t.Errorf("healthy keys %d; want all %d (a target fault is not the keys')", st.Keys.Healthy, len(testKeys))
			}
			if bl := blacklist(t, e); bl.Count != 0 {
				t.Errorf("/blacklist count %d; want 0", bl.Count)
			}
		})
	}
}

func TestRefusedTargetRetriedElsewhere(t *testing.T) {
	good := testupstream.New(t, nil)
	e := start(t, testKeys, []string{"http://" + testupstream.ClosedAddr(t), good.URL}, nil)
	for range 4 {
		resp, _ := do(t, http.MethodGet, e.URL+"/v1/models", "")
		if resp.StatusCode != 200 {
			t.Fatalf("status %d; want 200", resp.StatusCode)
		}
	}
	if good.Count() != 4 {
		t.Errorf("healthy target got %d; want 4", good.Count())
	}
}

func TestTimeoutAfterSendNotRetried(t *testing.T) {
	a := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	b := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	e := start(t, testKeys, []string{a.URL, b.URL}, map[string]string{"RESPONSE_TIMEOUT": "1"})
	resp, body := do(t, http.MethodPost, e.URL+"/v1/chat/completions", "{}")
	if resp.StatusCode != 504 || !strings.Contains(body, "upstream_timeout") {
		t.Errorf("got %d %s; want 504 upstream_timeout", resp.StatusCode, body)
	}
	if n := a.Count() + b.Count(); n != 1 {
		t.Errorf("upstreams saw %d attempts; want 1 (the upstream may still be working on it)", n)
	}
}

func TestExhaustedRetriesReturnLastUpstreamAnswer(t *testing.T) {
	var n atomic.Int32
	up := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) {
		i := n.Add(1)
		w.Header().Set("X-Attempt", strconv.Itoa(int(i)))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(503)
		fmt.Fprintf(w, `{"error":{"message":"overloaded %d","type":"server_error"}}`, i)
	})
	e := start(t, testKeys, []string{up.URL}, map[string]string{"MAX_RETRIES": "2"})
	resp, body := do(t, http.MethodPost, e.URL+"/v1/chat/completions", "{}")
	if resp.StatusCode != 503 || resp.Header.Get("X-Attempt") != "3" || body != `{"error":{"message":"overloaded 3","type":"server_error"}}` {
		t.Errorf("client got %d X-Attempt %q %q; want the third attempt's 503 unchanged", resp.StatusCode, resp.Header.Get("X-Attempt"), body)
	}
	if resp.Header.Get(proxy.HeaderAttempts) != "3" || up.Count() != 3 {
		t.Errorf("attempts header %q, upstream saw %d; want 3 and 3", resp.Header.Get(proxy.HeaderAttempts), up.Count())
	}
}

func TestAllKeysInvalidGivesProviderError(t *testing.T) {
	up := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(401)
		io.WriteString(w, openAIInvalidKey)
	})
	e := start(t, testKeys, []string{up.URL}, map[string]string{"MAX_RETRIES": "10"})
	resp, body := do(t, http.MethodGet, e.URL+"/v1/models", "")
	if resp.StatusCode != 401 || body != openAIInvalidKey {
		t.Errorf("got %d %q; want the provider's 401 once the keys ran out", resp.StatusCode, body)
	}
	if up.Count() != len(testKeys) {
		t.Errorf("upstream saw %d attempts; want one per key (%d)", up.Count(), len(testKeys))
	}
	resp, body = do(t, http.MethodGet, e.URL+"/v1/models", "")
	if resp.StatusCode != 503 || !strings.Contains(body, "no_available_keys") {
		t.Errorf("then: %d %s; want 503 no_available_keys", resp.StatusCode, body)
	}
	var h struct{ Status string }
	hr, hb := do(t, http.MethodGet, e.URL+"/health", "")
	json.Unmarshal([]byte(hb), &h)
	if hr.StatusCode != 503 || h.Status != "unhealthy" {
		t.Errorf("/health = %d %s; want 503 unhealthy", hr.StatusCode, h.Status)
	}
}

func TestCorrelatedFailuresBenchTargetNotKeys(t *testing.T) {
	keys := append([]string(nil), testKeys...)
	keys = append(keys, "sk-test-0000000000000000000000000000000000000000000004", "sk-test-0000000000000000000000000000000000000000000005")
	var broken atomic.Bool
	a := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) {
		if broken.Load() { // an IP-wide limit: every key gets 429
			w.WriteHeader(429)
			io.WriteString(w, openAIRateLimit)
		}
	})
	b := testupstream.New(t, nil)
	e := start(t, keys, []string{a.URL, b.URL}, map[string]string{"TARGET_COOLDOWN_MS": "60000"})
	for range 2 * len(keys) { // every key succeeds on both targets
		do(t, http.MethodGet, e.URL+"/v1/models", "")
	}
	broken.Store(true)
	// The first request alone cannot tell an upstream refusing every key
	// from a few limited keys side by side (its retries walk adjacent
	// keys); the second failing request confirms the pattern.
	failed := 0
	for i := range 20 {
		resp, _ := do(t, http.MethodGet, e.URL+"/v1/models", "")
		if resp.StatusCode != 200 {
			failed++
			if i > 0 {
				t.Errorf("request %d: status %d; want 200 via the other target", i, resp.StatusCode)
			}
		}
	}
	t.Logf("%d of 20 requests failed (the first may)", failed)
	st := stats(t, e)
	if st.Targets[0].State != "benched" {
		t.Errorf("target A state %q; want benched", st.Targets[0].State)
	}
	if st.Keys.Healthy != len(keys) {
		t.Errorf("healthy keys %d of %d; want all (the target is to blame)", st.Keys.Healthy, len(keys))
	}
	if !strings.Contains(e.Logs.String(), "several healthy keys failed the same way") {
		t.Error("no log line for the correlated failure")
	}
}

func TestRecheckRestoresKey(t *testing.T) {
	var revoked atomic.Bool
	revoked.Store(true)
	up := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) {
		if revoked.Load() && testupstream.KeyOf(r.Header) == testKeys[0] {
			w.WriteHeader(401)
			io.WriteString(w, openAIInvalidKey)
		}
	})
	e := start(t, testKeys, []string{up.URL + "/v1"}, nil)
	do(t, http.MethodGet, e.URL+"/models", "")
	if bl := blacklist(t, e); bl.Count != 1 {
		t.Fatalf("/blacklist count %d; want 1", bl.Count)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Proxy.Recheck(ctx, 20*time.Millisecond, nil); close(done) }()

	// Still revoked: the check runs and leaves it blacklisted.
	n := up.Count()
	up.WaitFor(t, n+2, 5*time.Second)
	if bl := blacklist(t, e); bl.Count != 1 {
		t.Fatalf("key restored while the upstream still refuses it")
	}
	revoked.Store(false)
	deadline := time.Now().Add(5 * time.Second)
	for blacklist(t, e).Count != 0 {
		if time.Now().After(deadline) {
			t.Fatal("key not restored by the re-check")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Recheck did not stop after its context ended")
	}
	for _, r := range up.Requests()[1:] {
		if r.Method != http.MethodGet || r.Path != "/v1/models" {
			t.Errorf("re-check sent %s %s; want GET /v1/models", r.Method, r.Path)
		}
	}
}

func TestNoRetryAfterFirstByte(t *testing.T) {
	up := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: partial\n\n")
		http.NewResponseController(w).Flush()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close() // the upstream dies mid-stream
		}
	})
	e := start(t, testKeys, []string{up.URL}, nil)
	resp, err := client().Post(e.URL+"/v1/chat/completions", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.HasPrefix(string(got), "data: partial") {
		t.Errorf("client got %q; want the partial stream", got)
	}
	if up.Count() != 1 {
		t.Errorf("upstream saw %d attempts; want 1 (never retry after the first byte)", up.Count())
	}
}

func TestClientDisconnectBlamesNoOne(t *testing.T) {
	up := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	e := start(t, testKeys, []string{up.URL}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.URL+"/v1/chat/completions", strings.NewReader("{}"))
		_, err := client().Do(req)
		errc <- err
	}()
	reqs := up.WaitFor(t, 1, 5*time.Second)
	cancel()
	<-errc
	select {
	case <-reqs[0].Cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("upstream request not cancelled")
	}
	deadline := time.Now().Add(2 * time.Second)
	for e.Proxy.InFlight() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("request still in flight")
		}
		time.Sleep(5 * time.Millisecond)
	}
	st := stats(t, e)
	if up.Count() != 1 || st.Keys.Healthy != len(testKeys) || st.Targets[0].State != "active" || st.Requests.Retry != 0 {
		t.Errorf("after a disconnect: %d attempts, %d healthy keys, target %s, %d retries; want 1, all, active, 0",
			up.Count(), st.Keys.Healthy, st.Targets[0].State, st.Requests.Retry)
	}
}

// TestConcurrentStateChanges runs requests from many goroutines while keys
// flip between answers, for the race detector and for the invariant that
// no client ever sees a key-attributed error while a healthy key exists.
func TestConcurrentStateChanges(t *testing.T) {
	var flip atomic.Int64
	keys := make([]string, 8)
	for i := range keys {
		keys[i] = fmt.Sprintf("sk-test-race-%040d", i)
	}
	up := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) {
		k := testupstream.KeyOf(r.Header)
		if k == keys[0] {
			return // always fine
		}
		switch flip.Add(1) % 4 {
		case 0:
			w.Header().Set("Retry-After", "0.05")
			w.WriteHeader(429)
			io.WriteString(w, openAIRateLimit)
		case 1:
			w.WriteHeader(401)
			io.WriteString(w, openAIInvalidKey)
		}
	})
	e := start(t, keys, []string{up.URL}, map[string]string{"MAX_RETRIES": "10"})
	var wg sync.WaitGroup
	var bad atomic.Int64
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 40 {
				resp, err := client().Get(e.URL + "/v1/models")
				if err != nil {
					bad.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				// Three keys failing alike with no success between bench
				// the only target (the correlated rule), and a request
				// then ends with the upstream's answer; but it never
				// finds no key while keys[0] is healthy.
				if resp.StatusCode == http.StatusServiceUnavailable {
					bad.Add(1)
				}
			}
		}()
	}
	go func() {
		for range 20 {
			e.Proxy.RecheckOnce(context.Background())
			e.Keys.Counts()
		}
	}()
	wg.Wait()
	if b := bad.Load(); b != 0 {
		t.Errorf("%d requests found no usable key while a healthy key existed", b)
	}
	if s := e.Keys.Keys()[0].Snapshot(); s.State != keymanager.Active {
		t.Errorf("the healthy key is %s", s.State)
	}
}

// TestKeyFaultKeepsTarget checks a retry after a key's fault stays on the
// same target, while one after a target fault moves on
// (docs/key-health.md, "Retries").
func TestKeyFaultKeepsTarget(t *testing.T) {
	a := testupstream.New(t, byKey(map[string]answer{testKeys[0]: {status: 401, body: openAIInvalidKey}}))
	b := testupstream.New(t, nil)
	e := start(t, testKeys, []string{a.URL, b.URL}, nil)
	resp, _ := do(t, http.MethodGet, e.URL+"/v1/models", "")
	if resp.StatusCode != 200 || a.Count() != 2 || b.Count() != 0 {
		t.Errorf("status %d, target A saw %d, B saw %d; want 200 with both attempts on A", resp.StatusCode, a.Count(), b.Count())
	}
}

func TestRecheckSendsAnthropicVersion(t *testing.T) {
	up := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Anthropic-Version") == "" {
			w.WriteHeader(400)
			io.WriteString(w, `{"type":"error","error":{"type":"invalid_request_error","message":"anthropic-version: header is required"}}`)
			return
		}
		if r.Method == http.MethodPost {
			w.WriteHeader(401)
			io.WriteString(w, `{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}`)
		}
	})
	e := start(t, testKeys, []string{up.URL}, map[string]string{"UPSTREAM_AUTH_STYLE": "anthropic", "MAX_RETRIES": "0"})
	req, _ := http.NewRequest(http.MethodPost, e.URL+"/v1/messages", strings.NewReader("{}"))
	req.Header.Set("Anthropic-Version", "2023-06-01")
	resp, err := client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if bl := blacklist(t, e); bl.Count != 1 {
		t.Fatalf("/blacklist count %d; want 1", bl.Count)
	}
	if n := e.Proxy.RecheckOnce(context.Background()); n != 1 {
		t.Fatalf("RecheckOnce restored %d keys; want 1", n)
	}
	last := up.Requests()[up.Count()-1]
	if last.Path != "/v1/models" || last.Header.Get("X-Api-Key") == "" || last.Header.Get("Anthropic-Version") != "2023-06-01" {
		t.Errorf("re-check sent %s with x-api-key %t and anthropic-version %q; want /v1/models, the key, 2023-06-01",
			last.Path, last.Header.Get("X-Api-Key") != "", last.Header.Get("Anthropic-Version"))
	}
}

// restFrom checks that until, a deadline shown to the second (RFC 3339), is
// rest after a moment between before (taken before the request that
// decided it) and now. It compares with those two instants rather than
// with "about rest from now", which a loaded machine's pause between the
// request and the check would break.
func restFrom(t *testing.T, what string, until, before time.Time, rest time.Duration) {
	t.Helper()
	lo, hi := before.Add(rest).Add(-time.Second), time.Now().Add(rest).Add(time.Second)
	if until.Before(lo) || until.After(hi) {
		t.Errorf("rest until %s; want %v (%s) from the request: between %s and %s",
			until.Format(time.RFC3339), rest, what, lo.Format(time.RFC3339), hi.Format(time.RFC3339))
	}
}
