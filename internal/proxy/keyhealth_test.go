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

	"github.com/gpt-load/gpt-load/internal/proxy"
	"github.com/gpt-load/gpt-load/internal/testupstream"
)

// modelNotFound is OpenAI's answer for a model the key may not use, or
// that does not exist: both are worded alike.
func modelNotFound(model string) string {
	return `{"error":{"message":"The model ` + "`" + model + "`" + ` does not exist or you do not have access to it.","type":"invalid_request_error","param":null,"code":"model_not_found"}}`
}

// modelOf reads the model of a chat request body the upstream got.
func modelOf(r *http.Request) string {
	var b struct{ Model string }
	json.NewDecoder(r.Body).Decode(&b)
	return b.Model
}

func chat(model string) string {
	return `{"model":"` + model + `","messages":[{"role":"user","content":"hi"}]}`
}

type keyDetailDoc struct {
	Preview        string `json:"preview"`
	State          string `json:"state"`
	Reason         string `json:"reason"`
	CoolingUntil   string `json:"cooling_until"`
	ModelsExcluded []struct {
		Model string `json:"model"`
		Until string `json:"until"`
	} `json:"models_excluded"`
	Quota *struct {
		RequestsRemaining *int64 `json:"requests_remaining"`
		TokensRemaining   *int64 `json:"tokens_remaining"`
		ResetAt           string `json:"reset_at"`
	} `json:"quota"`
}

func keyDetails(t *testing.T, e *env) []keyDetailDoc {
	t.Helper()
	_, body := do(t, http.MethodGet, e.URL+"/stats?keys=1", "")
	var d struct {
		KeyDetails []keyDetailDoc `json:"key_details"`
	}
	if err := json.Unmarshal([]byte(body), &d); err != nil {
		t.Fatalf("/stats?keys=1: %v\n%s", err, body)
	}
	assertNoKeys(t, "/stats?keys=1", body)
	return d.KeyDetails
}

// TestModelScopedFaultExcludesOnlyThePair: half the keys may not use
// gpt-4o. Requests for it move on to a key that may; those keys keep
// serving gpt-4o-mini; no key is blacklisted or cooling; once the pairs
// are known no request needs more than two attempts.
func TestModelScopedFaultExcludesOnlyThePair(t *testing.T) {
	keys := append([]string(nil), testKeys...)
	keys = append(keys, "sk-test-0000000000000000000000000000000000000000000004", "sk-test-0000000000000000000000000000000000000000000005")
	lacking := map[string]bool{keys[0]: true, keys[1]: true}
	up := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) {
		if m := modelOf(r); m == "gpt-4o" && lacking[testupstream.KeyOf(r.Header)] {
			w.WriteHeader(404)
			io.WriteString(w, modelNotFound(m))
			return
		}
		io.WriteString(w, `{"ok":true}`)
	})
	e := start(t, keys, []string{up.URL}, map[string]string{"MAX_RETRIES": "3"})
	worst := 0
	for i := range 40 {
		model := "gpt-4o"
		if i >= 30 { // then a run of the other model
			model = "gpt-4o-mini"
		}
		resp, body := do(t, http.MethodPost, e.URL+"/v1/chat/completions", chat(model))
		if resp.StatusCode != 200 {
			t.Fatalf("request %d (%s): %d %s; want 200", i, model, resp.StatusCode, body)
		}
		if a, _ := strconv.Atoi(resp.Header.Get(proxy.HeaderAttempts)); i >= 8 {
			worst = max(worst, a)
		}
	}
	if worst > 2 {
		t.Errorf("once the pairs were known a request took %d attempts; want at most 2", worst)
	}
	st := stats(t, e)
	if st.Keys.Healthy != len(keys) {
		t.Errorf("healthy keys %d of %d; want all: a model fault is not the key's", st.Keys.Healthy, len(keys))
	}
	mini := map[string]int{}
	for _, r := range up.Requests() {
		if strings.Contains(string(r.Body), "gpt-4o-mini") {
			mini[r.Key]++
		}
	}
	if mini[keys[0]] == 0 || mini[keys[1]] == 0 {
		t.Errorf("keys without gpt-4o served gpt-4o-mini %d and %d times; want both still serving it", mini[keys[0]], mini[keys[1]])
	}
	excluded := 0
	for _, d := range keyDetails(t, e) {
		if d.State != "active" {
			t.Errorf("key %s is %s; want active", d.Preview, d.State)
		}
		for _, m := range d.ModelsExcluded {
			if m.Model != "gpt-4o" || m.Until == "" {
				t.Errorf("key %s excluded for %+v; want gpt-4o with an until", d.Preview, m)
			}
			excluded++
		}
	}
	if excluded != 2 {
		t.Errorf("%d (key, model) pairs excluded; want 2", excluded)
	}
}

// TestUnknownModelCostsAttemptsOnlyUntilEveryKeyIsExcluded: a model no key
// can use (a client's typo, worded by OpenAI like a model-access fault)
// reaches the client as the provider's 404; once every key is excluded
// for it, it costs one attempt; no key is benched for it.
func TestUnknownModelCostsAttemptsOnlyUntilEveryKeyIsExcluded(t *testing.T) {
	up := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) {
		if m := modelOf(r); m == "gpt-nope" {
			w.WriteHeader(404)
			io.WriteString(w, modelNotFound(m))
			return
		}
		io.WriteString(w, `{"ok":true}`)
	})
	e := start(t, testKeys, []string{up.URL}, map[string]string{"MAX_RETRIES": "10"})
	for i, want := range []string{strconv.Itoa(len(testKeys)), "1", "1"} {
		resp, body := do(t, http.MethodPost, e.URL+"/v1/chat/completions", chat("gpt-nope"))
		if resp.StatusCode != 404 || body != modelNotFound("gpt-nope") {
			t.Fatalf("request %d: %d %q; want the provider's own 404", i, resp.StatusCode, body)
		}
		if got := resp.Header.Get(proxy.HeaderAttempts); got != want {
			t.Errorf("request %d took %s attempts; want %s", i, got, want)
		}
	}
	if resp, _ := do(t, http.MethodPost, e.URL+"/v1/chat/completions", chat("gpt-4o")); resp.StatusCode != 200 || resp.Header.Get(proxy.HeaderAttempts) != "1" {
		t.Errorf("another model: %d after %s attempts; want 200 after 1", resp.StatusCode, resp.Header.Get(proxy.HeaderAttempts))
	}
	if st := stats(t, e); st.Keys.Healthy != len(testKeys) {
		t.Errorf("healthy keys %d; want all %d", st.Keys.Healthy, len(testKeys))
	}
}

// hammer sends n concurrent requests and returns how many did not get 200.
func hammer(t *testing.T, url string, n int) int64 { return clients(t, url, n, 1) }

// clients runs n concurrent clients that each send each requests in turn,
// and returns how many requests did not get 200.
func clients(t *testing.T, url string, n, each int) int64 {
	t.Helper()
	var wg sync.WaitGroup
	var bad atomic.Int64
	for range n {
		wg.Go(func() {
			for range each {
				resp, err := client().Post(url, "application/json", strings.NewReader(chat("gpt-4o")))
				if err != nil {
					bad.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					bad.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return bad.Load()
}

// TestConcurrentRateLimitsAreOneEpisode fires hundreds of concurrent
// requests while one key is rate limited without Retry-After: all its 429s
// are one episode, so it rests KEY_COOLDOWN once, not doubled per 429.
func TestConcurrentRateLimitsAreOneEpisode(t *testing.T) {
	limited := testKeys[0]
	up := testupstream.New(t, byKey(map[string]answer{limited: {status: 429, body: openAIRateLimit}}))
	e := start(t, testKeys, []string{up.URL}, map[string]string{"KEY_COOLDOWN": "60", "MAX_RETRIES": "3"})
	if bad := hammer(t, e.URL+"/v1/chat/completions", 300); bad != 0 {
		t.Errorf("%d of 300 requests failed; want 0 (other keys were fine)", bad)
	}
	for _, d := range keyDetails(t, e) {
		if d.State != "cooling" {
			continue
		}
		until, err := time.Parse(time.RFC3339, d.CoolingUntil)
		if err != nil {
			t.Fatalf("cooling_until %q: %v", d.CoolingUntil, err)
		}
		if rest := time.Until(until); rest > 61*time.Second {
			t.Errorf("key %s rests %v after one burst of 429s; want at most KEY_COOLDOWN (60s)", d.Preview, rest)
		}
	}
}

// TestConcurrentPermanentFailuresBlacklistOnce: hundreds of concurrent
// requests meet a revoked key; it is blacklisted once, logged once.
func TestConcurrentPermanentFailuresBlacklistOnce(t *testing.T) {
	up := testupstream.New(t, byKey(map[string]answer{testKeys[1]: {status: 401, body: openAIInvalidKey}}))
	e := start(t, testKeys, []string{up.URL}, nil)
	if bad := hammer(t, e.URL+"/v1/chat/completions", 300); bad != 0 {
		t.Errorf("%d of 300 requests failed; want 0", bad)
	}
	if n := strings.Count(e.Logs.String(), `"msg":"key blacklisted"`); n != 1 {
		t.Errorf("%d 'key blacklisted' log lines; want exactly 1", n)
	}
	if bl := blacklist(t, e); bl.Count != 1 {
		t.Errorf("/blacklist count %d; want 1", bl.Count)
	}
}

// TestQuotaHeadersRestKeyBeforeA429: an answer saying the key has no
// requests left rests it until the reset, before the provider would
// refuse; /stats shows the figures.
func TestQuotaHeadersRestKeyBeforeA429(t *testing.T) {
	spent := testKeys[2]
	up := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) {
		if testupstream.KeyOf(r.Header) == spent {
			w.Header().Set("x-ratelimit-remaining-requests", "0")
			w.Header().Set("x-ratelimit-reset-requests", "30s")
			w.Header().Set("x-ratelimit-remaining-tokens", "9000")
			w.Header().Set("x-ratelimit-reset-tokens", "1s")
		} else {
			w.Header().Set("x-ratelimit-remaining-requests", "99")
			w.Header().Set("x-ratelimit-reset-requests", "1s")
		}
		io.WriteString(w, `{"ok":true}`)
	})
	e := start(t, testKeys, []string{up.URL}, nil)
	before := time.Now()
	for range 12 {
		if resp, _ := do(t, http.MethodPost, e.URL+"/v1/chat/completions", chat("gpt-4o")); resp.StatusCode != 200 {
			t.Fatalf("status %d; want 200", resp.StatusCode)
		}
	}
	if n := attemptsByKey(up)[spent]; n != 1 {
		t.Errorf("the key with nothing left was used %d times; want once (then it rests)", n)
	}
	for _, d := range keyDetails(t, e) {
		if d.Quota == nil || d.Quota.RequestsRemaining == nil {
			t.Errorf("key %s: quota %+v; want the last seen figures", d.Preview, d.Quota)
			continue
		}
		if *d.Quota.RequestsRemaining == 0 {
			if d.State != "cooling" || d.Reason != "quota_headers" || d.Quota.TokensRemaining == nil || *d.Quota.TokensRemaining != 9000 {
				t.Errorf("spent key: %s (%s), tokens %v; want cooling (quota_headers) with 9000 tokens seen", d.State, d.Reason, d.Quota.TokensRemaining)
			}
			until, _ := time.Parse(time.RFC3339, d.CoolingUntil)
			restFrom(t, "its reset, x-ratelimit-reset-requests", until, before, 30*time.Second)
		}
	}
}

// TestPerAccountLimitsCoolKeysNotTarget: while some keys succeed on the
// target, keys that hit their own limits cool one by one; the target is
// not benched and the limited keys are not restored.
func TestPerAccountLimitsCoolKeysNotTarget(t *testing.T) {
	keys := make([]string, 6)
	for i := range keys {
		keys[i] = fmt.Sprintf("sk-test-acct-%040d", i)
	}
	var limit atomic.Bool
	up := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) {
		k := testupstream.KeyOf(r.Header)
		if limit.Load() && (k == keys[0] || k == keys[1] || k == keys[2]) {
			w.Header().Set("Retry-After", "30")
			w.WriteHeader(429)
			io.WriteString(w, openAIRateLimit)
			return
		}
		io.WriteString(w, `{"ok":true}`)
	})
	e := start(t, keys, []string{up.URL}, nil)
	for range 2 * len(keys) { // every key succeeds first
		do(t, http.MethodGet, e.URL+"/v1/models", "")
	}
	limit.Store(true)
	bad := clients(t, e.URL+"/v1/chat/completions", 6, 10) // six clients, each sending in turn
	// The very first answers of a burst can look like an upstream refusing
	// every key (three limited keys answering before any other): the
	// target is benched for a moment and a retry or two ends with the 429.
	// The first success after it lifts the bench, and the limited keys go
	// on carrying their own faults.
	if n := bad; n > 12 {
		t.Errorf("%d of 60 requests failed; want at most a few at the burst's start", n)
	}
	t.Logf("%d of 60 requests failed", bad)
	st := stats(t, e)
	if st.Targets[0].State != "active" {
		t.Errorf("target %s; want active: other keys succeed on it", st.Targets[0].State)
	}
	if st.Keys.Cooling != 3 {
		t.Errorf("%d keys cooling; want the 3 limited ones", st.Keys.Cooling)
	}
}

// TestStormCostsAboutOneAttemptPerRequest: an IP-wide 429 storm on the only
// target. The target is benched (not the keys), retries never go back to
// it and the proxy-wide budget caps them: the provider gets about one
// attempt per client request, not MAX_RETRIES+1.
func TestStormCostsAboutOneAttemptPerRequest(t *testing.T) {
	keys := make([]string, 8)
	for i := range keys {
		keys[i] = fmt.Sprintf("sk-test-storm-%040d", i)
	}
	var storm atomic.Bool
	up := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) {
		if storm.Load() {
			w.WriteHeader(429)
			io.WriteString(w, openAIRateLimit)
			return
		}
		io.WriteString(w, `{"ok":true}`)
	})
	e := start(t, keys, []string{up.URL}, map[string]string{"MAX_RETRIES": "3", "TARGET_COOLDOWN_MS": "60000"})
	for range 2 * len(keys) {
		do(t, http.MethodGet, e.URL+"/v1/models", "")
	}
	before := up.Count()
	storm.Store(true)
	const n = 200
	hammer(t, e.URL+"/v1/chat/completions", n)
	attempts := up.Count() - before
	if float64(attempts) > 1.5*n {
		t.Errorf("%d client requests during the storm cost %d upstream attempts; want at most %d", n, attempts, int(1.5*n))
	}
	st := stats(t, e)
	if st.Keys.Healthy != len(keys) {
		t.Errorf("healthy keys %d of %d after the storm; want all (the target was to blame)", st.Keys.Healthy, len(keys))
	}
	// /health stays 200 (degraded): the proxy still uses the benched
	// target, and one upstream must not fail every replica's readiness.
	var h struct{ Status string }
	hr, hb := do(t, http.MethodGet, e.URL+"/health", "")
	json.Unmarshal([]byte(hb), &h)
	if hr.StatusCode != 200 || h.Status != "degraded" {
		t.Errorf("/health = %d %s with the only target benched; want 200 degraded", hr.StatusCode, h.Status)
	}
	// After the storm the benched target serves first attempts again.
	storm.Store(false)
	if resp, _ := do(t, http.MethodPost, e.URL+"/v1/chat/completions", chat("gpt-4o")); resp.StatusCode != 200 {
		t.Errorf("after the storm: %d; want 200", resp.StatusCode)
	}
}

// TestQueueTimeoutWaitsForAKey: with the only key resting a second, a
// request waits for it under QUEUE_TIMEOUT, and gets 503 at once without.
func TestQueueTimeoutWaitsForAKey(t *testing.T) {
	key := testKeys[:1]
	var limited atomic.Bool
	limited.Store(true)
	up := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) {
		if limited.Swap(false) {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(429)
			io.WriteString(w, openAIRateLimit)
			return
		}
		io.WriteString(w, `{"ok":true}`)
	})
	for _, tt := range []struct {
		queue      string
		wantStatus int
	}{{"0", 429}, {"5", 200}} {
		limited.Store(true)
		e := start(t, key, []string{up.URL}, map[string]string{"QUEUE_TIMEOUT": tt.queue})
		// The first request meets the 429; with one key there is nobody
		// to retry on, and with a queue it waits for the key to return.
		resp, body := do(t, http.MethodPost, e.URL+"/v1/chat/completions", chat("gpt-4o"))
		if resp.StatusCode != tt.wantStatus {
			t.Errorf("QUEUE_TIMEOUT=%s: %d %s; want %d", tt.queue, resp.StatusCode, body, tt.wantStatus)
		}
	}
	// A wait longer than QUEUE_TIMEOUT is not begun: 503 at once. The key
	// is back in 60 s and QUEUE_TIMEOUT is 50 s, so a wait that was begun
	// would last 50 s: 25 s tells the two apart on any machine.
	limited.Store(false)
	up.SetHandler(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "60")
		w.WriteHeader(429)
		io.WriteString(w, openAIRateLimit)
	})
	e := start(t, key, []string{up.URL}, map[string]string{"QUEUE_TIMEOUT": "50"})
	do(t, http.MethodPost, e.URL+"/v1/chat/completions", chat("gpt-4o"))
	begin := time.Now()
	resp, body := do(t, http.MethodPost, e.URL+"/v1/chat/completions", chat("gpt-4o"))
	if resp.StatusCode != 503 || !strings.Contains(body, "no_available_keys") || resp.Header.Get("Retry-After") == "" {
		t.Errorf("key back in 60s, QUEUE_TIMEOUT=50: %d %s (Retry-After %q); want 503 no_available_keys with Retry-After", resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}
	if took := time.Since(begin); took > 25*time.Second {
		t.Errorf("the 503 took %v: the request waited in the queue for a key that returns after QUEUE_TIMEOUT; want the 503 at once", took)
	}
}

// TestAccountHeadersRemoved: headers binding a request to the client's
// OpenAI organization or project never reach the upstream.
func TestAccountHeadersRemoved(t *testing.T) {
	up := testupstream.New(t, nil)
	e := start(t, testKeys, []string{up.URL}, nil)
	req, _ := http.NewRequest(http.MethodPost, e.URL+"/v1/chat/completions", strings.NewReader(chat("gpt-4o")))
	req.Header.Set("OpenAI-Organization", "org-client")
	req.Header.Set("OpenAI-Project", "proj_client")
	req.Header.Set("OpenAI-Beta", "assistants=v2")
	resp, err := client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	got := up.Requests()[0].Header
	if got.Get("OpenAI-Organization") != "" || got.Get("OpenAI-Project") != "" || got.Get("OpenAI-Beta") != "assistants=v2" {
		t.Errorf("upstream got Organization %q, Project %q, Beta %q; want none, none, assistants=v2",
			got.Get("OpenAI-Organization"), got.Get("OpenAI-Project"), got.Get("OpenAI-Beta"))
	}
}

// TestQueuedRequestLeavesWithItsClient: a request waiting for a key is
// dropped from the queue when its client goes away.
func TestQueuedRequestLeavesWithItsClient(t *testing.T) {
	up := testupstream.New(t, nil)
	e := start(t, testKeys[:1], []string{up.URL}, map[string]string{"QUEUE_TIMEOUT": "30"})
	e.Keys.Cool(e.Keys.Keys()[0], time.Now().Add(20*time.Second), "rate_limit_exceeded", 429)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.URL+"/v1/chat/completions", strings.NewReader(chat("gpt-4o")))
	done := make(chan error, 1)
	go func() {
		resp, err := client().Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	waitUntil(t, 5*time.Second, "the request is waiting", func() bool { return e.Proxy.InFlight() == 1 })
	cancel()
	<-done
	waitUntil(t, 5*time.Second, "the request left the queue", func() bool { return e.Proxy.InFlight() == 0 })
	if up.Count() != 0 {
		t.Errorf("upstream saw %d requests; want none", up.Count())
	}
}

// waitUntil polls cond until it holds, failing after timeout.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestOwnQuota429NeverBlamesTarget: a burst meets keys over their own
// limits, whose 429s carry rate-limit headers saying the key's quota is
// spent. That is each key's limit, not an upstream refusing everyone: the
// only target stays in rotation and the requests move on to other keys.
func TestOwnQuota429NeverBlamesTarget(t *testing.T) {
	keys := make([]string, 6)
	for i := range keys {
		keys[i] = fmt.Sprintf("sk-test-own-%040d", i)
	}
	var limit atomic.Bool
	up := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) {
		k := testupstream.KeyOf(r.Header)
		if limit.Load() && (k == keys[0] || k == keys[1] || k == keys[2] || k == keys[3]) {
			w.Header().Set("x-ratelimit-remaining-requests", "0")
			w.Header().Set("x-ratelimit-reset-requests", "30s")
			w.WriteHeader(429)
			io.WriteString(w, openAIRateLimit)
			return
		}
		io.WriteString(w, `{"ok":true}`)
	})
	e := start(t, keys, []string{up.URL}, map[string]string{"MAX_RETRIES": "5"})
	// Enough traffic first that the proxy-wide retry budget (half the
	// first attempts, plus 10) covers the burst's retries: this test is
	// about whom the 429s blame, not about the budget.
	for range 10 * len(keys) {
		do(t, http.MethodGet, e.URL+"/v1/models", "")
	}
	limit.Store(true)
	if bad := hammer(t, e.URL+"/v1/chat/completions", 60); bad != 0 {
		t.Errorf("%d of 60 requests failed; want 0 (two keys had room)", bad)
	}
	st := stats(t, e)
	if st.Targets[0].State != "active" {
		t.Errorf("target %s; want active", st.Targets[0].State)
	}
	if strings.Contains(e.Logs.String(), "several healthy keys failed the same way") {
		t.Error("keys over their own quota were taken for an upstream refusing everyone")
	}
}
