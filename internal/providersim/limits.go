package providersim

import (
	"net/http"
	"strconv"
	"sync"
	"time"
)

// window is one account's fixed-window request and token counts. Windows
// start at the simulator's clock start, so they are aligned and a reset
// time is exact. Safe for concurrent use.
type window struct {
	acct Account

	mu     sync.Mutex
	start  time.Time // of the current window
	reqs   int       // requests admitted in it
	tokens int       // tokens admitted in it
}

// verdict is what an account's limit says about one request.
type verdict struct {
	ok       bool
	what     string // "requests" or "tokens" when !ok
	used     int    // of the exhausted limit, when !ok
	reqLeft  int    // remaining requests after this request
	tokLeft  int
	reset    time.Duration // until the window ends
	reqLimit int
	tokLimit int
}

// unlimitedTokens is what the token headers show for an account without
// a token limit: OpenAI always sends both kinds.
const unlimitedTokens = 10_000_000

// admit counts one request of cost tokens if the account's limits allow
// it, and reports the figures its headers show.
func (w *window) admit(now time.Time, cost int) verdict {
	w.mu.Lock()
	defer w.mu.Unlock()
	win := w.acct.Window.D()
	if win > 0 {
		if el := now.Sub(w.start); el >= win {
			w.start = w.start.Add(el / win * win)
			w.reqs, w.tokens = 0, 0
		}
	}
	v := verdict{reqLimit: w.acct.Requests, tokLimit: w.acct.Tokens}
	if win > 0 {
		v.reset = w.start.Add(win).Sub(now)
	}
	if v.tokLimit == 0 {
		v.tokLimit = unlimitedTokens
	}
	switch {
	case w.acct.Requests > 0 && w.reqs+1 > w.acct.Requests:
		v.what, v.used = "requests", w.reqs
	case w.acct.Tokens > 0 && w.tokens+cost > w.acct.Tokens:
		v.what, v.used = "tokens", w.tokens
	default:
		w.reqs++
		w.tokens += cost
		v.ok = true
	}
	v.reqLeft = max(0, w.acct.Requests-w.reqs)
	v.tokLeft = max(0, v.tokLimit-w.tokens)
	if w.acct.Requests == 0 {
		v.reqLimit = 0
	}
	return v
}

// reset starts a fresh window at t.
func (w *window) reset(t time.Time) {
	w.mu.Lock()
	w.start, w.reqs, w.tokens = t, 0, 0
	w.mu.Unlock()
}

// setHeaders writes OpenAI's x-ratelimit-* headers for v. An account
// without a request limit shows none for requests.
func (v verdict) setHeaders(h http.Header) {
	reset := roundDuration(v.reset)
	if v.reqLimit > 0 {
		h.Set("X-Ratelimit-Limit-Requests", strconv.Itoa(v.reqLimit))
		h.Set("X-Ratelimit-Remaining-Requests", strconv.Itoa(v.reqLeft))
		h.Set("X-Ratelimit-Reset-Requests", reset)
	}
	h.Set("X-Ratelimit-Limit-Tokens", strconv.Itoa(v.tokLimit))
	h.Set("X-Ratelimit-Remaining-Tokens", strconv.Itoa(v.tokLeft))
	h.Set("X-Ratelimit-Reset-Tokens", reset)
}

// exhausted reports whether v's headers show nothing left of a limit:
// a client reading them rests the key until the reset.
func (v verdict) exhausted() bool {
	return (v.reqLimit > 0 && v.reqLeft == 0) || v.tokLeft == 0
}
