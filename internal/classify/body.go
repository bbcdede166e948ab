package classify

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/gpt-load/gpt-load/internal/ascii"
	"github.com/gpt-load/gpt-load/internal/secret"
)

// apiError is the union of the provider error shapes we read:
//
//	OpenAI, Azure:  {"error":{"message","type","code","param"}}
//	Anthropic:      {"type":"error","error":{"type","message"}}
//	Gemini:         {"error":{"code":400,"message","status","details":[{"reason"},{"retryDelay"}]}}
type apiError struct {
	// found: the body held a provider error object.
	found             bool
	message           string // only to see whether it names the model
	code, typ, status string
	reasons           []string
	retryDelay        time.Duration
}

type wireError struct {
	Error json.RawMessage `json:"error"`
}

type wireBody struct {
	Code    json.RawMessage `json:"code"` // string (OpenAI, Azure) or number (Gemini)
	Message string          `json:"message"`
	Type    string          `json:"type"`
	Status  string          `json:"status"`
	Details []struct {
		Reason     string `json:"reason"`
		RetryDelay string `json:"retryDelay"`
	} `json:"details"`
}

// parseError reads the provider's error object from body; anything it
// cannot read yields the zero apiError.
func parseError(body []byte) apiError {
	var w wireError
	if t := bytes.TrimLeft(body, " \t\r\n"); len(t) > 0 && t[0] == '[' {
		// Gemini's streamGenerateContent without alt=sse answers with a
		// JSON array: [{"error":{...}}].
		var ws []wireError
		if json.Unmarshal(t, &ws) != nil || len(ws) == 0 {
			return apiError{}
		}
		w = ws[0]
	} else if len(body) == 0 || json.Unmarshal(body, &w) != nil {
		return apiError{}
	}
	if len(w.Error) == 0 {
		return apiError{}
	}
	var b wireBody
	if json.Unmarshal(w.Error, &b) != nil {
		return apiError{}
	}
	e := apiError{found: true, message: b.Message, typ: strings.ToLower(b.Type), status: strings.ToUpper(b.Status)}
	if len(b.Code) > 0 {
		var s string
		if json.Unmarshal(b.Code, &s) == nil {
			e.code = strings.ToLower(s)
		}
	}
	for _, d := range b.Details {
		if d.Reason != "" {
			e.reasons = append(e.reasons, strings.ToUpper(d.Reason))
		}
		if d.RetryDelay != "" {
			if dur, err := time.ParseDuration(d.RetryDelay); err == nil && dur > 0 {
				e.retryDelay = dur
			}
		}
	}
	return e
}

// keyInvalidCodes mark a key that will never work (400 answers).
var keyInvalidCodes = map[string]bool{
	"invalid_api_key":      true,
	"api_key_invalid":      true,
	"authentication_error": true,
	"account_deactivated":  true,
	"invalid_key":          true,
	// Google's canonical status for a credential it does not accept.
	"unauthenticated": true,
}

// quotaCodes mark a key whose quota or billing is exhausted (429 answers):
// resting it a minute would not help.
var quotaCodes = map[string]bool{
	"insufficient_quota":          true,
	"insufficientquota":           true,
	"billing_hard_limit_reached":  true,
	"billing_not_active":          true,
	"billing_error":               true,
	"quota_exceeded":              true,
	"access_terminated":           true,
	"credit_balance_insufficient": true,
}

func (e apiError) any(set map[string]bool) bool {
	if set[e.code] || set[e.typ] || set[strings.ToLower(e.status)] {
		return true
	}
	for _, r := range e.reasons {
		if set[strings.ToLower(r)] {
			return true
		}
	}
	return false
}

func (e apiError) keyInvalid() bool { return e.any(keyInvalidCodes) }

// targetRefusalCodes mark a 403 about where the request came from (the
// upstream's region or IP), not about the key.
var targetRefusalCodes = map[string]bool{
	"unsupported_country_region_territory": true,
	"unsupported_country":                  true,
	"unsupported_region":                   true,
	"ip_not_allowed":                       true,
	"ip_forbidden":                         true,
}

// modelCodes say outright that the requested model is missing or not
// allowed for the key (OpenAI's model_not_found, Azure's missing
// deployment, which is the model in its API).
var modelCodes = map[string]bool{
	"model_not_found":    true,
	"deploymentnotfound": true,
}

// modelScoped reports whether the error says that model does not exist
// or that this key may not use it: by code, or, for Anthropic's
// not_found_error and Google's NOT_FOUND / PERMISSION_DENIED, by a message
// that names the requested model. Without a model it is never scoped.
func (e apiError) modelScoped(model string) bool {
	if model == "" || !e.found {
		return false
	}
	if modelCodes[e.code] {
		return true
	}
	if e.typ == "not_found_error" || e.status == "NOT_FOUND" || e.status == "PERMISSION_DENIED" {
		return strings.Contains(e.message, model)
	}
	return false
}

func (e apiError) quotaExhausted() bool { return e.any(quotaCodes) }

// reason names the error for people: the provider's code when it gave
// one, else the status. Only short identifiers are used, so no key or
// request content leaks into /blacklist.
func (e apiError) reason(status int) string {
	for _, s := range []string{e.code, e.typ} {
		if label(s) {
			return s
		}
	}
	for _, r := range e.reasons {
		if label(r) {
			return strings.ToLower(r)
		}
	}
	if label(e.status) {
		return strings.ToLower(e.status)
	}
	return "status " + strconv.Itoa(status)
}

// label reports whether s can name an error in /blacklist and logs: a short
// identifier that is not key-shaped, so a body quoting a key in its code
// field cannot leak it.
func label(s string) bool {
	return s != "" && len(s) <= 64 && isIdent(s) && secret.Redact(s) == s &&
		// Long provider codes are snake_case words ("insufficient_quota",
		// "unsupported_country_region_territory"); a long run without an
		// underscore is more likely a key without digits.
		(len(s) < 20 || strings.Contains(s, "_"))
}

func isIdent(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(ascii.IsAlnum(c) || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}
