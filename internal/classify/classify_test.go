package classify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gpt-load/gpt-load/internal/testupstream"
)

// now is the fixed clock of every table case, so HTTP-date Retry-After
// values are exact.
var now = time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC)

// leakedKey is a full-length OpenAI-style key that providers echo (masked
// or not) in their message text; no Reason may ever contain it.
const leakedKey = "sk-proj-Abc123Def456Ghi789Jkl012Mno345Pqr678"

// Provider error bodies, as the providers send them.
const (
	openAIInvalidKey = `{
    "error": {
        "message": "Incorrect API key provided: sk-abc***xyz. You can find your API key at https://platform.openai.com/account/api-keys.",
        "type": "invalid_request_error",
        "param": null,
        "code": "invalid_api_key"
    }
}`
	openAIInvalidKeyUnmasked = `{"error":{"message":"Incorrect API key provided: ` + leakedKey + `. You can find your API key at https://platform.openai.com/account/api-keys.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}`
	openAIQuota              = `{
    "error": {
        "message": "You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
        "type": "insufficient_quota",
        "param": null,
        "code": "insufficient_quota"
    }
}`
	openAIBillingHardLimit = `{"error":{"message":"Billing hard limit has been reached","type":"invalid_request_error","param":null,"code":"billing_hard_limit_reached"}}`
	openAIRateLimit        = `{
    "error": {
        "message": "Rate limit reached for gpt-4o in organization org-Q1w2E3r4T5y6U7i8 on tokens per min (TPM): Limit 30000, Used 29871, Requested 1200. Please try again in 2.142s. Visit https://platform.openai.com/account/rate-limits to learn more.",
        "type": "tokens",
        "param": null,
        "code": "rate_limit_exceeded"
    }
}`
	openAIContextLength = `{
    "error": {
        "message": "This model's maximum context length is 128000 tokens. However, your messages resulted in 130255 tokens. Please reduce the length of the messages.",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded"
    }
}`
	openAIModelNotFound = `{
    "error": {
        "message": "The model ` + "`gpt-5-turbo`" + ` does not exist or you do not have access to it.",
        "type": "invalid_request_error",
        "param": null,
        "code": "model_not_found"
    }
}`
	openAIRegion = `{
    "error": {
        "code": "unsupported_country_region_territory",
        "message": "Country, region, or territory not supported",
        "param": null,
        "type": "request_forbidden"
    }
}`
	openAINoKey       = `{"error":{"message":"You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're accessing the API from your browser and are prompted for a username and password. You can obtain an API key from https://platform.openai.com/account/api-keys.","type":"invalid_request_error","param":null,"code":null}}`
	openAIServerError = `{"error":{"message":"The server had an error while processing your request. Sorry about that!","type":"server_error","param":null,"code":null}}`

	azureInvalidKey = `{"error":{"code":"401","message":"Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource."}}`
	azureRateLimit  = `{"error":{"code":"429","message":"Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-10-21 have exceeded call rate limit of your current OpenAI S0 pricing tier. Please retry after 6 seconds. Please go here: https://aka.ms/oai/quotaincrease if you would like to further increase the default rate limit."}}`
	azureNoDeploy   = `{"error":{"code":"DeploymentNotFound","message":"The API deployment for this resource does not exist. If you created the deployment within the last 5 minutes, please wait a moment and try again."}}`

	anthropicAuth       = `{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"},"request_id":"req_011CSHoEeqs5C35K2UUqR7Fy"}`
	anthropicPermission = `{"type":"error","error":{"type":"permission_error","message":"Your API key does not have permission to use the specified resource."}}`
	anthropicRateLimit  = `{"type":"error","error":{"type":"rate_limit_error","message":"This request would exceed the rate limit for your organization (5a1b2c3d-0000-4000-8000-123456789abc) of 50,000 input tokens per minute. For details, refer to: https://docs.claude.com/en/api/rate-limits."}}`
	anthropicOverloaded = `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`
	anthropicAPIError   = `{"type":"error","error":{"type":"api_error","message":"Internal server error"}}`
	anthropicBadRequest = `{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: 100000 > 64000, which is the maximum allowed number of output tokens for claude-sonnet-4-20250514"}}`
	anthropicCredit     = `{"type":"error","error":{"type":"invalid_request_error","message":"Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits."}}`
	anthropicTooLarge   = `{"type":"error","error":{"type":"request_too_large","message":"Request exceeds the maximum allowed number of bytes."}}`

	geminiKeyInvalid = `{
  "error": {
    "code": 400,
    "message": "API key not valid. Please pass a valid API key.",
    "status": "INVALID_ARGUMENT",
    "details": [
      {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "API_KEY_INVALID",
        "domain": "googleapis.com",
        "metadata": {
          "service": "generativelanguage.googleapis.com"
        }
      },
      {
        "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
        "locale": "en-US",
        "message": "API key not valid. Please pass a valid API key."
      }
    ]
  }
}`
	geminiKeyExpired = `{"error":{"code":400,"message":"API key expired. Please renew the API key.","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID","domain":"googleapis.com","metadata":{"service":"generativelanguage.googleapis.com"}}]}}`
	// geminiStreamKeyInvalid is how streamGenerateContent without alt=sse
	// answers: the error object inside a JSON array.
	geminiStreamKeyInvalid = `[{
  "error": {
    "code": 400,
    "message": "API key not valid. Please pass a valid API key.",
    "status": "INVALID_ARGUMENT",
    "details": [
      {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "API_KEY_INVALID",
        "domain": "googleapis.com",
        "metadata": {
          "service": "generativelanguage.googleapis.com"
        }
      }
    ]
  }
}
]`
	geminiBadPayload = `{
  "error": {
    "code": 400,
    "message": "Invalid JSON payload received. Unknown name \"stream_options\": Cannot find field.",
    "status": "INVALID_ARGUMENT",
    "details": [
      {
        "@type": "type.googleapis.com/google.rpc.BadRequest",
        "fieldViolations": [
          {
            "description": "Invalid JSON payload received. Unknown name \"stream_options\": Cannot find field."
          }
        ]
      }
    ]
  }
}`
	geminiLocation      = `{"error":{"code":400,"message":"User location is not supported for the API use.","status":"FAILED_PRECONDITION"}}`
	geminiExhausted     = `{"error":{"code":429,"message":"You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaMetric":"generativelanguage.googleapis.com/generate_content_free_tier_requests","quotaId":"GenerateRequestsPerMinutePerProjectPerModel-FreeTier","quotaDimensions":{"location":"global","model":"gemini-2.0-flash"},"quotaValue":"15"}]},{"@type":"type.googleapis.com/google.rpc.Help","links":[{"description":"Learn more about Gemini API quotas","url":"https://ai.google.dev/gemini-api/docs/rate-limits"}]},{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"37s"}]}}`
	geminiExhaustedFrac = `{"error":{"code":429,"message":"Resource has been exhausted (e.g. check quota).","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"1.5s"}]}}`
	geminiUnregistered  = `{"error":{"code":403,"message":"Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.","status":"PERMISSION_DENIED"}}`
	geminiLeaked        = `{"error":{"code":403,"message":"Your API key was reported as leaked. Please use another API key.","status":"PERMISSION_DENIED"}}`
	geminiOverloaded    = `{"error":{"code":503,"message":"The model is overloaded. Please try again later.","status":"UNAVAILABLE"}}`
	geminiNotFound      = `{"error":{"code":404,"message":"models/gemini-9.0-pro is not found for API version v1beta, or is not supported for generateContent. Call ListModels to see the list of available models and their supported methods.","status":"NOT_FOUND"}}`

	nginx502  = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
	nginx413  = "<html>\r\n<head><title>413 Request Entity Too Large</title></head>\r\n<body>\r\n<center><h1>413 Request Entity Too Large</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
	cfHTML    = `<!DOCTYPE html><html lang="en-US"><head><title>api.example.com | 504: Gateway time-out</title></head><body><div id="cf-error-details">Cloudflare Ray ID: 8c1e2f3a4b5c6d7e</div></body></html>`
	cfBlocked = `<!DOCTYPE html><html><head><title>Attention Required! | Cloudflare</title></head><body><h1>Sorry, you have been blocked</h1><p>You are unable to access api.example.com</p></body></html>`
	awsELB    = `<html><body><h1>503 Service Unavailable</h1>No server is available to handle this request.</body></html>`
)

// hdr builds a header from name, value pairs.
func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

type attemptCase struct {
	name   string
	status int
	header http.Header
	body   string
	want   Verdict
}

func attemptCases() []attemptCase {
	return []attemptCase{
		// Success.
		{"200", 200, nil, `{"id":"chatcmpl-1"}`, Verdict{Fault: Success}},
		{"201", 201, nil, "", Verdict{Fault: Success}},
		{"204", 204, nil, "", Verdict{Fault: Success}},
		{"301", 301, hdr("Location", "https://api.openai.com/v1/models"), "", Verdict{Fault: Success}},
		{"304", 304, nil, "", Verdict{Fault: Success}},

		// OpenAI.
		{"openai 401 invalid_api_key", 401, nil, openAIInvalidKey,
			Verdict{Fault: KeyPermanent, Retry: true, Reason: "invalid_api_key"}},
		{"openai 401 invalid_api_key unmasked", 401, nil, openAIInvalidKeyUnmasked,
			Verdict{Fault: KeyPermanent, Retry: true, Reason: "invalid_api_key"}},
		{"openai 401 no key, null code", 401, nil, openAINoKey,
			Verdict{Fault: KeyPermanent, Retry: true, Reason: "invalid_request_error"}},
		{"openai 429 insufficient_quota", 429, hdr("Retry-After", "20"), openAIQuota,
			Verdict{Fault: KeyPermanent, Retry: true, Reason: "insufficient_quota"}},
		{"openai 429 billing_hard_limit_reached", 429, nil, openAIBillingHardLimit,
			Verdict{Fault: KeyPermanent, Retry: true, Reason: "billing_hard_limit_reached"}},
		{"openai 429 rate limit, no Retry-After", 429, nil, openAIRateLimit,
			Verdict{Fault: KeyRateLimited, Retry: true, Reason: "rate_limit_exceeded"}},
		{"openai 429 rate limit, Retry-After seconds", 429, hdr("Retry-After", "20"), openAIRateLimit,
			Verdict{Fault: KeyRateLimited, Retry: true, RetryAfter: 20 * time.Second, Reason: "rate_limit_exceeded"}},
		{"openai 429 rate limit, Retry-After padded", 429, hdr("Retry-After", " 3 "), openAIRateLimit,
			Verdict{Fault: KeyRateLimited, Retry: true, RetryAfter: 3 * time.Second, Reason: "rate_limit_exceeded"}},
		{"openai 429 rate limit, Retry-After HTTP-date", 429,
			hdr("Retry-After", now.Add(90*time.Second).Format(http.TimeFormat)), openAIRateLimit,
			Verdict{Fault: KeyRateLimited, Retry: true, RetryAfter: 90 * time.Second, Reason: "rate_limit_exceeded"}},
		{"openai 429 rate limit, Retry-After HTTP-date in the past", 429,
			hdr("Retry-After", now.Add(-time.Minute).Format(http.TimeFormat)), openAIRateLimit,
			Verdict{Fault: KeyRateLimited, Retry: true, Reason: "rate_limit_exceeded"}},
		{"openai 429 rate limit, Retry-After zero", 429, hdr("Retry-After", "0"), openAIRateLimit,
			Verdict{Fault: KeyRateLimited, Retry: true, Reason: "rate_limit_exceeded"}},
		{"openai 429 rate limit, Retry-After negative", 429, hdr("Retry-After", "-5"), openAIRateLimit,
			Verdict{Fault: KeyRateLimited, Retry: true, Reason: "rate_limit_exceeded"}},
		{"openai 429 rate limit, Retry-After garbage", 429, hdr("Retry-After", "soon"), openAIRateLimit,
			Verdict{Fault: KeyRateLimited, Retry: true, Reason: "rate_limit_exceeded"}},
		{"openai 429 rate limit, retry-after-ms", 429, hdr("retry-after-ms", "1500"), openAIRateLimit,
			Verdict{Fault: KeyRateLimited, Retry: true, RetryAfter: 1500 * time.Millisecond, Reason: "rate_limit_exceeded"}},
		{"openai 429 rate limit, retry-after-ms wins over Retry-After", 429,
			hdr("retry-after-ms", "2142", "Retry-After", "3"), openAIRateLimit,
			Verdict{Fault: KeyRateLimited, Retry: true, RetryAfter: 2142 * time.Millisecond, Reason: "rate_limit_exceeded"}},
		{"openai 429 rate limit, bad retry-after-ms falls back", 429,
			hdr("retry-after-ms", "abc", "Retry-After", "3"), openAIRateLimit,
			Verdict{Fault: KeyRateLimited, Retry: true, RetryAfter: 3 * time.Second, Reason: "rate_limit_exceeded"}},
		{"openai 400 context_length_exceeded", 400, nil, openAIContextLength,
			Verdict{Fault: ClientError, Reason: "context_length_exceeded"}},
		{"openai 404 model_not_found", 404, nil, openAIModelNotFound,
			Verdict{Fault: ClientError, Reason: "model_not_found"}},
		{"openai 403 unsupported_country_region_territory", 403, nil, openAIRegion,
			Verdict{Fault: TargetError, Retry: true, Reason: "unsupported_country_region_territory"}},
		{"openai 500 server_error", 500, nil, openAIServerError,
			Verdict{Fault: TargetError, Retry: true, Reason: "server_error"}},

		// Azure OpenAI.
		{"azure 401", 401, nil, azureInvalidKey,
			Verdict{Fault: KeyPermanent, Retry: true, Reason: "401"}},
		{"azure 429 Retry-After 6", 429, hdr("Retry-After", "6"), azureRateLimit,
			Verdict{Fault: KeyRateLimited, Retry: true, RetryAfter: 6 * time.Second, Reason: "429"}},
		{"azure 429 retry-after-ms 6000", 429, hdr("retry-after-ms", "6000", "Retry-After", "6"), azureRateLimit,
			Verdict{Fault: KeyRateLimited, Retry: true, RetryAfter: 6 * time.Second, Reason: "429"}},
		{"azure 404 DeploymentNotFound", 404, nil, azureNoDeploy,
			Verdict{Fault: ClientError, Reason: "deploymentnotfound"}},

		// Anthropic.
		{"anthropic 401 authentication_error", 401, nil, anthropicAuth,
			Verdict{Fault: KeyPermanent, Retry: true, Reason: "authentication_error"}},
		// SPEC §8 (revised): a 403 naming nothing more specific than a
		// permission is unproven, no longer the key's.
		{"anthropic 403 permission_error", 403, nil, anthropicPermission,
			Verdict{Fault: Unproven, Retry: true, Reason: "permission_error"}},
		{"anthropic 429 rate_limit_error", 429, hdr("Retry-After", "21", "Anthropic-Ratelimit-Input-Tokens-Remaining", "0"), anthropicRateLimit,
			Verdict{Fault: KeyRateLimited, Retry: true, RetryAfter: 21 * time.Second, Reason: "rate_limit_error"}},
		{"anthropic 529 overloaded_error", 529, nil, anthropicOverloaded,
			Verdict{Fault: TargetError, Retry: true, Reason: "overloaded_error"}},
		{"anthropic 500 api_error", 500, nil, anthropicAPIError,
			Verdict{Fault: TargetError, Retry: true, Reason: "api_error"}},
		{"anthropic 400 invalid_request_error", 400, nil, anthropicBadRequest,
			Verdict{Fault: ClientError, Reason: "invalid_request_error"}},
		// Anthropic reports an empty credit balance as a plain 400
		// invalid_request_error; only its message tells (SPEC §8 names it).
		{"anthropic 400 credit balance too low", 400, nil, anthropicCredit,
			Verdict{Fault: KeyPermanent, Retry: true, Reason: "invalid_request_error"}},
		{"anthropic 413 request_too_large", 413, nil, anthropicTooLarge,
			Verdict{Fault: ClientError, Reason: "request_too_large"}},

		// Gemini.
		{"gemini 400 API_KEY_INVALID", 400, nil, geminiKeyInvalid,
			Verdict{Fault: KeyPermanent, Retry: true, Reason: "api_key_invalid"}},
		{"gemini 400 API key expired", 400, nil, geminiKeyExpired,
			Verdict{Fault: KeyPermanent, Retry: true, Reason: "api_key_invalid"}},
		{"gemini 400 API_KEY_INVALID in a stream array", 400, nil, geminiStreamKeyInvalid,
			Verdict{Fault: KeyPermanent, Retry: true, Reason: "api_key_invalid"}},
		{"gemini 400 bad payload", 400, nil, geminiBadPayload,
			Verdict{Fault: ClientError, Reason: "invalid_argument"}},
		{"gemini 400 location", 400, nil, geminiLocation,
			Verdict{Fault: ClientError, Reason: "failed_precondition"}},
		{"gemini 429 RetryInfo 37s", 429, nil, geminiExhausted,
			Verdict{Fault: KeyRateLimited, Retry: true, RetryAfter: 37 * time.Second, Reason: "resource_exhausted"}},
		{"gemini 429 RetryInfo 1.5s", 429, nil, geminiExhaustedFrac,
			Verdict{Fault: KeyRateLimited, Retry: true, RetryAfter: 1500 * time.Millisecond, Reason: "resource_exhausted"}},
		{"gemini 429 Retry-After header wins over RetryInfo", 429, hdr("Retry-After", "5"), geminiExhausted,
			Verdict{Fault: KeyRateLimited, Retry: true, RetryAfter: 5 * time.Second, Reason: "resource_exhausted"}},
		{"gemini 403 unregistered caller", 403, nil, geminiUnregistered,
			Verdict{Fault: Unproven, Retry: true, Reason: "permission_denied"}},
		// Only the message says it is about the key: unproven, until the
		// proxy sees another key serve the request.
		{"gemini 403 leaked key", 403, nil, geminiLeaked,
			Verdict{Fault: Unproven, Retry: true, Reason: "permission_denied"}},
		{"gemini 503 UNAVAILABLE", 503, nil, geminiOverloaded,
			Verdict{Fault: TargetError, Retry: true, Reason: "unavailable"}},
		{"gemini 404 NOT_FOUND", 404, nil, geminiNotFound,
			Verdict{Fault: ClientError, Reason: "not_found"}},

		// Proxies and load balancers in front of the provider.
		{"500 empty", 500, nil, "", Verdict{Fault: TargetError, Retry: true, Reason: "status 500"}},
		{"502 nginx html", 502, hdr("Content-Type", "text/html"), nginx502,
			Verdict{Fault: TargetError, Retry: true, Reason: "status 502"}},
		{"503 aws elb html", 503, hdr("Content-Type", "text/html"), awsELB,
			Verdict{Fault: TargetError, Retry: true, Reason: "status 503"}},
		{"504 cloudflare html", 504, hdr("Content-Type", "text/html"), cfHTML,
			Verdict{Fault: TargetError, Reason: "status 504"}},
		{"403 cloudflare waf html", 403, hdr("Content-Type", "text/html"), cfBlocked,
			Verdict{Fault: TargetError, Retry: true, Reason: "status 403"}},
		{"403 empty", 403, nil, "", Verdict{Fault: TargetError, Retry: true, Reason: "status 403"}},
		{"402 empty", 402, nil, "", Verdict{Fault: KeyPermanent, Retry: true, Reason: "status 402"}},
		{"403 json naming nothing more", 403, nil, `{"error":{"message":"Forbidden"}}`,
			Verdict{Fault: Unproven, Retry: true, Reason: "status 403"}},
		{"529 empty", 529, nil, "", Verdict{Fault: TargetError, Retry: true, Reason: "status 529"}},
		{"429 plain text", 429, hdr("Content-Type", "text/plain"), "Too Many Requests\n",
			Verdict{Fault: KeyRateLimited, Retry: true, Reason: "status 429"}},
		{"429 plain text with Retry-After", 429, hdr("Retry-After", "60"), "rate limited",
			Verdict{Fault: KeyRateLimited, Retry: true, RetryAfter: time.Minute, Reason: "status 429"}},
		{"401 empty", 401, nil, "", Verdict{Fault: KeyPermanent, Retry: true, Reason: "status 401"}},
		{"400 empty", 400, nil, "", Verdict{Fault: ClientError, Reason: "status 400"}},
		{"413 nginx html", 413, hdr("Content-Type", "text/html"), nginx413,
			Verdict{Fault: ClientError, Reason: "status 413"}},
		{"422 json", 422, nil, `{"detail":[{"loc":["body","model"],"msg":"field required","type":"value_error.missing"}]}`,
			Verdict{Fault: ClientError, Reason: "status 422"}},
		{"400 error is a string", 400, nil, `{"error":"invalid_api_key"}`,
			Verdict{Fault: ClientError, Reason: "status 400"}},
		{"400 error is null", 400, nil, `{"error":null}`,
			Verdict{Fault: ClientError, Reason: "status 400"}},
		{"400 truncated json", 400, nil, openAIContextLength[:60],
			Verdict{Fault: ClientError, Reason: "status 400"}},
		{"status 99 is not HTTP", 99, nil, "", Verdict{Fault: TargetError, Retry: true, Reason: "status 99"}},
		{"400 code with spaces is not a reason", 400, nil, `{"error":{"code":"not an identifier","type":"invalid_request_error"}}`,
			Verdict{Fault: ClientError, Reason: "invalid_request_error"}},
	}
}

func TestAttempt(t *testing.T) {
	for _, tc := range attemptCases() {
		t.Run(tc.name, func(t *testing.T) {
			o := Outcome{Status: tc.status, Header: tc.header, Body: []byte(tc.body), Now: now}
			if o.Header == nil {
				o.Header = http.Header{}
			}
			got := Attempt(o)
			if got != tc.want {
				t.Errorf("Attempt(%d, %.60q) = %+v; want %+v", tc.status, tc.body, got, tc.want)
			}
			checkReason(t, got, tc.body)
		})
	}
}

// checkReason fails when a verdict's Reason is long, or carries the key or
// the provider's message text.
func checkReason(t *testing.T, v Verdict, body string) {
	t.Helper()
	if len(v.Reason) > 80 {
		t.Errorf("Reason = %q is %d bytes; want at most 80", v.Reason, len(v.Reason))
	}
	if v.Fault != Success && v.Reason == "" {
		t.Errorf("Reason is empty for %v", v.Fault)
	}
	for _, s := range []string{"sk-", leakedKey[3:23], "AIza", "Incorrect API key", "API key not valid", "Please"} {
		if strings.Contains(v.Reason, s) {
			t.Errorf("Reason = %q contains %q", v.Reason, s)
		}
	}
	if strings.Contains(v.Reason, " ") && !strings.HasPrefix(v.Reason, "status ") && strings.Contains(body, v.Reason) {
		t.Errorf("Reason = %q is text copied from the body", v.Reason)
	}
}

func TestAttemptClientGone(t *testing.T) {
	for _, o := range []Outcome{
		{ClientGone: true},
		{ClientGone: true, Status: 200},
		{ClientGone: true, Status: 503, Body: []byte(nginx502)},
		{ClientGone: true, Status: 429, Header: hdr("Retry-After", "5"), Body: []byte(openAIRateLimit)},
		{ClientGone: true, Err: context.Canceled},
		{ClientGone: true, Err: context.DeadlineExceeded, Connected: true},
	} {
		got := Attempt(o)
		if got.Fault != Cancelled || got.Retry || got.RetryAfter != 0 {
			t.Errorf("Attempt(status %d, err %v, ClientGone) = %+v; want Cancelled without retry", o.Status, o.Err, got)
		}
	}
}

// closedAddr returns the address of a port that was bound and then closed,
// so dialling it is refused.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// transport returns a fresh transport closed at the end of the test.
func transport(t *testing.T, rt *http.Transport) *http.Client {
	t.Helper()
	t.Cleanup(rt.CloseIdleConnections)
	return &http.Client{Transport: rt}
}

// get performs a GET and returns its transport error, which must not be nil.
func get(t *testing.T, c *http.Client, ctx context.Context, url string) error {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("GET %s = %s; want a transport error", url, resp.Status)
	}
	return err
}

// hangingServer returns a server that accepts requests and never answers
// until the test ends.
func hangingServer(t *testing.T) *httptest.Server {
	t.Helper()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // runs first: handlers return, then Close.
	return srv
}

func TestAttemptTransport(t *testing.T) {
	t.Run("connection refused", func(t *testing.T) {
		err := get(t, transport(t, &http.Transport{}), context.Background(), "http://"+closedAddr(t)+"/v1/models")
		var op *net.OpError
		if !errors.As(err, &op) {
			t.Fatalf("error %v (%T) is not a *net.OpError", err, err)
		}
		want := Verdict{Fault: TargetError, Retry: true, Reason: "connection refused"}
		if got := Attempt(Outcome{Err: err, Now: now}); got != want {
			t.Errorf("Attempt(%v) = %+v; want %+v", err, got, want)
		}
	})
	t.Run("connection refused, plain dial", func(t *testing.T) {
		_, err := net.Dial("tcp", closedAddr(t))
		if err == nil {
			t.Fatal("dial of a closed port succeeded")
		}
		want := Verdict{Fault: TargetError, Retry: true, Reason: "connection refused"}
		if got := Attempt(Outcome{Err: err, Now: now}); got != want {
			t.Errorf("Attempt(%v) = %+v; want %+v", err, got, want)
		}
	})
	t.Run("untrusted certificate", func(t *testing.T) {
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
		srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshake error is expected
		srv.StartTLS()
		t.Cleanup(srv.Close)
		err := get(t, transport(t, &http.Transport{}), context.Background(), srv.URL)
		for _, o := range []Outcome{{Err: err}, {Err: err, Connected: true}} {
			want := Verdict{Fault: TargetError, Retry: true, Reason: "tls failure"}
			if got := Attempt(o); got != want {
				t.Errorf("Attempt(%v, Connected=%v) = %+v; want %+v", err, o.Connected, got, want)
			}
		}
	})
	t.Run("response header timeout", func(t *testing.T) {
		srv := hangingServer(t)
		c := transport(t, &http.Transport{ResponseHeaderTimeout: 50 * time.Millisecond})
		err := get(t, c, context.Background(), srv.URL)
		want := Verdict{Fault: TargetError, Reason: "no response headers in time"}
		if got := Attempt(Outcome{Err: err, Connected: true}); got != want {
			t.Errorf("Attempt(%v, Connected) = %+v; want %+v", err, got, want)
		}
		want = Verdict{Fault: TargetError, Retry: true, Reason: "connect timeout"}
		if got := Attempt(Outcome{Err: err, Connected: false}); got != want {
			t.Errorf("Attempt(%v, not Connected) = %+v; want %+v", err, got, want)
		}
	})
	t.Run("request deadline while waiting", func(t *testing.T) {
		srv := hangingServer(t)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		err := get(t, transport(t, &http.Transport{}), ctx, srv.URL)
		if got := Attempt(Outcome{Err: err, Connected: true}); got.Fault != TargetError || got.Retry {
			t.Errorf("Attempt(%v, Connected) = %+v; want TargetError without retry", err, got)
		}
	})
	t.Run("cancelled request", func(t *testing.T) {
		srv := hangingServer(t)
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(20*time.Millisecond, cancel)
		err := get(t, transport(t, &http.Transport{}), ctx, srv.URL)
		want := Verdict{Fault: Cancelled, Reason: "cancelled"}
		if got := Attempt(Outcome{Err: err, Connected: true}); got != want {
			t.Errorf("Attempt(%v) = %+v; want %+v", err, got, want)
		}
	})
	t.Run("connection closed without answer", func(t *testing.T) {
		up := testupstream.Raw(t, func(c net.Conn, _ *http.Request) {
			if tc, ok := c.(*net.TCPConn); ok {
				tc.SetLinger(0) // reset, not a clean close
			}
		})
		err := get(t, transport(t, &http.Transport{}), context.Background(), up)
		want := Verdict{Fault: TargetError, Retry: true, Reason: "connection reset"}
		if got := Attempt(Outcome{Err: err, Connected: true}); got != want {
			t.Errorf("Attempt(%v) = %+v; want %+v", err, got, want)
		}
		// Once the request was fully written the upstream may be running
		// it: no retry.
		want = Verdict{Fault: TargetError, Reason: "connection reset"}
		if got := Attempt(Outcome{Err: err, Connected: true, Sent: true}); got != want {
			t.Errorf("Attempt(%v, Sent) = %+v; want %+v", err, got, want)
		}
	})
	for _, tc := range []struct {
		name      string
		err       error
		connected bool
		want      Verdict
	}{
		{"context.Canceled", context.Canceled, true, Verdict{Fault: Cancelled, Reason: "cancelled"}},
		{"wrapped context.Canceled", fmt.Errorf("read: %w", context.Canceled), false, Verdict{Fault: Cancelled, Reason: "cancelled"}},
		{"context.DeadlineExceeded connected", context.DeadlineExceeded, true,
			Verdict{Fault: TargetError, Reason: "no response headers in time"}},
		{"context.DeadlineExceeded not connected", context.DeadlineExceeded, false,
			Verdict{Fault: TargetError, Retry: true, Reason: "connect timeout"}},
		{"opaque error", errors.New("sk-abc123 something odd"), true,
			Verdict{Fault: TargetError, Retry: true, Reason: "connection failed"}},
		{"no status and no error", nil, false, Verdict{Fault: TargetError, Retry: true, Reason: "connection failed"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Attempt(Outcome{Err: tc.err, Connected: tc.connected}); got != tc.want {
				t.Errorf("Attempt(%v) = %+v; want %+v", tc.err, got, tc.want)
			}
		})
	}
}

func TestFaultString(t *testing.T) {
	for f, want := range map[Fault]string{
		Success: "success", KeyPermanent: "key_permanent", KeyRateLimited: "key_rate_limited",
		TargetError: "target_error", ClientError: "client_error", Cancelled: "cancelled",
		KeyModel: "key_model", Unproven: "unproven",
	} {
		if got := f.String(); got != want {
			t.Errorf("Fault(%d).String() = %q; want %q", f, got, want)
		}
	}
}

// keyLike finds what looks like an API key: OpenAI and Anthropic "sk-"
// keys and Google "AIza" keys.
var keyLike = regexp.MustCompile(`(sk-|AIza)[A-Za-z0-9_\-]{17,}`)

// FuzzAttempt feeds arbitrary statuses, bodies and Retry-After values.
// Oracle: no panic; Success exactly for 1xx–3xx; ClientError and Cancelled
// never retry; RetryAfter is never negative and only set on rate limits;
// Reason is short and never holds a 20-byte piece of a key-like token from
// the body's message.
func FuzzAttempt(f *testing.F) {
	for _, tc := range attemptCases() {
		f.Add(tc.status, []byte(tc.body), tc.header.Get("Retry-After"), "")
	}
	f.Add(401, []byte(`{"error":{"message":"Incorrect API key provided: sk-`+strings.Repeat("A1b2", 10)+`","code":"invalid_api_key"}}`), "", "gpt-4o")
	f.Add(400, []byte(`{"error":{"code":400,"message":"key AIzaSyA1b2C3d4E5f6G7h8I9j0KlMnOpQrStUvW rejected","status":"INVALID_ARGUMENT"}}`), "", "gpt-4o")
	f.Add(429, []byte(`{"error":{"code":"rate_limit_exceeded"}}`), "1e300", "gpt-4o")
	f.Add(429, []byte(`{"error":{"status":"RESOURCE_EXHAUSTED","details":[{"retryDelay":"-5s"}]}}`), "Inf", "gpt-4o")
	f.Add(0, []byte(nil), "", "gpt-4o")
	f.Add(999, []byte("{}"), "", "gpt-4o")
	for _, tc := range answerCases() {
		f.Add(tc.status, readAnswer(f, tc.file), tc.header.Get("Retry-After"), tc.model)
	}
	f.Fuzz(func(t *testing.T, status int, body []byte, retryAfterHdr, model string) {
		if status < 0 || status > 999 {
			status = ((status % 1000) + 1000) % 1000
		}
		h := http.Header{}
		if retryAfterHdr != "" {
			h.Set("Retry-After", retryAfterHdr)
		}
		o := Outcome{Status: status, Header: h, Body: body, Now: now, Model: model}
		v := Attempt(o)

		if status == 0 {
			if v.Fault != TargetError || !v.Retry {
				t.Errorf("Attempt(status 0, no error) = %+v; want TargetError with retry", v)
			}
		} else if success := status >= 100 && status < 400; (v.Fault == Success) != success {
			t.Errorf("Attempt(%d).Fault = %v; want success %v", status, v.Fault, success)
		}
		if (v.Fault == ClientError || v.Fault == Cancelled || v.Fault == Success) && v.Retry {
			t.Errorf("Attempt(%d) = %+v; %v must not retry", status, v, v.Fault)
		}
		if v.RetryAfter < 0 {
			t.Errorf("Attempt(%d, Retry-After %q).RetryAfter = %v; want >= 0", status, retryAfterHdr, v.RetryAfter)
		}
		if v.Fault == KeyModel && model == "" {
			t.Errorf("Attempt(%d, %q, no model) = %+v; a model-scoped answer without a model blames no key", status, body, v)
		}
		if v.Fault == Unproven && status != http.StatusForbidden {
			t.Errorf("Attempt(%d) = %+v; only a 403 is unproven", status, v)
		}
		if v.Fault == KeyModel && v.RetryAfter > 25*time.Hour {
			t.Errorf("Attempt(%d, %q).RetryAfter = %v; a pair is excluded at most until the next daily reset", status, body, v.RetryAfter)
		}
		if v.RetryAfter != 0 && v.Fault != KeyRateLimited && v.Fault != KeyModel {
			t.Errorf("Attempt(%d).RetryAfter = %v for %v", status, v.RetryAfter, v.Fault)
		}
		if len(v.Reason) > 80 {
			t.Errorf("Attempt(%d).Reason = %q is %d bytes; want at most 80", status, v.Reason, len(v.Reason))
		}
		for _, k := range keyLike.FindAll(body, -1) {
			for i := 0; i+20 <= len(k); i++ {
				if strings.Contains(v.Reason, string(k[i:i+20])) {
					t.Fatalf("Attempt(%d, %q).Reason = %q holds part of key %q", status, body, v.Reason, k)
				}
			}
		}
	})
}

// BenchmarkAttempt measures classification of a success, which the proxy
// does on every request, and of an OpenAI rate limit, which parses JSON.
// Each iteration classifies the same prepared Outcome, so only Attempt is
// timed.
func BenchmarkAttempt(b *testing.B) {
	for _, bc := range []struct {
		name string
		o    Outcome
	}{
		{"200", Outcome{Status: 200, Header: hdr("Content-Type", "application/json"), Now: now}},
		{"openai-429", Outcome{Status: 429, Header: hdr("Retry-After", "20"), Body: []byte(openAIRateLimit), Now: now}},
		{"gemini-429", Outcome{Status: 429, Body: []byte(geminiExhausted), Now: now}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Attempt(bc.o)
			}
		})
	}
}

// Model-scoped errors, as each provider words them, with the model the
// request asked for.
const (
	openAIModelNoAccess    = `{"error":{"message":"Project ` + "`proj_Q1w2E3r4`" + ` does not have access to model ` + "`gpt-4o`" + `","type":"invalid_request_error","param":null,"code":"model_not_found"}}`
	anthropicModelNotFound = `{"type":"error","error":{"type":"not_found_error","message":"model: claude-opus-4-20250514"},"request_id":"req_011CSHoEeqs5C35K2UUqR7Fy"}`
	anthropicNotFoundPath  = `{"type":"error","error":{"type":"not_found_error","message":"Not Found"}}`
	geminiModelDenied      = `{"error":{"code":403,"message":"Permission denied on resource models/gemini-2.5-pro (or it may not exist).","status":"PERMISSION_DENIED"}}`
)

func TestAttemptModelScoped(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		model  string
		want   Verdict
	}{
		{"openai 404 model_not_found", 404, openAIModelNotFound, "gpt-5-turbo",
			Verdict{Fault: KeyModel, Retry: true, Reason: "model_not_found"}},
		{"openai 404 model_not_found, model unknown", 404, openAIModelNotFound, "",
			Verdict{Fault: ClientError, Reason: "model_not_found"}},
		{"openai 403 project has no access to the model", 403, openAIModelNoAccess, "gpt-4o",
			Verdict{Fault: KeyModel, Retry: true, Reason: "model_not_found"}},
		{"azure 404 DeploymentNotFound", 404, azureNoDeploy, "my-gpt4o",
			Verdict{Fault: KeyModel, Retry: true, Reason: "deploymentnotfound"}},
		{"anthropic 404 not_found_error naming the model", 404, anthropicModelNotFound, "claude-opus-4-20250514",
			Verdict{Fault: KeyModel, Retry: true, Reason: "not_found_error"}},
		{"anthropic 404 not_found_error for a path", 404, anthropicNotFoundPath, "claude-opus-4-20250514",
			Verdict{Fault: ClientError, Reason: "not_found_error"}},
		{"gemini 404 NOT_FOUND naming the model", 404, geminiNotFound, "gemini-9.0-pro",
			Verdict{Fault: KeyModel, Retry: true, Reason: "not_found"}},
		{"gemini 403 PERMISSION_DENIED naming the model", 403, geminiModelDenied, "gemini-2.5-pro",
			Verdict{Fault: KeyModel, Retry: true, Reason: "permission_denied"}},
		{"gemini 403 PERMISSION_DENIED not naming the model", 403, geminiLeaked, "gemini-2.5-pro",
			Verdict{Fault: Unproven, Retry: true, Reason: "permission_denied"}},
		{"openai 401 invalid_api_key is still the key's", 401, openAIInvalidKey, "gpt-4o",
			Verdict{Fault: KeyPermanent, Retry: true, Reason: "invalid_api_key"}},
		{"400 naming the model is the client's", 400, openAIContextLength, "gpt-4o",
			Verdict{Fault: ClientError, Reason: "context_length_exceeded"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Attempt(Outcome{Status: tt.status, Header: http.Header{}, Body: []byte(tt.body), Now: now, Model: tt.model})
			if got != tt.want {
				t.Errorf("Attempt(%d, %.60q, model %q) = %+v; want %+v", tt.status, tt.body, tt.model, got, tt.want)
			}
			checkReason(t, got, tt.body)
		})
	}
}

func TestAttemptSuccessDoesNotAllocate(t *testing.T) {
	o := Outcome{Status: 200, Header: hdr("Content-Type", "application/json"), Now: now}
	if n := testing.AllocsPerRun(100, func() { Attempt(o) }); n != 0 {
		t.Errorf("Attempt(200) allocates %v times; want 0", n)
	}
}

// TestAttemptProviderChoices covers statuses the contract leaves to us
// (docs/key-health.md, "How answers are classified"): 402 (out of balance
// at OpenAI-compatible providers) blames the key for good, Cloudflare's
// 520-524 blame the target, and a code field holding a key is never echoed
// as the reason.
func TestAttemptProviderChoices(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		want   Verdict
	}{
		{"402 balance", 402, `{"error":{"message":"Insufficient Balance","type":"unknown_error","code":"invalid_request_error"}}`,
			Verdict{Fault: KeyPermanent, Retry: true, Reason: "invalid_request_error"}},
		{"520", 520, "<html>Web server is returning an unknown error</html>", Verdict{Fault: TargetError, Retry: true, Reason: "status 520"}},
		{"522", 522, "", Verdict{Fault: TargetError, Retry: true, Reason: "status 522"}},
		{"524", 524, "", Verdict{Fault: TargetError, Reason: "status 524"}},
		{"501 stays the client's", 501, "", Verdict{Fault: ClientError, Reason: "status 501"}},
		{"400 UNAUTHENTICATED", 400, `{"error":{"code":400,"message":"Request had invalid authentication credentials.","status":"UNAUTHENTICATED"}}`,
			Verdict{Fault: KeyPermanent, Retry: true, Reason: "unauthenticated"}},
		{"digitless key in code", 401, `{"error":{"code":"sk-abcdefghijklmnopqrstuvwxyzabcdef","message":"x"}}`,
			Verdict{Fault: KeyPermanent, Retry: true, Reason: "status 401"}},
		{"key in code", 401, `{"error":{"code":"sk-proj-abcdef0123456789abcdef0123456789","message":"x"}}`,
			Verdict{Fault: KeyPermanent, Retry: true, Reason: "status 401"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Attempt(Outcome{Status: tt.status, Header: http.Header{}, Body: []byte(tt.body), Now: now})
			if got != tt.want {
				t.Errorf("Attempt(%d, %q) = %+v; want %+v", tt.status, tt.body, got, tt.want)
			}
		})
	}
}
