package proxy

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"slices"
	"sync"

	"github.com/sirupsen/logrus"

	"github.com/gpt-load/gpt-load/internal/apierr"
	"github.com/gpt-load/gpt-load/internal/upstream"
)

// HeaderVia carries, on every forwarded request, a marker of each
// gpt-load instance it passed through (docs/api.md, "Loops"). A request
// that arrives carrying this instance's own marker went round a loop:
// OPENAI_BASE_URL points back at this proxy, directly or through another
// hop.
const HeaderVia = "X-Gpt-Load-Via"

// headerLoop marks the 508 an instance answers a looped request with, so
// the attempt that sent it knows the loop is its own.
const headerLoop = "X-Gpt-Load-Loop"

// loopGuard knows this instance's marker and logs each looping target
// once.
type loopGuard struct {
	id     string
	via    []string // {id}, shared by requests that arrive with no marker
	logged sync.Map // target host → struct{}
}

func newLoopGuard() *loopGuard {
	var b [8]byte
	rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	return &loopGuard{id: id, via: []string{id}}
}

// mark adds this instance's marker to an outgoing request's headers, after
// the markers of the instances it came through. The inbound slice is
// never written to.
func (g *loopGuard) mark(in, out http.Header) {
	prior := in[HeaderVia]
	if len(prior) == 0 {
		out[HeaderVia] = g.via
		return
	}
	out[HeaderVia] = append(slices.Clip(prior), g.id)
}

// looped reports whether h carries this instance's marker.
func (g *loopGuard) looped(h http.Header) bool {
	return slices.Contains(h[HeaderVia], g.id)
}

// Guard answers a request that carries this instance's marker with 508
// loop_detected before anything else (auth included: the looped request
// carries a pool key, not the client's token, and a 401 would blacklist
// that key). Nothing is forwarded and no key or target is blamed.
func (p *Proxy) Guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := r.Header[HeaderVia]; ok && p.loop.looped(r.Header) {
			w.Header().Set(headerLoop, p.loop.id)
			apierr.Write(w, &apierr.Error{Status: http.StatusLoopDetected, Code: apierr.CodeLoopDetected,
				Message: "request loop: an upstream of this proxy points back at it (check OPENAI_BASE_URL)"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// ownLoop reports whether resp is this instance's answer to its own looped
// request, and logs it once per target.
func (p *Proxy) ownLoop(resp *http.Response, target *upstream.Target) bool {
	if resp.StatusCode != http.StatusLoopDetected || resp.Header.Get(headerLoop) != p.loop.id {
		return false
	}
	if _, seen := p.loop.logged.LoadOrStore(target.Host(), struct{}{}); !seen {
		p.log.WithFields(logrus.Fields{"upstream": target.String()}).
			Error("request loop: this upstream leads back to this proxy; no key or upstream is blamed")
	}
	return true
}
