// Package apierr defines the errors gpt-load itself answers with and
// renders them in OpenAI's error shape.
package apierr

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/gpt-load/gpt-load/pkg/types"
)

// Type is the error type every proxy-made error carries, so clients can tell
// them from the provider's own.
const Type = "gpt_load_error"

// Codes, one per situation (docs/api.md, "Errors").
const (
	CodeInvalidAuth      = "invalid_auth"
	CodeRequestTooLarge  = "request_too_large"
	CodeRequestTimeout   = "request_timeout"
	CodeTooManyRequests  = "too_many_concurrent_requests"
	CodeNoAvailableKeys  = "no_available_keys"
	CodeUpstreamUnavail  = "upstream_unavailable"
	CodeUpstreamTimeout  = "upstream_timeout"
	CodeInternal         = "internal_error"
	CodeMethodNotAllowed = "method_not_allowed"
	CodeInvalidRequest   = "invalid_request"
	CodeKeysFileUnusable = "keys_file_error"
	CodeNotFound         = "not_found"
	CodeLoopDetected     = "loop_detected"
	CodeSpoolFailed      = "body_storage_unavailable"
	CodeGroupNotFound    = "group_not_found"
	CodeGroupForbidden   = "group_forbidden"
	CodeModelNotFound    = "model_not_found"
)

// Error is an error with the HTTP status and code it is answered with. It
// unwraps to its cause.
type Error struct {
	Status  int
	Code    string
	Message string
	// RetryAfter, when positive, is sent as Retry-After in seconds.
	RetryAfter int
	Err        error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Message + ": " + e.Err.Error()
	}
	return e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// New returns an Error.
func New(status int, code, message string) *Error {
	return &Error{Status: status, Code: code, Message: message}
}

// Write renders e as OpenAI's JSON error with its status. The cause is not
// written: it may name internals the client has no use for.
func Write(w http.ResponseWriter, e *Error) {
	// Not HTML-escaped: the body is JSON, never HTML (nosniff), and a
	// message's "<token>" should read as such in curl, not \u003ctoken\u003e.
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.Encode(types.ErrorResponse{Error: types.ErrorBody{
		Message: e.Message, Type: Type, Code: e.Code,
	}})
	body := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)+1))
	h.Set("X-Content-Type-Options", "nosniff")
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	w.WriteHeader(e.Status)
	w.Write(append(body, '\n'))
}
