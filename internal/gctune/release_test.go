package gctune

import (
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/gpt-load/gpt-load/internal/procstat"
)

func TestReleaseRule(t *testing.T) {
	for _, tc := range []struct {
		name             string
		allocated, since uint64
		want             bool
	}{
		{"quiet after a burst", 0, 64 << 20, true},
		{"quiet, a little allocated now", QuietBytes - 1, MinRelease, true},
		{"still busy", QuietBytes, 64 << 20, false},
		{"under load", 200 << 20, 1 << 30, false},
		{"quiet, nothing since the last release", 0, MinRelease - 1, false},
		{"idle", 0, 0, false},
	} {
		if got := release(tc.allocated, tc.since); got != tc.want {
			t.Errorf("%s: release(%d, %d) = %v; want %v", tc.name, tc.allocated, tc.since, got, tc.want)
		}
	}
}

// burst allocates n MiB in 1 MiB slices and writes every page of them, so
// that they are in the process's RSS, and returns them.
func burst(n int) [][]byte {
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, 1<<20)
		for j := 0; j < len(bufs[i]); j += 4096 {
			bufs[i][j] = 1
		}
	}
	return bufs
}

// TestReleaseGivesBackABurst runs the real collector: a burst that is
// over while the process is still busy is not released; the next look,
// quiet, releases it, and the process's RSS drops by most of it. A buffer
// left in a sync.Pool is collected by the release too, which one cycle
// alone does not do (the pool's victim cache keeps it through the first).
func TestReleaseGivesBackABurst(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's shadow memory is not returned with the heap; make test runs this test again without it")
	}
	pid := os.Getpid()
	if _, err := procstat.RSS(pid); err != nil {
		t.Skipf("no RSS to read here: %v", err)
	}
	r := newReleaser()
	const mib = 64
	bufs := burst(mib)
	if r.check() {
		t.Fatalf("released right after %d MiB were allocated; want no release while busy", mib)
	}
	runtime.KeepAlive(bufs)
	bufs = nil
	// Put in the pool after the burst, whose own cycles would have
	// dropped it.
	var pool sync.Pool
	pooledGone := make(chan struct{})
	pooled := new([4096]byte)
	runtime.SetFinalizer(pooled, func(*[4096]byte) { close(pooledGone) })
	pool.Put(pooled)
	pooled = nil
	before, err := procstat.RSS(pid)
	if err != nil {
		t.Fatal(err)
	}
	if !r.check() {
		t.Fatalf("no release on the quiet look after a %d MiB burst", mib)
	}
	after, err := procstat.RSS(pid)
	if err != nil {
		t.Fatal(err)
	}
	if drop := before - after; drop < mib/2<<20 {
		t.Errorf("RSS %d KiB before the release, %d KiB after: dropped by %d KiB; want at least %d KiB of the %d MiB burst back",
			before>>10, after>>10, drop>>10, mib/2<<10, mib)
	}
	select {
	case <-pooledGone:
	case <-time.After(10 * time.Second):
		t.Error("a buffer left in a sync.Pool was not collected by the release")
	}
	if r.check() {
		t.Error("released again with nothing allocated since the last release")
	}
	if got := r.releases.Load(); got != 1 {
		t.Errorf("releases = %d; want 1", got)
	}
}

// TestNoReleaseUnderLoad: a process that allocates more than QuietBytes
// between every two looks is never released, however much it has
// allocated in all.
func TestNoReleaseUnderLoad(t *testing.T) {
	r := newReleaser()
	released := 0
	r.free = func() { released++ }
	var keep [][]byte
	for range 20 {
		keep = burst(2 * QuietBytes >> 20)
		if r.check() {
			t.Fatalf("released under load (%d B allocated since the last release)", r.since)
		}
	}
	runtime.KeepAlive(keep)
	if released != 0 || r.since < 20*2*QuietBytes {
		t.Errorf("released %d times, %d B counted since the last release; want none, and at least %d B", released, r.since, 20*2*QuietBytes)
	}
}

// TestReleaserRuns: started, the releaser looks by itself, releases after
// a burst once the process is quiet, and its goroutine returns when
// halted.
func TestReleaserRuns(t *testing.T) {
	r := newReleaser()
	released := make(chan struct{}, 1)
	r.free = func() {
		select {
		case released <- struct{}{}:
		default:
		}
	}
	r.run(10 * time.Millisecond)
	runtime.KeepAlive(burst(16))
	select {
	case <-released:
	case <-time.After(10 * time.Second):
		t.Fatal("no release within 10 s of a 16 MiB burst")
	}
	halted := make(chan struct{})
	go func() { r.halt(); close(halted) }()
	select {
	case <-halted: // halt waits for the looking goroutine to return
	case <-time.After(10 * time.Second):
		t.Fatal("halt did not return within 10 s")
	}
}

// TestStartReleases: Start runs the releaser as well as the tuner, and Stop
// ends both.
func TestStartReleases(t *testing.T) {
	tu := Start(func(string) string { return "" })
	if tu == nil || tu.rel == nil {
		t.Fatal("Start without GOGC started no releaser")
	}
	tu.Stop()
	select {
	case <-tu.rel.stop:
	default:
		t.Error("Stop left the releaser running")
	}
}
