package proxy

import (
	"context"
	"net/http"
	"net/http/httptrace"
)

// attemptContext returns req with a context whose client trace is the
// request's own, st.trace, in place of the one ReverseProxy installed.
// ReverseProxy's trace only relays informational answers: it passes every
// upstream 1xx on to the client and then clears the response headers,
// which wipes what the middleware set (our CORS headers: a 103 Early Hints
// did exactly that); and a 1xx sent before a retry would go with an answer
// from another attempt. st.trace has no Got1xxResponse hook, so the
// transport reads past 1xx answers itself (docs/key-health.md, "Retries");
// its GotConn tells the attempt it was connected. The client's own
// `Expect: 100-continue` is answered by net/http when the body is read and
// is never forwarded (see rewrite).
//
// Swapping the trace rather than adding ours beside it spares composing two
// traces (reflection, and allocations) on every request.
func attemptContext(req *http.Request, st *reqState) *http.Request {
	ctx := req.Context()
	switch t := httptrace.ContextClientTrace(ctx); {
	case t == nil:
		ctx = httptrace.WithClientTrace(ctx, &st.trace)
	case t == &st.trace:
		// A retry's clone may already carry it.
	default:
		// Every attempt's request has the same context (the one
		// ReverseProxy made), so one swap in st serves them all; it is
		// never rewritten, as earlier attempts may still read it.
		if st.swap.trace == nil {
			st.swap = traceSwapContext{Context: ctx, old: t, trace: &st.trace}
		}
		if st.swap.Context == ctx && st.swap.old == t {
			ctx = &st.swap
		} else {
			ctx = &traceSwapContext{Context: ctx, old: t, trace: &st.trace}
		}
	}
	// The attempt's own context, which its deadlines cancel (deadline.go).
	return req.WithContext(st.dl.begin(ctx))
}

// traceSwapContext is its parent with one value swapped: the client trace.
// httptrace keeps the trace under an unexported key, so it is recognised
// by identity.
type traceSwapContext struct {
	context.Context
	old, trace *httptrace.ClientTrace
}

func (c *traceSwapContext) Value(key any) any {
	v := c.Context.Value(key)
	if t, ok := v.(*httptrace.ClientTrace); ok && t == c.old {
		return c.trace
	}
	return v
}
