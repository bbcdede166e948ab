package modelname

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestFromBody(t *testing.T) {
	tests := []struct {
		body, want string
	}{
		{`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`, "gpt-4o"},
		{` {"messages":[{"role":"user","content":"{\"model\":\"nested\"}"}], "model" : "gpt-4o-mini"}`, "gpt-4o-mini"},
		{`{"metadata":{"model":"nested"},"model":"claude-sonnet-4"}`, "claude-sonnet-4"},
		{`{"stream":true,"n":2,"temperature":0.5,"stop":null,"model":"o3"}`, "o3"},
		{`{"mod\u0065l":"escaped-key"}`, "escaped-key"},
		{`{"model":"gpt-\u00e9"}`, "gpt-é"},
		{`{"model":"first","model":"second"}`, "first"},
		{`{"model":42}`, ""},
		{`{"messages":[]}`, ""},
		{`[{"model":"x"}]`, ""},
		{`{"model":"unterminated`, ""},
		{``, ""},
		{`not json`, ""},
	}
	for _, tt := range tests {
		if got := FromBody([]byte(tt.body)); got != tt.want {
			t.Errorf("FromBody(%q) = %q; want %q", tt.body, got, tt.want)
		}
	}
}

func TestFromPath(t *testing.T) {
	tests := []struct{ path, want string }{
		{"/v1beta/models/gemini-2.5-pro:generateContent", "gemini-2.5-pro"},
		{"/v1beta/models/gemini-2.0-flash:streamGenerateContent", "gemini-2.0-flash"},
		{"/openai/deployments/my-gpt4o/chat/completions", "my-gpt4o"},
		{"/v1/models", ""},
		{"/v1/models/gpt-4o", ""},
		{"/v1/chat/completions", ""},
	}
	for _, tt := range tests {
		if got := FromPath(tt.path); got != tt.want {
			t.Errorf("FromPath(%q) = %q; want %q", tt.path, got, tt.want)
		}
	}
	if got := Of("/v1beta/models/gemini-2.5-pro:generateContent", "application/json", []byte(`{"model":"other"}`)); got != "gemini-2.5-pro" {
		t.Errorf("Of(gemini path, body) = %q; want the path's model", got)
	}
}

func TestFromBodyStopsAtModel(t *testing.T) {
	body := []byte(`{"model":"gpt-4o","messages":[` + strings.Repeat(`{"role":"user","content":"x"},`, 1000) + `{}]}`)
	if n := testing.AllocsPerRun(100, func() { FromBody(body) }); n > 1 {
		t.Errorf("FromBody allocates %v times; want at most 1 (the result)", n)
	}
}

func BenchmarkFromBody(b *testing.B) {
	body := []byte(`{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are helpful."},{"role":"user","content":"Hello"}],"stream":true}`)
	b.ReportAllocs()
	for b.Loop() {
		FromBody(body)
	}
}

// oracle is what encoding/json says the first top-level "model" member's
// string value is, for a valid JSON object.
func oracle(b []byte) (string, bool) {
	if !json.Valid(b) {
		return "", false
	}
	d := json.NewDecoder(bytes.NewReader(b))
	tok, err := d.Token()
	if err != nil || tok != json.Delim('{') {
		return "", true
	}
	for d.More() {
		k, err := d.Token()
		if err != nil {
			return "", false
		}
		var v json.RawMessage
		if err := d.Decode(&v); err != nil {
			return "", false
		}
		if k == "model" {
			var s string
			if json.Unmarshal(v, &s) != nil {
				return "", true
			}
			return s, true
		}
	}
	return "", true
}

func FuzzFromBody(f *testing.F) {
	for _, s := range []string{
		`{"model":"gpt-4o","messages":[]}`,
		`{"a":{"b":["model",{"model":1}]},"model":"x"}`,
		`{"mod\u0065l":"y"}`,
		`{"model":"\ud83d\ude00"}`,
		`{"x":"\\\"","model":"z"}`,
		` { "model" : "spaced" } `,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got := FromBody(b)
		want, valid := oracle(b)
		if valid && got != want {
			t.Fatalf("FromBody(%q) = %q; encoding/json says %q", b, got, want)
		}
	})
}
