package classify

import (
	"net/http"
	"testing"
	"time"
)

func TestQuotaOf(t *testing.T) {
	at := func(d time.Duration) time.Time { return now.Add(d) }
	anthropicReset := now.Add(42 * time.Second).UTC().Format(time.RFC3339)
	tests := []struct {
		name   string
		header http.Header
		want   Quota
		ok     bool
	}{
		{"none", hdr("Content-Type", "application/json"), Quota{-1, -1, time.Time{}}, false},
		{"openai, plenty left", hdr(
			"x-ratelimit-limit-requests", "10000", "x-ratelimit-remaining-requests", "9999",
			"x-ratelimit-remaining-tokens", "149984", "x-ratelimit-reset-requests", "6m0s",
			"x-ratelimit-reset-tokens", "6ms"),
			Quota{9999, 149984, at(6 * time.Millisecond)}, true},
		{"openai, no requests left", hdr(
			"x-ratelimit-remaining-requests", "0", "x-ratelimit-reset-requests", "1m30.5s",
			"x-ratelimit-remaining-tokens", "5000", "x-ratelimit-reset-tokens", "250ms"),
			Quota{0, 5000, at(90*time.Second + 500*time.Millisecond)}, true},
		{"openai, no tokens left", hdr(
			"x-ratelimit-remaining-requests", "12", "x-ratelimit-reset-requests", "1s",
			"x-ratelimit-remaining-tokens", "0", "x-ratelimit-reset-tokens", "17s"),
			Quota{12, 0, at(17 * time.Second)}, true},
		{"openai, bad reset kept out", hdr(
			"x-ratelimit-remaining-requests", "0", "x-ratelimit-reset-requests", "soon"),
			Quota{0, -1, time.Time{}}, true},
		{"openai, garbage remaining ignored", hdr("x-ratelimit-remaining-requests", "many"),
			Quota{-1, -1, time.Time{}}, false},
		{"anthropic, input tokens exhausted", hdr(
			"anthropic-ratelimit-requests-remaining", "49", "anthropic-ratelimit-requests-reset", now.Add(time.Second).UTC().Format(time.RFC3339),
			"anthropic-ratelimit-input-tokens-remaining", "0", "anthropic-ratelimit-input-tokens-reset", anthropicReset,
			"anthropic-ratelimit-output-tokens-remaining", "8000", "anthropic-ratelimit-output-tokens-reset", anthropicReset),
			Quota{49, 0, at(42 * time.Second)}, true},
		{"anthropic, tokens is the smallest window", hdr(
			"anthropic-ratelimit-tokens-remaining", "300", "anthropic-ratelimit-tokens-reset", anthropicReset,
			"anthropic-ratelimit-output-tokens-remaining", "100", "anthropic-ratelimit-output-tokens-reset", anthropicReset),
			Quota{-1, 100, at(42 * time.Second)}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := QuotaOf(tt.header, now)
			if ok != tt.ok || got.RequestsRemaining != tt.want.RequestsRemaining ||
				got.TokensRemaining != tt.want.TokensRemaining || !got.Reset.Equal(tt.want.Reset) {
				t.Errorf("QuotaOf(%v) = %+v, %v; want %+v, %v", tt.header, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestQuotaOfWithoutHeadersDoesNotAllocate(t *testing.T) {
	h := hdr("Content-Type", "application/json", "X-Request-Id", "req_123", "Openai-Processing-Ms", "321")
	if n := testing.AllocsPerRun(100, func() { QuotaOf(h, now) }); n != 0 {
		t.Errorf("QuotaOf without rate-limit headers allocates %v times; want 0", n)
	}
}

// FuzzQuotaOf checks the header parser never panics and keeps its
// invariants: remaining figures are -1 or non-negative, and an exhausted
// window never yields a reset before now when one was parsed.
func FuzzQuotaOf(f *testing.F) {
	f.Add("0", "1m30.5s", "5", "2025-03-14T15:10:00Z")
	f.Add("9999", "6ms", "-1", "garbage")
	f.Add("", "", "", "")
	f.Add("18446744073709551616", "99999999h", "0", "9999-12-31T23:59:59Z")
	f.Fuzz(func(t *testing.T, remaining, reset, aRemaining, aReset string) {
		h := http.Header{}
		h.Set("x-ratelimit-remaining-requests", remaining)
		h.Set("x-ratelimit-reset-requests", reset)
		h.Set("anthropic-ratelimit-tokens-remaining", aRemaining)
		h.Set("anthropic-ratelimit-tokens-reset", aReset)
		q, ok := QuotaOf(h, now)
		if q.RequestsRemaining < -1 || q.TokensRemaining < -1 {
			t.Fatalf("QuotaOf = %+v; remaining below -1", q)
		}
		if !ok && (q.RequestsRemaining != -1 || q.TokensRemaining != -1 || !q.Reset.IsZero()) {
			t.Fatalf("QuotaOf = %+v, false; want the empty quota", q)
		}
		if q.RequestsRemaining == 0 && !q.Reset.IsZero() && q.Reset.Before(now) && reset != "" && aReset == "" {
			t.Fatalf("QuotaOf = %+v; exhausted with a reset before now from a duration", q)
		}
	})
}
