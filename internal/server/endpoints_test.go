package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gpt-load/gpt-load/internal/apierr/apierrtest"
	"github.com/gpt-load/gpt-load/internal/secret"
	appserver "github.com/gpt-load/gpt-load/internal/server"
)

func TestHealth(t *testing.T) {
	tests := []struct {
		name        string
		blacklist   int // keys to blacklist
		cool        int // keys to cool
		wantCode    int
		wantStatus  string
		wantHealthy int
	}{
		{"all keys usable", 0, 0, http.StatusOK, "healthy", 3},
		{"one key blacklisted", 1, 0, http.StatusOK, "degraded", 2},
		{"one key cooling", 0, 1, http.StatusOK, "degraded", 2},
		{"two keys out", 1, 1, http.StatusOK, "degraded", 1},
		{"all keys blacklisted", 3, 0, http.StatusServiceUnavailable, "unhealthy", 0},
		{"all keys cooling or blacklisted", 1, 2, http.StatusServiceUnavailable, "unhealthy", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// With AUTH_KEY set, /health still needs no token.
			s := newServer(t, options{env: map[string]string{"AUTH_KEY": testAuthKey}})
			for range tt.blacklist {
				s.Keys.Blacklist(s.nextKey(t), "invalid api key", http.StatusUnauthorized)
			}
			for range tt.cool {
				s.Keys.Cool(s.nextKey(t), time.Now().Add(time.Hour), "rate limited", http.StatusTooManyRequests)
			}

			resp, body := s.send(t, mustRequest(t, http.MethodGet, s.URL+"/health", ""))
			if resp.StatusCode != tt.wantCode {
				t.Errorf("GET /health = %d; want %d", resp.StatusCode, tt.wantCode)
			}
			checkJSONType(t, resp)
			if got, want := keysOf(t, body), []string{"healthy_keys", "status", "timestamp", "total_keys", "uptime"}; !slices.Equal(got, want) {
				t.Errorf("/health keys = %v; want %v", got, want)
			}
			var h appserver.Health
			if err := json.Unmarshal(body, &h); err != nil {
				t.Fatalf("/health body %s: %v", body, err)
			}
			if h.Status != tt.wantStatus {
				t.Errorf("status = %q; want %q", h.Status, tt.wantStatus)
			}
			if h.HealthyKeys != tt.wantHealthy || h.TotalKeys != 3 {
				t.Errorf("healthy_keys, total_keys = %d, %d; want %d, 3", h.HealthyKeys, h.TotalKeys, tt.wantHealthy)
			}
			checkUptime(t, h.Uptime)
			checkTimestamp(t, "timestamp", h.Timestamp)
			if n := s.Up.Count(); n != 0 {
				t.Errorf("upstream got %d requests; want 0", n)
			}
		})
	}
}

func TestHealthHead(t *testing.T) {
	s := newServer(t, options{})
	resp, body := s.send(t, mustRequest(t, http.MethodHead, s.URL+"/health", ""))
	if resp.StatusCode != http.StatusOK || len(body) != 0 {
		t.Errorf("HEAD /health = %d %q; want 200 and no body", resp.StatusCode, body)
	}
}

func TestStats(t *testing.T) {
	s := newServer(t, options{
		env: map[string]string{"AUTH_KEY": testAuthKey},
		upstream: func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/v1/missing" {
				http.Error(w, `{"error":{"message":"no such model","type":"invalid_request_error"}}`, http.StatusNotFound)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"object":"list","data":[]}`))
		},
	})
	// Three successes and one client error, as clients see them.
	for _, r := range []struct{ method, path, body string }{
		{http.MethodGet, "/v1/models", ""},
		{http.MethodPost, "/v1/chat/completions", `{"model":"gpt-4o","messages":[]}`},
		{http.MethodGet, "/v1/models?key=" + testAuthKey, ""},
		{http.MethodGet, "/v1/missing", ""},
	} {
		req := mustRequest(t, r.method, s.URL+r.path, r.body)
		if !strings.Contains(r.path, "key=") {
			req.Header.Set("Authorization", "Bearer "+testAuthKey)
		}
		s.send(t, req)
	}
	s.Log.waitAccess(t, 4)
	// Management requests are not client requests of the proxy.
	s.do(t, http.MethodGet, "/health", nil)
	s.do(t, http.MethodGet, "/blacklist", nil)

	t.Run("shape", func(t *testing.T) {
		var raw map[string]json.RawMessage
		body := s.getJSON(t, "/stats", http.StatusOK, &raw)
		wantTop := []string{"keys", "memory", "requests", "system", "targets", "timestamp", "uptime"}
		if got := slices.DeleteFunc(keysOf(t, body), func(k string) bool { return k == "in_flight" }); !slices.Equal(got, wantTop) {
			t.Errorf("/stats keys = %v; want %v", got, wantTop)
		}
		if got, want := keysOf(t, raw["keys"]), []string{"blacklisted", "cooling", "current_index", "healthy", "total"}; !slices.Equal(got, want) {
			t.Errorf("/stats keys.* = %v; want %v", got, want)
		}
		wantReq := []string{"failure_count", "retry_count", "success_count", "total_count"}
		if got := slices.DeleteFunc(keysOf(t, raw["requests"]), func(k string) bool { return k == "in_flight" }); !slices.Equal(got, wantReq) {
			t.Errorf("/stats requests.* = %v; want %v (in_flight allowed)", got, wantReq)
		}
		var targets []json.RawMessage
		if err := json.Unmarshal(raw["targets"], &targets); err != nil || len(targets) != 1 {
			t.Fatalf("/stats targets = %s; want a list of one", raw["targets"])
		}
		if got, want := keysOf(t, targets[0]), []string{"failures", "requests", "state", "url"}; !slices.Equal(got, want) {
			t.Errorf("/stats targets[0] keys = %v; want %v", got, want)
		}
		for _, name := range []string{"memory", "system"} {
			if got := keysOf(t, raw[name]); len(got) == 0 {
				t.Errorf("/stats %s = %s; want a non-empty object", name, raw[name])
			}
		}
	})

	t.Run("counts", func(t *testing.T) {
		var st appserver.Stats
		s.getJSON(t, "/stats", http.StatusOK, &st)
		wantKeys := appserver.KeyStats{Total: 3, Healthy: 3, CurrentIndex: 4 % 3}
		if st.Keys != wantKeys {
			t.Errorf("keys = %+v; want %+v", st.Keys, wantKeys)
		}
		got := st.Requests
		got.InFlight = 0
		if want := (appserver.RequestStats{TotalCount: 4, SuccessCount: 3, FailureCount: 1}); got != want {
			t.Errorf("requests = %+v; want %+v", got, want)
		}
		wantTargets := []appserver.TargetStat{{URL: s.Up.URL, Requests: 4, Failures: 0, State: "active"}}
		if !slices.Equal(st.Targets, wantTargets) {
			t.Errorf("targets = %+v; want %+v", st.Targets, wantTargets)
		}
		if st.KeyDetails != nil {
			t.Errorf("key_details = %+v without ?keys=1; want none", st.KeyDetails)
		}
		checkUptime(t, st.Uptime)
		checkTimestamp(t, "timestamp", st.Timestamp)
	})

	t.Run("key details", func(t *testing.T) {
		blacklisted := s.nextKey(t)
		s.Keys.Blacklist(blacklisted, "invalid api key", http.StatusUnauthorized)
		cooling := s.nextKey(t)
		s.Keys.Cool(cooling, time.Now().Add(time.Hour), "rate limited", http.StatusTooManyRequests)
		t.Cleanup(func() { s.Keys.Restore(blacklisted); s.Keys.Restore(cooling) })

		for _, q := range []string{"?keys=1", "?keys=true"} {
			var st appserver.Stats
			body := s.getJSON(t, "/stats"+q, http.StatusOK, &st)
			if len(st.KeyDetails) != 3 {
				t.Fatalf("GET /stats%s: key_details has %d entries; want 3", q, len(st.KeyDetails))
			}
			var requests uint64
			for i, d := range st.KeyDetails {
				if want := secret.Mask(s.Raw[i]); d.Preview != want {
					t.Errorf("key_details[%d].preview = %q; want %q", i, d.Preview, want)
				}
				requests += d.Requests
				wantState := "active"
				switch d.Preview {
				case blacklisted.Preview():
					wantState = "blacklisted"
					checkTimestamp(t, "blacklisted_since", d.BlacklistedSince)
				case cooling.Preview():
					wantState = "cooling"
					if _, err := time.Parse(time.RFC3339, d.CoolingUntil); err != nil {
						t.Errorf("cooling_until = %q; want RFC 3339", d.CoolingUntil)
					}
				}
				if d.State != wantState {
					t.Errorf("key_details[%d].state = %q; want %q", i, d.State, wantState)
				}
			}
			if requests != 4 {
				t.Errorf("sum of key_details requests = %d; want 4", requests)
			}
			var stats appserver.Stats
			json.Unmarshal(body, &stats)
			if stats.Keys.Blacklisted != 1 || stats.Keys.Cooling != 1 || stats.Keys.Healthy != 1 {
				t.Errorf("keys = %+v; want 1 healthy, 1 cooling, 1 blacklisted", stats.Keys)
			}
			checkNoRawKeys(t, "GET /stats"+q, string(body), s.Raw)
		}
	})
}

func TestBlacklist(t *testing.T) {
	s := newServer(t, options{})

	t.Run("empty", func(t *testing.T) {
		var raw map[string]json.RawMessage
		body := s.getJSON(t, "/blacklist", http.StatusOK, &raw)
		if got, want := keysOf(t, body), []string{"blacklisted_keys", "count", "timestamp", "total"}; !slices.Equal(got, want) {
			t.Errorf("/blacklist keys = %v; want %v", got, want)
		}
		if got := string(raw["blacklisted_keys"]); got != "[]" {
			t.Errorf("blacklisted_keys = %s; want []", got)
		}
		if got := string(raw["count"]); got != "0" {
			t.Errorf("count = %s; want 0", got)
		}
	})

	t.Run("entries", func(t *testing.T) {
		perm := s.nextKey(t)
		s.Keys.Blacklist(perm, "invalid api key", http.StatusUnauthorized)
		until := time.Now().Add(90 * time.Second)
		temp := s.nextKey(t)
		s.Keys.Cool(temp, until, "rate limited", http.StatusTooManyRequests)

		var raw struct {
			Keys      []json.RawMessage `json:"blacklisted_keys"`
			Count     int               `json:"count"`
			Timestamp string            `json:"timestamp"`
		}
		body := s.getJSON(t, "/blacklist", http.StatusOK, &raw)
		checkNoRawKeys(t, "GET /blacklist", string(body), s.Raw)
		checkTimestamp(t, "timestamp", raw.Timestamp)
		if raw.Count != 2 || len(raw.Keys) != 2 {
			t.Fatalf("count = %d with %d entries; want 2 and 2", raw.Count, len(raw.Keys))
		}
		want := map[string]appserver.BlacklistedKey{
			perm.Preview(): {Preview: perm.Preview(), Reason: "invalid api key", Type: "permanent", Status: http.StatusUnauthorized},
			temp.Preview(): {Preview: temp.Preview(), Reason: "rate limited", Type: "temporary", Status: http.StatusTooManyRequests,
				Until: ptr(until.UTC().Format(time.RFC3339))},
		}
		for _, entry := range raw.Keys {
			names := keysOf(t, entry)
			for _, n := range []string{"blacklistAt", "failCount", "preview", "reason", "status", "type", "until"} {
				if !slices.Contains(names, n) {
					t.Errorf("entry %s lacks %q", entry, n)
				}
			}
			var got appserver.BlacklistedKey
			if err := json.Unmarshal(entry, &got); err != nil {
				t.Fatalf("entry %s: %v", entry, err)
			}
			w, ok := want[got.Preview]
			if !ok {
				t.Errorf("entry for %q; want only %q and %q", got.Preview, perm.Preview(), temp.Preview())
				continue
			}
			checkTimestamp(t, "blacklistAt", got.BlacklistAt)
			got.BlacklistAt, got.FailCount = "", 0
			if !reflect.DeepEqual(got, w) {
				t.Errorf("entry = %s; want preview %s, until %v", entry, w.Preview, deref(w.Until))
			}
			delete(want, got.Preview)
		}
	})
}

func TestResetKeys(t *testing.T) {
	for _, method := range []string{http.MethodPost, http.MethodGet} {
		t.Run(method, func(t *testing.T) {
			s := newServer(t, options{env: map[string]string{"AUTH_KEY": testAuthKey}})
			s.Keys.Blacklist(s.nextKey(t), "invalid api key", http.StatusUnauthorized)
			s.Keys.Cool(s.nextKey(t), time.Now().Add(time.Hour), "rate limited", http.StatusTooManyRequests)
			// Keep one old key, drop two, add four.
			newKeys := append([]string{s.Raw[2]}, rawKeys("new", 4)...)
			writeKeys(t, s.KeysFile, newKeys)

			resp, body := s.do(t, method, "/reset-keys", nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s /reset-keys = %d %s; want 200", method, resp.StatusCode, body)
			}
			checkJSONType(t, resp)
			if got, want := keysOf(t, body), []string{"healthy_keys", "message", "timestamp", "total_keys"}; !slices.Equal(got, want) {
				t.Errorf("/reset-keys keys = %v; want %v", got, want)
			}
			var r appserver.ResetKeys
			json.Unmarshal(body, &r)
			if r.TotalKeys != 5 || r.HealthyKeys != 5 || r.Message == "" {
				t.Errorf("/reset-keys = %+v; want 5 of 5 healthy with a message", r)
			}
			checkTimestamp(t, "timestamp", r.Timestamp)

			var b appserver.Blacklist
			s.getJSON(t, "/blacklist", http.StatusOK, &b)
			if b.Count != 0 {
				t.Errorf("/blacklist count after reset = %d; want 0", b.Count)
			}
			var h appserver.Health
			s.getJSON(t, "/health", http.StatusOK, &h)
			if h.Status != "healthy" || h.TotalKeys != 5 || h.HealthyKeys != 5 {
				t.Errorf("/health after reset = %+v; want healthy 5 of 5", h)
			}

			// The proxy now rotates over the new keys only.
			for range len(newKeys) {
				if resp, body := s.do(t, http.MethodGet, "/v1/models", nil); resp.StatusCode != http.StatusOK {
					t.Fatalf("GET /v1/models = %d %s; want 200", resp.StatusCode, body)
				}
			}
			var used []string
			for _, r := range s.Up.Requests() {
				used = append(used, r.Key)
			}
			slices.Sort(used)
			want := slices.Sorted(slices.Values(newKeys))
			if !slices.Equal(used, want) {
				t.Errorf("upstream saw keys %v; want each new key once %v", masks(used), masks(want))
			}
		})
	}
}

func TestResetKeysBadFile(t *testing.T) {
	tests := []struct {
		name   string
		break_ func(t *testing.T, path string)
	}{
		{"emptied", func(t *testing.T, path string) { writeKeys(t, path, nil) }},
		{"only comments", func(t *testing.T, path string) { writeKeys(t, path, []string{"# all keys revoked", ""}) }},
		{"removed", func(t *testing.T, path string) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		}},
		{"control character", func(t *testing.T, path string) {
			writeKeys(t, path, []string{"sk-good-key-0123456789", "sk-bad\x01key"})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newServer(t, options{env: map[string]string{"AUTH_KEY": testAuthKey}})
			bl := s.nextKey(t)
			s.Keys.Blacklist(bl, "invalid api key", http.StatusUnauthorized)
			tt.break_(t, s.KeysFile)

			resp, body := s.do(t, http.MethodPost, "/reset-keys", nil)
			apierrtest.Check(t, resp, body, http.StatusInternalServerError, "keys_file_error")
			checkNoRawKeys(t, "POST /reset-keys", string(body), s.Raw)
			// No file path, no Go error text: those go to the log.
			for _, leak := range []string{s.KeysFile, filepath.Base(s.KeysFile), filepath.Dir(s.KeysFile), "no such file", "open ", "line ", "control character"} {
				if strings.Contains(string(body), leak) {
					t.Errorf("POST /reset-keys answer %s reveals %q", body, leak)
				}
			}
			s.Log.WaitFor(t, filepath.Base(s.KeysFile), waitTimeout)

			var h appserver.Health
			s.getJSON(t, "/health", http.StatusOK, &h)
			if h.TotalKeys != 3 || h.HealthyKeys != 2 {
				t.Errorf("/health after a failed reset = %+v; want the old 3 keys, 2 healthy", h)
			}
			resp, body = s.do(t, http.MethodGet, "/v1/models", nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET /v1/models after a failed reset = %d %s; want 200", resp.StatusCode, body)
			}
			reqs := s.Up.WaitFor(t, 1, waitTimeout)
			if k := reqs[0].Key; !slices.Contains(s.Raw, k) || k == bl.Secret().Reveal() {
				t.Errorf("upstream saw key %s; want an old usable key", secret.Mask(k))
			}
		})
	}
}

func mustRequest(t *testing.T, method, url, body string) *http.Request {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatalf("NewRequest(%q, %q): %v", method, url, err)
	}
	return req
}

func masks(keys []string) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = secret.Mask(k)
	}
	return out
}

// checkNoRawKeys fails if text holds any raw key, or any run of 11
// characters of one: a mask shows at most 6 + 4 of them, apart.
func checkNoRawKeys(t *testing.T, where, text string, keys []string) {
	t.Helper()
	const window = 11
	for _, k := range keys {
		if len(k) < window {
			if strings.Contains(text, k) {
				t.Errorf("%s holds raw key %s", where, secret.Mask(k))
			}
			continue
		}
		for i := 0; i+window <= len(k); i++ {
			if strings.Contains(text, k[i:i+window]) {
				t.Errorf("%s holds %q, part of key %s", where, k[i:i+window], secret.Mask(k))
				break
			}
		}
	}
}

func ptr(s string) *string { return &s }

func deref(s *string) string {
	if s == nil {
		return "null"
	}
	return *s
}
