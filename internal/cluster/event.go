package cluster

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/gpt-load/gpt-load/internal/keymanager"
	"github.com/gpt-load/gpt-load/internal/upstream"
)

// Event kinds and states as written to Redis.
const (
	kindKey    = "key"
	kindTarget = "target"
	kindReset  = "reset"

	stateActive      = "active"
	stateCooling     = "cooling"
	stateBlacklisted = "blacklisted"
	stateBenched     = "benched"
)

// event is a state change as stored (a Redis hash) and published (JSON).
// It holds a fingerprint, never a key; Reason is the classifier's short
// label, never an upstream body.
type event struct {
	From   string `json:"from"`
	Kind   string `json:"kind"`
	FP     string `json:"fp,omitempty"`
	State  string `json:"state,omitempty"`
	Reason string `json:"reason,omitempty"`
	Status int    `json:"status,omitempty"`
	Since  int64  `json:"since,omitempty"` // unix milliseconds
	Until  int64  `json:"until,omitempty"` // unix milliseconds
	Fails  int    `json:"fails,omitempty"`
	// At is when the change was decided, in unix microseconds (exact in
	// Lua's doubles): changes are applied only over older ones.
	At int64 `json:"at,omitempty"`
}

func (e event) encode() string {
	b, _ := json.Marshal(e)
	return string(b)
}

func decode(s string) (event, bool) {
	var e event
	return e, json.Unmarshal([]byte(s), &e) == nil
}

// fields is the hash stored for a benched key or target.
func (e event) fields() map[string]any {
	return map[string]any{
		"state": e.State, "reason": e.Reason, "status": e.Status,
		"since": e.Since, "until": e.Until, "fails": e.Fails, "at": e.At,
	}
}

// fromHash reads a stored hash back.
func fromHash(kind, fp string, h map[string]string) event {
	return event{Kind: kind, FP: fp, State: h["state"], Reason: h["reason"], Status: int(atoi(h["status"])),
		Since: atoi(h["since"]), Until: atoi(h["until"]), Fails: int(atoi(h["fails"])), At: atoi(h["at"])}
}

func atoi(s string) int64 {
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

func millis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMillis(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

// keyQuoteLen is the shortest piece of a key a shared reason may not
// hold. Reasons are the classifier's labels, taken from upstream error
// bodies, and a body may quote the key sent where the label is read from
// (the code field), in a case the classifier may have folded.
const keyQuoteLen = 20

// quotesKey reports whether reason holds a keyQuoteLen-long piece of raw,
// in any case.
func quotesKey(reason, raw string) bool {
	n := min(keyQuoteLen, len(raw))
	if n == 0 || len(reason) < n {
		return false
	}
	r, k := strings.ToLower(reason), strings.ToLower(raw)
	for i := 0; i+n <= len(k); i++ {
		if strings.Contains(r, k[i:i+n]) {
			return true
		}
	}
	return false
}

// reasonWithheld replaces a target's reason that quoted a key.
const reasonWithheld = "reason withheld: it quoted a key"

// scanKeysMax bounds the key sets withoutKeys scans: the scan is linear in
// the keys, and with more of them the classifier's own rule (no long label
// without an underscore) is what keeps keys out of reasons.
const scanKeysMax = 10_000

// withoutKeys is reason, or reasonWithheld if it quotes any key.
func (c *Cluster) withoutKeys(reason string) string {
	if len(reason) < keyQuoteLen || len(*c.byFP.Load()) > scanKeysMax {
		return reason
	}
	for _, k := range *c.byFP.Load() {
		if quotesKey(reason, k.Secret().Reveal()) {
			return reasonWithheld
		}
	}
	return reason
}

func keyEvent(replica string, k *keymanager.Key) event {
	s := k.Snapshot()
	raw := k.Secret().Reveal()
	if quotesKey(s.Reason, raw) {
		s.Reason = "status " + strconv.Itoa(s.LastStatus)
	}
	e := event{From: replica, Kind: kindKey, FP: Fingerprint(raw), Status: s.LastStatus, At: micros(s.ChangedAt)}
	switch s.State {
	case keymanager.Cooling:
		e.State = stateCooling
	case keymanager.Blacklisted:
		e.State = stateBlacklisted
	default:
		e.State = stateActive
		return e
	}
	e.Reason, e.Since, e.Until, e.Fails = s.Reason, millis(s.Since), millis(s.Until), s.FailCount
	return e
}

func targetEvent(replica string, t *upstream.Target) event {
	e := event{From: replica, Kind: kindTarget, FP: Fingerprint(t.String()), State: stateActive}
	if until := t.BenchedUntil(); !until.IsZero() && !t.Active() {
		e.State, e.Reason, e.Since, e.Until = stateBenched, t.Reason(), millis(t.BenchedAt()), millis(until)
	}
	return e
}

// applyKey sets a local key to the state another replica decided. The key
// manager orders changes: an older one, or a cooling one over a
// blacklist, is dropped. An expired rest changes nothing.
func (c *Cluster) applyKey(e event) {
	k := (*c.byFP.Load())[e.FP]
	if k == nil {
		return // not in this replica's keys file
	}
	ch := keymanager.Change{At: fromMicros(e.At), Since: fromMillis(e.Since), Reason: e.Reason, Status: e.Status, FailCount: e.Fails}
	switch e.State {
	case stateBlacklisted:
		ch.State = keymanager.Blacklisted
	case stateCooling:
		if time.Now().UnixMilli() >= e.Until {
			return
		}
		ch.State, ch.Until = keymanager.Cooling, fromMillis(e.Until)
	default:
		ch = keymanager.Change{State: keymanager.Active, At: fromMicros(e.At)}
	}
	c.keys.Apply(k, ch)
}

func micros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

func fromMicros(us int64) time.Time {
	if us == 0 {
		return time.Time{}
	}
	return time.UnixMicro(us)
}

// applyTarget sets a local target to the state another replica decided.
func (c *Cluster) applyTarget(e event) {
	t := c.targetFP[e.FP]
	if t == nil {
		return
	}
	if e.State == stateBenched && time.Now().UnixMilli() < e.Until {
		c.targets.ApplyBench(t, fromMillis(e.Since), fromMillis(e.Until), e.Reason)
		return
	}
	if !t.Active() {
		c.targets.ApplyActive(t)
	}
}
