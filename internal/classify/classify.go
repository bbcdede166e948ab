// Package classify decides, from one upstream attempt's outcome, whose
// fault a failure is and whether another key or target should be tried
// (docs/key-health.md, "How answers are classified").
package classify

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Fault says who is to blame for an attempt's outcome.
type Fault uint8

const (
	// Success: 1xx–3xx. The key and target are fine.
	Success Fault = iota
	// KeyPermanent: the key is invalid, revoked or out of quota.
	KeyPermanent
	// KeyRateLimited: the key is busy for a while.
	KeyRateLimited
	// TargetError: the upstream failed or could not be reached.
	TargetError
	// ClientError: the request itself is wrong; another key would not help.
	ClientError
	// Cancelled: the client went away.
	Cancelled
	// KeyModel: this key may not use the requested model; other keys, and
	// this key for other models, may be fine.
	KeyModel
	// Unproven: a 403 that proves nothing against the key (an error
	// naming nothing more specific than "forbidden", or a resource the
	// client named, such as another project's file). Tried on one more
	// key; the key is suspected only when another key then served the
	// request.
	Unproven
)

var faultNames = [...]string{
	Success:        "success",
	KeyPermanent:   "key_permanent",
	KeyRateLimited: "key_rate_limited",
	TargetError:    "target_error",
	ClientError:    "client_error",
	Cancelled:      "cancelled",
	KeyModel:       "key_model",
	Unproven:       "unproven",
}

func (f Fault) String() string { return faultNames[f] }

// Verdict is what to do about an attempt.
type Verdict struct {
	Fault Fault
	// Retry: try again on another key (and, after a target fault, another
	// target), if attempts remain and nothing reached the client yet.
	Retry bool
	// RetryAfter is, for KeyRateLimited, how long the key should rest,
	// from the upstream's answer (0 when it did not say). For KeyModel it
	// is how long the (key, model) pair should be excluded: until the
	// provider's daily reset for a per-day quota, else the upstream's
	// Retry-After or retryDelay; 0 means MODEL_COOLDOWN. It is 0 for every
	// other fault.
	RetryAfter time.Duration
	// Reason is a short, key-free description for /blacklist and logs,
	// such as "invalid_api_key" or "status 503".
	Reason string
}

// Outcome is what one attempt produced.
type Outcome struct {
	// Status and Header of the response; Status is 0 when none arrived.
	Status int
	Header http.Header
	// Body is the start of an error response's body (may be empty).
	Body []byte
	// Err is the transport error when no response arrived.
	Err error
	// Connected reports whether a connection to the upstream was made
	// before Err happened, so that a timeout means the request was sent.
	Connected bool
	// Sent reports whether the request was fully written upstream before
	// Err happened (httptrace's WroteRequest): the upstream may be running
	// it, so a reset or close after it is not retried.
	Sent bool
	// ClientGone reports whether the client's context had ended.
	ClientGone bool
	// Now is the time the outcome was seen, for HTTP-date Retry-After.
	Now time.Time
	// Model is the model the request asked for ("" if unknown): an error
	// naming it is about this key and this model only. A model-scoped
	// answer while it is "" blames no key.
	Model string
}

// Attempt classifies an outcome. It is a pure function of its argument.
func Attempt(o Outcome) Verdict {
	if o.ClientGone {
		return Verdict{Fault: Cancelled, Reason: "client went away"}
	}
	if o.Status == 0 {
		return transportFailure(o)
	}
	if o.Status < 100 {
		// Not an HTTP status (Go accepts any three digits): a broken upstream.
		return Verdict{Fault: TargetError, Retry: true, Reason: "status " + strconv.Itoa(o.Status)}
	}
	if o.Status < 400 {
		return Verdict{Fault: Success}
	}
	return answered(o)
}

// answered classifies an error answer (status 400 and above) from its
// status, headers and the provider's JSON error.
func answered(o Outcome) Verdict {
	e := parseError(o.Body)
	if o.Status < 500 && e.refused() &&
		o.Status != http.StatusUnauthorized && o.Status != http.StatusPaymentRequired && o.Status != http.StatusTooManyRequests {
		// Moderation or a safety filter refused the content: any key
		// would get the same answer, and trying would only repeat it.
		return Verdict{Fault: ClientError, Reason: e.refusalReason(o.Status)}
	}
	if (o.Status == http.StatusForbidden || o.Status == http.StatusNotFound) && !e.accountBad() && e.modelScoped(o.Model) {
		if o.Model == "" {
			// The model the answer is about is unknown (a body the proxy
			// could not read it from): excluding a pair is impossible, and
			// blaming the key would be wrong.
			return Verdict{Fault: ClientError, Reason: e.reason(o.Status)}
		}
		return Verdict{Fault: KeyModel, Retry: true, Reason: e.reason(o.Status)}
	}
	switch o.Status {
	case http.StatusForbidden:
		switch {
		case !e.found || e.any(targetRefusalCodes):
			// Not the provider's JSON error (a CDN's or firewall's page),
			// or a refusal of where the request came from: another key
			// from the same place would be refused alike.
			return Verdict{Fault: TargetError, Retry: true, Reason: e.reason(o.Status)}
		case e.accountBad():
			return Verdict{Fault: KeyPermanent, Retry: true, Reason: e.reason(o.Status)}
		}
		// The provider refuses without saying why, or names something
		// the request sent: the key is not proven guilty.
		return Verdict{Fault: Unproven, Retry: true, Reason: e.reason(o.Status)}
	case http.StatusUnauthorized,
		// 402: OpenAI-compatible providers (DeepSeek, OpenRouter, ...)
		// answer it for an account out of balance: the key's, for good.
		http.StatusPaymentRequired:
		return Verdict{Fault: KeyPermanent, Retry: true, Reason: e.reason(o.Status)}
	case http.StatusBadRequest:
		if e.accountBad() {
			return Verdict{Fault: KeyPermanent, Retry: true, Reason: e.reason(o.Status)}
		}
	case http.StatusTooManyRequests:
		if e.quotaExhausted() {
			return Verdict{Fault: KeyPermanent, Retry: true, Reason: e.reason(o.Status)}
		}
		if e.quotaPerModel() && o.Model != "" {
			return Verdict{Fault: KeyModel, Retry: true, Reason: e.reason(o.Status),
				RetryAfter: modelExclusion(o, e)}
		}
		return Verdict{Fault: KeyRateLimited, Retry: true, Reason: e.reason(o.Status),
			RetryAfter: retryAfter(o.Header, e, o.Now)}
	case http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable, 529,
		// Cloudflare's: origin down, refused, unreachable.
		520, 521, 522, 523:
		return Verdict{Fault: TargetError, Retry: true, Reason: e.reason(o.Status)}
	case http.StatusGatewayTimeout,
		// Cloudflare's origin timeout.
		524:
		// A gateway timed out waiting for the upstream, which may still be
		// running (and billing) the request: a retry could pay twice.
		return Verdict{Fault: TargetError, Reason: e.reason(o.Status)}
	}
	return Verdict{Fault: ClientError, Reason: e.reason(o.Status)}
}

// modelExclusion is how long a (key, model) pair whose per-model quota
// ran out stays excluded: a daily quota until Google's daily reset at
// midnight US Pacific, any other for the upstream's delay, at most a day
// (0: the proxy's MODEL_COOLDOWN).
func modelExclusion(o Outcome, e apiError) time.Duration {
	if e.quota.perDay && !o.Now.IsZero() {
		return nextPacificMidnight(o.Now).Sub(o.Now)
	}
	return min(retryAfter(o.Header, e, o.Now), maxModelDelay)
}

// maxModelDelay bounds an exclusion taken from an upstream's delay, as a
// key's rest is bounded: a day.
const maxModelDelay = 24 * time.Hour

// transportFailure classifies an attempt that got no response.
func transportFailure(o Outcome) Verdict {
	err := o.Err
	switch {
	case errors.Is(err, context.Canceled):
		return Verdict{Fault: Cancelled, Reason: "cancelled"}
	case isTLS(err):
		return Verdict{Fault: TargetError, Retry: true, Reason: "tls failure"}
	case IsTimeout(err) && (o.Connected || o.Sent):
		// The request was sent: the upstream may be working on it, and a
		// retry could run a costly completion twice.
		return Verdict{Fault: TargetError, Reason: "no response headers in time"}
	case IsTimeout(err):
		return Verdict{Fault: TargetError, Retry: true, Reason: "connect timeout"}
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return Verdict{Fault: TargetError, Retry: true, Reason: "dns failure"}
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		// Nothing was sent: another target (or this one, later) is safe.
		return Verdict{Fault: TargetError, Retry: true, Reason: dialReason(err)}
	}
	// The connection broke. Once the whole request was written the
	// upstream may be running it, and a retry could bill it twice.
	return Verdict{Fault: TargetError, Retry: !o.Sent, Reason: brokenReason(err)}
}

// dialReason names a failed dial by its errno.
func dialReason(err error) string {
	switch {
	case errors.Is(err, errConnRefused):
		return "connection refused"
	case errors.Is(err, errHostUnreachable):
		return "host unreachable"
	case errors.Is(err, errNetUnreachable):
		return "network unreachable"
	}
	return "connection failed"
}

// brokenReason names a connection that broke before a response arrived.
func brokenReason(err error) string {
	switch {
	case errors.Is(err, errConnReset):
		return "connection reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, errBrokenPipe):
		return "connection closed"
	}
	return "connection failed"
}

// IsTimeout reports whether err is a timeout: a deadline that passed, or a
// network operation that timed out.
func IsTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func isTLS(err error) bool {
	var (
		rh   tls.RecordHeaderError
		ae   tls.AlertError
		cv   *tls.CertificateVerificationError
		ua   x509.UnknownAuthorityError
		hn   x509.HostnameError
		ci   x509.CertificateInvalidError
		echE *tls.ECHRejectionError
	)
	return errors.As(err, &rh) || errors.As(err, &ae) || errors.As(err, &cv) || errors.As(err, &ua) ||
		errors.As(err, &hn) || errors.As(err, &ci) || errors.As(err, &echE)
}

// retryAfter reads how long to wait: the Retry-After header (seconds or an
// HTTP date), OpenAI's retry-after-ms, or Gemini's RetryInfo retryDelay.
func retryAfter(h http.Header, e apiError, now time.Time) time.Duration {
	if v := h.Get("Retry-After-Ms"); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil && ms > 0 {
			return duration(ms, time.Millisecond)
		}
	}
	if v := strings.TrimSpace(h.Get("Retry-After")); v != "" {
		if s, err := strconv.ParseFloat(v, 64); err == nil {
			if s > 0 {
				return duration(s, time.Second)
			}
			return 0
		}
		if t, err := http.ParseTime(v); err == nil {
			if d := t.Sub(now); d > 0 {
				return d
			}
		}
	}
	return e.retryDelay
}

// duration converts v units to a Duration, saturating instead of
// overflowing (a float out of int64 range converts to a negative value).
func duration(v float64, unit time.Duration) time.Duration {
	if d := v * float64(unit); d < float64(math.MaxInt64) {
		return time.Duration(d)
	}
	return math.MaxInt64
}
