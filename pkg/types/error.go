// Package types holds the wire shapes gpt-load shares with OpenAI-compatible
// clients.
package types

// ErrorResponse is OpenAI's error envelope:
// {"error":{"message":"…","type":"…","code":"…"}}.
type ErrorResponse struct {
	Error ErrorBody `json:"error"`
}

// ErrorBody is the inside of ErrorResponse.
type ErrorBody struct {
	Message string `json:"message"`
	Type    string `json:"type"`
	Code    string `json:"code"`
}
