package proxy

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/gpt-load/gpt-load/internal/classify"
	"github.com/gpt-load/gpt-load/internal/sse"
)

func TestClassifyEvent(t *testing.T) {
	tests := []struct {
		name, typ, data string
		kind            eventKind
		status          int
		fault           classify.Fault // of the status answer it stands for
	}{
		{"openai role chunk", "", `{"choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null}}]}`, evPreamble, 0, 0},
		{"openai content", "", `{"choices":[{"delta":{"content":"Hi"}}]}`, evOutput, 0, 0},
		{"openai reasoning_content", "", `{"choices":[{"delta":{"reasoning_content":"Let me think"}}]}`, evOutput, 0, 0},
		{"openai reasoning", "", `{"choices":[{"delta":{"reasoning":"hmm"}}]}`, evOutput, 0, 0},
		{"openai tool call", "", `{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":""}}]}}]}`, evOutput, 0, 0},
		{"openai empty tool calls", "", `{"choices":[{"delta":{"tool_calls":[]}}]}`, evPreamble, 0, 0},
		{"legacy completion text", "", `{"choices":[{"text":"Hi","index":0}]}`, evOutput, 0, 0},
		{"usage chunk", "", `{"choices":[],"usage":{"total_tokens":3}}`, evPreamble, 0, 0},
		{"azure prompt filter", "", `{"choices":[],"prompt_filter_results":[{"prompt_index":0}]}`, evPreamble, 0, 0},
		{"done", "", `[DONE]`, evOther, 0, 0},
		{"plain text", "", `partial`, evOther, 0, 0},
		{"unknown json", "", `{"foo":1}`, evOther, 0, 0},
		{"anthropic message_start", "message_start", `{"type":"message_start","message":{"id":"m"}}`, evPreamble, 0, 0},
		{"anthropic ping", "ping", `{"type": "ping"}`, evPreamble, 0, 0},
		{"anthropic text delta", "content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}`, evOutput, 0, 0},
		{"anthropic thinking delta", "content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"x"}}`, evOutput, 0, 0},
		{"gemini parts", "", `{"candidates":[{"content":{"parts":[{"text":"Hi"}],"role":"model"}}]}`, evOutput, 0, 0},
		{"gemini no parts", "", `{"candidates":[{"content":{"role":"model"}}]}`, evPreamble, 0, 0},
		{"responses created", "response.created", `{"type":"response.created","response":{"error":null}}`, evPreamble, 0, 0},
		{"responses delta", "response.output_text.delta", `{"type":"response.output_text.delta","delta":"Hi"}`, evOutput, 0, 0},
		{"event type alone says delta", "thread.message.delta", `{"id":"msg_1","object":"thread.message.delta","delta":{}}`, evOutput, 0, 0},

		{"anthropic overloaded", "error", `{"type": "error", "error": {"details": null, "type": "overloaded_error", "message": "Overloaded"}}`, evError, 529, classify.TargetError},
		{"anthropic rate limit", "error", `{"type":"error","error":{"type":"rate_limit_error","message":"x"}}`, evError, 429, classify.KeyRateLimited},
		{"anthropic api_error", "error", `{"type":"error","error":{"type":"api_error","message":"x"}}`, evError, 500, classify.TargetError},
		{"anthropic auth", "error", `{"type":"error","error":{"type":"authentication_error","message":"x"}}`, evError, 401, classify.KeyPermanent},
		{"anthropic invalid request", "error", `{"type":"error","error":{"type":"invalid_request_error","message":"x"}}`, evError, 400, classify.ClientError},
		{"openai overloaded", "", `{"error":{"message":"x","type":"server_error","param":null,"code":"server_is_overloaded"}}`, evError, 503, classify.TargetError},
		{"openai server_error", "", `{"error":{"message":"x","type":"server_error","param":null,"code":null}}`, evError, 500, classify.TargetError},
		{"openai rate limit", "", `{"error":{"message":"x","type":"tokens","code":"rate_limit_exceeded"}}`, evError, 429, classify.KeyRateLimited},
		{"openai quota", "", `{"error":{"message":"x","type":"insufficient_quota","code":"insufficient_quota"}}`, evError, 429, classify.KeyPermanent},
		{"openai invalid key", "", `{"error":{"message":"x","type":"invalid_request_error","code":"invalid_api_key"}}`, evError, 401, classify.KeyPermanent},
		{"openai unknown error", "", `{"error":{"message":"x"}}`, evError, 500, classify.TargetError},
		{"gemini 503", "", `{"error": {"code": 503, "message": "x", "status": "UNAVAILABLE"}}`, evError, 503, classify.TargetError},
		{"gemini status only", "", `{"error":{"message":"x","status":"RESOURCE_EXHAUSTED"}}`, evError, 429, classify.KeyRateLimited},
		{"gemini array", "", `{"error":{"code":400,"message":"API key not valid.","status":"INVALID_ARGUMENT","details":[{"reason":"API_KEY_INVALID"}]}}`, evError, 400, classify.KeyPermanent},
		{"responses error", "error", `{"type":"error","code":"server_error","message":"x","param":null}`, evError, 500, classify.TargetError},
		{"responses failed", "response.failed", `{"type":"response.failed","response":{"error":{"code":"rate_limit_exceeded","message":"x"}}}`, evError, 429, classify.KeyRateLimited},
		{"error event, not json", "error", `oops`, evError, 500, classify.TargetError},
		{"null error is no error", "", `{"error":null,"choices":[{"delta":{"content":"Hi"}}]}`, evOutput, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			kind, status, body := classifyEvent(sse.Event{Type: []byte(tc.typ), Data: []byte(tc.data)})
			if kind != tc.kind || status != tc.status {
				t.Fatalf("classifyEvent(%q, %s) = %d, %d; want %d, %d", tc.typ, tc.data, kind, status, tc.kind, tc.status)
			}
			if kind != evError {
				return
			}
			v := classify.Attempt(classify.Outcome{Status: status, Header: http.Header{}, Body: body})
			if v.Fault != tc.fault {
				t.Errorf("as a %d answer with body %s: fault %v; want %v", status, body, v.Fault, tc.fault)
			}
		})
	}
}

// FuzzClassifyEvent: classifying never panics, and the byte-level token
// check never hides an error the JSON decoder would see (for bodies
// without escapes, which could spell "error" in a way bytes do not show).
func FuzzClassifyEvent(f *testing.F) {
	f.Add("", `{"choices":[{"delta":{"content":"Hi"}}]}`)
	f.Add("error", `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`)
	f.Add("", `{"error":{"code":503,"status":"UNAVAILABLE"},"choices":[{"delta":{"content":"x"}}]}`)
	f.Add("content_block_delta", `{"type":"content_block_delta","delta":{"type":"text_delta","text":"Hi"}}`)
	f.Add("", `{"candidates": [{"content": {"parts": [{"text": "Hello"}]}}]}`)
	f.Add("", `{"Error":{"code":"server_error"},"choices":[{"delta":{"content":"x"}}]}`)
	f.Fuzz(func(t *testing.T, typ, data string) {
		kind, _, _ := classifyEvent(sse.Event{Type: []byte(typ), Data: []byte(data)})
		if kind != evOutput || typ == "error" || strings.Contains(data, `\`) {
			return
		}
		var w struct {
			Error    json.RawMessage `json:"error"`
			Type     string          `json:"type"`
			Response struct {
				Error json.RawMessage `json:"error"`
			} `json:"response"`
		}
		if json.Unmarshal([]byte(data), &w) == nil && (present(w.Error) || w.Type == "error" ||
			(w.Type == "response.failed" && present(w.Response.Error))) {
			t.Errorf("classifyEvent(%q, %q) = output; the event is an error", typ, data)
		}
	})
}
