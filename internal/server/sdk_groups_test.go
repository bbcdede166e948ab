package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gpt-load/gpt-load/internal/testserver"
	"github.com/gpt-load/gpt-load/internal/testupstream"
)

// The pool keys of the three groups, and the client's token: the token
// must never reach an upstream, each key only its own provider.
const (
	sdkToken  = "sdk-client-token-0123456789"
	oaSDKKey  = "sk-oa-sdk-1111111111111111"
	antSDKKey = "sk-ant-sdk-2222222222222222"
	gemSDKKey = "AIza-gem-sdk-3333333333333333"
)

// TestGroupsSDKs runs the official SDKs (testdata/groups-sdk, installed
// with npm ci from its lock file: openai, @anthropic-ai/sdk, @google/genai)
// against one gpt-load with three groups on three mock providers, each
// speaking its provider's wire format. Every operation is run twice: with
// the SDK's base URL under /proxy/NAME/, and un-prefixed, routed by the
// model (docs/groups.md, "Routing"). It checks what the SDK yielded and
// what the provider received: the path, its own pool key in its own
// header, the model.
func TestGroupsSDKs(t *testing.T) {
	dir := groupsSDKDir(t)
	oa := testupstream.New(t, openaiMock)
	ant := testupstream.New(t, anthropicMock)
	gem := testupstream.New(t, geminiMock)
	gd := groupsDir(t, map[string][2]string{
		"openai": {oaSDKKey + "\n", "OPENAI_BASE_URL=" + oa.URL + "\nMODELS=gpt-4o*\n"},
		"claude": {antSDKKey + "\n", "OPENAI_BASE_URL=" + ant.URL + "\nUPSTREAM_AUTH_STYLE=anthropic\nMODELS=claude-*\n"},
		"gemini": {gemSDKKey + "\n", "OPENAI_BASE_URL=" + gem.URL + "\nUPSTREAM_AUTH_STYLE=gemini\nMODELS=gemini-*\n"},
	})
	srv := testserver.Start(t, testserver.Options{Env: map[string]string{
		"GROUPS_DIR": gd, "KEYS_FILE": "", "AUTH_KEY": sdkToken,
	}})

	// upstreamSaw is one request as a provider must have received it.
	type upstreamSaw struct {
		up                  *testupstream.Server
		method, path, query string
		header, key         string // the key's header and value
		model               string // in the body; "" when the path names it
	}
	for _, c := range []struct {
		name, script, op, base, model string
		apiVersion                    string // Gemini's, when not the SDK's default
		// what the SDK must yield
		text   string
		chunks int
		ids    []string
		events []string
		saw    []upstreamSaw
	}{
		{name: "openai/chat/prefix", script: "openai.mjs", op: "chat", base: "/proxy/openai/v1", model: "gpt-4o",
			text: "Hello from openai", saw: []upstreamSaw{{oa, "POST", "/v1/chat/completions", "", "Authorization", "Bearer " + oaSDKKey, "gpt-4o"}}},
		{name: "openai/chat/model", script: "openai.mjs", op: "chat", base: "/v1", model: "gpt-4o-mini",
			text: "Hello from openai", saw: []upstreamSaw{{oa, "POST", "/v1/chat/completions", "", "Authorization", "Bearer " + oaSDKKey, "gpt-4o-mini"}}},
		{name: "openai/stream/prefix", script: "openai.mjs", op: "stream", base: "/proxy/openai/v1", model: "gpt-4o",
			text: "Hello", chunks: 4, saw: []upstreamSaw{{oa, "POST", "/v1/chat/completions", "", "Authorization", "Bearer " + oaSDKKey, "gpt-4o"}}},
		{name: "openai/stream/model", script: "openai.mjs", op: "stream", base: "/v1", model: "gpt-4o",
			text: "Hello", chunks: 4, saw: []upstreamSaw{{oa, "POST", "/v1/chat/completions", "", "Authorization", "Bearer " + oaSDKKey, "gpt-4o"}}},
		// Under the prefix the provider's list is proxied as is.
		{name: "openai/models/prefix", script: "openai.mjs", op: "models", base: "/proxy/openai/v1",
			ids: []string{"gpt-4o", "gpt-4o-mini", "dall-e-3"},
			saw: []upstreamSaw{{oa, "GET", "/v1/models", "", "Authorization", "Bearer " + oaSDKKey, ""}}},
		// Un-prefixed it is the union of the groups' lists, each read in
		// its dialect with one of its keys and filtered by MODELS, in
		// group name order.
		{name: "openai/models/model", script: "openai.mjs", op: "models", base: "/v1",
			ids: []string{"claude-sonnet-4-5", "claude-haiku-4-5", "gemini-2.5-flash", "gemini-2.5-pro", "gpt-4o", "gpt-4o-mini"},
			saw: []upstreamSaw{
				{ant, "GET", "/v1/models", "limit=1000", "X-Api-Key", antSDKKey, ""},
				{gem, "GET", "/v1beta/models", "pageSize=1000", "X-Goog-Api-Key", gemSDKKey, ""},
				{oa, "GET", "/v1/models", "", "Authorization", "Bearer " + oaSDKKey, ""},
			}},
		{name: "anthropic/create/prefix", script: "anthropic.mjs", op: "create", base: "/proxy/claude", model: "claude-sonnet-4-5",
			text: "Hello from claude", saw: []upstreamSaw{{ant, "POST", "/v1/messages", "", "X-Api-Key", antSDKKey, "claude-sonnet-4-5"}}},
		{name: "anthropic/create/model", script: "anthropic.mjs", op: "create", base: "", model: "claude-haiku-4-5",
			text: "Hello from claude", saw: []upstreamSaw{{ant, "POST", "/v1/messages", "", "X-Api-Key", antSDKKey, "claude-haiku-4-5"}}},
		{name: "anthropic/stream/prefix", script: "anthropic.mjs", op: "stream", base: "/proxy/claude", model: "claude-sonnet-4-5",
			text: "Hello", chunks: 2, events: anthropicEventTypes,
			saw: []upstreamSaw{{ant, "POST", "/v1/messages", "", "X-Api-Key", antSDKKey, "claude-sonnet-4-5"}}},
		{name: "anthropic/stream/model", script: "anthropic.mjs", op: "stream", base: "", model: "claude-sonnet-4-5",
			text: "Hello", chunks: 2, events: anthropicEventTypes,
			saw: []upstreamSaw{{ant, "POST", "/v1/messages", "", "X-Api-Key", antSDKKey, "claude-sonnet-4-5"}}},
		// The SDK's default API version is v1; v1beta is the other one
		// Google serves, where new features land first.
		{name: "gemini/generate/prefix", script: "gemini.mjs", op: "generate", base: "/proxy/gemini", model: "gemini-2.5-flash",
			text: "Hello from gemini", saw: []upstreamSaw{{gem, "POST", "/v1/models/gemini-2.5-flash:generateContent", "", "X-Goog-Api-Key", gemSDKKey, ""}}},
		{name: "gemini/generate/model", script: "gemini.mjs", op: "generate", base: "", model: "gemini-2.5-pro",
			text: "Hello from gemini", saw: []upstreamSaw{{gem, "POST", "/v1/models/gemini-2.5-pro:generateContent", "", "X-Goog-Api-Key", gemSDKKey, ""}}},
		{name: "gemini/stream/prefix", script: "gemini.mjs", op: "stream", base: "/proxy/gemini", model: "gemini-2.5-flash",
			text: "Hello", chunks: 2, saw: []upstreamSaw{{gem, "POST", "/v1/models/gemini-2.5-flash:streamGenerateContent", "alt=sse", "X-Goog-Api-Key", gemSDKKey, ""}}},
		{name: "gemini/stream/model", script: "gemini.mjs", op: "stream", base: "", model: "gemini-2.5-flash",
			text: "Hello", chunks: 2, saw: []upstreamSaw{{gem, "POST", "/v1/models/gemini-2.5-flash:streamGenerateContent", "alt=sse", "X-Goog-Api-Key", gemSDKKey, ""}}},
		{name: "gemini-v1beta/generate/prefix", script: "gemini.mjs", apiVersion: "v1beta", op: "generate", base: "/proxy/gemini", model: "gemini-2.5-flash",
			text: "Hello from gemini", saw: []upstreamSaw{{gem, "POST", "/v1beta/models/gemini-2.5-flash:generateContent", "", "X-Goog-Api-Key", gemSDKKey, ""}}},
		{name: "gemini-v1beta/generate/model", script: "gemini.mjs", apiVersion: "v1beta", op: "generate", base: "", model: "gemini-2.5-pro",
			text: "Hello from gemini", saw: []upstreamSaw{{gem, "POST", "/v1beta/models/gemini-2.5-pro:generateContent", "", "X-Goog-Api-Key", gemSDKKey, ""}}},
		{name: "gemini-v1beta/stream/prefix", script: "gemini.mjs", apiVersion: "v1beta", op: "stream", base: "/proxy/gemini", model: "gemini-2.5-flash",
			text: "Hello", chunks: 2, saw: []upstreamSaw{{gem, "POST", "/v1beta/models/gemini-2.5-flash:streamGenerateContent", "alt=sse", "X-Goog-Api-Key", gemSDKKey, ""}}},
		{name: "gemini-v1beta/stream/model", script: "gemini.mjs", apiVersion: "v1beta", op: "stream", base: "", model: "gemini-2.5-pro",
			text: "Hello", chunks: 2, saw: []upstreamSaw{{gem, "POST", "/v1beta/models/gemini-2.5-pro:streamGenerateContent", "alt=sse", "X-Goog-Api-Key", gemSDKKey, ""}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := map[*testupstream.Server]int{oa: oa.Count(), ant: ant.Count(), gem: gem.Count()}
			out := runSDK(t, dir, c.script, c.op, srv.URL+c.base, c.model, c.apiVersion)
			var got struct {
				Text   string   `json:"text"`
				Chunks int      `json:"chunks"`
				IDs    []string `json:"ids"`
				Events []string `json:"events"`
				Final  *string  `json:"final"`
			}
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("SDK output %q: %v", out, err)
			}
			if got.Text != c.text || got.Chunks != c.chunks {
				t.Errorf("SDK yielded %q in %d chunks; want %q in %d", got.Text, got.Chunks, c.text, c.chunks)
			}
			if !slices.Equal(got.IDs, c.ids) {
				t.Errorf("SDK listed %q; want %q", got.IDs, c.ids)
			}
			if !slices.Equal(got.Events, c.events) {
				t.Errorf("SDK streamed the events %q; want %q", got.Events, c.events)
			}
			if got.Final != nil && *got.Final != c.text {
				t.Errorf("SDK assembled the message %q; want %q", *got.Final, c.text)
			}

			// What each provider received: exactly the requests listed.
			for _, up := range []*testupstream.Server{oa, ant, gem} {
				var want []upstreamSaw
				for _, s := range c.saw {
					if s.up == up {
						want = append(want, s)
					}
				}
				reqs := up.Requests()[before[up]:]
				if len(reqs) != len(want) {
					t.Errorf("upstream %s received %d requests; want %d", up.URL, len(reqs), len(want))
					continue
				}
				for i, r := range reqs {
					w := want[i]
					if r.Method != w.method || r.Path != w.path || r.RawQuery != w.query {
						t.Errorf("upstream received %s %s?%s; want %s %s?%s", r.Method, r.Path, r.RawQuery, w.method, w.path, w.query)
					}
					if v := r.Header.Get(w.header); v != w.key {
						t.Errorf("upstream %s header = %q; want the pool key %q", w.header, v, w.key)
					}
					if k := testupstream.KeyOf(r.Header); k != strings.TrimPrefix(w.key, "Bearer ") {
						t.Errorf("upstream saw the key %q; want only %q", k, w.key)
					}
					for name, vs := range r.Header {
						for _, v := range vs {
							if strings.Contains(v, sdkToken) {
								t.Errorf("the client's token reached the upstream in %s", name)
							}
						}
					}
					if w.model != "" {
						var b struct {
							Model string `json:"model"`
						}
						json.Unmarshal(r.Body, &b)
						if b.Model != w.model {
							t.Errorf("upstream body's model = %q; want %q", b.Model, w.model)
						}
					}
				}
			}
		})
	}
}

// runSDK runs one operation of one SDK script and returns its JSON line.
func runSDK(t *testing.T, dir, script, op, baseURL, model, apiVersion string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", script, op)
	cmd.Dir = dir
	// The SDKs read these from the environment when not given: none may
	// point them elsewhere than at gpt-load.
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		for _, p := range []string{"OPENAI_", "ANTHROPIC_", "GOOGLE_", "GEMINI_"} {
			if strings.HasPrefix(kv, p) {
				return true
			}
		}
		return false
	})
	cmd.Env = append(env, "BASE_URL="+baseURL, "TOKEN="+sdkToken, "MODEL="+model, "API_VERSION="+apiVersion)
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("node %s %s (base URL %s, model %q): %v\n%s", script, op, baseURL, model, err, stderr)
	}
	return out
}

// groupsSDKDir returns testdata/groups-sdk with its modules installed.
// Without node or npm the test is skipped, except in CI (CI set), where
// .ci/run installs them and the test fails instead.
func groupsSDKDir(t *testing.T) string {
	t.Helper()
	missing := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("CI") != "" {
			t.Fatalf(format+" (.ci/run installs nodejs and npm)", args...)
		}
		t.Skipf(format+"; install nodejs and npm to run this test", args...)
	}
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing("%s is not installed", tool)
		}
	}
	// openai and @google/genai declare node >= 22; they run on 20 (as
	// tested), and older versions are out of their support.
	v, err := exec.Command("node", "--version").Output()
	if err != nil {
		missing("node --version: %v", err)
	}
	major, _, _ := strings.Cut(strings.TrimPrefix(strings.TrimSpace(string(v)), "v"), ".")
	if n, _ := strconv.Atoi(major); n < 20 {
		missing("node %s is too old for the pinned SDKs: node 20 or later is needed", strings.TrimSpace(string(v)))
	}
	dir, err := filepath.Abs(filepath.Join("testdata", "groups-sdk"))
	if err != nil {
		t.Fatal(err)
	}
	installed := true
	for _, pkg := range []string{"openai", "@anthropic-ai/sdk", "@google/genai"} {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", pkg, "package.json")); err != nil {
			installed = false
		}
	}
	if installed {
		return dir
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci in %s: %v\n%s", dir, err, out)
	}
	return dir
}

// The mock providers: each answers in its provider's wire format, and
// rejects a key other than its pool key as the provider would, so that a
// wrong key fails the SDK as well as the checks on what was received.

// openaiMock is OpenAI: chat completions, streamed as SSE chunks ending
// in data: [DONE], and the model list.
func openaiMock(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+oaSDKKey {
		writeJSONStatus(w, http.StatusUnauthorized, `{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}`)
		return
	}
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/v1/models":
		writeJSONStatus(w, http.StatusOK, `{"object":"list","data":[`+
			`{"id":"gpt-4o","object":"model","created":1715367049,"owned_by":"system"},`+
			`{"id":"gpt-4o-mini","object":"model","created":1721172741,"owned_by":"system"},`+
			`{"id":"dall-e-3","object":"model","created":1698785189,"owned_by":"system"}]}`)
	case r.Method == http.MethodPost && r.URL.Path == "/v1/chat/completions":
		var req struct {
			Model  string `json:"model"`
			Stream bool   `json:"stream"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Model == "" {
			writeJSONStatus(w, http.StatusBadRequest, `{"error":{"message":"you must provide a model parameter","type":"invalid_request_error","param":null,"code":null}}`)
			return
		}
		model := strconv.Quote(req.Model)
		if !req.Stream {
			writeJSONStatus(w, http.StatusOK, `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":`+model+
				`,"choices":[{"index":0,"message":{"role":"assistant","content":"Hello from openai","refusal":null},"logprobs":null,"finish_reason":"stop"}],`+
				`"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}}`)
			return
		}
		chunk := func(delta, finish string) string {
			return `data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":` + model +
				`,"choices":[{"index":0,"delta":` + delta + `,"logprobs":null,"finish_reason":` + finish + `}]}` + "\n\n"
		}
		writeSSE(w,
			chunk(`{"role":"assistant","content":""}`, "null"),
			chunk(`{"content":"Hel"}`, "null"),
			chunk(`{"content":"lo"}`, "null"),
			chunk(`{}`, `"stop"`),
			"data: [DONE]\n\n")
	default:
		writeJSONStatus(w, http.StatusNotFound, `{"error":{"message":"Unknown request URL","type":"invalid_request_error","param":null,"code":"unknown_url"}}`)
	}
}

// anthropicEventTypes are the events of a streamed message, in order.
var anthropicEventTypes = []string{"message_start", "content_block_start", "content_block_delta",
	"content_block_delta", "content_block_stop", "message_delta", "message_stop"}

// anthropicMock is Anthropic: messages, streamed as named SSE events
// (with a ping, which the SDK drops), and the model list.
func anthropicMock(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("X-Api-Key") != antSDKKey {
		writeJSONStatus(w, http.StatusUnauthorized, `{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}`)
		return
	}
	if r.Header.Get("Anthropic-Version") == "" {
		writeJSONStatus(w, http.StatusBadRequest, `{"type":"error","error":{"type":"invalid_request_error","message":"anthropic-version: header is required"}}`)
		return
	}
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/v1/models":
		writeJSONStatus(w, http.StatusOK, `{"data":[`+
			`{"type":"model","id":"claude-sonnet-4-5","display_name":"Claude Sonnet 4.5","created_at":"2025-09-29T00:00:00Z"},`+
			`{"type":"model","id":"claude-haiku-4-5","display_name":"Claude Haiku 4.5","created_at":"2025-10-15T00:00:00Z"}],`+
			`"has_more":false,"first_id":"claude-sonnet-4-5","last_id":"claude-haiku-4-5"}`)
	case r.Method == http.MethodPost && r.URL.Path == "/v1/messages":
		var req struct {
			Model  string `json:"model"`
			Stream bool   `json:"stream"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Model == "" {
			writeJSONStatus(w, http.StatusBadRequest, `{"type":"error","error":{"type":"invalid_request_error","message":"model: Field required"}}`)
			return
		}
		model := strconv.Quote(req.Model)
		if !req.Stream {
			writeJSONStatus(w, http.StatusOK, `{"id":"msg_01","type":"message","role":"assistant","model":`+model+
				`,"content":[{"type":"text","text":"Hello from claude"}],"stop_reason":"end_turn","stop_sequence":null,`+
				`"usage":{"input_tokens":10,"output_tokens":4}}`)
			return
		}
		event := func(name, data string) string { return "event: " + name + "\ndata: " + data + "\n\n" }
		writeSSE(w,
			event("message_start", `{"type":"message_start","message":{"id":"msg_01","type":"message","role":"assistant","model":`+model+
				`,"content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":10,"output_tokens":1}}}`),
			event("content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`),
			event("ping", `{"type": "ping"}`),
			event("content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hel"}}`),
			event("content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"lo"}}`),
			event("content_block_stop", `{"type":"content_block_stop","index":0}`),
			event("message_delta", `{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":2}}`),
			event("message_stop", `{"type":"message_stop"}`))
	default:
		writeJSONStatus(w, http.StatusNotFound, `{"type":"error","error":{"type":"not_found_error","message":"Not found"}}`)
	}
}

// geminiMock is the Gemini API, under /v1 and /v1beta as Google serves
// it: generateContent, streamGenerateContent with alt=sse (events
// separated by CRLF CRLF, as Google sends them), and the model list.
func geminiMock(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("X-Goog-Api-Key") != gemSDKKey || r.URL.Query().Has("key") {
		writeJSONStatus(w, http.StatusBadRequest, `{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT"}}`)
		return
	}
	version, rest, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	if version != "v1" && version != "v1beta" {
		writeJSONStatus(w, http.StatusNotFound, `{"error":{"code":404,"message":"Not found","status":"NOT_FOUND"}}`)
		return
	}
	if r.Method == http.MethodGet && rest == "models" {
		writeJSONStatus(w, http.StatusOK, `{"models":[`+
			`{"name":"models/gemini-2.5-flash","displayName":"Gemini 2.5 Flash","supportedGenerationMethods":["generateContent"]},`+
			`{"name":"models/gemini-2.5-pro","displayName":"Gemini 2.5 Pro","supportedGenerationMethods":["generateContent"]},`+
			`{"name":"models/text-embedding-004","displayName":"Text Embedding 004","supportedGenerationMethods":["embedContent"]}]}`)
		return
	}
	model, action, ok := strings.Cut(strings.TrimPrefix(rest, "models/"), ":")
	if r.Method != http.MethodPost || !ok || !strings.HasPrefix(rest, "models/") {
		writeJSONStatus(w, http.StatusNotFound, `{"error":{"code":404,"message":"Not found","status":"NOT_FOUND"}}`)
		return
	}
	var req struct {
		Contents []json.RawMessage `json:"contents"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || len(req.Contents) == 0 {
		writeJSONStatus(w, http.StatusBadRequest, `{"error":{"code":400,"message":"* GenerateContentRequest.contents: contents is not specified","status":"INVALID_ARGUMENT"}}`)
		return
	}
	candidate := func(text, finish string) string {
		return `{"candidates":[{"content":{"parts":[{"text":` + strconv.Quote(text) + `}],"role":"model"}` + finish + `,"index":0}],` +
			`"usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":2,"totalTokenCount":5},"modelVersion":` + strconv.Quote(model) + `}`
	}
	switch action {
	case "generateContent":
		writeJSONStatus(w, http.StatusOK, candidate("Hello from gemini", `,"finishReason":"STOP"`))
	case "streamGenerateContent":
		if r.URL.Query().Get("alt") != "sse" {
			writeJSONStatus(w, http.StatusBadRequest, `{"error":{"code":400,"message":"this mock streams only with alt=sse","status":"INVALID_ARGUMENT"}}`)
			return
		}
		writeSSE(w, "data: "+candidate("Hel", "")+"\r\n\r\n", "data: "+candidate("lo", `,"finishReason":"STOP"`)+"\r\n\r\n")
	default:
		writeJSONStatus(w, http.StatusNotFound, fmt.Sprintf(`{"error":{"code":404,"message":"unknown action %q","status":"NOT_FOUND"}}`, action))
	}
}

func writeJSONStatus(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	io.WriteString(w, body)
}

// writeSSE streams events, flushing each, as a provider does.
func writeSSE(w http.ResponseWriter, events ...string) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	for _, e := range events {
		io.WriteString(w, e)
		rc.Flush()
	}
}
