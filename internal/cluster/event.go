package cluster

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gpt-load/gpt-load/internal/keymanager"
	"github.com/gpt-load/gpt-load/internal/upstream"
)

// Kinds of shared state and messages.
const (
	kindKey    = "key"
	kindTarget = "target"
	kindReset  = "reset"
)

// States as stored in Redis. A benched target is stored as cooling: both
// are rests that end by themselves.
const (
	stateActive      = "active"
	stateCooling     = "cooling"
	stateBlacklisted = "blacklisted"
)

// Operations a replica asks of Redis (docs/operations.md, "How replicas
// agree").
const (
	// opBlock blacklists a key.
	opBlock = "block"
	// opRest rests a key or benches a target for a duration.
	opRest = "rest"
	// opLift returns a key or target to rotation after a success or a
	// re-check: only over a state the deciding replica had seen.
	opLift = "lift"
	// opReadd returns a key to rotation because a reload re-added it:
	// over anything.
	opReadd = "readd"
)

// change is one decision of this replica, queued for Redis. It is taken
// when the decision is made (not read back from the key at flush time), so
// what the replica knew then travels with it.
type change struct {
	op     string
	epoch  int64 // the reset epoch the replica was in
	basis  int64 // the version of the shared state the replica had seen
	reason string
	status int
	fails  int
	until  time.Time // opRest: the deadline on this replica's clock
}

// verdict is a shared state as Redis holds it after a change: what a
// change script returns and publishes, and what a resync reads. It holds a
// fingerprint, never a key; Reason is the classifier's short label, never
// an upstream body. Times travel as durations measured by Redis's clock
// (Left, Age), and become deadlines where they are applied.
type verdict struct {
	Applied bool   `json:"applied,omitempty"` // replies only
	From    string `json:"from,omitempty"`
	Kind    string `json:"kind"`
	FP      string `json:"fp,omitempty"`
	State   string `json:"state,omitempty"`
	Ver     int64  `json:"ver,omitempty"`
	Epoch   int64  `json:"epoch"`
	Left    int64  `json:"left,omitempty"` // ms of rest left
	Age     int64  `json:"age,omitempty"`  // ms since the key left rotation
	Reason  string `json:"reason,omitempty"`
	Status  int    `json:"status,omitempty"`
	Fails   int    `json:"fails,omitempty"`
}

func decode(s string) (verdict, bool) {
	var v verdict
	return v, json.Unmarshal([]byte(s), &v) == nil
}

// changeScript applies one change to a key's or target's shared state, in
// Redis's order and by Redis's clock, and publishes the result when it
// changed anything. Every state carries the version (a counter in the
// deployment's meta hash, never reused) of the change that made it, the
// epoch of the reset it belongs to, the replica that wrote it, and for a
// lift its version (lift, liftby).
//
// The rules (SPEC §17):
//   - a change of an older epoch (decided before a reset the replica had
//     not heard of) is dropped; a state stored under an older epoch counts
//     as absent;
//   - a rest whose deadline passed is not a state: it lifts nothing;
//   - block and rest are dropped when a lift the deciding replica had not
//     seen came after what it knew (lift > basis, by another replica);
//   - a rest never lowers a blacklist, and of two rests the later deadline
//     wins;
//   - a lift applies only to a state the lifter had seen (ver <= basis) or
//     wrote itself, or where there is none; a re-add applies always.
//
// KEYS[1] the state's hash, KEYS[2] the meta hash. ARGV: op, epoch, basis,
// replica, reason, status, fails, rest in ms, channel, fingerprint, kind,
// how long a lift is remembered (ms). It returns the resulting verdict as
// JSON.
var changeScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local op, epoch, basis, by = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local cur = tonumber(redis.call('HGET', KEYS[2], 'epoch') or '0')
if epoch > cur then
  redis.call('HSET', KEYS[2], 'epoch', epoch)
  cur = epoch
end
local h = redis.call('HMGET', KEYS[1], 'state', 'ver', 'lift', 'liftby', 'by', 'until', 'epoch', 'reason', 'status', 'since', 'fails')
local state, ver, lift, liftby, last, untl = h[1], tonumber(h[2] or '0'), tonumber(h[3] or '0'), h[4] or '', h[5] or '', tonumber(h[6] or '0')
local reason, status, since, fails = h[8] or '', tonumber(h[9] or '0'), tonumber(h[10] or '0'), tonumber(h[11] or '0')
if tonumber(h[7] or '-1') ~= cur then
  state, lift = false, 0
end
if state == 'cooling' and untl <= now then
  state = 'active'
end
local apply = false
if epoch == cur then
  local stale = lift > basis and liftby ~= by
  if op == 'readd' then
    apply = true
  elseif op == 'lift' then
    -- Over no state at all (a Redis that lost its data) the lift is
    -- recorded, so that a blacklist written back later does not undo it.
    apply = not state or (state == 'blacklisted' or state == 'cooling') and (ver <= basis or last == by)
  elseif op == 'block' then
    apply = not stale
  elseif op == 'rest' then
    local d = tonumber(ARGV[8])
    apply = d > 0 and not stale and state ~= 'blacklisted' and not (state == 'cooling' and untl >= now + d)
  end
end
if apply then
  ver = redis.call('HINCRBY', KEYS[2], 'seq', 1)
  if op == 'block' then
    if state ~= 'blacklisted' then since = now end
    state, reason, status, fails, untl = 'blacklisted', ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7]), 0
    redis.call('HSET', KEYS[1], 'state', state, 'ver', ver, 'by', by, 'epoch', cur, 'reason', reason,
      'status', status, 'fails', fails, 'since', since, 'until', 0, 'lift', lift, 'liftby', liftby)
    redis.call('PERSIST', KEYS[1])
  elseif op == 'rest' then
    local d = tonumber(ARGV[8])
    since, untl = now, now + d
    state, reason, status, fails = 'cooling', ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7])
    redis.call('HSET', KEYS[1], 'state', state, 'ver', ver, 'by', by, 'epoch', cur, 'reason', reason,
      'status', status, 'fails', fails, 'since', since, 'until', untl, 'lift', lift, 'liftby', liftby)
    -- A rest expires with its deadline, unless the hash also remembers a
    -- lift for longer.
    local ttl = redis.call('PTTL', KEYS[1])
    if lift == 0 or ttl < d then ttl = d end
    redis.call('PEXPIRE', KEYS[1], ttl)
  else
    state, reason, status, fails, since, untl, lift, liftby = 'active', '', 0, 0, 0, 0, ver, by
    redis.call('HSET', KEYS[1], 'state', state, 'ver', ver, 'by', by, 'epoch', cur, 'reason', '',
      'status', 0, 'fails', 0, 'since', 0, 'until', 0, 'lift', lift, 'liftby', liftby)
    redis.call('PEXPIRE', KEYS[1], ARGV[12])
  end
end
local v = {kind = ARGV[11], fp = ARGV[10], from = by, state = state or 'active', ver = ver, epoch = cur}
if state == 'blacklisted' or state == 'cooling' then
  v.reason, v.status, v.fails, v.age = reason, status, fails, now - since
end
if state == 'cooling' then v.left = untl - now end
if apply then
  redis.call('PUBLISH', ARGV[9], cjson.encode(v))
end
v.applied = apply
return cjson.encode(v)
`)

// resetScript starts a new epoch, after the stored one and the
// replica's (a Redis that lost its data lost its epoch too), and tells
// every replica. KEYS[1] is the meta hash; ARGV: channel, replica, the
// replica's epoch. It returns the new epoch.
var resetScript = redis.NewScript(`
local e = math.max(tonumber(redis.call('HGET', KEYS[1], 'epoch') or '0'), tonumber(ARGV[3])) + 1
redis.call('HSET', KEYS[1], 'epoch', e)
redis.call('PUBLISH', ARGV[1], cjson.encode({kind = 'reset', epoch = e, from = ARGV[2]}))
return e
`)

// helloScript is the first thing a replica asks on (re)connecting: the
// deployment's generation (a random id set when the meta hash is made, so
// a Redis that lost its data shows as a new generation) and its epoch,
// raised to the replica's own when Redis lost it. KEYS[1] is the meta
// hash; ARGV: a new generation id, the replica's epoch, the channel, the
// replica (raising the epoch publishes it as a reset). It returns
// generation, epoch, whether the hash was made now, and Redis's time in ms.
var helloScript = redis.NewScript(`
local gen = redis.call('HGET', KEYS[1], 'gen')
local made = 0
if not gen then
  gen = ARGV[1]
  redis.call('HSET', KEYS[1], 'gen', gen)
  made = 1
end
local e = tonumber(redis.call('HGET', KEYS[1], 'epoch') or '0')
if tonumber(ARGV[2]) > e then
  e = tonumber(ARGV[2])
  redis.call('HSET', KEYS[1], 'epoch', e)
  -- A replica behind it (back first, with older states) resets now.
  redis.call('PUBLISH', ARGV[3], cjson.encode({kind = 'reset', epoch = e, from = ARGV[4]}))
end
local t = redis.call('TIME')
return {gen, e, made, tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)}
`)

// fromHash reads a stored state as the change script would report it at
// Redis time now (ms) in epoch.
func fromHash(kind, fp string, h map[string]string, epoch, now int64) verdict {
	v := verdict{Kind: kind, FP: fp, State: stateActive, Ver: atoi(h["ver"]), Epoch: epoch, From: h["by"]}
	if atoi(h["epoch"]) != epoch || h["epoch"] == "" {
		return v
	}
	switch st, until := h["state"], atoi(h["until"]); {
	case st == stateBlacklisted, st == stateCooling && until > now:
		v.State, v.Reason, v.Status, v.Fails = st, h["reason"], int(atoi(h["status"])), int(atoi(h["fails"]))
		v.Age = now - atoi(h["since"])
		if st == stateCooling {
			v.Left = until - now
		}
	}
	return v
}

func atoi(s string) int64 {
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
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

// keyChange is the change a key's new state asks for.
func keyChange(k *keymanager.Key, s keymanager.Snapshot) change {
	ch := change{op: opLift}
	switch s.State {
	case keymanager.Blacklisted:
		ch.op = opBlock
	case keymanager.Cooling:
		ch.op, ch.until = opRest, s.Until
	default:
		return ch
	}
	ch.reason, ch.status, ch.fails = s.Reason, s.LastStatus, s.FailCount
	if quotesKey(ch.reason, k.Secret().Reveal()) {
		ch.reason = "status " + strconv.Itoa(s.LastStatus)
	}
	return ch
}

// targetChange is the change a target's new state asks for.
func targetChange(t *upstream.Target) change {
	if until := t.BenchedUntil(); !until.IsZero() && !t.Active() {
		return change{op: opRest, until: until, reason: t.Reason()}
	}
	return change{op: opLift}
}

// applyKey sets a local key to the state Redis decided. Redis orders the
// changes; this replica applies what it is told, turning durations into
// deadlines on its own clock.
func (c *Cluster) applyKey(k *keymanager.Key, v verdict) {
	now := c.now()
	ch := keymanager.Change{State: keymanager.Active}
	switch v.State {
	case stateBlacklisted:
		ch = keymanager.Change{State: keymanager.Blacklisted, Since: now.Add(-ms(v.Age)), Reason: v.Reason, Status: v.Status, FailCount: v.Fails}
	case stateCooling:
		if v.Left > 0 {
			ch = keymanager.Change{State: keymanager.Cooling, Since: now.Add(-ms(v.Age)), Until: now.Add(ms(v.Left)),
				Reason: v.Reason, Status: v.Status, FailCount: v.Fails}
		}
	}
	if same(k.Snapshot(), ch) {
		return
	}
	c.keys.Apply(k, ch)
}

// same reports whether s already is the state ch asks for, give or take
// the travel time of a deadline: applying it again would only disturb the
// rotation.
func same(s keymanager.Snapshot, ch keymanager.Change) bool {
	if s.State != ch.State {
		return false
	}
	switch ch.State {
	case keymanager.Active:
		return true
	case keymanager.Cooling:
		d := s.Until.Sub(ch.Until)
		return s.Reason == ch.Reason && d < time.Second && d > -time.Second
	default:
		return s.Reason == ch.Reason && s.LastStatus == ch.Status
	}
}

// applyTarget sets a local target to the state Redis decided.
func (c *Cluster) applyTarget(t *upstream.Target, v verdict) {
	if v.State == stateCooling && v.Left > 0 {
		now := c.now()
		c.targets.ApplyBench(t, now.Add(-ms(v.Age)), now.Add(ms(v.Left)), v.Reason)
		return
	}
	if !t.Active() {
		c.targets.ApplyActive(t)
	}
}

func ms(n int64) time.Duration { return time.Duration(n) * time.Millisecond }
