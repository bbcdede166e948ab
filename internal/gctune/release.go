package gctune

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"
)

// A burst leaves memory behind after it is over. The collector frees the
// burst's garbage, but the runtime returns free pages to the operating
// system only as the heap nears its goal, and the tuned goal is twice the
// live heap. The buffers that requests return to sync.Pools stay until two
// cycles have passed, and a goroutine stack shrinks by half per cycle at
// most, once less than a quarter of it is in use. A proxy holding 1000
// open streams runs no cycle at all while they wait for their events, so
// what the burst that opened them left stays in its RSS
// (docs/performance.md, "Garbage collection").
//
// The releaser looks once every ReleaseInterval. When the process has
// allocated less than QuietBytes since its last look, and at least
// MinRelease since the last release, it runs two collections and returns
// the free heap to the operating system (debug.FreeOSMemory). A proxy
// under load allocates far more than QuietBytes a second and is never
// released; a quiet one is released once per MinRelease it allocates.
const (
	ReleaseInterval = time.Second
	QuietBytes      = 1 << 20
	MinRelease      = 4 << 20
)

// releaser gives back what a burst left once allocation goes quiet.
type releaser struct {
	sample     []metrics.Sample // the heap's allocations, cumulative
	lastAllocs uint64
	since      uint64 // allocated since the last release
	free       func()
	releases   atomic.Uint64

	stop chan struct{}
	done sync.WaitGroup
}

func newReleaser() *releaser {
	r := &releaser{free: collectAndFree, stop: make(chan struct{}), sample: []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}}
	r.lastAllocs = r.allocs()
	return r
}

// collectAndFree runs a cycle, then debug.FreeOSMemory's: the second
// cycle drops the pooled buffers the first moved to the pools' victim
// caches and halves the stacks the first halved when they are still
// under a quarter full, and FreeOSMemory returns every free page.
func collectAndFree() {
	runtime.GC()
	debug.FreeOSMemory()
}

func (r *releaser) allocs() uint64 {
	metrics.Read(r.sample)
	return value(r.sample[0])
}

// run looks every interval until halted.
func (r *releaser) run(interval time.Duration) {
	r.done.Add(1)
	go func() {
		defer r.done.Done()
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				r.check()
			case <-r.stop:
				return
			}
		}
	}()
}

func (r *releaser) halt() {
	close(r.stop)
	r.done.Wait()
}

// check releases when release says so, and reports whether it did.
func (r *releaser) check() bool {
	allocs := r.allocs()
	allocated := allocs - r.lastAllocs
	r.lastAllocs = allocs
	r.since += allocated
	if !release(allocated, r.since) {
		return false
	}
	r.free()
	r.releases.Add(1)
	r.since = 0
	r.lastAllocs = r.allocs() // the collections' own allocations are not load
	return true
}

// release decides from what the process allocated since the last look and
// since the last release: quiet now, and busy enough before that there is
// something to give back.
func release(allocated, since uint64) bool {
	return allocated < QuietBytes && since >= MinRelease
}
