package proxy_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gpt-load/gpt-load/internal/testupstream"
)

// Answers that prove nothing against the key, as providers send them.
const (
	// Gemini's bare PERMISSION_DENIED: it names no key, model or resource.
	geminiDenied = `{"error":{"code":403,"message":"The caller does not have permission","status":"PERMISSION_DENIED"}}`
	// OpenRouter's moderation refusal: the content, not the key.
	openRouterFlagged = `{"error":{"code":403,"message":"gpt-4o requires moderation on OpenAI. Your input was flagged for \"harassment\". No credits were charged.","metadata":{"reasons":["harassment"],"flagged_input":"you are...","provider_name":"OpenAI","model_slug":"openai/gpt-4o"}},"user_id":"user_2abc"}`
)

func evidenceKeys(prefix string, n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("sk-test-%s-%040d", prefix, i)
	}
	return keys
}

// warm sends n model listings, so every key has succeeded recently.
func warm(t *testing.T, e *env, n int) {
	t.Helper()
	for range n {
		if resp, _ := do(t, http.MethodGet, e.URL+"/v1/models", ""); resp.StatusCode != 200 {
			t.Fatalf("warm-up: %d", resp.StatusCode)
		}
	}
}

// TestOneRequestOnARefusingTargetBenchesIt: a gateway answering 401 to
// every key, and an IP-wide 429. The three keys one request walks are the
// pattern: the target is benched at once, no key is blacklisted or cooling
// afterwards, and the next request is not refused for want of keys.
func TestOneRequestOnARefusingTargetBenchesIt(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		body   string
	}{
		{"gateway 401", 401, openAIInvalidKey},
		{"ip-wide 429", 429, openAIRateLimit},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keys := evidenceKeys("corr", 4)
			var broken atomic.Bool
			up := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) {
				if broken.Load() {
					w.WriteHeader(tc.status)
					io.WriteString(w, tc.body)
				}
			})
			e := start(t, keys, []string{up.URL}, map[string]string{"MAX_RETRIES": "3", "TARGET_COOLDOWN_MS": "60000"})
			warm(t, e, 2*len(keys))
			broken.Store(true)
			before := up.Count()
			resp, body := do(t, http.MethodPost, e.URL+"/v1/chat/completions", chat("gpt-4o"))
			if resp.StatusCode != tc.status {
				t.Errorf("first request: %d %s; want the upstream's own %d", resp.StatusCode, body, tc.status)
			}
			if n := up.Count() - before; n != 3 {
				t.Errorf("first request made %d attempts; want 3 (the pattern, then no retry to a benched target)", n)
			}
			st := stats(t, e)
			if st.Targets[0].State != "benched" {
				t.Errorf("target %q; want benched", st.Targets[0].State)
			}
			if st.Keys.Healthy != len(keys) {
				t.Errorf("healthy keys %d of %d; want all: one request's pattern blames the target", st.Keys.Healthy, len(keys))
			}
			// The next request still reaches the upstream (the benched
			// target is the only one) and gets its answer, not a 503.
			resp, body = do(t, http.MethodPost, e.URL+"/v1/chat/completions", chat("gpt-4o"))
			if resp.StatusCode == http.StatusServiceUnavailable {
				t.Errorf("second request: 503 %s; want the upstream's answer", body)
			}
			if st := stats(t, e); st.Keys.Healthy != len(keys) {
				t.Errorf("after the second request: healthy keys %d of %d", st.Keys.Healthy, len(keys))
			}
		})
	}
}

// TestOneRequestPatternRetriesOnAnotherTarget: with a second target, the
// request that exposes the pattern is served there.
func TestOneRequestPatternRetriesOnAnotherTarget(t *testing.T) {
	keys := evidenceKeys("corr2", 5)
	var broken atomic.Bool
	a := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) {
		if broken.Load() {
			w.WriteHeader(401)
			io.WriteString(w, openAIInvalidKey)
		}
	})
	b := testupstream.New(t, nil)
	e := start(t, keys, []string{a.URL, b.URL}, map[string]string{"MAX_RETRIES": "4", "TARGET_COOLDOWN_MS": "60000"})
	warm(t, e, 4*len(keys))
	broken.Store(true)
	for i := range 10 {
		if resp, body := do(t, http.MethodPost, e.URL+"/v1/chat/completions", chat("gpt-4o")); resp.StatusCode != 200 {
			t.Errorf("request %d: %d %s; want 200 via the other target", i, resp.StatusCode, body)
		}
	}
	st := stats(t, e)
	if st.Targets[0].State != "benched" {
		t.Errorf("target A %q; want benched", st.Targets[0].State)
	}
	if st.Keys.Healthy != len(keys) {
		t.Errorf("healthy keys %d of %d; want all", st.Keys.Healthy, len(keys))
	}
}

// TestUnprovenForbiddenSuspectsOnlyAfterTwoRequests: a bare 403 from one
// key is tried once on another key. When that key serves the request the
// first is suspected; suspicions from two different requests blacklist it,
// and one alone does not.
func TestUnprovenForbiddenSuspectsOnlyAfterTwoRequests(t *testing.T) {
	keys := evidenceKeys("unproven", 4)
	up := testupstream.New(t, byKey(map[string]answer{keys[0]: {403, geminiDenied, nil}}))
	e := start(t, keys, []string{up.URL}, nil)
	// Rotation starts at keys[0]: the first request meets the 403 first.
	resp, body := do(t, http.MethodPost, e.URL+"/v1/chat/completions", chat("gpt-4o"))
	if resp.StatusCode != 200 || resp.Header.Get("X-Gpt-Load-Attempts") != "2" {
		t.Fatalf("first request: %d (attempts %s) %s; want 200 after 2 attempts", resp.StatusCode,
			resp.Header.Get("X-Gpt-Load-Attempts"), body)
	}
	if bl := blacklist(t, e); bl.Count != 0 {
		t.Fatalf("one request blacklisted %d keys; want none: one request proves nothing", bl.Count)
	}
	// Keys 2 and 3, then keys[0] again, suspected by a second request.
	for range 3 {
		do(t, http.MethodPost, e.URL+"/v1/chat/completions", chat("gpt-4o"))
	}
	bl := blacklist(t, e)
	if bl.Count != 1 || bl.Keys[0].Status != 403 {
		t.Fatalf("/blacklist after two suspicions = %+v; want keys[0] with status 403", bl)
	}
	if !strings.HasPrefix(keys[0], strings.TrimSuffix(strings.SplitN(bl.Keys[0].Preview, "…", 2)[0], "...")) {
		t.Errorf("blacklisted %q; want the key that answered 403", bl.Keys[0].Preview)
	}
}

// TestUnprovenFromEveryKeyEndsAfterTwoAttempts: the same bare 403 from the
// second key says the request is refused: it ends there, with the
// provider's answer, and no key is blamed however often it comes.
func TestUnprovenFromEveryKeyEndsAfterTwoAttempts(t *testing.T) {
	keys := evidenceKeys("unproven-all", 4)
	up := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(403)
		io.WriteString(w, geminiDenied)
	})
	e := start(t, keys, []string{up.URL}, map[string]string{"MAX_RETRIES": "3"})
	for i := range 6 {
		before := up.Count()
		resp, body := do(t, http.MethodPost, e.URL+"/v1/chat/completions", chat("gpt-4o"))
		if resp.StatusCode != 403 || body != geminiDenied {
			t.Errorf("request %d: %d %s; want the provider's 403 as is", i, resp.StatusCode, body)
		}
		if n := up.Count() - before; n != 2 {
			t.Errorf("request %d made %d attempts; want 2", i, n)
		}
	}
	if st := stats(t, e); st.Keys.Healthy != len(keys) || st.Targets[0].State != "active" {
		t.Errorf("healthy keys %d of %d, target %s; want every key and the target untouched", st.Keys.Healthy, len(keys), st.Targets[0].State)
	}
}

// TestContentRefusalNeverRetriedNeverBlamed: a moderation refusal is about
// the content. Concurrent requests with flagged content, from every key,
// take no key out and cost one attempt each.
func TestContentRefusalNeverRetriedNeverBlamed(t *testing.T) {
	keys := evidenceKeys("flagged", 5)
	up := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(403)
		io.WriteString(w, openRouterFlagged)
	})
	e := start(t, keys, []string{up.URL}, map[string]string{"MAX_RETRIES": "3"})
	const n = 40
	if bad := hammer(t, e.URL+"/v1/chat/completions", n); bad != n {
		t.Errorf("%d of %d flagged requests failed; want all (the provider's 403)", bad, n)
	}
	if got := up.Count(); got != n {
		t.Errorf("%d flagged requests cost %d attempts; want one each", n, got)
	}
	if st := stats(t, e); st.Keys.Healthy != len(keys) {
		t.Errorf("healthy keys %d of %d; want all", st.Keys.Healthy, len(keys))
	}
}

// TestProbeOwnLimitCoolsKeyNotTarget: a target benched for 503s is probed
// when its bench ends; the probe's key answers with its own rate limit.
// The target answered, so it is up: the key cools, the target returns to
// rotation and the request is served by the next key.
func TestProbeOwnLimitCoolsKeyNotTarget(t *testing.T) {
	keys := evidenceKeys("probe", 4)
	var phase atomic.Int32
	up := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case phase.Load() == 0:
			w.WriteHeader(503)
		case testupstream.KeyOf(r.Header) == keys[3]:
			w.Header().Set("Retry-After", "30")
			w.WriteHeader(429)
			io.WriteString(w, openAIRateLimit)
		}
	})
	e := start(t, keys, []string{up.URL}, map[string]string{"MAX_RETRIES": "3", "TARGET_COOLDOWN_MS": "100"})
	// Keys 0, 1, 2 meet three 503s: the target is benched.
	do(t, http.MethodPost, e.URL+"/v1/chat/completions", chat("gpt-4o"))
	if st := stats(t, e); st.Targets[0].State == "active" {
		t.Fatalf("target %q after three 503s; want benched", st.Targets[0].State)
	}
	phase.Store(1)
	deadline := time.Now().Add(5 * time.Second)
	for stats(t, e).Targets[0].State != "probing" {
		if time.Now().After(deadline) {
			t.Fatal("the bench did not end")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The probe takes keys[3], which is over its own limit.
	resp, body := do(t, http.MethodPost, e.URL+"/v1/chat/completions", chat("gpt-4o"))
	if resp.StatusCode != 200 {
		t.Errorf("probe request: %d %s; want 200 from the next key", resp.StatusCode, body)
	}
	st := stats(t, e)
	if st.Targets[0].State != "active" {
		t.Errorf("target %q; want active: a key's own 429 is not the target's", st.Targets[0].State)
	}
	if st.Keys.Cooling != 1 {
		t.Errorf("%d keys cooling; want the one over its limit\n%s", st.Keys.Cooling, e.Logs.String())
	}
}

// TestLoopAnswered508: OPENAI_BASE_URL leads back to the proxy through a
// hop. The looped request is answered 508 loop_detected before auth (it
// carries a pool key, not the client's token), no key or target is
// blamed, and the loop is logged once.
func TestLoopAnswered508(t *testing.T) {
	var proxyURL atomic.Pointer[url.URL]
	hop := httptest.NewServer(&httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(proxyURL.Load())
		pr.Out.Host = ""
	}})
	t.Cleanup(hop.Close)
	keys := evidenceKeys("loop", 4)
	e := start(t, keys, []string{hop.URL}, map[string]string{"AUTH_KEY": "client-token-123456"})
	u, _ := url.Parse(e.URL)
	proxyURL.Store(u)
	for i := range 3 {
		req, _ := http.NewRequest(http.MethodPost, e.URL+"/v1/chat/completions", strings.NewReader(chat("gpt-4o")))
		req.Header.Set("Authorization", "Bearer client-token-123456")
		resp, err := client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusLoopDetected || !strings.Contains(string(b), `"loop_detected"`) {
			t.Errorf("request %d: %d %s; want 508 loop_detected", i, resp.StatusCode, b)
		}
		assertNoKeys(t, "508 answer", string(b), keys...)
	}
	// The loop is seen again from the proxy's side: its keys and its one
	// target stay in rotation.
	if c := e.Keys.Counts(); c.Active != len(keys) {
		t.Errorf("keys %+v; want every key active", c)
	}
	for _, tg := range e.App.Parts().Targets.Targets() {
		if !tg.Active() {
			t.Errorf("target %s is %s; want active", tg, tg.State(time.Now()))
		}
	}
	if n := strings.Count(e.Logs.String(), "request loop: this upstream leads back"); n != 1 {
		t.Errorf("loop logged %d times; want once", n)
	}
}

// TestModelsOnlyCapableKeyResting: the one key that has served gpt-4o is
// resting, the other is excluded for it. The client gets 503 with the
// resting key's Retry-After (or, under QUEUE_TIMEOUT, waits for it), not
// the excluded key's "model does not exist".
func TestModelsOnlyCapableKeyResting(t *testing.T) {
	for _, tc := range []struct {
		name       string
		retryAfter string
		vars       map[string]string
		queue      bool
	}{
		{"no queue: 503 with Retry-After", "30", nil, false},
		{"queue: waits for the key", "1", map[string]string{"QUEUE_TIMEOUT": "10"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keys := evidenceKeys("capable", 2)
			var limited atomic.Bool
			up := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) {
				switch testupstream.KeyOf(r.Header) {
				case keys[0]:
					if limited.CompareAndSwap(true, false) {
						w.Header().Set("Retry-After", tc.retryAfter)
						w.WriteHeader(429)
						io.WriteString(w, openAIRateLimit)
					}
				case keys[1]:
					w.WriteHeader(404)
					io.WriteString(w, modelNotFound("gpt-4o"))
				}
			})
			e := start(t, keys, []string{up.URL}, tc.vars)
			// keys[0] serves gpt-4o, keys[1] is excluded for it.
			for i := range 2 {
				if resp, body := do(t, http.MethodPost, e.URL+"/v1/chat/completions", chat("gpt-4o")); resp.StatusCode != 200 {
					t.Fatalf("warm-up %d: %d %s", i, resp.StatusCode, body)
				}
			}
			// Now keys[0] is limited: this request meets its 429.
			limited.Store(true)
			resp, body := do(t, http.MethodPost, e.URL+"/v1/chat/completions", chat("gpt-4o"))
			if tc.queue {
				if resp.StatusCode != 200 {
					t.Errorf("under QUEUE_TIMEOUT: %d %s; want 200 once the key is back", resp.StatusCode, body)
				}
				return
			}
			if resp.StatusCode == 404 {
				t.Errorf("request meeting the limit: 404 %s; want the capable key's answer, not the excluded key's", body)
			}
			for i := range 2 {
				resp, body = do(t, http.MethodPost, e.URL+"/v1/chat/completions", chat("gpt-4o"))
				if resp.StatusCode != 503 || !strings.Contains(body, "no_available_keys") {
					t.Errorf("request %d: %d %s; want 503 no_available_keys", i, resp.StatusCode, body)
				}
				if ra := resp.Header.Get("Retry-After"); ra == "" || ra == "0" {
					t.Errorf("request %d: Retry-After %q; want the resting key's seconds", i, ra)
				}
			}
		})
	}
}

// TestUnknownModelWhileAKeyRests: a client's typo of a model name, refused
// by every key asked, while another key rests. No key has shown it can
// serve the name, so the client gets the provider's own 404, not a 503
// that blames the keys. Found by the chaos harness (seeds 19 and 158).
func TestUnknownModelWhileAKeyRests(t *testing.T) {
	keys := evidenceKeys("typo", 3)
	var limited atomic.Bool
	up := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) {
		k := testupstream.KeyOf(r.Header)
		if k == keys[2] && limited.Load() {
			w.Header().Set("Retry-After", "30")
			w.WriteHeader(429)
			io.WriteString(w, openAIRateLimit)
			return
		}
		if m := modelOf(r); m == "gtp-4o" {
			w.WriteHeader(404)
			io.WriteString(w, modelNotFound(m))
		}
	})
	e := start(t, keys, []string{up.URL}, map[string]string{"MAX_RETRIES": "3"})
	limited.Store(true)
	// The first request walks the keys: keys[0] and [1] refuse the name,
	// keys[2] comes to rest on its 429, and its answer is the last.
	if resp, body := do(t, http.MethodPost, e.URL+"/v1/chat/completions", chat("gtp-4o")); resp.StatusCode == 503 {
		t.Fatalf("first request: 503 %s; want an upstream answer", body)
	}
	for i := range 3 {
		resp, body := do(t, http.MethodPost, e.URL+"/v1/chat/completions", chat("gtp-4o"))
		if resp.StatusCode != 404 || !strings.Contains(body, "model_not_found") {
			t.Errorf("request %d: %d %s; want the provider's 404", i, resp.StatusCode, body)
		}
	}
}

// TestGeminiPerModelDailyQuota: Gemini's per-model daily quota spent on
// one key excludes that pair until the provider's daily reset (midnight US
// Pacific), not for MODEL_COOLDOWN and not as a cooling key: the key keeps
// serving other models, and the spent model stops costing attempts on it.
func TestGeminiPerModelDailyQuota(t *testing.T) {
	body, err := os.ReadFile("../classify/testdata/answers/gemini_429_per_model_per_day.json")
	if err != nil {
		t.Fatal(err)
	}
	keys := evidenceKeys("gemini-day", 2)
	up := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) {
		if testupstream.KeyOf(r.Header) == keys[0] && strings.Contains(r.URL.Path, "/models/gemini-2.5-pro:") {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(429)
			w.Write(body)
			return
		}
		io.WriteString(w, `{"candidates":[]}`)
	})
	e := start(t, keys, []string{up.URL}, map[string]string{"UPSTREAM_AUTH_STYLE": "gemini", "MODEL_COOLDOWN": "60"})
	const pro = "/v1beta/models/gemini-2.5-pro:generateContent"
	for i := range 6 {
		if resp, b := do(t, http.MethodPost, e.URL+pro, `{"contents":[]}`); resp.StatusCode != 200 {
			t.Fatalf("request %d: %d %s; want 200 from the other key", i, resp.StatusCode, b)
		}
	}
	if resp, b := do(t, http.MethodPost, e.URL+"/v1beta/models/gemini-2.5-flash:generateContent", `{"contents":[]}`); resp.StatusCode != 200 {
		t.Fatalf("flash: %d %s", resp.StatusCode, b)
	}
	spent := 0
	for _, r := range up.Requests() {
		if r.Key == keys[0] && strings.Contains(r.Path, "gemini-2.5-pro") {
			spent++
		}
	}
	if spent != 1 {
		t.Errorf("the spent key was sent %d gemini-2.5-pro requests; want 1", spent)
	}
	pacific := time.FixedZone("", -8*3600) // midnight PST or PDT is 07:00 or 08:00 UTC
	for _, d := range keyDetails(t, e) {
		if d.State != "active" {
			t.Errorf("key %s is %s; want active: a per-model quota is the pair's", d.Preview, d.State)
		}
		for _, m := range d.ModelsExcluded {
			until, err := time.Parse(time.RFC3339, m.Until)
			if err != nil || m.Model != "gemini-2.5-pro" {
				t.Fatalf("excluded %+v", m)
			}
			left := time.Until(until)
			if h := until.In(pacific).Hour(); left < time.Minute || left > 24*time.Hour || (h != 0 && h != 1) {
				t.Errorf("excluded until %s (in %v); want the next midnight US Pacific, not MODEL_COOLDOWN", m.Until, left)
			}
		}
	}
}

// TestMultipartModelFaultExcludesOnlyThePair: an audio transcription is a
// multipart form; the key's 403 model_not_found for its model excludes
// the pair (the model is read from the form) instead of blacklisting the
// key, and the request is served by a key that may use the model. Found
// by the chaos harness (docs/chaos.md).
func TestMultipartModelFaultExcludesOnlyThePair(t *testing.T) {
	keys := evidenceKeys("multipart", 3)
	projectDenied := `{"error":{"message":"Project ` + "`proj_abc`" + ` does not have access to model ` + "`whisper-1`" + `","type":"invalid_request_error","param":null,"code":"model_not_found"}}`
	up := testupstream.New(t, byKey(map[string]answer{keys[0]: {403, projectDenied, nil}}))
	e := start(t, keys, []string{up.URL}, nil)
	var form strings.Builder
	form.WriteString("--b0undary\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.mp3\"\r\nContent-Type: audio/mpeg\r\n\r\n")
	form.WriteString(strings.Repeat("\x00\xff", 4096))
	form.WriteString("\r\n--b0undary\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n--b0undary--\r\n")
	for i := range 3 {
		req, _ := http.NewRequest(http.MethodPost, e.URL+"/v1/audio/transcriptions", strings.NewReader(form.String()))
		req.Header.Set("Content-Type", "multipart/form-data; boundary=b0undary")
		resp, err := client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("request %d: %d; want 200 from a key that may use whisper-1", i, resp.StatusCode)
		}
	}
	for _, d := range keyDetails(t, e) {
		if d.State != "active" {
			t.Errorf("key %s is %s; want active: a model fault is the pair's", d.Preview, d.State)
		}
	}
	if ds := keyDetails(t, e); len(ds[0].ModelsExcluded) != 1 || ds[0].ModelsExcluded[0].Model != "whisper-1" {
		t.Errorf("keys[0] excluded for %+v; want whisper-1", ds[0].ModelsExcluded)
	}
}
