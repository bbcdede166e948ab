package providersim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// apiError is OpenAI's error shape. Code and Param are null when unset,
// as OpenAI writes them.
type apiError struct {
	Error apiErrorBody `json:"error"`
}

type apiErrorBody struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

func ptr(s string) *string { return &s }

// The error answers, worded as the OpenAI API words them.

func errInvalidKey(preview string) apiError {
	msg := "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
	if preview != "" {
		msg = "Incorrect API key provided: " + preview + ". You can find your API key at https://platform.openai.com/account/api-keys."
	}
	return apiError{apiErrorBody{Message: msg, Type: "invalid_request_error", Code: ptr("invalid_api_key")}}
}

func errModelNotFound(model string) apiError {
	return apiError{apiErrorBody{
		Message: "The model `" + model + "` does not exist or you do not have access to it.",
		Type:    "invalid_request_error", Code: ptr("model_not_found"),
	}}
}

// errProjectNoModel is OpenAI's 403 for a project not allowed a model.
func errProjectNoModel(project, model string) apiError {
	return apiError{apiErrorBody{
		Message: "Project `" + project + "` does not have access to model `" + model + "`",
		Type:    "invalid_request_error", Code: ptr("model_not_found"),
	}}
}

func errInsufficientQuota() apiError {
	return apiError{apiErrorBody{
		Message: "You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
		Type:    "insufficient_quota", Code: ptr("insufficient_quota"),
	}}
}

// errRateLimit is the 429 of a request or token limit; what is "requests"
// or "tokens", as OpenAI sets the type.
func errRateLimit(model, org, what string, limit, used int, wait time.Duration) apiError {
	unit := "requests per min (RPM)"
	if what == "tokens" {
		unit = "tokens per min (TPM)"
	}
	return apiError{apiErrorBody{
		Message: fmt.Sprintf("Rate limit reached for %s in organization %s on %s: Limit %d, Used %d, Requested 1. Please try again in %s. Visit https://platform.openai.com/account/rate-limits to learn more.",
			model, org, unit, limit, used, roundDuration(wait)),
		Type: what, Code: ptr("rate_limit_exceeded"),
	}}
}

// errIPRateLimit is the 429 of an IP-wide limit (the storm episode).
func errIPRateLimit() apiError {
	return apiError{apiErrorBody{
		Message: "Rate limit reached for requests from your IP address. Please try again later.",
		Type:    "requests", Code: ptr("rate_limit_exceeded"),
	}}
}

func errBadJSON() apiError {
	return apiError{apiErrorBody{
		Message: "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. If you have trouble figuring out how to fix this, please contact us through our help center at help.openai.com.)",
		Type:    "invalid_request_error",
	}}
}

func errMissingParam(name string) apiError {
	return apiError{apiErrorBody{
		Message: "Missing required parameter: '" + name + "'.",
		Type:    "invalid_request_error", Param: ptr(name), Code: ptr("missing_required_parameter"),
	}}
}

func errNoModel() apiError {
	return apiError{apiErrorBody{Message: "you must provide a model parameter", Type: "invalid_request_error"}}
}

func errOverloaded() apiError {
	return apiError{apiErrorBody{Message: "The server is overloaded or not ready yet.", Type: "server_error"}}
}

func errNoRoute(method, path string) apiError {
	return apiError{apiErrorBody{Message: "Invalid URL (" + method + " " + path + ")", Type: "invalid_request_error"}}
}

func writeError(w http.ResponseWriter, status int, e apiError) {
	b, _ := json.Marshal(e)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
}

// roundDuration formats d the way OpenAI's reset headers do: "1s",
// "250ms", "6m0s", "1.5s".
func roundDuration(d time.Duration) string {
	if d < time.Millisecond {
		d = time.Millisecond
	}
	return d.Round(time.Millisecond).String()
}

// completion is a non-streamed chat.completion for model.
func completion(model string, n uint64) []byte {
	return fmt.Appendf(nil, `{"id":"chatcmpl-sim%015d","object":"chat.completion","created":%d,"model":%q,"choices":[{"index":0,"message":{"role":"assistant","content":"Hello from the provider simulator.","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":24,"completion_tokens":8,"total_tokens":32}}`,
		n, time.Now().Unix(), model)
}

func chunk(model string, n uint64, content string, last bool) []byte {
	delta, finish := `{"content":`+strconv.Quote(content)+`}`, "null"
	if last {
		delta, finish = `{}`, `"stop"`
	}
	return fmt.Appendf(nil, "data: {\"id\":\"chatcmpl-sim%015d\",\"object\":\"chat.completion.chunk\",\"created\":%d,\"model\":%q,\"choices\":[{\"index\":0,\"delta\":%s,\"logprobs\":null,\"finish_reason\":%s}]}\n\n",
		n, time.Now().Unix(), model, delta, finish)
}

func modelList(models []string) []byte {
	type m struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Created int64  `json:"created"`
		OwnedBy string `json:"owned_by"`
	}
	l := struct {
		Object string `json:"object"`
		Data   []m    `json:"data"`
	}{Object: "list", Data: []m{}}
	for _, id := range models {
		l.Data = append(l.Data, m{ID: id, Object: "model", Created: 1700000000, OwnedBy: "system"})
	}
	b, _ := json.Marshal(l)
	return b
}

func errServer() apiError {
	return apiError{apiErrorBody{
		Message: "The server had an error while processing your request. Sorry about that!",
		Type:    "server_error",
	}}
}

// flaggedAnswer is OpenRouter's 403 for input its moderation flagged:
// error.code is a number there, and the metadata says why. No key is at
// fault: every key gets it for the same content.
func flaggedAnswer(model, input, user string) []byte {
	type meta struct {
		Reasons      []string `json:"reasons"`
		FlaggedInput string   `json:"flagged_input"`
		ProviderName string   `json:"provider_name"`
		ModelSlug    string   `json:"model_slug"`
	}
	var a struct {
		Error struct {
			Code     int    `json:"code"`
			Message  string `json:"message"`
			Metadata meta   `json:"metadata"`
		} `json:"error"`
		UserID string `json:"user_id"`
	}
	a.Error.Code = http.StatusForbidden
	a.Error.Message = model + ` requires moderation on OpenAI. Your input was flagged for "harassment". No credits were charged.`
	a.Error.Metadata = meta{Reasons: []string{"harassment"}, FlaggedInput: input, ProviderName: "OpenAI", ModelSlug: model}
	a.UserID = user
	b, _ := json.Marshal(a)
	return b
}

// foreignFileAnswer is the refusal of a file of another project: as
// OpenAI, 404 "No such File object" (param "id"); otherwise 403
// PERMISSION_DENIED in the Google API error shape Gemini's file API
// uses.
func foreignFileAnswer(as, id string) (int, []byte) {
	if as == ForeignFileOpenAI {
		b, _ := json.Marshal(apiError{apiErrorBody{
			Message: "No such File object: " + id, Type: "invalid_request_error", Param: ptr("id"),
		}})
		return http.StatusNotFound, b
	}
	var a struct {
		Error struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
			Status  string `json:"status"`
		} `json:"error"`
	}
	a.Error.Code = http.StatusForbidden
	a.Error.Message = "You do not have permission to access the File " + id + " or it may not exist."
	a.Error.Status = "PERMISSION_DENIED"
	b, _ := json.Marshal(a)
	return http.StatusForbidden, b
}

func writeJSON(w http.ResponseWriter, status int, b []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
}

// transcription is the JSON answer of /v1/audio/transcriptions.
func transcription() []byte {
	return []byte(`{"text":"Hello from the provider simulator.","usage":{"type":"duration","seconds":1}}`)
}

func errMultipart() apiError {
	return apiError{apiErrorBody{
		Message: "Could not parse multipart form", Type: "invalid_request_error",
	}}
}
