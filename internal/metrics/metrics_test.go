package metrics_test

import (
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/gpt-load/gpt-load/internal/testserver"
	"github.com/gpt-load/gpt-load/internal/testupstream"
)

var keys = []string{
	"sk-metrics-000000000000000000000000000000000000000001",
	"sk-metrics-000000000000000000000000000000000000000002",
	"sk-metrics-000000000000000000000000000000000000000003",
}

const token = "metrics-auth-token-1234567"

func start(t *testing.T, upstreams ...string) string {
	t.Helper()
	return testserver.Start(t, testserver.Options{Keys: keys, Upstreams: upstreams,
		Env: map[string]string{"AUTH_KEY": token, "HOST": "", "LOG_FORMAT": ""}, Logs: io.Discard}).URL
}

func get(t *testing.T, url string, auth bool) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if auth {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// scrape parses /metrics into families.
func scrape(t *testing.T, base string) (map[string]*familyView, string) {
	t.Helper()
	resp, body := get(t, base+"/metrics", true)
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %d %s", resp.StatusCode, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics is not valid exposition format: %v", err)
	}
	out := map[string]*familyView{}
	for name, f := range fams {
		v := &familyView{}
		for _, m := range f.Metric {
			labels := map[string]string{}
			for _, l := range m.Label {
				labels[l.GetName()] = l.GetValue()
			}
			val := 0.0
			switch {
			case m.Counter != nil:
				val = m.Counter.GetValue()
			case m.Gauge != nil:
				val = m.Gauge.GetValue()
			case m.Histogram != nil:
				val = float64(m.Histogram.GetSampleCount())
			}
			v.samples = append(v.samples, sample{labels, val})
		}
		out[name] = v
	}
	return out, body
}

type sample struct {
	labels map[string]string
	value  float64
}

type familyView struct{ samples []sample }

// sum adds the samples whose labels include match.
func (f *familyView) sum(match map[string]string) float64 {
	if f == nil {
		return 0
	}
	total := 0.0
next:
	for _, s := range f.samples {
		for k, v := range match {
			if s.labels[k] != v {
				continue next
			}
		}
		total += s.value
	}
	return total
}

func TestMetricsReflectTraffic(t *testing.T) {
	up := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case testupstream.KeyOf(r.Header) == keys[0]:
			w.WriteHeader(401)
			io.WriteString(w, `{"error":{"code":"invalid_api_key","type":"invalid_request_error","message":"bad"}}`)
		case r.URL.Path == "/v1/missing":
			w.WriteHeader(404)
		}
	})
	base := start(t, up.URL)
	for range 5 {
		get(t, base+"/v1/models", true)
	}
	get(t, base+"/v1/missing", true)
	if resp, _ := get(t, base+"/metrics", false); resp.StatusCode != 401 {
		t.Errorf("/metrics without the token: %d; want 401", resp.StatusCode)
	}
	if up.Count() != 7 {
		t.Fatalf("upstream saw %d attempts; want 7 (one retry after the 401)", up.Count())
	}

	m, body := scrape(t, base)
	for _, k := range keys {
		if strings.Contains(body, k) || strings.Contains(body, k[:12]) {
			t.Errorf("/metrics mentions a key")
		}
	}
	tgt := up.URL
	checks := []struct {
		name  string
		match map[string]string
		want  float64
	}{
		{"gpt_load_requests_total", map[string]string{"target": tgt, "code": "2xx"}, 5},
		{"gpt_load_requests_total", map[string]string{"target": tgt, "code": "4xx"}, 1},
		{"gpt_load_upstream_attempts_total", map[string]string{"target": tgt, "outcome": "success"}, 5},
		{"gpt_load_upstream_attempts_total", map[string]string{"target": tgt, "outcome": "key_permanent"}, 1},
		{"gpt_load_upstream_attempts_total", map[string]string{"target": tgt, "outcome": "client_error"}, 1},
		{"gpt_load_retries_total", nil, 1},
		{"gpt_load_request_duration_seconds", nil, 6},
		{"gpt_load_proxy_overhead_seconds", nil, 6},
		{"gpt_load_keys", map[string]string{"state": "blacklisted"}, 1},
		{"gpt_load_keys", map[string]string{"state": "active"}, 2},
		{"gpt_load_targets", map[string]string{"state": "active"}, 1},
		{"gpt_load_target_up", map[string]string{"target": tgt}, 1},
		{"gpt_load_requests_in_flight", nil, 0},
	}
	for _, c := range checks {
		if got := m[c.name].sum(c.match); got != c.want {
			t.Errorf("%s%v = %v; want %v", c.name, c.match, got, c.want)
		}
	}
	if _, ok := m["go_goroutines"]; !ok {
		t.Error("Go runtime metrics missing")
	}
	if resp, _ := get(t, base+"/metrics?x=1", true); resp.StatusCode != 200 {
		t.Errorf("/metrics with a query: %d", resp.StatusCode)
	}
	req, _ := http.NewRequest(http.MethodPost, base+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 || up.Count() != 7 {
		t.Errorf("POST /metrics: %d, upstream saw %d; want 405 and nothing proxied", resp.StatusCode, up.Count())
	}
}

func TestMetricsConsistentUnderLoad(t *testing.T) {
	up := testupstream.New(t, nil)
	up2 := testupstream.New(t, nil)
	base := start(t, up.URL, up2.URL)
	const workers, each = 8, 25
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				resp, err := http.Get(base + "/v1/models?key=" + token)
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	// Scrape while the load runs: the race detector watches.
	for range 5 {
		scrape(t, base)
	}
	wg.Wait()
	m, _ := scrape(t, base)
	if got := m["gpt_load_requests_total"].sum(map[string]string{"code": "2xx"}); got != workers*each {
		t.Errorf("requests_total 2xx = %v; want %d", got, workers*each)
	}
	if got := m["gpt_load_upstream_attempts_total"].sum(nil); got != float64(up.Count()+up2.Count()) {
		t.Errorf("attempts_total = %v; the upstreams saw %d", got, up.Count()+up2.Count())
	}
	if got := m["gpt_load_request_duration_seconds"].sum(nil); got != workers*each {
		t.Errorf("duration histogram count = %v; want %d", got, workers*each)
	}
}

// TestDashboardUsesRealMetrics fails when docs/grafana-dashboard.json
// queries a metric the code does not export.
func TestDashboardUsesRealMetrics(t *testing.T) {
	raw, err := os.ReadFile("../../docs/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	up := testupstream.New(t, nil)
	base := start(t, up.URL)
	get(t, base+"/v1/models", true)
	m, _ := scrape(t, base)
	names := regexp.MustCompile(`gpt_load_[a-z_]+`).FindAllString(string(raw), -1)
	if len(names) == 0 {
		t.Fatal("the dashboard queries no gpt_load metric")
	}
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_count"), "_sum")
		if _, ok := m[base]; !ok {
			t.Errorf("dashboard queries %s, which /metrics does not export", n)
		}
	}
}

// TestMetricsQuotaAndModels checks the quota last seen in rate-limit
// headers and the model exclusions show as gauges.
func TestMetricsQuotaAndModels(t *testing.T) {
	up := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) {
		if testupstream.KeyOf(r.Header) == keys[1] && strings.Contains(string(must(io.ReadAll(r.Body))), "gpt-x") {
			w.WriteHeader(404)
			io.WriteString(w, "{\"error\":{\"message\":\"The model `gpt-x` does not exist or you do not have access to it.\",\"type\":\"invalid_request_error\",\"code\":\"model_not_found\"}}")
			return
		}
		w.Header().Set("x-ratelimit-remaining-requests", "40")
		w.Header().Set("x-ratelimit-reset-requests", "1s")
		w.Header().Set("x-ratelimit-remaining-tokens", "1000")
		w.Header().Set("x-ratelimit-reset-tokens", "1s")
		io.WriteString(w, `{"ok":true}`)
	})
	base := start(t, up.URL)
	for range 3 {
		req, _ := http.NewRequest(http.MethodPost, base+"/v1/chat/completions", strings.NewReader(`{"model":"gpt-x"}`))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	m, _ := scrape(t, base)
	checks := []struct {
		name  string
		match map[string]string
		want  float64
	}{
		{"gpt_load_keys_quota_seen", nil, 2},
		{"gpt_load_keys_quota_exhausted", nil, 0},
		{"gpt_load_key_quota_remaining", map[string]string{"kind": "requests"}, 80},
		{"gpt_load_key_quota_remaining", map[string]string{"kind": "tokens"}, 2000},
		{"gpt_load_key_model_exclusions", nil, 1},
		{"gpt_load_upstream_attempts_total", map[string]string{"outcome": "key_model"}, 1},
	}
	for _, c := range checks {
		if got := m[c.name].sum(c.match); got != c.want {
			t.Errorf("%s%v = %v; want %v", c.name, c.match, got, c.want)
		}
	}
}

func must[T any](v T, _ error) T { return v }
