package asynclog

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
)

// lockedBuffer is the underlying writer: it records every Write call.
type lockedBuffer struct {
	mu     sync.Mutex
	b      bytes.Buffer
	writes int
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.writes++
	return l.b.Write(p)
}

func TestEveryLineWrittenInOrderPerWriter(t *testing.T) {
	var out lockedBuffer
	w := New(&out)
	const writers, lines = 8, 2000
	var wg sync.WaitGroup
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range lines {
				fmt.Fprintf(w, "g%d line %d %s\n", g, i, strings.Repeat("x", i%300))
			}
		}()
	}
	wg.Wait()
	w.Close()

	got := strings.Split(strings.TrimSuffix(out.b.String(), "\n"), "\n")
	if len(got) != writers*lines {
		t.Fatalf("wrote %d lines; want %d", len(got), writers*lines)
	}
	next := make([]int, writers)
	for _, line := range got {
		var g, i int
		if _, err := fmt.Sscanf(line, "g%d line %d", &g, &i); err != nil {
			t.Fatalf("line %q is torn or mixed: %v", line, err)
		}
		if i != next[g] {
			t.Fatalf("writer %d: line %d came after %d; want order kept", g, i, next[g]-1)
		}
		if want := fmt.Sprintf("g%d line %d %s", g, i, strings.Repeat("x", i%300)); line != want {
			t.Fatalf("line = %q; want %q", line, want)
		}
		next[g]++
	}
	if out.writes >= writers*lines {
		t.Errorf("%d writes for %d lines; want them batched", out.writes, writers*lines)
	}
}

func TestCloseFlushesAndLaterWritesGoStraight(t *testing.T) {
	var out lockedBuffer
	w := New(&out)
	w.Write([]byte("queued\n"))
	w.Close()
	if out.b.String() != "queued\n" {
		t.Fatalf("after Close: %q; want the queued line", out.b.String())
	}
	w.Write([]byte("late\n"))
	if out.b.String() != "queued\nlate\n" {
		t.Errorf("after a late write: %q; want it written directly", out.b.String())
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestWriteDoesNotKeepCallersBuffer(t *testing.T) {
	var out lockedBuffer
	w := New(&out)
	p := []byte("first\n")
	w.Write(p)
	copy(p, "XXXXX\n")
	w.Close()
	if out.b.String() != "first\n" {
		t.Errorf("wrote %q; want the bytes as they were at Write", out.b.String())
	}
}

func BenchmarkWrite(b *testing.B) {
	w := New(discard{})
	defer w.Close()
	line := []byte(`{"attempts":1,"bytes":586,"client":"127.0.0.1:51234","duration":"1.2ms","level":"info","msg":"request"}` + "\n")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			w.Write(line)
		}
	})
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
