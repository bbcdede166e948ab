// Package gctune sets the garbage collector's target after every cycle so
// that a small heap gets a fixed headroom and a large one the usual one.
//
// Go's default (GOGC=100) lets the heap grow by as much as it holds live,
// stacks and globals included, before the next cycle. A proxy's live heap is
// small (a few MB) while it allocates fast (tens of KB per request), so with
// the default it collects dozens of times a second, each cycle a fixed cost:
// at 8,000 requests a second that was about a sixth of the process's CPU.
// With thousands of open streams the opposite holds: their goroutine stacks
// are most of the memory, and counting them in the headroom lets garbage
// grow by their size too.
//
// Tuned, the next cycle starts once the heap has grown by the larger of
// Headroom and the live heap itself: the same rule as GOGC=100 for a
// large heap, without the stacks, and a floor for a small one
// (docs/performance.md, "Garbage collection").
//
// It also gives memory back once a burst is over (release.go): when the
// process has gone quiet, the free heap the burst left is collected and
// returned to the operating system.
package gctune

import (
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
)

// Headroom is the least the heap may grow by between cycles.
const Headroom = 8 << 20

// Bounds on the GOGC the tuner sets: a cycle never waits for more than ten
// times what the collector scans, nor starts before a tenth of it is new.
const (
	minPercent = 10
	maxPercent = 1000
)

// Tuner adjusts GOGC after each garbage collection.
type Tuner struct {
	headroom uint64
	stopped  atomic.Bool
	mu       sync.Mutex
	samples  []metrics.Sample
	percent  atomic.Int64 // the GOGC last set
	cycles   atomic.Uint64
	rel      *releaser // nil when only tuning (tests)
}

// Start tunes the collector and releases memory after bursts, unless the
// environment's GOGC is set (the operator's choice wins; getenv is
// os.Getenv in production). It returns nil when it does neither.
func Start(getenv func(string) string) *Tuner {
	if getenv("GOGC") != "" {
		return nil
	}
	t := start(Headroom)
	t.rel = newReleaser()
	t.rel.run(ReleaseInterval)
	return t
}

func start(headroom uint64) *Tuner {
	t := &Tuner{headroom: headroom, samples: []metrics.Sample{
		{Name: "/gc/heap/live:bytes"},
		{Name: "/gc/scan/stack:bytes"},
		{Name: "/gc/scan/globals:bytes"},
	}}
	t.adjust()
	t.arm()
	return t
}

// sentinel is garbage whose finalizer runs once per collection that found
// it unreachable, that is after each cycle. Larger than the tiny
// allocator's 16 bytes, so it is an object of its own.
type sentinel struct{ _ [32]byte }

func (t *Tuner) arm() {
	runtime.SetFinalizer(&sentinel{}, func(*sentinel) {
		if t.stopped.Load() {
			return
		}
		t.cycles.Add(1)
		t.adjust()
		t.arm()
	})
}

// Stop ends the tuning and the releases, and puts GOGC back to 100.
func (t *Tuner) Stop() {
	if t == nil || t.stopped.Swap(true) {
		return
	}
	if t.rel != nil {
		t.rel.halt()
	}
	debug.SetGCPercent(100)
}

// Percent is the GOGC the tuner set last.
func (t *Tuner) Percent() int { return int(t.percent.Load()) }

// Cycles counts the collections the tuner saw.
func (t *Tuner) Cycles() uint64 { return t.cycles.Load() }

// adjust sets GOGC for the next cycle from what the last one found.
func (t *Tuner) adjust() {
	t.mu.Lock()
	defer t.mu.Unlock()
	metrics.Read(t.samples)
	live := value(t.samples[0])
	scanned := live + value(t.samples[1]) + value(t.samples[2])
	p := percent(live, scanned, t.headroom)
	if int64(p) != t.percent.Load() {
		debug.SetGCPercent(p)
		t.percent.Store(int64(p))
	}
}

func value(s metrics.Sample) uint64 {
	if s.Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s.Value.Uint64()
}

// runtimeHeapMinimum is the runtime's smallest heap goal at GOGC=100: the
// goal is never below runtimeHeapMinimum × GOGC / 100, whatever is live.
const runtimeHeapMinimum = 4 << 20

// percent is the GOGC that makes the heap goal live + max(headroom, live):
// the runtime's goal is live + scanned × GOGC / 100, where scanned counts
// the live heap, stacks and globals, and never below its minimum, 4 MiB ×
// GOGC / 100. A tiny heap needs a GOGC far above 100 for its headroom,
// which would raise that minimum past the goal (GOGC=1000 makes it 40 MB
// over a live heap of one): the GOGC is capped so the minimum stays at
// the goal.
func percent(live, scanned, headroom uint64) int {
	grow := max(headroom, live)
	limit := math.Floor(float64(live+grow) * 100 / runtimeHeapMinimum)
	p := limit
	if scanned > 0 {
		p = min(math.Ceil(float64(grow)*100/float64(scanned)), limit)
	}
	return int(min(max(p, minPercent), maxPercent))
}
