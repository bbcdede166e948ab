package keymanager

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// benchManager builds a Manager over n keys with every tenth key
// blacklisted when benched is set, and waits (with a deadline) until the
// rotation reflects that, so the timed loop measures the steady state and
// not a pending lazy rebuild.
func benchManager(b *testing.B, n int, benched bool) *Manager {
	b.Helper()
	m := New(testKeys(n), Options{})
	if benched {
		for i, k := range m.view.Load().all {
			if i%10 == 0 {
				m.Blacklist(k, "invalid", 401)
			}
		}
	}
	settle(b, m)
	return m
}

// BenchmarkNext measures one key selection under contention from every P.
// It is fair because the Manager is built and (for the benched cases)
// rebuilt before the timer starts, the real clock is used as in production,
// the returned key is used so the call cannot be optimised away, and key
// counts span five orders of magnitude to show the cost does not grow with
// the key set. Blacklisted keys are every tenth one, spread over the set.
func BenchmarkNext(b *testing.B) {
	for _, bc := range []struct {
		n       int
		benched bool
	}{
		{1, false}, {1_000, false}, {1_000_000, false},
		{1_000, true}, {1_000_000, true},
	} {
		name := map[int]string{1: "keys=1", 1_000: "keys=1k", 1_000_000: "keys=1M"}[bc.n]
		if bc.benched {
			name += "/blacklisted=10%"
		}
		b.Run(name, func(b *testing.B) {
			m := benchManager(b, bc.n, bc.benched)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				var sink uint64
				for pb.Next() {
					k, err := m.Next()
					if err != nil {
						b.Errorf("Next() error = %v", err)
						return
					}
					sink += uint64(len(k.secret.Reveal()))
				}
				_ = sink
			})
		})
	}
}

// keysFile returns a keys file of n lines, "sk-" plus 48 random
// alphanumerics each, the shape of real OpenAI keys.
func keysFile(n int) []byte {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	r := rand.New(rand.NewPCG(1, 2))
	var buf bytes.Buffer
	buf.Grow(n * 52)
	for range n {
		buf.WriteString("sk-")
		for range 48 {
			buf.WriteByte(alphabet[r.IntN(len(alphabet))])
		}
		buf.WriteByte('\n')
	}
	return buf.Bytes()
}

// BenchmarkParse1M parses a 1,000,000-key file. It is fair because the file
// is generated once before the timer starts, with a fixed seed so runs are
// comparable, from distinct realistic keys (so the duplicate map does real
// work), and Parse runs on bytes in memory, as ParseFile does after one
// read.
func BenchmarkParse1M(b *testing.B) {
	data := keysFile(1_000_000)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		p, err := Parse(data)
		if err != nil || len(p.Keys) != 1_000_000 {
			b.Fatalf("Parse() = %d keys, %v; want 1000000", len(p.Keys), err)
		}
	}
}

// TestNextDoesNotAllocate keeps the zero-allocation promise of Next under
// plain go test, without running benchmarks.
func TestNextDoesNotAllocate(t *testing.T) {
	for _, n := range []int{1, 1000, 20_000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			m := New(testKeys(n), Options{})
			for i, k := range m.view.Load().all {
				if i%10 == 1 {
					m.Blacklist(k, "invalid", 401)
				}
			}
			// Let a large set's lazy rebuild happen first: building a
			// rotation allocates, selecting from one must not.
			settle(t, m)
			allocs := testing.AllocsPerRun(1000, func() {
				if _, err := m.Next(); err != nil {
					t.Fatalf("Next() error = %v", err)
				}
			})
			if allocs != 0 {
				t.Errorf("Next() allocations with %d keys = %v; want 0", n, allocs)
			}
		})
	}
}

// TestParseMillionKeys checks the promise of docs/configuration.md, "Keys
// file", without the benchmark harness: a million keys load in well under
// a second.
func TestParseMillionKeys(t *testing.T) {
	if testing.Short() {
		t.Skip("large input")
	}
	data := keysFile(1_000_000)
	start := time.Now()
	p, err := Parse(data)
	elapsed := time.Since(start)
	if err != nil || len(p.Keys) != 1_000_000 || p.Duplicates != 0 {
		t.Fatalf("Parse(1M keys) = %d keys, %d duplicates, %v; want 1000000, 0, nil", len(p.Keys), p.Duplicates, err)
	}
	// Generous for -race and shared machines; the benchmark reports the
	// real figure.
	if limit := 5 * time.Second; elapsed > limit {
		t.Errorf("Parse(1M keys) took %v; want well under a second (limit here %v)", elapsed, limit)
	}
}
