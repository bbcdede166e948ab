// Package notify holds the one listener a component tells of its changes,
// which may be set, replaced or removed while the component runs.
package notify

import "sync/atomic"

// Slot holds an optional listener of type L, an interface. The zero Slot
// holds none. Reading it is one atomic load, cheap enough for the request
// path. A Slot is safe for concurrent use.
type Slot[L any] struct{ p atomic.Pointer[L] }

// Set makes l the listener; a nil l removes it.
func (s *Slot[L]) Set(l L) {
	if any(l) == nil {
		s.p.Store(nil)
		return
	}
	s.p.Store(&l)
}

// Get returns the listener and whether there is one.
func (s *Slot[L]) Get() (L, bool) {
	if p := s.p.Load(); p != nil {
		return *p, true
	}
	var none L
	return none, false
}
