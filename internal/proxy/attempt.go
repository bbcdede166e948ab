package proxy

import (
	"errors"
	"net/http"
	"time"

	"github.com/gpt-load/gpt-load/internal/classify"
	"github.com/gpt-load/gpt-load/internal/keymanager"
	"github.com/gpt-load/gpt-load/internal/upstream"
)

// errorPeek is how much of an error response is read to classify it. Error
// bodies are small; a larger one is classified on its start.
const errorPeek = 64 << 10

// attemptTransport runs the attempts of one client request: a bounded loop,
// each attempt on the next usable key (and target), the same body bytes
// each time, until an answer is final or attempts run out (docs/key-health.md). It
// returns before ReverseProxy writes anything to the client, so no retry
// can ever follow a byte of the response.
type attemptTransport struct{ p *Proxy }

// RoundTrip owns out: ReverseProxy made it for this request alone.
func (t attemptTransport) RoundTrip(out *http.Request) (*http.Response, error) {
	p := t.p
	ctx := out.Context()
	st := stateOf(ctx)
	var held *http.Response // the last upstream answer, kept while retrying
	var lastErr error
	var target *upstream.Target
	// last ends the request with the best answer there is: the provider's
	// own beats our error (docs/key-health.md).
	last := func(resp *http.Response, err error) (*http.Response, error) {
		if resp == nil && held != nil {
			return held, nil
		}
		if held != nil && held != resp {
			held.Body.Close()
		}
		if resp == nil && err == nil {
			err = lastErr
		}
		return resp, err
	}
	// A request another group could not serve (a fallback, handover.go)
	// comes here as a retry: its first attempt here is not its first.
	retry := st.prior > 0
	if !retry {
		p.budget.first()
	}
	for attempt := 0; ; attempt++ {
		if (attempt > 0 || retry) && !p.budget.allow() {
			if attempt == 0 {
				// A group fallen back to has no answer of its own to end
				// with: (nil, nil) would crash ReverseProxy.
				return nil, budgetError()
			}
			// Over the proxy-wide retry budget: answer as if retries had
			// run out, so a refusing provider is not sent more load.
			return last(nil, nil)
		}
		if attempt == 0 && st.more && p.noTargetUsable() {
			// Every upstream of this group is benched and another group
			// follows: fall back at once rather than probe the upstream
			// benched longest, which only a group without a fallback needs
			// (a pool whose account ran out of credits benches its
			// upstream by the correlated rule, and would cost an attempt
			// per request).
			return nil, noTargetError()
		}
		if attempt > 0 && (st.fault == classify.TargetError || !target.Active()) {
			// A new target after a target fault, or once the target was
			// benched during this request; a retry never goes to a benched
			// target. Otherwise a key's trouble says nothing about the
			// upstream. Chosen before the key, so a retry that has nowhere
			// to go takes no key's turn.
			if target = p.targets.NextActive(); target == nil {
				return last(nil, nil)
			}
		}
		key, excluded, err := p.nextKey(ctx, st, st.modelIfNeeded(p.keys))
		if err != nil {
			if held != nil && st.fault == classify.KeyModel && ctx.Err() == nil && resting(err) {
				// The key that may serve the model is only resting: the
				// excluded key's "no such model" would mislead the client,
				// who should come back when that key does.
				held.Body.Close()
				return nil, noKeysError(err)
			}
			if held != nil || lastErr != nil {
				return last(nil, nil)
			}
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, noKeysError(err)
		}
		if attempt > 0 && excluded {
			// Every key left is excluded for the model: the provider's own
			// answer is what the client gets.
			return last(nil, nil)
		}
		if target == nil {
			// A first attempt may use the target benched longest when all
			// are benched. Chosen after the key, so a request with no key
			// takes no probe.
			target = p.targets.Next()
		}
		req := out
		if attempt > 0 || retry {
			p.counters.Retried()
		}
		if attempt > 0 {
			req = out.Clone(ctx)
		}
		resp, v, err := p.attempt(req, st, key, target)
		st.attempts = attempt + 1
		st.key, st.target, st.fault = key, target, v.Fault

		switch v.Fault {
		case classify.Success:
			if st.modelRead {
				// Proof that a resting key may serve the model (NextFor).
				p.keys.ServedModel(st.model)
			}
			if st.suspect != nil && st.suspect != key {
				// Another key served what the suspect refused.
				p.health.suspected(st.suspect, target, st.suspectReason)
			}
		case classify.Unproven:
			// An unproven 403 is tried on one more key only: a second
			// one says the request, not the key, is refused.
			if st.suspect != nil {
				return last(resp, err)
			}
			st.suspect, st.suspectReason = key, v.Reason
		}
		if !v.Retry || attempt >= p.opts.MaxRetries || ctx.Err() != nil {
			return last(resp, err)
		}
		lastErr = err
		if resp != nil {
			if held != nil {
				held.Body.Close()
			}
			// readErrorBody made its body safe to keep, whatever its size:
			// in memory when small, else still streaming from the upstream.
			held = resp
		}
	}
}

// resting reports whether err says no key is usable now but one returns
// from a rest at a known time.
func resting(err error) bool {
	var nk *keymanager.NoKeysError
	return errors.As(err, &nk) && !nk.RetryAt.IsZero()
}

// attempt sends req once with key to target, classifies the outcome and
// applies it to the key's and target's health.
func (p *Proxy) attempt(req *http.Request, st *reqState, key *keymanager.Key, target *upstream.Target) (*http.Response, classify.Verdict, error) {
	p.streamFailover(st)
	st.prepare(req, key, target)
	st.connected.Store(false)
	st.sent.Store(false)
	start := time.Now()
	resp, err := st.dl.answered(p.base.RoundTrip(attemptContext(req, st)))
	var window windowResult
	if err == nil && isEventStream(resp) {
		// Hold the stream until its first output; an error event in it
		// stands for its status answer (docs/api.md, "Streaming";
		// stream.go).
		st.out.stream = true
		resp, window, err = p.commitWindow(req.Context(), st, resp)
	}
	o := classify.Outcome{Err: err, Now: time.Now(), ClientGone: req.Context().Err() != nil}
	if err == nil {
		o.Status, o.Header = resp.StatusCode, resp.Header
		if resp.StatusCode >= 400 {
			o.Body = p.readErrorBodyWithin(resp, st)
			// An error naming the model blames the pair (key, model): a
			// 403/404 for access, a 429 for a per-model quota.
			switch resp.StatusCode {
			case http.StatusForbidden, http.StatusNotFound, http.StatusTooManyRequests:
				o.Model = st.modelName()
			}
		}
	} else {
		o.Connected = st.connected.Load()
		// A stream broken inside its commit window is retried (docs/api.md,
		// "Streaming"): nothing reached the client yet.
		o.Sent = st.sent.Load() && !window.failed
	}
	window.apply(&o, st)
	v := classify.Attempt(o)
	if err == nil && p.ownLoop(resp, target) {
		// Our own 508 for a request that came back to us: nobody's fault,
		// and another key or target would loop alike.
		v = classify.Verdict{Fault: classify.ClientError, Reason: "request loop"}
	}
	window.note(st, v)
	took := time.Since(start)
	st.upstreamTime += took
	p.health.apply(key, target, v, o)
	p.obs.Attempt(target, v.Fault)
	return resp, v, err
}
