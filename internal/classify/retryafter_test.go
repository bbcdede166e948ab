package classify

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzRetryAfter feeds every form a provider says "wait" in: Retry-After
// in seconds (integer or not) or as an HTTP date, retry-after-ms, and
// Gemini's retryDelay in the error body. Oracle: never negative; a
// positive retry-after-ms wins and is that many milliseconds; otherwise a
// positive number of seconds is that many seconds; otherwise a date in
// the future is the time until it; a number that is not positive means no
// header value at all (the body's delay is not used then).
func FuzzRetryAfter(f *testing.F) {
	f.Add("20", "", "")
	f.Add("1.5", "", "")
	f.Add("0", "", "3s")
	f.Add("-1", "", "")
	f.Add("", "250", "")
	f.Add("", "abc", "17s")
	f.Add("Wed, 21 Oct 2026 07:28:00 GMT", "", "")
	f.Add(now.Add(90*time.Second).UTC().Format(http.TimeFormat), "", "")
	f.Add("1e300", "1e300", "")
	f.Add("NaN", "Inf", "-5s")
	f.Add(" 7 ", "", "")
	f.Fuzz(func(t *testing.T, ra, raMs, delay string) {
		h := http.Header{}
		if ra != "" {
			h.Set("Retry-After", ra)
		}
		if raMs != "" {
			h.Set("Retry-After-Ms", raMs)
		}
		body := `{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","details":[{"retryDelay":` + strconv.Quote(delay) + `}]}}`
		e := parseError([]byte(body))
		got := retryAfter(h, e, now)
		if got < 0 {
			t.Fatalf("retryAfter(%q, %q, %q) = %v; want >= 0", ra, raMs, delay, got)
		}
		if ms, err := strconv.ParseFloat(h.Get("Retry-After-Ms"), 64); err == nil && ms > 0 {
			if want := saturate(ms * float64(time.Millisecond)); got != want {
				t.Fatalf("retryAfter(retry-after-ms %q) = %v; want %v", raMs, got, want)
			}
			return
		}
		v := strings.TrimSpace(h.Get("Retry-After"))
		if v == "" {
			if got != e.retryDelay {
				t.Fatalf("retryAfter(retryDelay %q) = %v; want %v", delay, got, e.retryDelay)
			}
			return
		}
		if s, err := strconv.ParseFloat(v, 64); err == nil {
			want := time.Duration(0)
			if s > 0 {
				want = saturate(s * float64(time.Second))
			}
			if got != want {
				t.Fatalf("retryAfter(Retry-After %q) = %v; want %v", ra, got, want)
			}
			return
		}
		if d, err := http.ParseTime(v); err == nil && d.After(now) {
			if got != d.Sub(now) {
				t.Fatalf("retryAfter(Retry-After %q) = %v; want %v", ra, got, d.Sub(now))
			}
		}
	})
}

func saturate(d float64) time.Duration {
	if d >= float64(math.MaxInt64) {
		return math.MaxInt64
	}
	return time.Duration(d)
}
