// Package upstream describes the targets requests are forwarded to, how each
// expects its key, whether each is healthy, and balances requests over the
// healthy ones in round-robin order.
package upstream

import (
	"net/url"
	"strings"
	"sync/atomic"
	"time"
)

// Target states.
const (
	stateActive  uint32 = iota
	stateBenched        // out of rotation until benchedUntil
	stateProbing        // one request is testing it after its bench expired
)

// Target is one upstream base URL with its passive health. Its fields are
// accessed atomically; a Target is safe for concurrent use.
type Target struct {
	URL   *url.URL
	Style AuthStyle
	// Index is the target's position in the configuration.
	Index int

	requests atomic.Uint64
	failures atomic.Uint64

	state        atomic.Uint32
	consecutive  atomic.Int32 // target faults in a row
	benches      atomic.Int32 // benches in a row without a success, for the growing cooldown
	benchedAt    atomic.Int64 // unix nanoseconds
	benchedUntil atomic.Int64 // unix nanoseconds
	reason       atomic.Pointer[string]
	lastSuccess  atomic.Int64 // unix nanoseconds
}

// LastSuccess is when the target last gave an answer that was not its
// fault, zero if never.
func (t *Target) LastSuccess() time.Time {
	if n := t.lastSuccess.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// NewTarget returns a target for base with the given style.
func NewTarget(base *url.URL, style AuthStyle) *Target {
	return &Target{URL: base, Style: style}
}

// String is the target's base URL.
func (t *Target) String() string { return t.URL.String() }

// Host is the target's host, for logs.
func (t *Target) Host() string { return t.URL.Host }

// CountRequest records an attempt sent to the target.
func (t *Target) CountRequest(failed bool) {
	t.requests.Add(1)
	if failed {
		t.failures.Add(1)
	}
}

// Requests and Failures report the target's counters.
func (t *Target) Requests() uint64 { return t.requests.Load() }
func (t *Target) Failures() uint64 { return t.failures.Load() }

// State is the target's health as shown in /stats: active, benched or
// probing. A benched target whose cooldown ended reads "probing" until a
// request tries it.
func (t *Target) State(now time.Time) string {
	switch t.state.Load() {
	case stateBenched:
		if now.UnixNano() >= t.benchedUntil.Load() {
			return "probing"
		}
		return "benched"
	case stateProbing:
		return "probing"
	}
	return "active"
}

// Benched reports whether the target is out of rotation at now.
func (t *Target) Benched(now time.Time) bool {
	return t.state.Load() == stateBenched && now.UnixNano() < t.benchedUntil.Load()
}

// BenchedUntil is the end of the current bench, zero when not benched.
func (t *Target) BenchedUntil() time.Time {
	if t.state.Load() == stateActive {
		return time.Time{}
	}
	return time.Unix(0, t.benchedUntil.Load())
}

// Reason says why the target was benched.
func (t *Target) Reason() string {
	if r := t.reason.Load(); r != nil && t.state.Load() != stateActive {
		return *r
	}
	return ""
}

// JoinPath joins the target's base path and a request path without doubling
// the slash: base "/openai" + "/v1/models" is "/openai/v1/models".
func (t *Target) JoinPath(path string) string {
	base := strings.TrimRight(t.URL.Path, "/")
	if base == "" {
		return path
	}
	if path == "" || path == "/" {
		return base + path
	}
	if path[0] != '/' {
		return base + "/" + path
	}
	return base + path
}

// EndsInV1 reports whether the base path ends in /v1.
func (t *Target) EndsInV1() bool { return strings.HasSuffix(t.URL.Path, "/v1") }

// Active reports whether the target is in rotation: neither benched nor
// being probed.
func (t *Target) Active() bool { return t.state.Load() == stateActive }

// BenchedAt is when the current bench began, zero when not benched.
func (t *Target) BenchedAt() time.Time {
	if t.state.Load() == stateActive {
		return time.Time{}
	}
	return time.Unix(0, t.benchedAt.Load())
}
