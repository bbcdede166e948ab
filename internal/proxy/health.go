package proxy

import (
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/gpt-load/gpt-load/internal/classify"
	"github.com/gpt-load/gpt-load/internal/keymanager"
	"github.com/gpt-load/gpt-load/internal/secret"
	"github.com/gpt-load/gpt-load/internal/upstream"
)

// The correlated-failure rule (docs/key-health.md): when correlatedKeys distinct keys
// that each succeeded within recentSuccess fail the same way on one target
// within correlationWindow, the target is to blame, not the keys: it is
// benched, and keys it got benched in the window are restored.
const (
	correlatedKeys    = 3
	correlationWindow = 5 * time.Second
	recentSuccess     = time.Minute
	// logBodyLimit is how much of an upstream error body a log line shows.
	logBodyLimit = 512
)

// health applies attempt verdicts to keys and targets. Only key-class
// failures take its lock; the success path is lock-free.
type health struct {
	keys    *keymanager.Manager
	targets *upstream.Balancer
	log     *logrus.Entry

	mu      sync.Mutex
	windows [][]keyFault // per target index: recent key-class failures
	causes  []benchCause // per target index: the pattern that benched it
}

// benchCause is the key-class failure a target was benched for, and when.
type benchCause struct {
	at     int64 // the bench's start, unix nanoseconds
	fault  classify.Fault
	status int
}

type keyFault struct {
	key    *keymanager.Key
	fault  classify.Fault
	status int
	at     time.Time
}

func newHealth(keys *keymanager.Manager, targets *upstream.Balancer, log *logrus.Entry) *health {
	return &health{keys: keys, targets: targets, log: log, windows: make([][]keyFault, len(targets.Targets())),
		causes: make([]benchCause, len(targets.Targets()))}
}

// apply records one attempt's verdict v (with its outcome o) against the
// key and target it used.
func (h *health) apply(key *keymanager.Key, target *upstream.Target, v classify.Verdict, o classify.Outcome) {
	failed := v.Fault != classify.Success && v.Fault != classify.ClientError && v.Fault != classify.Cancelled &&
		v.Fault != classify.Unproven
	key.CountRequest(o.Status, failed)
	target.CountRequest(v.Fault == classify.TargetError)
	// Rate-limit headers are read once: for the key's quota, and to tell a
	// key's own limit from an upstream refusing everyone.
	q, hasQuota := classify.QuotaOf(o.Header, o.Now)
	if hasQuota {
		defer h.quota(key, q)
	}

	switch v.Fault {
	case classify.Success:
		h.keys.Succeeded(key)
		h.targets.Succeeded(target)
	case classify.ClientError:
		h.keys.Succeeded(key)
		h.targets.Answered(target)
	case classify.Cancelled:
		h.targets.Released(target)
	case classify.TargetError:
		if h.targets.Failed(target, v.Reason) {
			h.log.WithFields(logrus.Fields{"upstream": target.Host(), "reason": v.Reason,
				"until": target.BenchedUntil().Format(time.RFC3339)}).Warn("upstream benched")
		}
	case classify.Unproven:
		// The provider answered with its own error: the target is up. The
		// key is only suspected if another key serves the request
		// (suspected).
		h.targets.Answered(target)
	case classify.KeyModel:
		// Only the pair is at fault: the key serves other models, and its
		// failure count is untouched. The provider answered with its own
		// error, so the target is up (a probe included).
		h.targets.Answered(target)
		if h.keys.ExcludeModel(key, o.Model, v.RetryAfter) && h.log.Logger.IsLevelEnabled(logrus.InfoLevel) {
			h.log.WithFields(logrus.Fields{"key": key.Preview(), "upstream": target.Host(), "status": o.Status,
				"model": o.Model, "reason": v.Reason}).Info("key excluded for a model")
		}
	case classify.KeyPermanent, classify.KeyRateLimited:
		h.keyFault(key, target, v, o, hasQuota && q.Exhausted())
	}
}

// keyFault charges a key-class failure to the key, unless it is part of a
// pattern that blames the target. It runs under h.mu, as does the restore
// of a pattern's keys, so a key is never charged just after the pattern it
// belongs to restored it. quotaSpent says the answer's rate-limit headers
// show the key's own quota at zero.
func (h *health) keyFault(key *keymanager.Key, target *upstream.Target, v classify.Verdict, o classify.Outcome, quotaSpent bool) {
	recent := h.keys.SucceededWithin(key, recentSuccess)
	// A 429 whose rate-limit headers say this key's own quota is spent is
	// the key's limit, not an upstream refusing everyone.
	ownLimit := v.Fault == classify.KeyRateLimited && quotaSpent
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case !target.Active() && !ownLimit && h.benchedFor(target, v.Fault, o.Status):
		// A target benched for failing every key this way is still used
		// when it is the only choice, and probed when its bench ends; the
		// same answer again, without proof that the key alone is limited,
		// is still the target's.
		h.targets.Failed(target, v.Reason)
		return
	case !target.Active():
		// A probe (or the last resort) answered with something else than
		// what benched the target: the target is up, and the key carries
		// its own fault (a key's own 429 on a probe cools the key).
		h.targets.Answered(target)
	default:
		// The target answered, so it is up, whatever the key's trouble.
		h.targets.Responded(target)
		if recent && !ownLimit && h.correlated(key, target, v, o.Status) {
			return
		}
	}
	fields := func() logrus.Fields {
		return logrus.Fields{"key": key.Preview(), "upstream": target.Host(), "status": o.Status, "reason": v.Reason}
	}
	if v.Fault == classify.KeyPermanent {
		if h.keys.FailedPermanent(key, v.Reason, o.Status) {
			f := fields()
			f["error"] = errorExcerpt(o.Body)
			h.log.WithFields(f).Warn("key blacklisted")
		}
		return
	}
	until, changed := h.keys.RateLimited(key, v.RetryAfter, v.Reason, o.Status)
	if changed && h.log.Logger.IsLevelEnabled(logrus.DebugLevel) {
		f := fields()
		f["until"] = until.Format(time.RFC3339)
		h.log.WithFields(f).Debug("key cooling")
	}
}

// quota records what an answer's rate-limit headers say about key, and
// rests the key when nothing is left.
func (h *health) quota(key *keymanager.Key, q classify.Quota) {
	if h.keys.ObserveQuota(key, keymanager.Quota{RequestsRemaining: q.RequestsRemaining,
		TokensRemaining: q.TokensRemaining, Reset: q.Reset}) && h.log.Logger.IsLevelEnabled(logrus.DebugLevel) {
		h.log.WithFields(logrus.Fields{"key": key.Preview(), "until": q.Reset.Format(time.RFC3339)}).
			Debug("key resting: its rate-limit headers say nothing is left")
	}
}

// correlated records a key-class failure and reports whether it is part of
// a pattern that blames the target; if so the target is benched and the
// keys of the pattern are restored. Only failures since the target's last
// success count: while other keys succeed on the target, each failing key
// carries its own fault (per-account rate limits). The attempts of one
// request count like those of many: one request walking three keys on a
// target that refuses them all is the pattern's most common form
// (docs/key-health.md, "Correlated failures: blaming the upstream, not the keys").
//
// Caller holds h.mu.
func (h *health) correlated(key *keymanager.Key, target *upstream.Target, v classify.Verdict, status int) bool {
	now := h.targets.Now()
	since := target.LastSuccess()
	w := h.windows[target.Index][:0]
	for _, f := range h.windows[target.Index] {
		if now.Sub(f.at) <= correlationWindow && f.at.After(since) {
			w = append(w, f)
		}
	}
	w = append(w, keyFault{key: key, fault: v.Fault, status: status, at: now})
	var same []*keymanager.Key
	for _, f := range w {
		if f.fault == v.Fault && f.status == status && !slices.Contains(same, f.key) {
			same = append(same, f.key)
		}
	}
	hit := len(same) >= correlatedKeys
	if hit {
		clear(w)
		w = w[:0]
	}
	h.windows[target.Index] = w
	if !hit {
		return false
	}
	reason := "correlated failures: " + strconv.Itoa(len(same)) + " keys got " + v.Reason
	if h.targets.Bench(target, reason) {
		h.causes[target.Index] = benchCause{at: target.BenchedAt().UnixNano(), fault: v.Fault, status: status}
	}
	for _, k := range same {
		if k != key {
			h.keys.Restore(k)
		}
	}
	h.log.WithFields(logrus.Fields{"upstream": target.Host(), "keys": len(same), "status": status,
		"reason": v.Reason}).Warn("upstream benched: several healthy keys failed the same way at once")
	return true
}

// benchedFor reports whether target's current bench came from keys
// failing with fault and status together. Caller holds h.mu.
func (h *health) benchedFor(target *upstream.Target, fault classify.Fault, status int) bool {
	c := h.causes[target.Index]
	return c.at != 0 && c.at == target.BenchedAt().UnixNano() && c.fault == fault && c.status == status
}

// suspected records that key's unproven answer to a request was followed
// by another key serving it; suspicions from two requests blacklist it.
func (h *health) suspected(key *keymanager.Key, target *upstream.Target, reason string) {
	if h.keys.Suspected(key, reason, http.StatusForbidden) {
		h.log.WithFields(logrus.Fields{"key": key.Preview(), "upstream": target.Host(), "status": http.StatusForbidden,
			"reason": reason}).Warn("key blacklisted: other keys served what it refused, in two requests")
	}
}

// errorExcerpt is an upstream error body fit for a log line: truncated,
// and with anything key-shaped masked.
func errorExcerpt(body []byte) string {
	if len(body) > logBodyLimit {
		body = body[:logBodyLimit]
	}
	return secret.Redact(string(body))
}
