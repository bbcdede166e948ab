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
