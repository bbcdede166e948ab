package notify

import "testing"

type listener interface{ Changed(int) }

type seen []int

func (s *seen) Changed(n int) { *s = append(*s, n) }

func TestSlot(t *testing.T) {
	var s Slot[listener]
	if _, ok := s.Get(); ok {
		t.Fatal("zero Slot: Get() ok = true; want false")
	}
	var a, b seen
	s.Set(&a)
	if l, ok := s.Get(); !ok || l != &a {
		t.Fatalf("after Set(&a): Get() = %v, %v; want &a, true", l, ok)
	}
	s.Set(&b)
	if l, _ := s.Get(); l != &b {
		t.Fatalf("after Set(&b): Get() = %v; want &b", l)
	}
	s.Set(nil)
	if l, ok := s.Get(); ok || l != nil {
		t.Fatalf("after Set(nil): Get() = %v, %v; want nil, false", l, ok)
	}
}
