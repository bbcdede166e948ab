// Package upstream describes the targets requests are forwarded to, how each
// expects its key, and balances requests over them in round-robin order.
package upstream

import (
	"net/url"
	"strings"
	"sync/atomic"
)

// Target is one upstream base URL. Its counters are updated atomically; a
// Target is safe for concurrent use.
type Target struct {
	URL   *url.URL
	Style AuthStyle

	requests atomic.Uint64
	failures atomic.Uint64
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

// State is the target's health as shown in /stats.
func (t *Target) State() string { return "active" }

// Usable reports whether the target may take requests.
func (t *Target) Usable() bool { return true }

// JoinPath joins the target's base path and a request path without doubling
// the slash: base "/openai" + "/v1/models" is "/openai/v1/models".
func (t *Target) JoinPath(path string) string {
	base := t.URL.Path
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
