// Package outcome is what became of one proxied request, and the request
// counters that these records add up to. The proxy produces one Record per
// request; the access log, the /stats counters and the metrics read it.
package outcome

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/gpt-load/gpt-load/internal/classify"
	"github.com/gpt-load/gpt-load/internal/secret"
	"github.com/gpt-load/gpt-load/internal/upstream"
)

// StatusClientClosed is the status of a request whose client went away
// before an answer, after nginx's 499.
const StatusClientClosed = 499

// Record is what became of one proxied request.
type Record struct {
	// Start is when the proxy took the request; zero means the proxy never
	// saw it (it was answered further out, say by client auth).
	Start time.Time
	// Status is the status the client got, or StatusClientClosed.
	Status int
	// Attempts is the number of upstream attempts made, 0 when none was.
	Attempts int
	// Key is the last attempt's key; only its mask is ever shown.
	Key secret.Key
	// Target is the last attempt's target; nil when no attempt was made.
	Target *upstream.Target
	// UpstreamURL is the URL the last attempt was sent to, without its
	// query (which may hold a key); filled only when the log is at debug
	// level, for the access line.
	UpstreamURL string
	// Fault is the last attempt's verdict.
	Fault classify.Fault
	// Aborted: the response was cut off after it started (the upstream
	// failed mid-body), so the client saw an error, not a short answer.
	Aborted bool
	// Error says why a response that had started failed (a stream cut by
	// its idle timeout, an upstream that broke off mid-stream).
	Error string
	// Took is the whole request's time in the proxy. Overhead is the
	// proxy's own share before the response headers: the time from the
	// body read to the headers, less the time spent waiting upstream;
	// negative when unknown.
	Took, Overhead time.Duration
	// Bytes is the response body bytes written to the client.
	Bytes int64
	// Group names the group that served the request, or the groups tried
	// in order ("a,b") when it fell back (docs/groups.md); "" without
	// groups.
	Group string
}

// Succeeded reports whether the client got a 2xx or 3xx answer.
func (r *Record) Succeeded() bool { return r.Status >= 200 && r.Status < 400 }

// TargetHost is the last attempt's target host, "" when there was none.
func (r *Record) TargetHost() string {
	if r.Target == nil {
		return ""
	}
	return r.Target.Host()
}

type ctxKey struct{}

// NewContext returns ctx carrying r, for a proxy further in to fill.
func NewContext(ctx context.Context, r *Record) context.Context {
	return context.WithValue(ctx, ctxKey{}, r)
}

// FromContext returns the record ctx carries, or nil.
func FromContext(ctx context.Context) *Record {
	r, _ := ctx.Value(ctxKey{}).(*Record)
	return r
}

// Totals are request counters at one moment: those of one replica
// (/stats "requests"), or summed over every replica through Redis
// (/stats "cluster").
type Totals struct {
	Total, Success, Failure, Retries int64
}

// Sub returns t less u, field by field.
func (t Totals) Sub(u Totals) Totals {
	return Totals{t.Total - u.Total, t.Success - u.Success, t.Failure - u.Failure, t.Retries - u.Retries}
}

// Counters count requests as they start, retry and finish. They are safe
// for concurrent use.
type Counters struct {
	total, success, failure, retries atomic.Int64
}

// Started counts a request the proxy took; it counts in Total at once.
func (c *Counters) Started() { c.total.Add(1) }

// Retried counts an attempt after the first.
func (c *Counters) Retried() { c.retries.Add(1) }

// Finished counts r as a success or a failure.
func (c *Counters) Finished(r *Record) {
	if r.Succeeded() {
		c.success.Add(1)
	} else {
		c.failure.Add(1)
	}
}

// Totals returns the counters' values now.
func (c *Counters) Totals() Totals {
	return Totals{Total: c.total.Load(), Success: c.success.Load(), Failure: c.failure.Load(), Retries: c.retries.Load()}
}
