package proxy

import "net/http"

// Body is a request body read by ReadBody, kept so that every attempt (and
// every group a request falls back to) can send the same bytes. Its
// owner closes it.
type Body = body

// Model returns the model a request for path with this body and
// contentType asks for (SPEC §8's reading), without reading a spooled
// body back into memory.
func (b *body) Model(path, contentType string) string { return b.model(path, contentType) }

// BodyOf keeps b, a body in memory (a rewritten one, say), as a Body.
func BodyOf(b []byte) *Body { return &body{mem: b, size: int64(len(b))} }

// ReadBody reads r's body under this proxy's limits, as ServeHTTP would:
// an error is an *apierr.Error to answer with, or the client's own
// cancellation. A request without a body gives nil.
func (p *Proxy) ReadBody(r *http.Request) (*Body, error) { return p.readBody(r) }

// Handover is what a caller that routed a request among several groups
// (docs/groups.md) passes with it to the chosen group's proxy
// (ServeRouted).
type Handover struct {
	// Body is the request's body, already read to route it by model; nil
	// means the proxy reads it. The caller closes it.
	Body *Body
	// Read says the body was read (Body nil: there was none).
	Read bool
	// Prior is how many upstream attempts groups before this one made for
	// the request: this group's first attempt counts as a retry in the
	// retry budget, and X-Gpt-Load-Attempts counts them all.
	Prior int
	// More says another group follows if this one cannot serve: a
	// request with no usable key here falls back at once instead of
	// waiting in this group's queue.
	More bool
}
