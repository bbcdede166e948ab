package proxy

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/gpt-load/gpt-load/internal/freshstack"
	"github.com/gpt-load/gpt-load/internal/sse"
)

// eventKind is what one event of a held stream means for the commit window
// (docs/api.md, "Streaming").
type eventKind uint8

const (
	// evPreamble carries no output yet (OpenAI's role chunk, Anthropic's
	// message_start and ping, the Responses API's response.created): keep
	// holding.
	evPreamble eventKind = iota
	// evOutput carries generated output: commit.
	evOutput
	// evError is an error in the stream: classify it like a status answer.
	evError
	// evOther is a shape the proxy does not know ([DONE], plain text,
	// another API's events): commit, so an unknown stream is never held.
	evOther
)

// wireEvent is the union of the event shapes read here:
//
//	OpenAI chat:     {"choices":[{"delta":{"content","reasoning_content","tool_calls",...}}]}
//	OpenAI legacy:   {"choices":[{"text":"..."}]}
//	OpenAI errors:   {"error":{"message","type","code"}}
//	Responses API:   {"type":"response.output_text.delta",...}, {"type":"error","code",...},
//	                 {"type":"response.failed","response":{"error":{...}}}
//	Anthropic:       {"type":"content_block_delta",...}, {"type":"error","error":{"type":"overloaded_error"}}
//	Gemini:          {"candidates":[{"content":{"parts":[...]}}]}, {"error":{"code":503,"status":"UNAVAILABLE"}}
type wireEvent struct {
	Type     string          `json:"type"`
	Error    json.RawMessage `json:"error"`
	Response struct {
		Error json.RawMessage `json:"error"`
	} `json:"response"`
	// Field types are chosen so that an event allocates little: strings
	// only when non-empty, zero-size elements for what is only counted.
	// A value of another type (content as an array) fails the decoding,
	// which commits the stream: never held, never wrong.
	Choices []struct {
		Delta struct {
			Content          string     `json:"content"`
			Reasoning        string     `json:"reasoning"`
			ReasoningContent string     `json:"reasoning_content"`
			Refusal          string     `json:"refusal"`
			ToolCalls        []struct{} `json:"tool_calls"`
			FunctionCall     *struct{}  `json:"function_call"`
			Audio            *struct{}  `json:"audio"`
		} `json:"delta"`
		Text string `json:"text"`
	} `json:"choices"`
	Candidates []struct {
		Content struct {
			Parts []struct{} `json:"parts"`
		} `json:"content"`
	} `json:"candidates"`
}

// classifyEvent says what e means. For an error it also returns the status
// the same error has as an HTTP answer and a body in a shape
// classify.Attempt reads ({"error":{...}}).
//
// It is called deep in a stream's goroutine: an event that must be
// decoded is decoded on a fresh stack (internal/freshstack).
func classifyEvent(e sse.Event) (kind eventKind, status int, body []byte) {
	if kind, status, ok := classifyQuick(e); ok {
		return kind, status, nil
	}
	freshstack.Call(func() { kind, status, body = decodeEvent(e) })
	return kind, status, body
}

// classifyQuick classifies what needs no decoding: an event whose data
// is not a JSON object, and the common output event (quickOutput).
func classifyQuick(e sse.Event) (kind eventKind, status int, ok bool) {
	data := bytes.TrimSpace(e.Data)
	isErrorEvent := string(e.Type) == "error"
	if len(data) == 0 || data[0] != '{' {
		if isErrorEvent {
			return evError, http.StatusInternalServerError, true
		}
		return evOther, 0, true
	}
	if !isErrorEvent && quickOutput(data) {
		return evOutput, 0, true
	}
	return 0, 0, false
}

// decodeEvent classifies an event whose data is a JSON object by decoding
// it.
func decodeEvent(e sse.Event) (kind eventKind, status int, body []byte) {
	data := bytes.TrimSpace(e.Data)
	isErrorEvent := string(e.Type) == "error"
	var w wireEvent
	if json.Unmarshal(data, &w) != nil {
		if isErrorEvent {
			return evError, http.StatusInternalServerError, nil
		}
		return evOther, 0, nil
	}
	switch {
	case present(w.Error):
		return evError, errorStatus(w.Error), data
	case w.Type == "response.failed" && present(w.Response.Error):
		return evError, errorStatus(w.Response.Error), wrapError(w.Response.Error)
	case isErrorEvent || w.Type == "error":
		// The Responses API puts code and message at the top level.
		return evError, errorStatus(data), wrapError(data)
	}
	typ := w.Type
	if typ == "" {
		typ = string(e.Type)
	}
	switch {
	case typ == "content_block_delta", strings.HasSuffix(typ, ".delta"):
		// Anthropic's text, thinking and tool input; the Responses and
		// Assistants APIs' output_text, reasoning, arguments deltas.
		return evOutput, 0, nil
	case w.Choices != nil:
		for _, c := range w.Choices {
			d := c.Delta
			if c.Text != "" || d.Content != "" || d.Reasoning != "" || d.ReasoningContent != "" || d.Refusal != "" ||
				len(d.ToolCalls) > 0 || d.FunctionCall != nil || d.Audio != nil {
				return evOutput, 0, nil
			}
		}
		return evPreamble, 0, nil
	case w.Candidates != nil:
		for _, c := range w.Candidates {
			if len(c.Content.Parts) > 0 {
				return evOutput, 0, nil
			}
		}
		return evPreamble, 0, nil
	case anthropicPreamble[typ], strings.HasPrefix(typ, "response."), strings.HasPrefix(typ, "thread."):
		return evPreamble, 0, nil
	}
	return evOther, 0, nil
}

// outputKeys name the string members that hold generated text in OpenAI
// deltas, legacy completions, Anthropic deltas and Gemini parts.
var outputKeys = [...][]byte{[]byte(`"content"`), []byte(`"text"`), []byte(`"reasoning_content"`), []byte(`"reasoning"`)}

// quickOutput spots the common output event (a token) without decoding
// it: no "error" anywhere (mentionsError), and one of outputKeys with a
// non-empty string.
// Decoding every token's JSON cost about ten allocations per event. A
// false positive could only commit a stream early; anything it does not
// recognise goes through the decoder.
func quickOutput(data []byte) bool {
	if mentionsError(data) {
		return false
	}
	for _, key := range outputKeys {
		for rest := data; ; {
			i := bytes.Index(rest, key)
			if i < 0 {
				break
			}
			rest = bytes.TrimLeft(rest[i+len(key):], " \t")
			if len(rest) > 0 && rest[0] == ':' {
				v := bytes.TrimLeft(rest[1:], " \t")
				if len(v) > 1 && v[0] == '"' && v[1] != '"' {
					return true
				}
			}
		}
	}
	return false
}

// mentionsError reports whether data has "error" in any case followed by a
// quote, as a key the decoder would match (it matches names without regard
// to case) or a value: then the decoder decides.
func mentionsError(data []byte) bool {
	for i := 0; i+6 <= len(data); i++ {
		if data[i+5] == '"' && (data[i]|0x20) == 'e' && (data[i+1]|0x20) == 'r' && (data[i+2]|0x20) == 'r' &&
			(data[i+3]|0x20) == 'o' && (data[i+4]|0x20) == 'r' {
			return true
		}
	}
	return false
}

// anthropicPreamble are Anthropic's events that come before (or without)
// content: holding past them is what catches an overload that follows
// message_start.
var anthropicPreamble = map[string]bool{
	"message_start": true, "content_block_start": true, "content_block_stop": true,
	"ping": true, "message_delta": true, "message_stop": true,
}

// present reports whether a JSON value is there and not null.
func present(v json.RawMessage) bool {
	return len(v) > 0 && string(v) != "null"
}

func wrapError(v json.RawMessage) []byte {
	b, err := json.Marshal(struct {
		Error json.RawMessage `json:"error"`
	}{v})
	if err != nil {
		return nil
	}
	return b
}

// errorStatus maps an error object to the HTTP status the provider gives
// the same error as a status answer: a number in "code" (Gemini, some
// OpenAI-compatible providers), else the code, type or canonical status
// names below. An error it cannot place is a 500: the provider accepted
// the request and then failed it.
func errorStatus(raw json.RawMessage) int {
	var e struct {
		Code   json.RawMessage `json:"code"`
		Type   string          `json:"type"`
		Status json.RawMessage `json:"status"`
	}
	if json.Unmarshal(raw, &e) != nil {
		return http.StatusInternalServerError
	}
	var names []string
	for _, v := range []json.RawMessage{e.Code, e.Status} {
		var n int
		if json.Unmarshal(v, &n) == nil && n >= 400 && n <= 599 {
			return n
		}
		var s string
		if json.Unmarshal(v, &s) == nil && s != "" {
			names = append(names, s)
		}
	}
	names = append(names, e.Type)
	// The code is the most specific (insufficient_quota under type
	// insufficient_quota, rate_limit_exceeded under type tokens), then the
	// canonical status, then the type.
	for _, n := range names {
		if s, ok := errorStatuses[strings.ToLower(n)]; ok {
			return s
		}
	}
	return http.StatusInternalServerError
}

// errorStatuses are the error codes, types and Google canonical statuses
// providers put in error objects, with the status each is answered with.
var errorStatuses = map[string]int{
	// Anthropic error types.
	"invalid_request_error": 400,
	"authentication_error":  401,
	"billing_error":         402,
	"permission_error":      403,
	"not_found_error":       404,
	"request_too_large":     413,
	"rate_limit_error":      429,
	"api_error":             500,
	"timeout_error":         504,
	"overloaded_error":      529,
	// OpenAI codes and types.
	"invalid_api_key":         401,
	"account_deactivated":     401,
	"insufficient_quota":      429,
	"rate_limit_exceeded":     429,
	"tokens":                  429,
	"requests":                429,
	"model_not_found":         404,
	"context_length_exceeded": 400,
	"server_error":            500,
	"internal_error":          500,
	"server_is_overloaded":    503,
	"service_unavailable":     503,
	"overloaded":              503,
	// Google canonical statuses (Gemini's "status").
	"invalid_argument":    400,
	"failed_precondition": 400,
	"unauthenticated":     401,
	"permission_denied":   403,
	"not_found":           404,
	"resource_exhausted":  429,
	"internal":            500,
	"unavailable":         503,
	"deadline_exceeded":   504,
}
