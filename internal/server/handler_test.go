package server_test

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gpt-load/gpt-load/internal/apierr/apierrtest"
	"github.com/gpt-load/gpt-load/internal/secret"
	appserver "github.com/gpt-load/gpt-load/internal/server"
	"github.com/gpt-load/gpt-load/internal/testupstream"
)

func TestManagementWrongMethod(t *testing.T) {
	s := newServer(t, options{env: map[string]string{"AUTH_KEY": testAuthKey}})
	tests := []struct {
		method, path string
		wantAllow    []string
	}{
		{http.MethodDelete, "/stats", []string{"GET", "HEAD"}},
		{http.MethodPost, "/stats", []string{"GET", "HEAD"}},
		{http.MethodPost, "/health", []string{"GET", "HEAD"}},
		{http.MethodPatch, "/health", []string{"GET", "HEAD"}},
		{http.MethodOptions, "/health", []string{"GET", "HEAD"}},
		{http.MethodPut, "/blacklist", []string{"GET", "HEAD"}},
		{http.MethodPut, "/reset-keys", []string{"GET", "POST"}},
		{http.MethodDelete, "/reset-keys", []string{"GET", "POST"}},
		{http.MethodPost, "/metrics", []string{"GET", "HEAD"}},
		{http.MethodPost, "/status", []string{"GET", "HEAD"}},
		{http.MethodDelete, "/status", []string{"GET", "HEAD"}},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			resp, body := s.do(t, tt.method, tt.path, strings.NewReader(`{"x":1}`))
			apierrtest.Check(t, resp, body, http.StatusMethodNotAllowed, "method_not_allowed")
			var allow []string
			for m := range strings.SplitSeq(resp.Header.Get("Allow"), ",") {
				if m = strings.TrimSpace(m); m != "" {
					allow = append(allow, m)
				}
			}
			slices.Sort(allow)
			if !slices.Equal(allow, tt.wantAllow) {
				t.Errorf("Allow = %q; want %v", resp.Header.Get("Allow"), tt.wantAllow)
			}
		})
	}
	if n := s.Up.Count(); n != 0 {
		t.Errorf("upstream got %d requests for management paths; want 0", n)
	}
}

// TestHeadDoesNotReset: GET /reset-keys resets, but a HEAD, which the
// route table answers for other GET routes, gets 405 and changes nothing.
func TestHeadDoesNotReset(t *testing.T) {
	s := newServer(t, options{})
	bl := s.nextKey(t)
	s.Keys.Blacklist(bl, "invalid api key", http.StatusUnauthorized)
	resp, _ := s.do(t, http.MethodHead, "/reset-keys", nil)
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("HEAD /reset-keys = %d; want 405", resp.StatusCode)
	}
	if got := resp.Header.Get("Allow"); got != "GET, POST" {
		t.Errorf("Allow = %q; want GET, POST", got)
	}
	if c := s.Keys.Counts(); c.Blacklisted != 1 {
		t.Errorf("after HEAD /reset-keys %d keys blacklisted; want 1 (no reset)", c.Blacklisted)
	}
}

// TestProxiedPathsAsSent: paths that are not management routes reach the
// upstream exactly as the client sent them: no cleaning, no redirect, even
// when they look like a management path.
func TestProxiedPathsAsSent(t *testing.T) {
	s := newServer(t, options{})
	paths := []string{"//v1/chat/completions", "/v1/./models", "/v1/../v1/models", "/v1/models/", "/health/", "/stats/x", "//health"}
	for i, p := range paths {
		req, err := http.NewRequest(http.MethodGet, s.URL+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.URL.Path = p
		resp, body := s.send(t, req)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s = %d %s; want the upstream's 200", p, resp.StatusCode, body)
			continue
		}
		got := s.Up.WaitFor(t, i+1, waitTimeout)[i]
		if got.Path != p {
			t.Errorf("GET %s reached the upstream as %s; want it unchanged", p, got.Path)
		}
	}
}

func TestManagementAuth(t *testing.T) {
	s := newServer(t, options{env: map[string]string{"AUTH_KEY": testAuthKey}})
	bl := s.nextKey(t)
	s.Keys.Blacklist(bl, "invalid api key", http.StatusUnauthorized)

	credentials := []struct {
		name   string
		header map[string]string
		query  string
		ok     bool
	}{
		{"none", nil, "", false},
		{"wrong bearer", map[string]string{"Authorization": "Bearer wrong"}, "", false},
		{"bearer", map[string]string{"Authorization": "Bearer " + testAuthKey}, "", true},
		{"x-api-key", map[string]string{"X-Api-Key": testAuthKey}, "", true},
		{"key parameter", nil, "key=" + url.QueryEscape(testAuthKey), true},
	}
	endpoints := []struct {
		method, path string
		public       bool
	}{
		{http.MethodGet, "/health", true},
		{http.MethodGet, "/status", true},
		{http.MethodGet, "/stats", false},
		{http.MethodGet, "/stats?keys=1", false},
		{http.MethodGet, "/blacklist", false},
		{http.MethodPost, "/reset-keys", false},
		{http.MethodGet, "/reset-keys", false},
		{http.MethodGet, "/metrics", false},
		{http.MethodGet, "/v1/models", false},
	}
	for _, c := range credentials {
		for _, e := range endpoints {
			if c.ok && strings.HasPrefix(e.path, "/reset-keys") {
				continue // would clear the blacklisted key checked below
			}
			t.Run(c.name+" "+e.method+" "+e.path, func(t *testing.T) {
				before := s.Up.Count()
				u := s.URL + e.path
				if c.query != "" {
					sep := "?"
					if strings.Contains(u, "?") {
						sep = "&"
					}
					u += sep + c.query
				}
				req := mustRequest(t, e.method, u, "")
				for k, v := range c.header {
					req.Header.Set(k, v)
				}
				resp, body := s.send(t, req)
				if c.ok || e.public {
					if resp.StatusCode != http.StatusOK {
						t.Errorf("%s %s with %s = %d %s; want 200", e.method, e.path, c.name, resp.StatusCode, body)
					}
					return
				}
				apierrtest.Check(t, resp, body, http.StatusUnauthorized, "invalid_auth")
				if n := s.Up.Count() - before; n != 0 {
					t.Errorf("upstream got %d requests for an unauthorised client; want 0", n)
				}
			})
		}
	}
	// No unauthorised /reset-keys got through.
	if c := s.Keys.Counts(); c.Blacklisted != 1 {
		t.Errorf("blacklisted keys = %d after unauthorised resets; want 1", c.Blacklisted)
	}
}

// TestNoRawKeysInAnswersOrLogs drives every endpoint, including failures,
// and scans every management answer and every log line for the keys and
// AUTH_KEY.
func TestNoRawKeysInAnswersOrLogs(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		t.Run(format, func(t *testing.T) {
			s := newServer(t, options{
				env: map[string]string{"AUTH_KEY": testAuthKey, "LOG_LEVEL": "debug", "LOG_FORMAT": format},
				upstream: func(w http.ResponseWriter, r *http.Request) {
					if r.URL.Path == "/v1/echo-key" {
						// Providers quote the key they rejected.
						w.Header().Set("Content-Type", "application/json")
						w.WriteHeader(http.StatusNotFound)
						fmt.Fprintf(w, `{"error":{"message":"Incorrect API key provided: %s","code":"not_found"}}`, r.Header.Get("Authorization"))
						return
					}
					w.Header().Set("Content-Type", "application/json")
					w.Write([]byte(`{"object":"list","data":[]}`))
				},
			})
			secrets := append(slices.Clone(s.Raw), testAuthKey)
			var answers strings.Builder
			record := func(what string, resp *http.Response, body []byte) {
				fmt.Fprintf(&answers, "%s: %d %v %s\n", what, resp.StatusCode, resp.Header, body)
			}

			// Proxied requests: their bodies come from the upstream and are
			// not ours to scan, but they must not leak into the logs.
			proxied := 0
			for _, p := range []string{"/v1/models", "/v1/models?key=" + testAuthKey, "/v1/echo-key", "/v1/chat/completions"} {
				s.do(t, http.MethodPost, p, strings.NewReader(`{"model":"gpt-4o"}`))
				proxied++
			}
			s.Keys.Blacklist(s.nextKey(t), "invalid api key "+s.Raw[0], http.StatusUnauthorized)
			s.Keys.Cool(s.nextKey(t), time.Now().Add(time.Minute), "rate limited", http.StatusTooManyRequests)

			for _, r := range []struct{ method, path string }{
				{http.MethodGet, "/health"},
				{http.MethodGet, "/stats"},
				{http.MethodGet, "/stats?keys=1"},
				{http.MethodGet, "/blacklist"},
				{http.MethodGet, "/metrics"},
				{http.MethodDelete, "/stats"},
			} {
				resp, body := s.do(t, r.method, r.path, nil)
				record(r.method+" "+r.path, resp, body)
			}
			unauth := mustRequest(t, http.MethodGet, s.URL+"/stats", "")
			unauth.Header.Set("Authorization", "Bearer "+s.Raw[1])
			resp, body := s.send(t, unauth)
			record("GET /stats with a key as token", resp, body)

			writeKeys(t, s.KeysFile, nil)
			resp, body = s.do(t, http.MethodPost, "/reset-keys", nil)
			record("POST /reset-keys (bad file)", resp, body)
			writeKeys(t, s.KeysFile, s.Raw)
			resp, body = s.do(t, http.MethodPost, "/reset-keys", nil)
			record("POST /reset-keys", resp, body)

			s.do(t, http.MethodGet, "/v1/models", nil)
			proxied++
			if format == "json" {
				s.Log.waitAccess(t, proxied)
			} else {
				waitText(t, s.Log, proxied)
			}

			checkNoRawKeys(t, "management answers", answers.String(), secrets)
			checkNoRawKeys(t, "log", s.Log.String(), secrets)
			if t.Failed() {
				t.Logf("answers:\n%s\nlog:\n%s", answers.String(), s.Log.String())
			}
		})
	}
}

// waitText waits for n access lines of proxied requests in a text log.
func waitText(t *testing.T, logs *logBuffer, n int) {
	t.Helper()
	count := func() int {
		c := 0
		for line := range strings.Lines(logs.String()) {
			if strings.Contains(line, `msg=request`) && strings.Contains(line, "upstream=") {
				c++
			}
		}
		return c
	}
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for count() < n {
		select {
		case <-logs.Changed():
		case <-deadline.C:
			t.Fatalf("%d access lines after %v; want %d\n%s", count(), waitTimeout, n, logs.String())
		}
	}
}

func TestAccessLog(t *testing.T) {
	tests := []struct {
		name         string
		env          map[string]string
		wantProxied  string // level of the proxied request's line; "" for none
		wantMgmtLine bool
	}{
		{"info", map[string]string{"LOG_LEVEL": "info"}, "info", false},
		{"debug", map[string]string{"LOG_LEVEL": "debug"}, "info", true},
		{"request log off", map[string]string{"LOG_LEVEL": "info", "LOG_ENABLE_REQUEST": "false"}, "", false},
		{"request log off at debug", map[string]string{"LOG_LEVEL": "debug", "LOG_ENABLE_REQUEST": "off"}, "debug", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.env["AUTH_KEY"] = testAuthKey
			s := newServer(t, options{env: tt.env})
			resp, body := s.do(t, http.MethodGet, "/v1/models?key="+testAuthKey+"&limit=5", nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET /v1/models = %d %s; want 200", resp.StatusCode, body)
			}
			s.do(t, http.MethodGet, "/stats", nil)
			// A final request whose line is certain, so that every line
			// before it is written when we look.
			s.do(t, http.MethodGet, "/health", nil)
			if tt.wantProxied != "" {
				waitLine(t, s.Log, func(e map[string]any) bool { return e["msg"] == "request" && e["path"] == "/v1/models" })
			}
			if tt.wantMgmtLine {
				waitLine(t, s.Log, func(e map[string]any) bool { return e["msg"] == "request" && e["path"] == "/health" })
			}

			var proxied, mgmt []map[string]any
			for _, e := range s.Log.entries(t) {
				if e["msg"] != "request" {
					continue
				}
				if e["path"] == "/v1/models" {
					proxied = append(proxied, e)
				} else {
					mgmt = append(mgmt, e)
				}
			}
			if tt.wantMgmtLine != (len(mgmt) == 2) {
				t.Errorf("management access lines = %v; want 2: %v", mgmt, tt.wantMgmtLine)
			}
			for _, e := range mgmt {
				if e["level"] != "debug" {
					t.Errorf("management line %v; want level debug", e)
				}
			}
			if tt.wantProxied == "" {
				if len(proxied) != 0 {
					t.Errorf("proxied access lines = %v; want none", proxied)
				}
				return
			}
			if len(proxied) != 1 {
				t.Fatalf("proxied access lines = %v; want 1", proxied)
			}
			reqs := s.Up.WaitFor(t, 1, waitTimeout)
			host := strings.TrimPrefix(s.Up.URL, "http://")
			want := map[string]any{
				"level":    tt.wantProxied,
				"method":   "GET",
				"path":     "/v1/models",
				"status":   float64(200),
				"key":      secret.Mask(reqs[0].Key),
				"upstream": host,
				"attempts": float64(1),
				"bytes":    float64(len(body)),
			}
			for k, v := range want {
				if proxied[0][k] != v {
					t.Errorf("access line %s = %v; want %v", k, proxied[0][k], v)
				}
			}
			if _, err := time.ParseDuration(fmt.Sprint(proxied[0]["duration"])); err != nil {
				t.Errorf("access line duration = %v; want a duration", proxied[0]["duration"])
			}
			if strings.Contains(s.Log.String(), "limit=5") {
				t.Errorf("log holds the query string:\n%s", s.Log.String())
			}
		})
	}
}

// waitLine waits for a JSON log line for which match is true.
func waitLine(t *testing.T, logs *logBuffer, match func(map[string]any) bool) {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		if slices.ContainsFunc(logs.entries(t), match) {
			return
		}
		select {
		case <-logs.Changed():
		case <-deadline.C:
			t.Fatalf("no matching log line after %v\n%s", waitTimeout, logs.String())
		}
	}
}

func TestPanicIsRecovered(t *testing.T) {
	s := newServer(t, options{
		env:       map[string]string{"LOG_LEVEL": "debug"},
		resetKeys: func() error { panic("reset exploded") },
	})
	resp, body := s.do(t, http.MethodPost, "/reset-keys", nil)
	apierrtest.Check(t, resp, body, http.StatusInternalServerError, "internal_error")

	waitLine(t, s.Log, func(e map[string]any) bool { return e["msg"] == "request" && e["path"] == "/reset-keys" })
	var panicLine, accessLine map[string]any
	for _, e := range s.Log.entries(t) {
		switch {
		case e["msg"] == "recovered from panic":
			panicLine = e
		case e["msg"] == "request" && e["path"] == "/reset-keys":
			accessLine = e
		}
	}
	if panicLine == nil {
		t.Fatalf("no panic line in\n%s", s.Log.String())
	}
	if stack, _ := panicLine["stack"].(string); !strings.Contains(stack, "server.(*Server).resetKeys") {
		t.Errorf("panic line stack = %q; want it to name the panicking handler", stack)
	}
	if got := accessLine["status"]; got != float64(http.StatusInternalServerError) {
		t.Errorf("access line status = %v; want 500", got)
	}

	// The server still serves.
	if resp, body := s.do(t, http.MethodGet, "/health", nil); resp.StatusCode != http.StatusOK {
		t.Errorf("GET /health after a panic = %d %s; want 200", resp.StatusCode, body)
	}
}

func TestCORSThroughServer(t *testing.T) {
	s := newServer(t, options{
		env: map[string]string{"ALLOWED_ORIGINS": "https://app.example.com"},
		upstream: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Access-Control-Allow-Origin", "https://upstream.example")
			w.Header().Set("Access-Control-Allow-Credentials", "true")
			w.Write([]byte(`{}`))
		},
	})
	tests := []struct {
		name       string
		method     string
		origin     string
		preflight  bool
		wantStatus int
		wantOrigin string
		wantUp     int
	}{
		{"preflight answered locally", http.MethodOptions, "https://app.example.com", true, http.StatusNoContent, "https://app.example.com", 0},
		{"preflight from a disallowed origin", http.MethodOptions, "https://evil.example", true, http.StatusNoContent, "", 0},
		{"upstream CORS replaced by ours", http.MethodPost, "https://app.example.com", false, http.StatusOK, "https://app.example.com", 1},
		{"upstream CORS removed for a disallowed origin", http.MethodPost, "https://evil.example", false, http.StatusOK, "", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := s.Up.Count()
			req := mustRequest(t, tt.method, s.URL+"/v1/chat/completions", "")
			req.Header.Set("Origin", tt.origin)
			if tt.preflight {
				req.Header.Set("Access-Control-Request-Method", "POST")
				req.Header.Set("Access-Control-Request-Headers", "authorization, content-type")
			}
			resp, _ := s.send(t, req)
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status = %d; want %d", resp.StatusCode, tt.wantStatus)
			}
			if got := resp.Header.Values("Access-Control-Allow-Origin"); !slices.Equal(got, nonEmpty(tt.wantOrigin)) {
				t.Errorf("Access-Control-Allow-Origin = %q; want %q", got, nonEmpty(tt.wantOrigin))
			}
			if got := resp.Header.Get("Access-Control-Allow-Credentials"); got != "" {
				t.Errorf("Access-Control-Allow-Credentials = %q; want none", got)
			}
			if got := s.Up.Count() - before; got != tt.wantUp {
				t.Errorf("upstream got %d requests; want %d", got, tt.wantUp)
			}
		})
	}
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

// TestOneOutcomeThreeViews: the access log, /stats and /metrics read the
// same outcome record of each proxied request, so they tell the same story:
// a request retried after a revoked key, successes and client errors.
func TestOneOutcomeThreeViews(t *testing.T) {
	var s *server
	s = newServer(t, options{upstream: func(w http.ResponseWriter, r *http.Request) {
		switch {
		case testupstream.KeyOf(r.Header) == s.Raw[0]:
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","code":"invalid_api_key"}}`)
		case r.URL.Path == "/v1/bad":
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"error":{"message":"bad","type":"invalid_request_error","code":null}}`)
		default:
			io.WriteString(w, `{"ok":true}`)
		}
	}})
	// The first request goes to the first key: 401, then a retry that works.
	paths := []string{"/v1/ok", "/v1/ok", "/v1/bad", "/v1/ok", "/v1/bad", "/v1/ok"}
	for _, p := range paths {
		s.do(t, http.MethodPost, p, strings.NewReader(`{"model":"gpt-4o"}`))
	}
	lines := s.Log.waitAccess(t, len(paths))
	var logOK, logBad, logAttempts int
	for _, l := range lines {
		switch l["status"] {
		case float64(http.StatusOK):
			logOK++
		case float64(http.StatusBadRequest):
			logBad++
		}
		logAttempts += int(l["attempts"].(float64))
	}
	if logOK != 4 || logBad != 2 || logAttempts != len(paths)+1 {
		t.Errorf("access log: %d ok, %d bad, %d attempts; want 4, 2, %d", logOK, logBad, logAttempts, len(paths)+1)
	}

	var st appserver.Stats
	s.getJSON(t, "/stats", http.StatusOK, &st)
	want := appserver.RequestStats{TotalCount: int64(len(paths)), SuccessCount: 4, FailureCount: 2, RetryCount: 1}
	if got := st.Requests; got != want {
		t.Errorf("/stats requests = %+v; want %+v", got, want)
	}

	_, body := s.do(t, http.MethodGet, "/metrics", nil)
	sums := map[string]float64{}
	for line := range strings.Lines(string(body)) {
		name, value, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok || strings.HasPrefix(name, "#") {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			continue
		}
		switch {
		case strings.HasPrefix(name, "gpt_load_requests_total{") && strings.Contains(name, `code="2xx"`):
			sums["2xx"] += v
		case strings.HasPrefix(name, "gpt_load_requests_total{") && strings.Contains(name, `code="4xx"`):
			sums["4xx"] += v
		case name == "gpt_load_retries_total":
			sums["retries"] += v
		}
	}
	if sums["2xx"] != 4 || sums["4xx"] != 2 || sums["retries"] != 1 {
		t.Errorf("/metrics: %v; want 2xx 4, 4xx 2, retries 1", sums)
	}
}
