package upstream

import "sync/atomic"

// Balancer hands out targets in round-robin order. Next is lock-free and
// does not allocate. A Balancer is safe for concurrent use.
type Balancer struct {
	targets []*Target
	cursor  atomic.Uint64
}

// NewBalancer returns a balancer over targets, which must not be empty.
func NewBalancer(targets []*Target) *Balancer {
	return &Balancer{targets: targets}
}

// Next returns the next usable target. When none is usable it still returns
// one, since trying a benched target beats failing outright.
func (b *Balancer) Next() *Target {
	n := uint64(len(b.targets))
	i := b.cursor.Add(1) - 1
	for j := range n {
		if t := b.targets[(i+j)%n]; t.Usable() {
			return t
		}
	}
	return b.targets[i%n]
}

// Targets returns the targets in configuration order. The slice must not be
// modified.
func (b *Balancer) Targets() []*Target { return b.targets }
