package gctune

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func TestPercent(t *testing.T) {
	const mb = 1 << 20
	for _, tc := range []struct {
		name                    string
		live, scanned, headroom uint64
		want                    int
	}{
		// A small heap grows by the headroom: 4 MB live, 1 MB of stacks
		// and globals, 8 MB headroom: the goal is 12 MB, GOGC 160.
		{"small heap", 4 * mb, 5 * mb, 8 * mb, 160},
		// A large heap grows by itself, as with GOGC=100 without stacks:
		// 40 MB live and 40 MB of stacks (thousands of streams) give a
		// goal of 80 MB, not the default's 120 MB.
		{"large heap, large stacks", 40 * mb, 80 * mb, 8 * mb, 50},
		{"large heap, no stacks", 40 * mb, 40 * mb, 8 * mb, 100},
		// A tiny heap: the runtime's minimum goal, 4 MB × GOGC / 100,
		// caps GOGC at what puts that minimum at live + headroom: 8.1 MB
		// here, GOGC 202, not the 8,192 the headroom over 100 KB asks
		// for (capped at 1000, that made every goal 40 MB).
		{"tiny heap", 100 << 10, 100 << 10, 8 * mb, 202},
		{"nothing scanned", 0, 0, 8 * mb, 200},
		{"huge headroom over a tiny heap", 0, 100 << 10, 64 * mb, maxPercent},
		// Bounds: never more than ten times what is scanned, nor less
		// than a tenth.
		{"stacks dwarf the heap", 1 * mb, 1000 * mb, 8 * mb, minPercent},
	} {
		if got := percent(tc.live, tc.scanned, tc.headroom); got != tc.want {
			t.Errorf("%s: percent(%d, %d, %d) = %d; want %d", tc.name, tc.live, tc.scanned, tc.headroom, got, tc.want)
		}
	}
}

// TestSmallHeapGoal runs the real collector over a heap of a few hundred
// KB: the runtime's goal must be live + the headroom, not the 40 MB a
// GOGC of 1000 gives any heap that small.
func TestSmallHeapGoal(t *testing.T) {
	tu := start(8 << 20)
	defer tu.Stop()
	s := []metrics.Sample{{Name: "/gc/heap/goal:bytes"}, {Name: "/gc/heap/live:bytes"}}
	deadline := time.Now().Add(10 * time.Second)
	for start := tu.Cycles(); tu.Cycles() < start+3; {
		if time.Now().After(deadline) {
			t.Fatalf("the tuner saw %d collections in 10 s of runtime.GC; want 3", tu.Cycles()-start)
		}
		runtime.GC()
		runtime.Gosched()
	}
	metrics.Read(s)
	goal, live := s[0].Value.Uint64(), s[1].Value.Uint64()
	if want := live + 8<<20 + 1<<20; goal > want {
		t.Errorf("heap goal %d B over %d B live (GOGC %d); want at most live + 8 MiB + 1 MiB slack = %d", goal, live, tu.Percent(), want)
	}
}

func TestStartLeavesGOGCToTheOperator(t *testing.T) {
	env := map[string]string{"GOGC": "200"}
	if tu := Start(func(k string) string { return env[k] }); tu != nil {
		tu.Stop()
		t.Fatal("Start with GOGC set tuned the collector; want the operator's GOGC left alone")
	}
}

// TestTunesAfterEachCycle runs the real collector: after cycles the tuner
// saw, GOGC is what percent gives for the heap the runtime reports.
func TestTunesAfterEachCycle(t *testing.T) {
	tu := start(64 << 20)
	defer tu.Stop()
	if tu.Percent() == 0 {
		t.Fatal("Start set no GOGC")
	}
	deadline := time.Now().Add(10 * time.Second)
	for tu.Cycles() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("the tuner saw %d collections in 10 s of runtime.GC; want 3", tu.Cycles())
		}
		runtime.GC()
		runtime.Gosched()
	}
	// The test's heap is small: 64 MB of headroom over a few MB live is
	// far above GOGC=100.
	if got := debug.SetGCPercent(tu.Percent()); got != tu.Percent() || got <= 100 {
		t.Errorf("GOGC = %d after %d cycles (tuner says %d); want the tuner's, above 100 for a small heap", got, tu.Cycles(), tu.Percent())
	}
	tu.Stop()
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("GOGC = %d after Stop; want 100", got)
	}
	n := tu.Cycles()
	runtime.GC()
	runtime.GC()
	if tu.Cycles() != n {
		t.Errorf("the tuner counted cycles after Stop")
	}
}
