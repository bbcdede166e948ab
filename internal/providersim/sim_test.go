package providersim

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	keyGood    = "sk-simtest-good-000000000000000000001"
	keyRevoked = "sk-simtest-revk-000000000000000000002"
	keyNoQuota = "sk-simtest-nquo-000000000000000000003"
	keyNoGPT4o = "sk-simtest-nomd-000000000000000000004"
	keyLimited = "sk-simtest-limt-000000000000000000005"
	keyQuiet   = "sk-simtest-quie-000000000000000000006"
	keyProject = "sk-simtest-proj-000000000000000000007"
)

func start(t *testing.T, c Config) *Sim {
	t.Helper()
	s, err := Start(c)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

type answer struct {
	status int
	header http.Header
	body   string
	code   string // error.code, "" when none or null
	msg    string
}

func post(t *testing.T, url, key, body string) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url+"/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	a := answer{status: resp.StatusCode, header: resp.Header, body: string(b)}
	var e apiError
	if json.Unmarshal(b, &e) == nil {
		if e.Error.Code != nil {
			a.code = *e.Error.Code
		}
		a.msg = e.Error.Message
	}
	return a
}

func chatJSON(model string, stream bool) string {
	b, _ := json.Marshal(map[string]any{"model": model, "stream": stream,
		"messages": []map[string]string{{"role": "user", "content": "hi"}}})
	return string(b)
}

// TestAnswers checks each kind of key and request gets OpenAI's answer.
func TestAnswers(t *testing.T) {
	s := start(t, Config{
		Accounts: []Account{{Name: "a", Requests: 2, Window: Duration(time.Minute), Headers: true, RetryAfter: true},
			{Name: "q"}},
		Keys: []Key{
			{Key: keyGood, Account: "q"},
			{Key: keyRevoked, Account: "q", State: KeyRevoked},
			{Key: keyNoQuota, Account: "q", State: KeyNoQuota},
			{Key: keyNoGPT4o, Account: "q", DeniedModels: []string{"gpt-4o"}},
			{Key: keyLimited, Account: "a"},
			{Key: keyProject, Account: "q", DeniedModels: []string{"gpt-4o"}, DeniedAs: DeniedAsProject},
		},
	})
	url := s.URLs()[0]
	tests := []struct {
		name, key, body string
		status          int
		code, msgHas    string
	}{
		{"good key", keyGood, chatJSON("gpt-4o", false), 200, "", ""},
		{"revoked key", keyRevoked, chatJSON("gpt-4o", false), 401, "invalid_api_key", "Incorrect API key provided: sk-sim"},
		{"unknown key", "sk-nobody-0000000000000000000000", chatJSON("gpt-4o", false), 401, "invalid_api_key", "Incorrect API key"},
		{"no key", "", chatJSON("gpt-4o", false), 401, "invalid_api_key", "You didn't provide an API key"},
		{"out of quota", keyNoQuota, chatJSON("gpt-4o", false), 429, "insufficient_quota", "exceeded your current quota"},
		{"denied model", keyNoGPT4o, chatJSON("gpt-4o", false), 404, "model_not_found", "The model `gpt-4o` does not exist or you do not have access to it."},
		{"denied model of a project", keyProject, chatJSON("gpt-4o", false), 403, "model_not_found", "Project `proj_simq` does not have access to model `gpt-4o`"},
		{"allowed model of that key", keyNoGPT4o, chatJSON("gpt-4o-mini", false), 200, "", ""},
		{"unknown model", keyGood, chatJSON("gpt-4o-minii", false), 404, "model_not_found", "The model `gpt-4o-minii` does not exist"},
		{"bad JSON", keyGood, `{"model":"gpt-4o",`, 400, "", "could not parse the JSON body"},
		{"no messages", keyGood, `{"model":"gpt-4o"}`, 400, "missing_required_parameter", "'messages'"},
		{"no model", keyGood, `{"messages":[{"role":"user","content":"x"}]}`, 400, "", "must provide a model"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := post(t, url, tc.key, tc.body)
			if a.status != tc.status || a.code != tc.code || !strings.Contains(a.msg, tc.msgHas) {
				t.Errorf("POST = %d %q %q; want %d %q containing %q", a.status, a.code, a.msg, tc.status, tc.code, tc.msgHas)
			}
			if strings.Contains(a.body, tc.key) && tc.key != "" {
				t.Errorf("answer quotes the whole key: %s", a.body)
			}
		})
	}

	// The limited account: 2 requests a minute, headers on.
	for i, want := range []string{"1", "0"} {
		a := post(t, url, keyLimited, chatJSON("gpt-4o", false))
		if a.status != 200 || a.header.Get("X-Ratelimit-Remaining-Requests") != want {
			t.Fatalf("request %d = %d remaining %q; want 200 remaining %s", i+1, a.status, a.header.Get("X-Ratelimit-Remaining-Requests"), want)
		}
		if d, err := time.ParseDuration(a.header.Get("X-Ratelimit-Reset-Requests")); err != nil || d <= 0 || d > time.Minute {
			t.Errorf("x-ratelimit-reset-requests = %q; want a duration up to 1m", a.header.Get("X-Ratelimit-Reset-Requests"))
		}
	}
	a := post(t, url, keyLimited, chatJSON("gpt-4o", false))
	if a.status != 429 || a.code != "rate_limit_exceeded" || a.header.Get("Retry-After") == "" ||
		a.header.Get("X-Ratelimit-Remaining-Requests") != "0" || !strings.Contains(a.msg, "Rate limit reached for gpt-4o") {
		t.Errorf("third request = %d %q Retry-After %q remaining %q; want 429 rate_limit_exceeded with Retry-After and remaining 0",
			a.status, a.code, a.header.Get("Retry-After"), a.header.Get("X-Ratelimit-Remaining-Requests"))
	}

	st := s.Snapshot()
	want := map[string]int64{"ok": 4, "revoked": 3, "no_quota": 1, "model_denied": 2, "unknown_model": 1, "bad_request": 3, "rate_limited": 1}
	for k, v := range want {
		if st.Outcomes[k] != v {
			t.Errorf("outcome %s = %d; want %d (all: %v)", k, st.Outcomes[k], v, st.Outcomes)
		}
	}
	if st.Attempts != 15 || st.Keys[4].Attempts != 3 || st.Keys[4].Outcomes["rate_limited"] != 1 {
		t.Errorf("attempts = %d, limited key %d (%v); want 15 and 3 with 1 rate_limited", st.Attempts, st.Keys[4].Attempts, st.Keys[4].Outcomes)
	}
	for _, k := range st.Keys {
		if strings.Contains(k.Preview, "0000000000") {
			t.Errorf("preview %q is not masked", k.Preview)
		}
	}
}

// TestStreamAndModels checks a streamed answer ends with [DONE] and the
// model list leaves out a key's denied models.
func TestStreamAndModels(t *testing.T) {
	s := start(t, Config{StreamChunks: 3, Keys: []Key{{Key: keyNoGPT4o, DeniedModels: []string{"gpt-4o"}}}})
	req, _ := http.NewRequest(http.MethodPost, s.URLs()[0]+"/v1/chat/completions", strings.NewReader(chatJSON("gpt-4o-mini", true)))
	req.Header.Set("Authorization", "Bearer "+keyNoGPT4o)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var events []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if l := sc.Text(); strings.HasPrefix(l, "data: ") {
			events = append(events, l)
		}
	}
	resp.Body.Close()
	if resp.Header.Get("Content-Type") != "text/event-stream" || len(events) != 4 || events[3] != "data: [DONE]" ||
		!strings.Contains(events[2], `"finish_reason":"stop"`) {
		t.Errorf("stream = %s %q; want 3 chunks, the last with finish_reason, then [DONE]", resp.Header.Get("Content-Type"), events)
	}

	req, _ = http.NewRequest(http.MethodGet, s.URLs()[0]+"/v1/models", nil)
	req.Header.Set("Authorization", "Bearer "+keyNoGPT4o)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"gpt-4o-mini"`) || strings.Contains(string(b), `"gpt-4o"`) {
		t.Errorf("GET /v1/models = %d %s; want 200 listing gpt-4o-mini only", resp.StatusCode, b)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %v", what, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestEpisodes checks the storm answers 429 for every key, a down target
// refuses connections, and both end on time; Reset zeroes the counts.
func TestEpisodes(t *testing.T) {
	s := start(t, Config{
		Targets: 2,
		Keys:    []Key{{Key: keyGood}, {Key: keyQuiet}},
		Episodes: []Episode{
			{Kind: EpisodeStorm, At: Duration(300 * time.Millisecond), For: Duration(300 * time.Millisecond), RetryAfter: 2},
			{Kind: EpisodeDown, Target: 1, At: Duration(0), For: Duration(400 * time.Millisecond)},
		},
	})
	u := s.URLs()
	// What an answer must be is decided by the simulator's clock when the
	// request was sent and answered, never by how fast this machine runs:
	// a request wholly inside the storm must meet it, one sent after it
	// must not, one that straddles an edge proves nothing. A busy machine
	// may miss a window (logged); it cannot fail the test. The 10 s bounds
	// only catch an episode that never ends.
	const stormStart, stormEnd, downEnd = 300 * time.Millisecond, 600 * time.Millisecond, 400 * time.Millisecond

	// Target 1 is down from the start (its listener is closed by a
	// goroutine, so the very first moment proves nothing): connection
	// refused, until it comes back.
	refused := false
	for !refused && s.elapsed() < downEnd {
		_, err := http.Post(u[1]+"/v1/chat/completions", "application/json", strings.NewReader("{}"))
		refused = errors.Is(err, syscall.ECONNREFUSED)
	}
	if !refused {
		t.Logf("target 1's down window (%v) passed before a refusal was seen: the machine is busy; not checked", downEnd)
	}

	storms, inStorm, after := 0, 0, false
	for deadline := time.Now().Add(10 * time.Second); !after; {
		if time.Now().After(deadline) {
			t.Fatalf("target 0 still not answering 200 10 s after its storm (until %v) should have ended", stormEnd)
		}
		for _, k := range []string{keyGood, keyQuiet} {
			sent := s.elapsed()
			a := post(t, u[0], k, chatJSON("gpt-4o", false))
			got := s.elapsed()
			if a.status == 429 && a.code == "rate_limit_exceeded" {
				storms++
			}
			switch {
			case sent >= stormStart && got < stormEnd:
				inStorm++
				if a.status != 429 || a.code != "rate_limit_exceeded" || a.header.Get("Retry-After") != "2" {
					t.Errorf("during the storm (%v–%v) = %d %q Retry-After %q; want 429 rate_limit_exceeded Retry-After 2", sent, got, a.status, a.code, a.header.Get("Retry-After"))
				}
			case sent >= stormEnd:
				after = true
				if a.status != 200 {
					t.Errorf("after the storm (sent at %v) = %d %q; want 200", sent, a.status, a.code)
				}
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	if inStorm == 0 {
		t.Logf("no request fell wholly inside the storm (%v–%v): the machine is busy; not checked", stormStart, stormEnd)
	}
	waitFor(t, 10*time.Second, "target 1 back", func() bool {
		resp, err := http.Post(u[1]+"/v1/chat/completions", "application/json", strings.NewReader("{}"))
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
	st, err := FetchStats(context.Background(), http.DefaultClient, s.ControlURL())
	if err != nil {
		t.Fatal(err)
	}
	if st.Outcomes["storm"] < int64(storms) || st.Outcomes["ok"] < 1 {
		t.Errorf("outcomes = %v; want at least the %d storm answers seen and 1 ok", st.Outcomes, storms)
	}
	resp, err := http.Post(s.ControlURL()+"/reset", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if st := s.Snapshot(); st.Attempts != 0 {
		t.Errorf("attempts after reset = %d; want 0", st.Attempts)
	}
}

// TestNoQuotaAt: a key whose credits run out mid-run serves until then,
// then answers 429 insufficient_quota, and /stats says it is out of quota.
func TestNoQuotaAt(t *testing.T) {
	s := start(t, Config{Keys: []Key{{Key: keyGood, NoQuotaAt: Duration(300 * time.Millisecond)}, {Key: keyQuiet}}})
	u := s.URLs()[0]
	if a := post(t, u, keyGood, chatJSON("gpt-4o", false)); s.elapsed() < 300*time.Millisecond && a.status != 200 {
		t.Errorf("before its credits run out = %d %s; want 200", a.status, a.body)
	}
	waitFor(t, 10*time.Second, "credits run out", func() bool {
		a := post(t, u, keyGood, chatJSON("gpt-4o", false))
		return a.status == 429 && a.code == "insufficient_quota"
	})
	if a := post(t, u, keyQuiet, chatJSON("gpt-4o", false)); a.status != 200 {
		t.Errorf("another key = %d %s; want 200", a.status, a.body)
	}
	if st := s.Snapshot(); st.Keys[0].State != KeyNoQuota || st.Keys[1].State != KeyOK || st.Outcomes["no_quota"] < 1 {
		t.Errorf("stats: key states %q, %q, outcomes %v; want no_quota, \"\" and a no_quota outcome", st.Keys[0].State, st.Keys[1].State, st.Outcomes)
	}
	if _, err := Start(Config{Keys: []Key{{Key: keyGood, NoQuotaAt: Duration(-time.Second)}}}); err == nil || !strings.Contains(err.Error(), "no_quota_at") {
		t.Errorf("Start with a negative no_quota_at = %v; want an error naming it", err)
	}
}

// TestConfigFile checks a JSON scenario file loads and bad ones are
// refused with every problem named.
func TestConfigFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	os.WriteFile(good, []byte(`{"accounts":[{"name":"a","requests":10,"window":"1s","headers":true}],
		"keys":[{"key":"sk-one-000000000000","account":"a"}],
		"episodes":[{"kind":"storm","at":"2s","for":8,"retry_after":1}]}`), 0o600)
	c, err := LoadFile(good)
	if err != nil {
		t.Fatalf("LoadFile: %v", err)
	}
	if c.Accounts[0].Window.D() != time.Second || c.Episodes[0].For.D() != 8*time.Second {
		t.Errorf("LoadFile = %+v; want window 1s and for 8s", c)
	}
	bad := Config{Accounts: []Account{{Name: "a", Requests: 1}},
		Keys:     []Key{{Key: "k", Account: "b", State: "gone", DeniedModels: []string{"nope"}}},
		Episodes: []Episode{{Kind: "flood"}}}
	_, err = Start(bad)
	for _, want := range []string{"window", `account "b"`, `state "gone"`, `"nope"`, `kind "flood"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Start(bad) = %v; want an error naming %s", err, want)
		}
	}
}
