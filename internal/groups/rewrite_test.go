package groups

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/gpt-load/gpt-load/internal/modelname"
)

func TestRewriteJSONModel(t *testing.T) {
	cases := []struct {
		name, body, model, want string
		ok                      bool
	}{
		{"plain", `{"model":"fast","messages":[]}`, "gpt-4o-mini", `{"model":"gpt-4o-mini","messages":[]}`, true},
		{"whitespace kept", "{\n  \"model\" :\t \"fast\" ,\n  \"stream\": true\n}\n", "gpt-4o", "{\n  \"model\" :\t \"gpt-4o\" ,\n  \"stream\": true\n}\n", true},
		{"after nested objects with model keys",
			`{"messages":[{"role":"user","content":"{\"model\":\"x\"}","model":"inner"}],"meta":{"model":"m"},"model":"fast","n":1}`,
			"up",
			`{"messages":[{"role":"user","content":"{\"model\":\"x\"}","model":"inner"}],"meta":{"model":"m"},"model":"up","n":1}`, true},
		{"escaped key", `{"mod\u0065l":"fast"}`, "up", `{"mod\u0065l":"up"}`, true},
		{"escaped value", `{"model":"f\u0061st","x":"é"}`, "up", `{"model":"up","x":"é"}`, true},
		{"unicode around", `{"prompt":"日本語 \"quoted\" \\","model":"fast","emoji":"🙂"}`, "モデル", `{"prompt":"日本語 \"quoted\" \\","model":"モデル","emoji":"🙂"}`, true},
		{"new model needs escaping", `{"model":"a"}`, "we\"ird\\\n\x01", `{"model":"we\"ird\\\n\u0001"}`, true},
		{"first of two model keys", `{"model":"a","model":"b"}`, "up", `{"model":"up","model":"b"}`, true},
		{"no model", `{"messages":[]}`, "up", `{"messages":[]}`, false},
		{"nested model only", `{"meta":{"model":"x"}}`, "up", `{"meta":{"model":"x"}}`, false},
		{"model not a string", `{"model":3}`, "up", `{"model":3}`, false},
		{"not an object", `["model","x"]`, "up", `["model","x"]`, false},
		{"empty", ``, "up", ``, false},
		{"broken", `{"model":"abc`, "up", `{"model":"abc`, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body := []byte(c.body)
			got, ok := RewriteJSONModel(body, c.model)
			if string(got) != c.want || ok != c.ok {
				t.Errorf("RewriteJSONModel(%q, %q) = %q, %v; want %q, %v", c.body, c.model, got, ok, c.want, c.ok)
			}
			if string(body) != c.body {
				t.Errorf("RewriteJSONModel modified its input: %q", body)
			}
			if ok {
				if m := modelname.FromBody(got); m != c.model {
					t.Errorf("FromBody(rewritten) = %q; want %q", m, c.model)
				}
				if json.Valid(body) && !json.Valid(got) {
					t.Errorf("RewriteJSONModel(%q) = %q is not JSON", c.body, got)
				}
			}
		})
	}
}

func TestRewritePathModel(t *testing.T) {
	cases := []struct {
		path, model, want string
		ok                bool
	}{
		{"/v1beta/models/fast:generateContent", "gemini-2.0-flash", "/v1beta/models/gemini-2.0-flash:generateContent", true},
		{"/v1beta/models/fast:streamGenerateContent?alt=sse", "gemini-2.5-pro", "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse", true},
		{"/openai/deployments/fast/chat/completions", "gpt4o-prod", "/openai/deployments/gpt4o-prod/chat/completions", true},
		{"/v1/chat/completions", "x", "/v1/chat/completions", false},
		{"/v1beta/models", "x", "/v1beta/models", false},
		{"/v1beta/models/gemini-pro", "x", "/v1beta/models/gemini-pro", false},
	}
	for _, c := range cases {
		got, ok := RewritePathModel(c.path, c.model)
		if got != c.want || ok != c.ok {
			t.Errorf("RewritePathModel(%q, %q) = %q, %v; want %q, %v", c.path, c.model, got, ok, c.want, c.ok)
		}
		if ok && modelname.FromPath(got) != c.model {
			t.Errorf("FromPath(%q) = %q; want %q", got, modelname.FromPath(got), c.model)
		}
	}
}

func BenchmarkRewriteJSONModel(b *testing.B) {
	body := []byte(`{"messages":[{"role":"user","content":"` + string(bytes.Repeat([]byte("hello "), 500)) + `"}],"model":"fast","stream":true}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, ok := RewriteJSONModel(body, "gpt-4o-mini"); !ok {
			b.Fatal("not rewritten")
		}
	}
}
