package upstream

import (
	"net/http"
	"net/url"
	"reflect"
	"testing"
)

func TestStyleForHost(t *testing.T) {
	for _, tc := range []struct {
		host string
		want AuthStyle
	}{
		{"x.openai.azure.com", Azure},
		{"my-resource.openai.azure.com", Azure},
		{"My-Resource.OpenAI.Azure.com", Azure},
		{"my-resource.openai.azure.com.", Azure},
		{"api.anthropic.com", Anthropic},
		{"API.ANTHROPIC.COM", Anthropic},
		{"api.anthropic.com.", Anthropic},
		{"generativelanguage.googleapis.com", Gemini},
		{"GenerativeLanguage.googleapis.com.", Gemini},
		{"api.openai.com", Bearer},
		{"api.openai.com.", Bearer},
		{"gateway.ai.cloudflare.com", Bearer},
		{"openrouter.ai", Bearer},
		{"localhost", Bearer},
		{"127.0.0.1", Bearer},
		{"::1", Bearer},
		{"", Bearer},
		// Look-alikes get the default, not a provider's header.
		{"openai.azure.com", Bearer},
		{"x.openai.azure.com.evil.example", Bearer},
		{"evilopenai.azure.com", Bearer},
		{"api.anthropic.com.evil.example", Bearer},
		{"xapi.anthropic.com", Bearer},
		{"eu.generativelanguage.googleapis.com", Bearer},
	} {
		t.Run(tc.host, func(t *testing.T) {
			if got := StyleForHost(tc.host); got != tc.want {
				t.Errorf("StyleForHost(%q) = %v; want %v", tc.host, got, tc.want)
			}
		})
	}
}

func TestParseAuthStyle(t *testing.T) {
	for _, tc := range []struct {
		name    string
		want    AuthStyle
		wantErr bool
	}{
		{"bearer", Bearer, false},
		{"Bearer", Bearer, false},
		{"azure", Azure, false},
		{"AZURE", Azure, false},
		{"anthropic", Anthropic, false},
		{"gemini", Gemini, false},
		{"auto", 0, true},
		{"", 0, true},
		{"openai", 0, true},
		{" bearer", 0, true},
		{"bearer ", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseAuthStyle(tc.name)
			if (err != nil) != tc.wantErr || (err == nil && got != tc.want) {
				t.Errorf("ParseAuthStyle(%q) = %v, %v; want %v, error %v", tc.name, got, err, tc.want, tc.wantErr)
			}
		})
	}
	for _, s := range []AuthStyle{Bearer, Azure, Anthropic, Gemini} {
		if got, err := ParseAuthStyle(s.String()); err != nil || got != s {
			t.Errorf("ParseAuthStyle(%q) = %v, %v; want %v, nil", s.String(), got, err, s)
		}
	}
}

func TestAuthStyleApply(t *testing.T) {
	const key = "sk-upstream-0123456789"
	// in carries every credential form a client may send, non-canonical
	// spellings included (a Header built by hand rather than by net/http).
	in := func() http.Header {
		return http.Header{
			"Authorization":  {"Bearer client-token", "Basic dXNlcjpwYXNz"},
			"Api-Key":        {"client-token"},
			"X-Api-Key":      {"client-token"},
			"X-Goog-Api-Key": {"client-token"},
			"Content-Type":   {"application/json"},
			"Anthropic-Version": {
				"2023-06-01",
			},
			"Set-Cookie": {"a=1", "b=2"},
		}
	}
	rest := http.Header{
		"Content-Type":      {"application/json"},
		"Anthropic-Version": {"2023-06-01"},
		"Set-Cookie":        {"a=1", "b=2"},
	}
	for _, tc := range []struct {
		style AuthStyle
		name  string
		value string
	}{
		{Bearer, "Authorization", "Bearer " + key},
		{Azure, "Api-Key", key},
		{Anthropic, "X-Api-Key", key},
		{Gemini, "X-Goog-Api-Key", key},
	} {
		t.Run(tc.style.String(), func(t *testing.T) {
			h := in()
			tc.style.Apply(h, key, nil)
			want := rest.Clone()
			want[tc.name] = []string{tc.value}
			if !reflect.DeepEqual(h, want) {
				t.Errorf("%v.Apply(h, key) = %v; want %v", tc.style, h, want)
			}
			if got := h.Get(tc.name); got != tc.value {
				t.Errorf("%v.Apply: Get(%q) = %q; want %q", tc.style, tc.name, got, tc.value)
			}

			// An empty header gets exactly the one credential.
			h = http.Header{}
			tc.style.Apply(h, key, nil)
			if len(h) != 1 || len(h[tc.name]) != 1 || h[tc.name][0] != tc.value {
				t.Errorf("%v.Apply(empty, key) = %v; want only %s: %s", tc.style, h, tc.name, tc.value)
			}

			// Given a slot, the header's value is the slot itself.
			var slot [1]string
			h = http.Header{hdrAuthorization: {"Bearer client"}}
			tc.style.Apply(h, key, &slot)
			if got := h[tc.name]; len(got) != 1 || got[0] != tc.value || &got[0] != &slot[0] {
				t.Errorf("%v.Apply(h, key, slot) = %v, slot %q; want the slot holding %q", tc.style, h, slot[0], tc.value)
			}
		})
	}
}

func TestAuthStyleApplyOnRequest(t *testing.T) {
	// Headers set through the ordinary API, in any case, are all replaced.
	req, err := http.NewRequest(http.MethodPost, "https://api.anthropic.com/v1/messages", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("authorization", "Bearer client")
	req.Header.Set("API-KEY", "client")
	req.Header.Set("x-api-key", "client")
	req.Header.Set("x-goog-api-key", "client")
	Anthropic.Apply(req.Header, "sk-ant-key", nil)
	for _, name := range CredentialHeaders {
		want := ""
		if name == "X-Api-Key" {
			want = "sk-ant-key"
		}
		if got := req.Header.Values(name); (want == "" && len(got) != 0) || (want != "" && (len(got) != 1 || got[0] != want)) {
			t.Errorf("after Anthropic.Apply, %s = %q; want %q", name, got, want)
		}
	}
}

func TestJoinPath(t *testing.T) {
	for _, tc := range []struct {
		base, path, want string
	}{
		{"https://api.openai.com", "/v1/chat/completions", "/v1/chat/completions"},
		{"https://api.openai.com", "/", "/"},
		{"https://api.openai.com", "", ""},
		{"https://api.openai.com/", "/v1/models", "/v1/models"},
		{"https://x.openai.azure.com/openai", "/deployments/gpt-4o/chat/completions", "/openai/deployments/gpt-4o/chat/completions"},
		{"https://gw.example/openai", "/v1/models", "/openai/v1/models"},
		{"https://gw.example/openai/", "/v1/models", "/openai/v1/models"},
		{"https://gw.example/openai", "v1/models", "/openai/v1/models"},
		{"https://gw.example/openai", "/", "/openai/"},
		{"https://gw.example/openai", "", "/openai"},
		{"https://api.deepseek.com/v1", "/chat/completions", "/v1/chat/completions"},
		{"https://gateway.ai.cloudflare.com/v1/acct/gw/openai", "/chat/completions", "/v1/acct/gw/openai/chat/completions"},
		{"https://generativelanguage.googleapis.com", "/v1beta/models/gemini-2.0-flash:generateContent", "/v1beta/models/gemini-2.0-flash:generateContent"},
	} {
		t.Run(tc.base+"+"+tc.path, func(t *testing.T) {
			tg := NewTarget(mustURL(t, tc.base), Bearer)
			if got := tg.JoinPath(tc.path); got != tc.want {
				t.Errorf("NewTarget(%q).JoinPath(%q) = %q; want %q", tc.base, tc.path, got, tc.want)
			}
		})
	}
}

func TestTargetBasics(t *testing.T) {
	tg := NewTarget(mustURL(t, "https://api.deepseek.com:8443/v1"), Bearer)
	if got, want := tg.String(), "https://api.deepseek.com:8443/v1"; got != want {
		t.Errorf("String() = %q; want %q", got, want)
	}
	if got, want := tg.Host(), "api.deepseek.com:8443"; got != want {
		t.Errorf("Host() = %q; want %q", got, want)
	}
	if !tg.EndsInV1() {
		t.Errorf("EndsInV1() = false for %s; want true", tg)
	}
	if NewTarget(mustURL(t, "https://api.openai.com"), Bearer).EndsInV1() {
		t.Errorf("EndsInV1() = true for a bare host; want false")
	}
	tg.CountRequest(false)
	tg.CountRequest(true)
	tg.CountRequest(false)
	if tg.Requests() != 3 || tg.Failures() != 1 {
		t.Errorf("after 3 requests, 1 failed: Requests, Failures = %d, %d; want 3, 1", tg.Requests(), tg.Failures())
	}
}

func mustURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
