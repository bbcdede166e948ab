package proxy

import (
	"context"
	"net/http"
	"net/http/httptrace"
)

// without1xx returns req with a context in which ReverseProxy's client
// trace no longer relays informational answers. ReverseProxy passes every
// upstream 1xx on to the client and then clears the response headers,
// which wipes what the middleware set (our CORS headers: a 103 Early
// Hints did exactly that); and a 1xx sent before a retry would go with an
// answer from another attempt. With no Got1xxResponse hook, the transport
// reads past 1xx answers itself (SPEC §9). The client's own
// `Expect: 100-continue` is answered by net/http when the body is read
// and is never forwarded (see rewrite).
func without1xx(req *http.Request) *http.Request {
	ctx := req.Context()
	t := httptrace.ContextClientTrace(ctx)
	if t == nil || t.Got1xxResponse == nil {
		return req
	}
	c := &no1xxContext{Context: ctx, trace: t, quiet: *t}
	c.quiet.Got1xxResponse = nil
	return req.WithContext(c)
}

// no1xxContext is its parent with one value swapped: the client trace,
// for a copy without Got1xxResponse. httptrace keeps the trace under an
// unexported key, so it is recognised by identity.
type no1xxContext struct {
	context.Context
	trace *httptrace.ClientTrace
	quiet httptrace.ClientTrace // one allocation with the context
}

func (c *no1xxContext) Value(key any) any {
	v := c.Context.Value(key)
	if t, ok := v.(*httptrace.ClientTrace); ok && t == c.trace {
		return &c.quiet
	}
	return v
}
