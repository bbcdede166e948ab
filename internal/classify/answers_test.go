package classify

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// answerCase is one real provider answer from testdata/answers (files
// named provider_status_case), with the model the request asked for.
type answerCase struct {
	file   string
	status int
	header http.Header
	model  string
	want   Verdict
}

// answerCases covers every row of SPEC §8 with answers as the providers
// send them. Each row's comment names the SPEC row it stands for.
func answerCases() []answerCase {
	// now is 2025-03-14 15:09:26 UTC = 08:09:26 PDT: Google's next daily
	// reset is 2025-03-15 00:00 PDT = 07:00 UTC.
	untilPacificMidnight := 15*time.Hour + 50*time.Minute + 34*time.Second
	return []answerCase{
		// The key or its account is bad: key, permanent, retried.
		{"openai_401_invalid_api_key.json", 401, nil, "gpt-4o", Verdict{Fault: KeyPermanent, Retry: true, Reason: "invalid_api_key"}},
		{"openai_401_account_deactivated.json", 401, nil, "gpt-4o", Verdict{Fault: KeyPermanent, Retry: true, Reason: "account_deactivated"}},
		{"openai_429_insufficient_quota.json", 429, hdr("Retry-After", "20"), "gpt-4o", Verdict{Fault: KeyPermanent, Retry: true, Reason: "insufficient_quota"}},
		{"openai_429_billing_not_active.json", 429, nil, "gpt-4o", Verdict{Fault: KeyPermanent, Retry: true, Reason: "billing_not_active"}},
		{"openai_400_billing_hard_limit_reached.json", 400, nil, "dall-e-3", Verdict{Fault: KeyPermanent, Retry: true, Reason: "billing_hard_limit_reached"}},
		{"azure_401_invalid_subscription_key.json", 401, nil, "my-gpt4o", Verdict{Fault: KeyPermanent, Retry: true, Reason: "401"}},
		{"anthropic_401_authentication_error.json", 401, nil, "claude-sonnet-4-20250514", Verdict{Fault: KeyPermanent, Retry: true, Reason: "authentication_error"}},
		{"anthropic_400_credit_balance_too_low.json", 400, nil, "claude-sonnet-4-20250514", Verdict{Fault: KeyPermanent, Retry: true, Reason: "invalid_request_error"}},
		{"anthropic_400_organization_disabled.json", 400, nil, "claude-sonnet-4-20250514", Verdict{Fault: KeyPermanent, Retry: true, Reason: "invalid_request_error"}},
		{"gemini_400_api_key_invalid.json", 400, nil, "gemini-2.0-flash", Verdict{Fault: KeyPermanent, Retry: true, Reason: "api_key_invalid"}},
		{"gemini_403_consumer_suspended.json", 403, nil, "gemini-2.0-flash", Verdict{Fault: KeyPermanent, Retry: true, Reason: "consumer_suspended"}},
		{"gemini_403_service_disabled.json", 403, nil, "gemini-2.0-flash", Verdict{Fault: KeyPermanent, Retry: true, Reason: "service_disabled"}},
		{"gemini_403_api_key_service_blocked.json", 403, nil, "gemini-2.0-flash", Verdict{Fault: KeyPermanent, Retry: true, Reason: "api_key_service_blocked"}},
		{"openrouter_401_no_auth.json", 401, nil, "openai/gpt-4o", Verdict{Fault: KeyPermanent, Retry: true, Reason: "status 401"}},
		{"openrouter_401_user_not_found.json", 401, nil, "openai/gpt-4o", Verdict{Fault: KeyPermanent, Retry: true, Reason: "status 401"}},
		{"openrouter_402_insufficient_credits.json", 402, nil, "openai/gpt-4o", Verdict{Fault: KeyPermanent, Retry: true, Reason: "status 402"}},
		{"deepseek_401_authentication_fails.json", 401, nil, "deepseek-chat", Verdict{Fault: KeyPermanent, Retry: true, Reason: "invalid_request_error"}},
		{"deepseek_402_insufficient_balance.json", 402, nil, "deepseek-chat", Verdict{Fault: KeyPermanent, Retry: true, Reason: "invalid_request_error"}},
		{"groq_401_invalid_api_key.json", 401, nil, "llama-3.3-70b-versatile", Verdict{Fault: KeyPermanent, Retry: true, Reason: "invalid_api_key"}},
		{"groq_400_organization_restricted.json", 400, nil, "llama-3.3-70b-versatile", Verdict{Fault: KeyPermanent, Retry: true, Reason: "organization_restricted"}},
		{"mistral_401_unauthorized.json", 401, nil, "mistral-large-latest", Verdict{Fault: KeyPermanent, Retry: true, Reason: "status 401"}},

		// A 403 naming nothing more specific, or something the client
		// sent: unproven, retried once on another key.
		{"anthropic_403_permission_error.json", 403, nil, "claude-sonnet-4-20250514", Verdict{Fault: Unproven, Retry: true, Reason: "permission_error"}},
		{"gemini_403_leaked_key.json", 403, nil, "gemini-2.0-flash", Verdict{Fault: Unproven, Retry: true, Reason: "permission_denied"}},
		{"gemini_403_unregistered_caller.json", 403, nil, "gemini-2.0-flash", Verdict{Fault: Unproven, Retry: true, Reason: "permission_denied"}},
		{"gemini_403_file_permission.json", 403, nil, "gemini-2.0-flash", Verdict{Fault: Unproven, Retry: true, Reason: "permission_denied"}},
		{"gemini_403_cached_content.json", 403, nil, "gemini-2.0-flash", Verdict{Fault: Unproven, Retry: true, Reason: "permission_denied"}},
		{"openrouter_403_key_limit_exceeded.json", 403, nil, "openai/gpt-4o", Verdict{Fault: Unproven, Retry: true, Reason: "status 403"}},
		// Only the message says it is the network: unproven, not the
		// target's, since no code says so.
		{"azure_403_firewall.json", 403, nil, "my-gpt4o", Verdict{Fault: Unproven, Retry: true, Reason: "403"}},

		// Content refused by moderation or a safety filter: the client's,
		// never retried.
		{"openrouter_403_moderation_flagged.json", 403, nil, "openai/gpt-4o", Verdict{Fault: ClientError, Reason: "content_flagged"}},
		{"openai_400_content_policy_violation.json", 400, nil, "dall-e-3", Verdict{Fault: ClientError, Reason: "content_policy_violation"}},
		{"openai_400_moderation_blocked.json", 400, nil, "gpt-image-1", Verdict{Fault: ClientError, Reason: "moderation_blocked"}},
		{"azure_400_content_filter.json", 400, nil, "my-gpt4o", Verdict{Fault: ClientError, Reason: "content_filter"}},
		{"deepseek_400_content_exists_risk.json", 400, nil, "deepseek-chat", Verdict{Fault: ClientError, Reason: "invalid_request_error"}},
		// Gemini blocks a prompt for safety in a 200 answer: a success,
		// read by nobody here.
		{"gemini_200_prompt_blocked_safety.json", 200, nil, "gemini-2.0-flash", Verdict{Fault: Success}},

		// The model does not exist or this key may not use it: key × model.
		{"openai_404_model_not_found.json", 404, nil, "gpt-5-turbo", Verdict{Fault: KeyModel, Retry: true, Reason: "model_not_found"}},
		{"openai_403_model_no_access.json", 403, nil, "gpt-4o", Verdict{Fault: KeyModel, Retry: true, Reason: "model_not_found"}},
		{"openai_403_not_allowed_to_sample.json", 403, nil, "gpt-4-32k", Verdict{Fault: KeyModel, Retry: true, Reason: "invalid_request_error"}},
		{"azure_404_deployment_not_found.json", 404, nil, "my-gpt4o", Verdict{Fault: KeyModel, Retry: true, Reason: "deploymentnotfound"}},
		{"anthropic_404_not_found_error_model.json", 404, nil, "claude-3-opus-latest", Verdict{Fault: KeyModel, Retry: true, Reason: "not_found_error"}},
		{"gemini_404_model_not_found.json", 404, nil, "gemini-1.0-pro", Verdict{Fault: KeyModel, Retry: true, Reason: "not_found"}},
		{"gemini_403_model_permission_denied.json", 403, nil, "gemini-2.5-pro", Verdict{Fault: KeyModel, Retry: true, Reason: "permission_denied"}},
		{"groq_404_model_does_not_exist.json", 404, nil, "llama-4-maverick", Verdict{Fault: KeyModel, Retry: true, Reason: "model_not_found"}},
		// ... and the same answers when the model could not be read (a
		// body the proxy could not read it from): no key is blamed.
		{"openai_404_model_not_found.json", 404, nil, "", Verdict{Fault: ClientError, Reason: "model_not_found"}},
		{"openai_403_model_no_access.json", 403, nil, "", Verdict{Fault: ClientError, Reason: "model_not_found"}},
		{"openai_403_not_allowed_to_sample.json", 403, nil, "", Verdict{Fault: ClientError, Reason: "invalid_request_error"}},
		{"azure_404_deployment_not_found.json", 404, nil, "", Verdict{Fault: ClientError, Reason: "deploymentnotfound"}},
		// A message naming another model, or a longer one, is not about
		// the requested one.
		{"anthropic_404_not_found_error_model.json", 404, nil, "claude-3-opus", Verdict{Fault: ClientError, Reason: "not_found_error"}},
		{"gemini_403_model_permission_denied.json", 403, nil, "gemini-2.5", Verdict{Fault: Unproven, Retry: true, Reason: "permission_denied"}},
		{"anthropic_404_not_found_error_path.json", 404, nil, "claude-3-opus-latest", Verdict{Fault: ClientError, Reason: "not_found_error"}},
		// A model gone for everyone is the client's.
		{"groq_400_model_decommissioned.json", 400, nil, "llama3-70b-8192", Verdict{Fault: ClientError, Reason: "model_decommissioned"}},
		{"openrouter_404_no_endpoints.json", 404, nil, "openai/gpt-9", Verdict{Fault: ClientError, Reason: "status 404"}},
		{"mistral_400_invalid_model.json", 400, nil, "mistral-huge-latest", Verdict{Fault: ClientError, Reason: "invalid_model"}},

		// A 429 whose quota is per model: key × model, for the quota's
		// time (a daily one until midnight US Pacific).
		{"gemini_429_per_model_per_minute.json", 429, nil, "gemini-2.0-flash", Verdict{Fault: KeyModel, Retry: true, RetryAfter: 37 * time.Second, Reason: "resource_exhausted"}},
		{"gemini_429_per_model_per_minute.json", 429, hdr("Retry-After", "5"), "gemini-2.0-flash", Verdict{Fault: KeyModel, Retry: true, RetryAfter: 5 * time.Second, Reason: "resource_exhausted"}},
		{"gemini_429_per_model_per_day.json", 429, nil, "gemini-2.5-pro", Verdict{Fault: KeyModel, Retry: true, RetryAfter: untilPacificMidnight, Reason: "resource_exhausted"}},
		// Without a known model the pair cannot be excluded: the key rests.
		{"gemini_429_per_model_per_day.json", 429, nil, "", Verdict{Fault: KeyRateLimited, Retry: true, RetryAfter: 21 * time.Second, Reason: "resource_exhausted"}},
		// A quota of the whole project is violated too: the key rests.
		{"gemini_429_per_project_and_per_model.json", 429, nil, "gemini-2.0-flash", Verdict{Fault: KeyRateLimited, Retry: true, RetryAfter: 12 * time.Second, Reason: "resource_exhausted"}},

		// Other 429s: key, temporary.
		{"openai_429_rate_limit_exceeded.json", 429, hdr("Retry-After-Ms", "2142", "Retry-After", "3"), "gpt-4o", Verdict{Fault: KeyRateLimited, Retry: true, RetryAfter: 2142 * time.Millisecond, Reason: "rate_limit_exceeded"}},
		{"azure_429_rate_limit.json", 429, hdr("Retry-After", "6"), "my-gpt4o", Verdict{Fault: KeyRateLimited, Retry: true, RetryAfter: 6 * time.Second, Reason: "429"}},
		{"anthropic_429_rate_limit_error.json", 429, hdr("Retry-After", "21"), "claude-sonnet-4-20250514", Verdict{Fault: KeyRateLimited, Retry: true, RetryAfter: 21 * time.Second, Reason: "rate_limit_error"}},
		{"gemini_429_resource_exhausted.json", 429, nil, "gemini-2.0-flash", Verdict{Fault: KeyRateLimited, Retry: true, Reason: "resource_exhausted"}},
		{"openrouter_429_free_models_per_day.json", 429, nil, "deepseek/deepseek-r1:free", Verdict{Fault: KeyRateLimited, Retry: true, Reason: "status 429"}},
		{"groq_429_rate_limit_exceeded.json", 429, hdr("Retry-After", "6"), "llama-3.3-70b-versatile", Verdict{Fault: KeyRateLimited, Retry: true, RetryAfter: 6 * time.Second, Reason: "rate_limit_exceeded"}},
		{"mistral_429_rate_limit.json", 429, nil, "mistral-large-latest", Verdict{Fault: KeyRateLimited, Retry: true, Reason: "status 429"}},
		{"mistral_429_capacity_exceeded.json", 429, nil, "mistral-large-latest", Verdict{Fault: KeyRateLimited, Retry: true, Reason: "service_tier_capacity_exceeded"}},

		// A 403 without a provider error, or refusing the region: target.
		{"cloudflare_403_blocked.html", 403, hdr("Content-Type", "text/html"), "gpt-4o", Verdict{Fault: TargetError, Retry: true, Reason: "status 403"}},
		{"openai_403_unsupported_country_region_territory.json", 403, nil, "gpt-4o", Verdict{Fault: TargetError, Retry: true, Reason: "unsupported_country_region_territory"}},

		// The upstream failed: target, retried.
		{"openai_500_server_error.json", 500, nil, "gpt-4o", Verdict{Fault: TargetError, Retry: true, Reason: "server_error"}},
		{"anthropic_529_overloaded_error.json", 529, nil, "claude-sonnet-4-20250514", Verdict{Fault: TargetError, Retry: true, Reason: "overloaded_error"}},
		{"gemini_503_unavailable.json", 503, nil, "gemini-2.0-flash", Verdict{Fault: TargetError, Retry: true, Reason: "unavailable"}},
		{"nginx_502_bad_gateway.html", 502, hdr("Content-Type", "text/html"), "gpt-4o", Verdict{Fault: TargetError, Retry: true, Reason: "status 502"}},

		// Other 4xx: the client's, passed on as is.
		{"openai_400_context_length_exceeded.json", 400, nil, "gpt-4o", Verdict{Fault: ClientError, Reason: "context_length_exceeded"}},
		{"openai_404_file_of_another_project.json", 404, nil, "", Verdict{Fault: ClientError, Reason: "invalid_request_error"}},
		{"anthropic_400_invalid_request_error.json", 400, nil, "claude-sonnet-4-20250514", Verdict{Fault: ClientError, Reason: "invalid_request_error"}},
		{"anthropic_413_request_too_large.json", 413, nil, "claude-sonnet-4-20250514", Verdict{Fault: ClientError, Reason: "request_too_large"}},
		{"gemini_400_user_location.json", 400, nil, "gemini-2.0-flash", Verdict{Fault: ClientError, Reason: "failed_precondition"}},
	}
}

func readAnswer(tb testing.TB, file string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "answers", file))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func TestAttemptProviderAnswers(t *testing.T) {
	for _, tc := range answerCases() {
		name := tc.file
		if tc.model == "" {
			name += " model unknown"
		}
		t.Run(name, func(t *testing.T) {
			body := readAnswer(t, tc.file)
			h := tc.header
			if h == nil {
				h = http.Header{}
			}
			got := Attempt(Outcome{Status: tc.status, Header: h, Body: body, Now: now, Model: tc.model})
			if got != tc.want {
				t.Errorf("Attempt(%d, %s, model %q) = %+v; want %+v", tc.status, tc.file, tc.model, got, tc.want)
			}
			checkReason(t, got, string(body))
		})
	}
}

// TestAnswersAllUsed keeps testdata/answers and the table in step: a body
// nobody classifies tests nothing.
func TestAnswersAllUsed(t *testing.T) {
	used := map[string]bool{}
	for _, tc := range answerCases() {
		used[tc.file] = true
	}
	ents, err := os.ReadDir(filepath.Join("testdata", "answers"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !used[e.Name()] {
			t.Errorf("testdata/answers/%s is in no case of answerCases", e.Name())
		}
	}
}

// TestAttemptDailyQuotaAcrossDST: a per-day quota excludes the pair until
// midnight US Pacific, on either side of a daylight saving change.
func TestAttemptDailyQuotaAcrossDST(t *testing.T) {
	body := readAnswer(t, "gemini_429_per_model_per_day.json")
	for _, tc := range []struct {
		name string
		now  time.Time
		want time.Duration
	}{
		// 2025-03-09 01:30 PST: that day has 23 hours.
		{"DST start, before the switch", time.Date(2025, 3, 9, 9, 30, 0, 0, time.UTC), 21*time.Hour + 30*time.Minute},
		// 2025-03-09 03:30 PDT.
		{"DST start, after the switch", time.Date(2025, 3, 9, 10, 30, 0, 0, time.UTC), 20*time.Hour + 30*time.Minute},
		// 2025-11-02 00:30 PDT: that day has 25 hours.
		{"DST end, before the switch", time.Date(2025, 11, 2, 7, 30, 0, 0, time.UTC), 24*time.Hour + 30*time.Minute},
		// 2025-11-02 02:30 PST.
		{"DST end, after the switch", time.Date(2025, 11, 2, 10, 30, 0, 0, time.UTC), 21*time.Hour + 30*time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := Outcome{Status: 429, Header: http.Header{}, Body: body, Now: tc.now, Model: "gemini-2.5-pro"}
			want := Verdict{Fault: KeyModel, Retry: true, RetryAfter: tc.want, Reason: "resource_exhausted"}
			if got := Attempt(o); got != want {
				t.Errorf("Attempt(429 per-day quota at %s) = %+v; want %+v", tc.now.Format(time.RFC3339), got, want)
			}
		})
	}
}

// TestFaultValuesStable: Fault values are stored and compared as numbers
// elsewhere; new ones are appended.
func TestFaultValuesStable(t *testing.T) {
	for f, want := range map[Fault]int{Success: 0, KeyPermanent: 1, KeyRateLimited: 2, TargetError: 3,
		ClientError: 4, Cancelled: 5, KeyModel: 6, Unproven: 7} {
		if int(f) != want {
			t.Errorf("%v = %d; want %d", f, f, want)
		}
	}
}

// TestAttemptAccountBeatsModel: a 403 that names the key's project as
// suspended is the key's, even when its message also names the model.
func TestAttemptAccountBeatsModel(t *testing.T) {
	body := []byte(`{"error":{"code":403,"message":"Permission denied: Consumer 'projects/123456789012' has been suspended (models/gemini-2.5-pro).","status":"PERMISSION_DENIED","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"CONSUMER_SUSPENDED","domain":"googleapis.com"}]}}`)
	want := Verdict{Fault: KeyPermanent, Retry: true, Reason: "consumer_suspended"}
	if got := Attempt(Outcome{Status: 403, Header: http.Header{}, Body: body, Now: now, Model: "gemini-2.5-pro"}); got != want {
		t.Errorf("Attempt(403 CONSUMER_SUSPENDED naming the model) = %+v; want %+v", got, want)
	}
}
