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
//	OpenAI, Azure, DeepSeek, Groq:  {"error":{"message","type","code","param"}}
//	Azure content filter:           {"error":{…,"code":"content_filter","status":400,"innererror":{…}}}
//	Anthropic:                      {"type":"error","error":{"type","message"}}
//	Gemini:                         {"error":{"code":403,"message","status","details":[{"reason"},{"retryDelay"},{"violations"}]}}
//	OpenRouter:                     {"error":{"code":403,"message","metadata":{"reasons","flagged_input"}}}
//	Mistral:                        {"object":"error","message","type","param","code"}
type apiError struct {
	// found: the body held a provider error object.
	found bool
	// message is read only for the few answers no code tells apart: a
	// model named by the message, and Anthropic's account messages.
	message           string
	code, typ, status string
	reasons           []string
	retryDelay        time.Duration
	// flagged: OpenRouter's moderation named what it flagged in the input.
	flagged bool
	// quota describes Gemini's QuotaFailure violations, if any.
	quota quotaFailure
}

// quotaFailure sums up Gemini's QuotaFailure violations.
type quotaFailure struct {
	// violations counts them; perModel those with a model dimension.
	violations, perModel int
	// perDay: some violated quota is a daily one.
	perDay bool
}

type wireError struct {
	Error json.RawMessage `json:"error"`
	// Object is Mistral's marker of an error at the top level.
	Object string `json:"object"`
}

type wireBody struct {
	Code    json.RawMessage `json:"code"` // string (OpenAI, Azure) or number (Gemini, OpenRouter)
	Message string          `json:"message"`
	Type    string          `json:"type"`
	Status  json.RawMessage `json:"status"` // string (Gemini) or number (Azure's content filter)
	Details []struct {
		Reason     string `json:"reason"`
		RetryDelay string `json:"retryDelay"`
		Violations []struct {
			QuotaID         string `json:"quotaId"`
			QuotaDimensions struct {
				Model string `json:"model"`
			} `json:"quotaDimensions"`
		} `json:"violations"`
	} `json:"details"`
	Metadata struct {
		Reasons      []string        `json:"reasons"`
		FlaggedInput json.RawMessage `json:"flagged_input"`
	} `json:"metadata"`
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
	inner := []byte(w.Error)
	if len(inner) == 0 || string(inner) == "null" {
		if w.Object != "error" {
			return apiError{}
		}
		inner = body // Mistral: the error is the whole body
	}
	var b wireBody
	if json.Unmarshal(inner, &b) != nil {
		return apiError{}
	}
	e := apiError{found: true, message: b.Message, typ: strings.ToLower(b.Type),
		code: strings.ToLower(jsonString(b.Code)), status: strings.ToUpper(jsonString(b.Status))}
	for _, d := range b.Details {
		if d.Reason != "" {
			e.reasons = append(e.reasons, strings.ToUpper(d.Reason))
		}
		if d.RetryDelay != "" {
			if dur, err := time.ParseDuration(d.RetryDelay); err == nil && dur > 0 {
				e.retryDelay = dur
			}
		}
		for _, v := range d.Violations {
			e.quota.violations++
			if v.QuotaDimensions.Model != "" || strings.Contains(v.QuotaID, "PerModel") {
				e.quota.perModel++
			}
			if strings.Contains(v.QuotaID, "PerDay") {
				e.quota.perDay = true
			}
		}
	}
	e.flagged = len(b.Metadata.Reasons) > 0 || len(b.Metadata.FlaggedInput) > 0 && string(b.Metadata.FlaggedInput) != "null"
	return e
}

// jsonString is raw's value when it is a JSON string, "" otherwise.
func jsonString(raw json.RawMessage) string {
	if len(raw) == 0 || raw[0] != '"' {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return s
}

// keyInvalidCodes say the key, or the account or project behind it, will
// not work: for no model and no request.
var keyInvalidCodes = map[string]bool{
	"invalid_api_key":      true,
	"api_key_invalid":      true,
	"authentication_error": true,
	"account_deactivated":  true,
	"invalid_key":          true,
	// Google's canonical status for a credential it does not accept.
	"unauthenticated": true,
	// Groq: the organization behind the key is restricted.
	"organization_restricted": true,
	// Google ErrorInfo reasons about the key's project or the key's
	// restrictions: another key may well be allowed.
	"consumer_suspended":            true,
	"service_disabled":              true,
	"api_key_service_blocked":       true,
	"api_key_ip_address_blocked":    true,
	"api_key_http_referrer_blocked": true,
	"api_key_android_app_blocked":   true,
	"api_key_ios_app_blocked":       true,
}

// quotaCodes mark a key whose quota or billing is exhausted: resting it
// a minute would not help.
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

// anthropicAccountMessages are the messages of Anthropic 400
// invalid_request_error answers that are about the account, not the
// request: Anthropic gives them no code of their own.
var anthropicAccountMessages = [...]string{
	"credit balance is too low",
	"This organization has been disabled",
}

// refusalCodes mark content the provider refused to handle: the request's
// fault, whatever key sends it.
var refusalCodes = map[string]bool{
	"content_policy_violation": true, // OpenAI images
	"moderation_blocked":       true, // OpenAI gpt-image
	"content_filter":           true, // Azure OpenAI
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

// accountBad reports whether the error names the key or its account as
// unusable: an invalid or revoked key, or an empty balance.
func (e apiError) accountBad() bool {
	if e.any(keyInvalidCodes) || e.any(quotaCodes) {
		return true
	}
	if e.typ == "invalid_request_error" && e.code == "" {
		for _, m := range anthropicAccountMessages {
			if strings.Contains(e.message, m) {
				return true
			}
		}
	}
	return false
}

// refused reports whether the provider refused the request's content
// (moderation, safety, content filter).
func (e apiError) refused() bool { return e.flagged || e.any(refusalCodes) }

// refusalReason names a content refusal: the provider's code, or
// "content_flagged" for OpenRouter's moderation, whose code is the status.
func (e apiError) refusalReason(status int) string {
	if e.flagged && !label(e.code) && !label(e.typ) {
		return "content_flagged"
	}
	return e.reason(status)
}

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

// modelMessages are messages that refuse the requested model without
// naming it or giving a code (OpenAI's 403 for a model the key's project
// may not use).
var modelMessages = [...]string{
	"not allowed to sample from this model",
}

// modelScoped reports whether the error says the requested model does not
// exist or that this key may not use it: by code or fixed message, which
// need no model to be known, or, for Anthropic's not_found_error and
// Google's NOT_FOUND / PERMISSION_DENIED, by a message that names model.
func (e apiError) modelScoped(model string) bool {
	if !e.found {
		return false
	}
	if modelCodes[e.code] {
		return true
	}
	for _, m := range modelMessages {
		if strings.Contains(e.message, m) {
			return true
		}
	}
	if e.typ == "not_found_error" || e.status == "NOT_FOUND" || e.status == "PERMISSION_DENIED" {
		return namesModel(e.message, model)
	}
	return false
}

// namesModel reports whether msg names model as a whole word: "gpt-4"
// is not named by a message about "gpt-4o".
func namesModel(msg, model string) bool {
	if model == "" {
		return false
	}
	for i := 0; ; {
		j := strings.Index(msg[i:], model)
		if j < 0 {
			return false
		}
		start, end := i+j, i+j+len(model)
		if (start == 0 || !modelByte(msg[start-1])) && (end == len(msg) || !modelByte(msg[end]) ||
			// A sentence's full stop after the model is not part of it.
			msg[end] == '.' && (end+1 == len(msg) || !ascii.IsAlnum(msg[end+1]))) {
			return true
		}
		i = start + 1
	}
}

// modelByte reports whether c can be part of a model name.
func modelByte(c byte) bool { return ascii.IsAlnum(c) || c == '-' || c == '_' || c == '.' }

func (e apiError) quotaExhausted() bool { return e.any(quotaCodes) }

// quotaPerModel reports whether every quota the 429 names is per model
// (Gemini's QuotaFailure violations with a model dimension).
func (e apiError) quotaPerModel() bool {
	return e.quota.violations > 0 && e.quota.perModel == e.quota.violations
}

// reason names the error for people: the provider's code when it gave
// one, else the status. Only short identifiers are used, so no key or
// request content leaks into /blacklist.
func (e apiError) reason(status int) string {
	if label(e.typ) && digits(e.code) {
		// Mistral's codes are numbers ("3505"); its type says more.
		return e.typ
	}
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

// digits reports whether s is a non-empty run of decimal digits.
func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func isIdent(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(ascii.IsAlnum(c) || c == '-' || c == '.' || c == '_') {
			return false
		}
	}
	return true
}
