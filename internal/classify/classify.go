// Package classify decides, from one upstream attempt's outcome, whose
// fault a failure is and whether another key or target should be tried
// (docs/key-health.md, "How answers are classified").
package classify

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
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
	// Unproven: a 403 that proves nothing against the key (a bare error,
	// or a resource of another project). Tried on one more key; the key
	// is suspected only when another key then served the request.
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
	// RetryAfter is how long a rate-limited key should rest, from the
	// upstream's answer; 0 when it did not say.
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
	// Sent reports whether the whole request was written upstream, so a
	// connection that breaks after it may have started the work.
	Sent bool
	// ClientGone reports whether the client's context had ended.
	ClientGone bool
	// Now is the time the outcome was seen, for HTTP-date Retry-After.
	Now time.Time
	// Model is the model the request asked for ("" if unknown): an error
	// naming it is about this key and this model only.
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
	e := parseError(o.Body)
	if (o.Status == http.StatusForbidden || o.Status == http.StatusNotFound) && e.modelScoped(o.Model) {
		return Verdict{Fault: KeyModel, Retry: true, Reason: e.reason(o.Status)}
	}
	switch o.Status {
	case http.StatusForbidden:
		if !e.found || e.any(targetRefusalCodes) {
			// Not the provider's JSON error (a CDN's or firewall's page),
			// or a refusal of where the request came from: another key
			// from the same place would be refused alike.
			return Verdict{Fault: TargetError, Retry: true, Reason: e.reason(o.Status)}
		}
		return Verdict{Fault: KeyPermanent, Retry: true, Reason: e.reason(o.Status)}
	case http.StatusUnauthorized,
		// 402: OpenAI-compatible providers (DeepSeek, OpenRouter, ...)
		// answer it for an account out of balance: the key's, for good.
		http.StatusPaymentRequired:
		return Verdict{Fault: KeyPermanent, Retry: true, Reason: e.reason(o.Status)}
	case http.StatusBadRequest:
		if e.keyInvalid() {
			return Verdict{Fault: KeyPermanent, Retry: true, Reason: e.reason(o.Status)}
		}
	case http.StatusTooManyRequests:
		if e.quotaExhausted() {
			return Verdict{Fault: KeyPermanent, Retry: true, Reason: e.reason(o.Status)}
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

// transportFailure classifies an attempt that got no response.
func transportFailure(o Outcome) Verdict {
	err := o.Err
	switch {
	case errors.Is(err, context.Canceled):
		return Verdict{Fault: Cancelled, Reason: "cancelled"}
	case isTLS(err):
		return Verdict{Fault: TargetError, Retry: true, Reason: "tls failure"}
	case IsTimeout(err) && o.Connected:
		// The request was sent: the upstream may be working on it, and a
		// retry could run a costly completion twice.
		return Verdict{Fault: TargetError, Reason: "no response headers in time"}
	case IsTimeout(err):
		return Verdict{Fault: TargetError, Retry: true, Reason: "connect timeout"}
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return Verdict{Fault: TargetError, Retry: true, Reason: "connection refused"}
	}
	return Verdict{Fault: TargetError, Retry: true, Reason: "connection failed"}
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
