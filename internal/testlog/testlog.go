// Package testlog is a log sink for tests: a buffer that a server writes to
// while the test reads it, and waits on it with a deadline.
package testlog

import (
	"bufio"
	"bytes"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"
)

// Buffer collects output written concurrently. The zero Buffer is ready to
// use; it is safe for concurrent use.
type Buffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	changed chan struct{}
}

func (s *Buffer) signal() chan struct{} {
	if s.changed == nil {
		s.changed = make(chan struct{}, 1)
	}
	return s.changed
}

// Write appends p and wakes a waiter.
func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	n, err := s.b.Write(p)
	ch := s.signal()
	s.mu.Unlock()
	select {
	case ch <- struct{}{}:
	default:
	}
	return n, err
}

// String returns everything written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Len returns how many bytes were written so far.
func (s *Buffer) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Len()
}

// WaitFor waits until the output contains substr, failing the test after
// timeout.
func (s *Buffer) WaitFor(t testing.TB, substr string, timeout time.Duration) {
	t.Helper()
	s.mu.Lock()
	ch := s.signal()
	s.mu.Unlock()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for !strings.Contains(s.String(), substr) {
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("output has no %q after %v:\n%s", substr, timeout, s.String())
		}
	}
}

// Changed is signalled after writes; a waiter re-checks its condition on
// each signal. Several writes may share one signal.
func (s *Buffer) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.signal()
}

// Entries parses the output as JSON lines, one object a line, failing the
// test on a line that is not JSON.
func (s *Buffer) Entries(t testing.TB) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(s.String()))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}
