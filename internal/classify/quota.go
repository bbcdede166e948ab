package classify

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Quota is what an answer's rate-limit headers say about the key that
// was used. A remaining figure is -1 when the headers did not give it.
type Quota struct {
	RequestsRemaining int64
	TokensRemaining   int64
	// Reset is when the key may be used again: the latest reset of the
	// windows with nothing left, or, when something is left everywhere,
	// the soonest reset given (zero if none).
	Reset time.Time
}

// Exhausted reports whether some window has nothing left.
func (q Quota) Exhausted() bool { return q.RequestsRemaining == 0 || q.TokensRemaining == 0 }

// Canonical header names, so that lookups are plain map reads.
const (
	hdrOpenAIRemainingRequests = "X-Ratelimit-Remaining-Requests"
	hdrOpenAIRemainingTokens   = "X-Ratelimit-Remaining-Tokens"
	hdrOpenAIResetRequests     = "X-Ratelimit-Reset-Requests"
	hdrOpenAIResetTokens       = "X-Ratelimit-Reset-Tokens"

	hdrAnthropicRequestsRemaining = "Anthropic-Ratelimit-Requests-Remaining"
	hdrAnthropicRequestsReset     = "Anthropic-Ratelimit-Requests-Reset"
)

// anthropicTokenWindows are Anthropic's token windows: remaining, reset.
var anthropicTokenWindows = [...][2]string{
	{"Anthropic-Ratelimit-Tokens-Remaining", "Anthropic-Ratelimit-Tokens-Reset"},
	{"Anthropic-Ratelimit-Input-Tokens-Remaining", "Anthropic-Ratelimit-Input-Tokens-Reset"},
	{"Anthropic-Ratelimit-Output-Tokens-Remaining", "Anthropic-Ratelimit-Output-Tokens-Reset"},
}

// QuotaOf reads OpenAI's x-ratelimit-* and Anthropic's
// anthropic-ratelimit-* headers of an answer seen at now. ok is false
// when there are none; then nothing is allocated. Values that do not
// parse are ignored.
func QuotaOf(h http.Header, now time.Time) (q Quota, ok bool) {
	q = Quota{RequestsRemaining: -1, TokensRemaining: -1}
	var soonest, exhausted time.Time
	window := func(remaining, reset string, isRequests bool, resetIsDuration bool) {
		rv, has := h[remaining]
		if !has || len(rv) == 0 {
			return
		}
		n, err := strconv.ParseInt(strings.TrimSpace(rv[0]), 10, 64)
		if err != nil || n < 0 {
			return
		}
		ok = true
		if isRequests {
			if q.RequestsRemaining < 0 || n < q.RequestsRemaining {
				q.RequestsRemaining = n
			}
		} else if q.TokensRemaining < 0 || n < q.TokensRemaining {
			q.TokensRemaining = n
		}
		at, good := resetTime(h[reset], now, resetIsDuration)
		if !good {
			return
		}
		if soonest.IsZero() || at.Before(soonest) {
			soonest = at
		}
		if n == 0 && at.After(exhausted) {
			exhausted = at
		}
	}
	if _, has := h[hdrOpenAIRemainingRequests]; has {
		window(hdrOpenAIRemainingRequests, hdrOpenAIResetRequests, true, true)
	}
	if _, has := h[hdrOpenAIRemainingTokens]; has {
		window(hdrOpenAIRemainingTokens, hdrOpenAIResetTokens, false, true)
	}
	if _, has := h[hdrAnthropicRequestsRemaining]; has {
		window(hdrAnthropicRequestsRemaining, hdrAnthropicRequestsReset, true, false)
	}
	for _, w := range anthropicTokenWindows {
		if _, has := h[w[0]]; has {
			window(w[0], w[1], false, false)
		}
	}
	if !ok {
		return Quota{RequestsRemaining: -1, TokensRemaining: -1}, false
	}
	q.Reset = soonest
	if !exhausted.IsZero() {
		q.Reset = exhausted
	}
	return q, true
}

// resetTime reads a reset header: OpenAI gives a duration from now
// ("1s", "6m0s", "250ms", "1h2m3.5s"), Anthropic an RFC 3339 time.
func resetTime(v []string, now time.Time, isDuration bool) (time.Time, bool) {
	if len(v) == 0 {
		return time.Time{}, false
	}
	s := strings.TrimSpace(v[0])
	if isDuration {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			return time.Time{}, false
		}
		return now.Add(min(d, 24*time.Hour)), true
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, false
	}
	return t, true
}
