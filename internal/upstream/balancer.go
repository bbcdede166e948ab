package upstream

import (
	"sync/atomic"
	"time"

	"github.com/gpt-load/gpt-load/internal/backoff"
	"github.com/gpt-load/gpt-load/internal/notify"
)

// Options tunes target health.
type Options struct {
	// FailThreshold is how many target faults in a row bench a target;
	// 0 means 3.
	FailThreshold int
	// Cooldown is the first bench's length; each bench in a row without a
	// success doubles it, up to MaxCooldown. 0 means 10 s.
	Cooldown time.Duration
	// MaxCooldown caps the bench; 0 means 5 min.
	MaxCooldown time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Balancer hands out targets in round-robin order over the ones not
// benched, and benches targets that keep failing (passive health:
// docs/key-health.md, "Target benching"). Next is lock-free. A Balancer is
// safe for concurrent use.
type Balancer struct {
	targets  []*Target
	cursor   atomic.Uint64
	opts     Options
	listener notify.Slot[Listener]
}

// NewBalancer returns a balancer over targets, which must not be empty.
func NewBalancer(targets []*Target, opts Options) *Balancer {
	if opts.FailThreshold <= 0 {
		opts.FailThreshold = 3
	}
	if opts.Cooldown <= 0 {
		opts.Cooldown = 10 * time.Second
	}
	if opts.MaxCooldown <= 0 {
		opts.MaxCooldown = 5 * time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	for i, t := range targets {
		t.Index = i
	}
	return &Balancer{targets: targets, opts: opts}
}

// Next returns the next target in rotation. A target whose bench ended is
// handed to exactly one caller as a probe; until that probe reports back,
// others skip it. When every target is benched, the one benched longest is
// used rather than failing outright.
func (b *Balancer) Next() *Target {
	n := uint64(len(b.targets))
	if n == 1 && b.targets[0].state.Load() == stateActive {
		return b.targets[0]
	}
	now := b.opts.Now().UnixNano()
	i := b.cursor.Add(1) - 1
	for j := range n {
		t := b.targets[(i+j)%n]
		switch t.state.Load() {
		case stateActive:
			return t
		case stateBenched:
			if now >= t.benchedUntil.Load() && t.state.CompareAndSwap(stateBenched, stateProbing) {
				return t
			}
		}
	}
	var oldest *Target
	for _, t := range b.targets {
		if oldest == nil || t.benchedAt.Load() < oldest.benchedAt.Load() {
			oldest = t
		}
	}
	return oldest
}

// NextActive returns the next target in rotation that is neither benched
// nor being probed, or nil when there is none. Retries use it: a retry
// never goes to a benched target, whatever the first attempt may do.
func (b *Balancer) NextActive() *Target {
	n := uint64(len(b.targets))
	i := b.cursor.Add(1) - 1
	for j := range n {
		if t := b.targets[(i+j)%n]; t.state.Load() == stateActive {
			return t
		}
	}
	return nil
}

// Succeeded records a successful answer (1xx–3xx) from t.
func (b *Balancer) Succeeded(t *Target) {
	// Exact, not throttled: on loopback or a fast upstream answers come
	// within the same millisecond, and the correlated-failure rule must
	// see a success that came between two failures.
	if now := b.opts.Now().UnixNano(); now > t.lastSuccess.Load() {
		t.lastSuccess.Store(now)
	}
	b.Answered(t)
}

// Answered records an answer from t that was not a target fault, such as
// a key's rate limit or a client error: the target is up.
func (b *Balancer) Answered(t *Target) {
	if t.consecutive.Load() != 0 {
		t.consecutive.Store(0)
	}
	if t.state.Load() != stateActive {
		t.benches.Store(0)
		t.state.Store(stateActive)
		b.notify(t)
	}
}

// Responded records an answer from t that blamed the key, not t: its
// fault count starts again, but its state stays (a key's 429 from a target
// benched a moment ago for failing every key must not un-bench it).
func (b *Balancer) Responded(t *Target) {
	if t.consecutive.Load() != 0 {
		t.consecutive.Store(0)
	}
}

// Listener hears of the target state changes this process decides (not
// the ones applied with ApplyBench or ApplyActive). TargetChanged is called
// on the request path and must not block.
type Listener interface {
	TargetChanged(t *Target)
}

// SetListener sets the listener; nil removes it.
func (b *Balancer) SetListener(l Listener) { b.listener.Set(l) }

func (b *Balancer) notify(t *Target) {
	if l, ok := b.listener.Get(); ok {
		l.TargetChanged(t)
	}
}

// ApplyBench benches t as another replica decided, from at until until.
func (b *Balancer) ApplyBench(t *Target, at, until time.Time, reason string) {
	t.benchedAt.Store(at.UnixNano())
	t.benchedUntil.Store(until.UnixNano())
	t.reason.Store(&reason)
	t.state.Store(stateBenched)
}

// ApplyActive returns t to rotation as another replica decided.
func (b *Balancer) ApplyActive(t *Target) {
	t.consecutive.Store(0)
	t.benches.Store(0)
	t.state.Store(stateActive)
}

// Failed records a target fault. It benches t after FailThreshold in a
// row, or at once when t was being probed; it reports whether t was
// benched now.
func (b *Balancer) Failed(t *Target, reason string) bool {
	n := int(t.consecutive.Add(1))
	switch t.state.Load() {
	case stateProbing:
		return b.bench(t, reason)
	case stateActive:
		if n >= b.opts.FailThreshold {
			return b.bench(t, reason)
		}
	}
	return false
}

// Bench takes t out of rotation at once, e.g. because many keys failed on it
// together.
func (b *Balancer) Bench(t *Target, reason string) bool { return b.bench(t, reason) }

func (b *Balancer) bench(t *Target, reason string) bool {
	prev := t.state.Load()
	if prev == stateBenched {
		return false
	}
	d := backoff.Doubled(b.opts.Cooldown, b.opts.MaxCooldown, int(t.benches.Load())+1)
	// The deadline is stored before the state turns benched: Next reads it
	// once it sees stateBenched, and the previous (past) deadline would hand
	// the target out as a probe at once. Active and probing targets'
	// deadlines are not read by Next.
	now := b.opts.Now()
	t.benchedAt.Store(now.UnixNano())
	t.benchedUntil.Store(now.Add(d).UnixNano())
	if !t.state.CompareAndSwap(prev, stateBenched) {
		return false
	}
	t.benches.Add(1)
	t.reason.Store(&reason)
	t.consecutive.Store(0)
	b.notify(t)
	return true
}

// Released returns a probing target to the benched-and-expired state when
// its probe ended without telling anything (client error, cancellation), so
// the next request probes again.
func (b *Balancer) Released(t *Target) {
	t.state.CompareAndSwap(stateProbing, stateBenched)
}

// Usable reports whether some target is in rotation or may be probed.
func (b *Balancer) Usable() (usable, benched int) {
	now := b.opts.Now()
	for _, t := range b.targets {
		if t.Benched(now) {
			benched++
		} else {
			usable++
		}
	}
	return usable, benched
}

// Targets returns the targets in configuration order. The slice must not be
// modified.
func (b *Balancer) Targets() []*Target { return b.targets }

// Now is the balancer's clock.
func (b *Balancer) Now() time.Time { return b.opts.Now() }
