// Package chaos is issue 18's invariant harness: for one seed it draws a
// provider (healthy keys, a few revoked or out-of-quota ones, accounts
// with limits, keys denied some models), a fault schedule for its targets
// (resets before and after the body, stalls, 5xx, a gateway answering 401
// to every key, targets down and back, IP-wide 429 storms) and a mix of
// clients (healthy chats and streams, multipart transcriptions, flagged
// content, other projects' files, unknown models, malformed JSON, wrong
// paths, oversized and stalled bodies, streams the client cancels); it
// runs gpt-load in front of internal/providersim through
// internal/testserver with the http.Server cmd/gpt-load serves with, and
// afterwards lists every invariant that did not hold (see Invariant).
//
// Everything is drawn from math/rand/v2 seeded with rand.NewPCG(seed, …):
// the same seed gives the same provider, schedule and requests, at the
// same offsets. What the concurrency makes of them may vary a little from
// run to run; a violation found with a seed shows up again with it.
// Everything listens on 127.0.0.1; every wait has a deadline.
package chaos

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gpt-load/gpt-load/internal/providersim"
)

// Kind is what a client request does.
type Kind string

// The client kinds. The first four are healthy traffic; the rest are the
// trouble a client can cause.
const (
	Chat          Kind = "chat"          // a chat completion
	Stream        Kind = "stream"        // a streamed chat completion, read to the end
	LargeChat     Kind = "large_chat"    // a chat completion with a body of 0.5 to 7.5 MiB (1.5 under -race)
	Transcription Kind = "transcription" // multipart /v1/audio/transcriptions
	CancelStream  Kind = "cancel_stream" // a stream the client leaves after its first bytes
	Flagged       Kind = "flagged"       // content the provider's moderation refuses, whatever the key
	ForeignFile   Kind = "foreign_file"  // a file of another project
	UnknownModel  Kind = "unknown_model" // a model no key has
	BadJSON       Kind = "bad_json"      // a body that is not JSON
	WrongPath     Kind = "wrong_path"    // a path the provider does not serve
	Oversized     Kind = "oversized"     // a declared body over MAX_REQUEST_BODY_SIZE
	OversizedCh   Kind = "oversized_chunked"
	StalledBody   Kind = "stalled_body" // a body that stops mid-way
)

// Mistake reports whether k is the client's mistake, answered by the
// provider's own 4xx (or by gpt-load's own 408/413 for a body it must not
// send upstream).
func (k Kind) Mistake() bool {
	switch k {
	case Chat, Stream, LargeChat, Transcription, CancelStream:
		return false
	}
	return true
}

// kindWeights is the request mix: about 60 % healthy traffic.
var kindWeights = []struct {
	kind   Kind
	weight int
}{
	{Chat, 30}, {Stream, 15}, {LargeChat, 4}, {Transcription, 8}, {CancelStream, 5},
	{Flagged, 6}, {ForeignFile, 6}, {UnknownModel, 5}, {BadJSON, 5}, {WrongPath, 4},
	{Oversized, 2}, {OversizedCh, 2}, {StalledBody, 3},
}

// Request is one planned client request.
type Request struct {
	N     int           // its index in the plan
	At    time.Duration // from the start of traffic
	Kind  Kind
	Model string
	Size  int // of a large chat's body, in bytes
}

// maxLarge is the largest large chat body, just under the limit.
const maxLarge = maxBodyMiB<<20 - 512<<10

// stream reports whether r asks for a stream (some of the mistakes do,
// see httpRequest).
func (r Request) stream() bool {
	switch r.Kind {
	case Stream, CancelStream:
		return true
	case ForeignFile, UnknownModel:
		return r.N%2 == 0
	}
	return false
}

// FaultStep puts Target in Fault from At on (FaultNone ends a fault).
type FaultStep struct {
	At     time.Duration
	Target int
	Fault  providersim.Fault
}

// Storm is an IP-wide 429 storm on every target.
type Storm struct {
	At, For    time.Duration
	RetryAfter int
}

// Plan is everything one seed draws.
type Plan struct {
	Seed     uint64
	Duration time.Duration // of the traffic
	Sim      providersim.Config
	Env      map[string]string // gpt-load's environment over the defaults
	Faults   []FaultStep       // in time order
	Storms   []Storm
	Requests []Request // in time order
}

// The models every plan's provider has.
var models = []string{"gpt-4o-mini", "gpt-4o", "whisper-1"}

// warmUp is the start of the traffic kept free of faults and storms, so
// that every key and target has served before trouble comes: SPEC §7
// tells a target's fault from the keys' by keys that succeeded recently,
// and before any success a gateway's 401 to every key looks like a pool
// of revoked keys. quietEnd is the end kept free of them, so the last
// requests meet the pool as it was left.
const (
	warmUp   = time.Second
	quietEnd = time.Second
)

// NewPlan draws the plan of seed for traffic lasting d.
func NewPlan(seed uint64, d time.Duration) Plan {
	rng := rand.New(rand.NewPCG(seed, 0x6770742d6c6f6164)) // "gpt-load"
	p := Plan{Seed: seed, Duration: d}
	p.Env = map[string]string{
		// Short timeouts, so a stall ends within seconds, and a client
		// bound (see Bound) that a hang cannot hide under.
		"REQUEST_TIMEOUT": "1", "RESPONSE_TIMEOUT": "2", "STREAM_IDLE_TIMEOUT": "2",
		// SERVER_READ_TIMEOUT leaves room to read an 8 MiB body.
		"SERVER_READ_TIMEOUT": "4", "QUEUE_TIMEOUT": "1",
		"MAX_REQUEST_BODY_SIZE": strconv.Itoa(maxBodyMiB), "MAX_RETRIES": "3", "BLACKLIST_THRESHOLD": "1",
		// Blacklists stay put for the final reading: no re-check.
		"KEY_RECHECK_INTERVAL": "0", "KEY_COOLDOWN": "1", "MODEL_COOLDOWN": "60",
		"LOG_LEVEL": "warn", "LOG_ENABLE_REQUEST": "false",
	}

	c := providersim.Config{
		Models: models, Targets: 1 + rng.IntN(3),
		Latency: providersim.Duration(10 * time.Millisecond), StreamChunks: 5,
		StreamGap: providersim.Duration(10 * time.Millisecond),
		// Longer than any client bound: gpt-load's timeouts, not the
		// simulator, must end a stall.
		StallMax: providersim.Duration(30 * time.Second),
	}
	if rng.IntN(2) == 0 {
		c.ForeignFileAs = providersim.ForeignFileOpenAI
	}
	healthy, bad := 6+rng.IntN(5), 1+rng.IntN(3)
	var keys []providersim.Key
	for i := range healthy {
		k := providersim.Key{}
		if rng.IntN(10) < 3 { // an account of its own, with a limit
			a := providersim.Account{Name: "acct" + strconv.Itoa(i), Requests: 2 + rng.IntN(6),
				Window: providersim.Duration(time.Second), Headers: rng.IntN(2) == 0, RetryAfter: rng.IntN(2) == 0}
			c.Accounts = append(c.Accounts, a)
			k.Account = a.Name
		}
		if i >= 2 { // the first two may use every model
			if rng.IntN(4) == 0 {
				k.DeniedModels = append(k.DeniedModels, "whisper-1")
			}
			if rng.IntN(7) == 0 {
				k.DeniedModels = append(k.DeniedModels, "gpt-4o")
			}
			if len(k.DeniedModels) > 0 && rng.IntN(2) == 0 {
				k.DeniedAs = providersim.DeniedAsProject
			}
		}
		keys = append(keys, k)
	}
	for range bad {
		k := providersim.Key{State: providersim.KeyRevoked}
		if rng.IntN(2) == 0 {
			k.State = providersim.KeyNoQuota
		}
		keys = append(keys, k)
	}
	rng.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
	for i := range keys {
		keys[i].Key = fmt.Sprintf("sk-chaos-%016x-%04d", seed, i) // previews end in the index: unique
	}
	c.Keys = keys
	p.Sim = c

	// Faults: each target walks through slots of 250–750 ms, in a fault
	// about a third of them.
	faulty := d - quietEnd
	for tg := range c.Targets {
		cur := providersim.FaultNone
		for at := warmUp; at < faulty; at += time.Duration(250+rng.IntN(500)) * time.Millisecond {
			next := providersim.FaultNone
			if rng.IntN(3) == 0 {
				next = drawFault(rng)
			}
			if next != cur {
				p.Faults = append(p.Faults, FaultStep{At: at, Target: tg, Fault: next})
				cur = next
			}
		}
		if cur != providersim.FaultNone {
			p.Faults = append(p.Faults, FaultStep{At: max(faulty, 0), Target: tg, Fault: providersim.FaultNone})
		}
	}
	slices.SortStableFunc(p.Faults, func(a, b FaultStep) int { return int(a.At - b.At) })
	if rng.IntN(2) == 0 {
		s := Storm{For: time.Duration(300+rng.IntN(700)) * time.Millisecond, RetryAfter: rng.IntN(2)}
		if room := faulty - warmUp - s.For; room > 0 {
			s.At = warmUp + time.Duration(rng.Int64N(int64(room)))
			p.Storms = append(p.Storms, s)
		}
	}

	// Clients: open loop, 30 to 80 arrivals a second (some faults of
	// gpt-load show only when requests overlap).
	rate := 30 + rng.IntN(51)
	total := 0
	for _, w := range kindWeights {
		total += w.weight
	}
	for i := range int(d.Seconds() * float64(rate)) {
		r := Request{N: i, At: time.Duration(float64(i)/float64(rate)*float64(time.Second)) + time.Duration(rng.IntN(20))*time.Millisecond}
		x := rng.IntN(total)
		for _, w := range kindWeights {
			if x < w.weight {
				r.Kind = w.kind
				break
			}
			x -= w.weight
		}
		switch r.Kind {
		case Transcription:
			r.Model = "whisper-1"
		case UnknownModel:
			r.Model = []string{"gpt-4o-minii", "gpt-5o", "gtp-4o"}[rng.IntN(3)]
		case LargeChat:
			r.Model = models[rng.IntN(2)]
			if rng.IntN(3) == 0 { // held in memory
				r.Size = 512<<10 + rng.IntN(448<<10)
			} else { // spooled, and (without -race) more than socket buffers hold
				r.Size = maxLarge/2 + rng.IntN(maxLarge/2)
			}
		default:
			r.Model = models[rng.IntN(2)]
		}
		p.Requests = append(p.Requests, r)
	}
	return p
}

// drawFault picks a fault mode; 5xx, the commonest upstream fault, twice
// as often as the others.
func drawFault(rng *rand.Rand) providersim.Fault {
	fs := append(slices.Clone(providersim.Faults), providersim.Fault5xx)
	return fs[rng.IntN(len(fs))]
}

// faultOrStormDuring reports whether any target was in a fault, or a storm
// was on, at some time in [from, to].
func (p Plan) faultOrStormDuring(from, to time.Duration) bool {
	return p.faultDuring(from, to) || p.stormDuring(from, to)
}

func (p Plan) faultDuring(from, to time.Duration) bool {
	state := map[int]providersim.Fault{} // at from
	for _, f := range p.Faults {
		switch {
		case f.At > to:
		case f.At < from:
			state[f.Target] = f.Fault
		case f.Fault != providersim.FaultNone:
			return true
		}
	}
	for _, f := range state {
		if f != providersim.FaultNone {
			return true
		}
	}
	return false
}

// faultsIn describes the faults on, and the storm, at some time in
// [from, to]: "target 1 stall_body, storm".
func (p Plan) faultsIn(from, to time.Duration) string {
	on := map[int][]providersim.Fault{}
	state := map[int]providersim.Fault{}
	for _, f := range p.Faults {
		switch {
		case f.At > to:
		case f.At <= from:
			state[f.Target] = f.Fault
		case f.Fault != providersim.FaultNone && !slices.Contains(on[f.Target], f.Fault):
			on[f.Target] = append(on[f.Target], f.Fault)
		}
	}
	var parts []string
	for tg := range p.Sim.Targets {
		fs := on[tg]
		if f := state[tg]; f != providersim.FaultNone && !slices.Contains(fs, f) {
			fs = append([]providersim.Fault{f}, fs...)
		}
		for _, f := range fs {
			parts = append(parts, fmt.Sprintf("target %d %s", tg, f))
		}
	}
	if p.stormDuring(from, to) {
		parts = append(parts, "storm")
	}
	if len(parts) == 0 {
		return "no fault"
	}
	return strings.Join(parts, ", ")
}

func (p Plan) stormDuring(from, to time.Duration) bool {
	for _, s := range p.Storms {
		if s.At <= to && s.At+s.For >= from {
			return true
		}
	}
	return false
}

// Summary describes the plan in a line, for the log.
func (p Plan) Summary() string {
	bad, limited, denied := 0, 0, 0
	for _, k := range p.Sim.Keys {
		switch {
		case k.State != providersim.KeyOK:
			bad++
		case k.Account != "":
			limited++
		}
		if len(k.DeniedModels) > 0 {
			denied++
		}
	}
	kinds := map[Kind]int{}
	for _, r := range p.Requests {
		kinds[r.Kind]++
	}
	faults := 0
	for _, f := range p.Faults {
		if f.Fault != providersim.FaultNone {
			faults++
		}
	}
	return fmt.Sprintf("%d keys (%d bad, %d with a limited account, %d denied a model), %d targets, %d fault episodes, %d storms, %d requests %v",
		len(p.Sim.Keys), bad, limited, denied, p.Sim.Targets, faults, len(p.Storms), len(p.Requests), kinds)
}

// Without returns p with the named request kinds turned into plain chats
// and the named fault modes (or "storm") left out, the rest unchanged: to
// see one fault of gpt-load alone when another one hides it.
func (p Plan) Without(names []string) Plan {
	if len(names) == 0 {
		return p
	}
	skip := map[string]bool{}
	for _, n := range names {
		skip[strings.TrimSpace(n)] = true
	}
	reqs := slices.Clone(p.Requests)
	for i, r := range reqs {
		if skip[string(r.Kind)] {
			reqs[i].Kind, reqs[i].Model = Chat, models[r.N%2]
		}
	}
	p.Requests = reqs
	// A skipped fault becomes no fault; steps that change nothing go.
	var faults []FaultStep
	cur := map[int]providersim.Fault{}
	for _, f := range p.Faults {
		if skip[string(f.Fault)] {
			f.Fault = providersim.FaultNone
		}
		if f.Fault != cur[f.Target] {
			faults = append(faults, f)
			cur[f.Target] = f.Fault
		}
	}
	p.Faults = faults
	if skip["storm"] {
		p.Storms = nil
	}
	return p
}
