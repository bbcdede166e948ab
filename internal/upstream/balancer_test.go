package upstream

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// clock is a settable clock for Options.Now, safe for concurrent use.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *clock) Now() time.Time                  { return time.Unix(0, c.ns.Load()) }
func (c *clock) Advance(d time.Duration)         { c.ns.Add(int64(d)) }
func (c *clock) Set(t time.Time)                 { c.ns.Store(t.UnixNano()) }
func (c *clock) After(d time.Duration) time.Time { return c.Now().Add(d) }

// newBalancer returns a balancer over n Bearer targets t0…t{n-1} with the
// given options and the test clock.
func newBalancer(t testing.TB, n int, opts Options) (*Balancer, *clock) {
	t.Helper()
	clk := newClock()
	if opts.Now == nil {
		opts.Now = clk.Now
	}
	targets := make([]*Target, n)
	for i := range targets {
		targets[i] = NewTarget(mustURL(t, fmt.Sprintf("https://t%d.example", i)), Bearer)
	}
	return NewBalancer(targets, opts), clk
}

// benchTarget fails t until the balancer benches it.
func benchTarget(t *testing.T, b *Balancer, tg *Target) {
	t.Helper()
	for i := 0; i < b.opts.FailThreshold; i++ {
		benched := b.Failed(tg, "status 503")
		if want := i == b.opts.FailThreshold-1; benched != want {
			t.Fatalf("Failed #%d = %v; want %v", i+1, benched, want)
		}
	}
}

// counts calls Next n times and counts each target.
func counts(b *Balancer, n int) map[*Target]int {
	m := map[*Target]int{}
	for range n {
		m[b.Next()]++
	}
	return m
}

func TestNewBalancerDefaults(t *testing.T) {
	b, _ := newBalancer(t, 3, Options{})
	if b.opts.FailThreshold != 3 || b.opts.Cooldown != 10*time.Second || b.opts.MaxCooldown != 5*time.Minute {
		t.Errorf("NewBalancer(Options{}) options = %+v; want threshold 3, cooldown 10s, max 5m", b.opts)
	}
	for i, tg := range b.Targets() {
		if tg.Index != i {
			t.Errorf("Targets()[%d].Index = %d; want %d", i, tg.Index, i)
		}
		if got := tg.State(b.Now()); got != "active" {
			t.Errorf("new target State = %q; want active", got)
		}
	}
	if b := NewBalancer([]*Target{NewTarget(mustURL(t, "https://a.example"), Bearer)}, Options{}); b.Now().IsZero() {
		t.Errorf("NewBalancer without Now: Now() is zero; want the wall clock")
	}
}

func TestBalancerRoundRobin(t *testing.T) {
	b, _ := newBalancer(t, 3, Options{})
	ts := b.Targets()
	for i := range 9 {
		if got, want := b.Next(), ts[i%3]; got != want {
			t.Fatalf("Next() #%d = %s; want %s", i, got, want)
		}
	}
	for tg, n := range counts(b, 3000) {
		if n != 1000 {
			t.Errorf("3000 Next calls gave %s %d; want 1000", tg, n)
		}
	}
}

func TestBalancerRoundRobinConcurrent(t *testing.T) {
	b, _ := newBalancer(t, 3, Options{})
	const workers, each = 8, 3000
	var got [3]atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				got[b.Next().Index].Add(1)
			}
		})
	}
	wg.Wait()
	for i := range got {
		if n := got[i].Load(); n != workers*each/3 {
			t.Errorf("target %d got %d of %d; want %d", i, n, workers*each, workers*each/3)
		}
	}
}

func TestBalancerSingleTarget(t *testing.T) {
	b, clk := newBalancer(t, 1, Options{FailThreshold: 1, Cooldown: time.Second})
	only := b.Targets()[0]
	if got := b.Next(); got != only {
		t.Fatalf("Next() = %v; want %s", got, only)
	}
	b.Failed(only, "status 502")
	// Benched, and still used: there is nothing else.
	if got := b.Next(); got != only {
		t.Fatalf("Next() with the only target benched = %v; want %s", got, only)
	}
	if got := only.State(clk.Now()); got != "benched" {
		t.Errorf("State = %q; want benched (fallback use is not a probe)", got)
	}
	clk.Advance(time.Second)
	if got := b.Next(); got != only {
		t.Fatalf("Next() after cooldown = %v; want %s", got, only)
	}
	if got := only.state.Load(); got != stateProbing {
		t.Errorf("after cooldown, Next left state %d; want probing", got)
	}
	b.Succeeded(only)
	if got := only.State(clk.Now()); got != "active" {
		t.Errorf("State after a successful probe = %q; want active", got)
	}
}

func TestBalancerFailThreshold(t *testing.T) {
	b, clk := newBalancer(t, 3, Options{FailThreshold: 3, Cooldown: 10 * time.Second})
	tg := b.Targets()[1]

	// A success in between resets the count.
	for round := range 3 {
		first := b.Failed(tg, "status 503")
		second := b.Failed(tg, "status 503")
		if first || second {
			t.Fatalf("round %d: two failures benched the target; want three", round)
		}
		b.Succeeded(tg)
	}
	if got := tg.State(clk.Now()); got != "active" {
		t.Fatalf("State after 2 failures and a success, 3 times = %q; want active", got)
	}
	if r := tg.Reason(); r != "" {
		t.Errorf("Reason of an active target = %q; want empty", r)
	}
	if !tg.BenchedUntil().IsZero() {
		t.Errorf("BenchedUntil of an active target = %v; want zero", tg.BenchedUntil())
	}

	benchTarget(t, b, tg)
	if got := tg.State(clk.Now()); got != "benched" {
		t.Errorf("State after 3 failures = %q; want benched", got)
	}
	if got, want := tg.BenchedUntil(), clk.After(10*time.Second); !got.Equal(want) {
		t.Errorf("BenchedUntil = %v; want %v", got, want)
	}
	if got := tg.Reason(); got != "status 503" {
		t.Errorf("Reason = %q; want %q", got, "status 503")
	}
	if !tg.Benched(clk.Now()) {
		t.Errorf("Benched(now) = false; want true")
	}
	// Further failures of a benched target (requests already under way)
	// neither re-bench it nor move its deadline.
	if b.Failed(tg, "status 500") {
		t.Errorf("Failed on a benched target = true; want false")
	}
	if b.Bench(tg, "again") {
		t.Errorf("Bench on a benched target = true; want false")
	}
	if got, want := tg.BenchedUntil(), clk.After(10*time.Second); !got.Equal(want) {
		t.Errorf("BenchedUntil after more failures = %v; want %v", got, want)
	}
}

func TestBalancerSkipsBenched(t *testing.T) {
	b, clk := newBalancer(t, 3, Options{})
	ts := b.Targets()
	benchTarget(t, b, ts[1])
	c := counts(b, 3000)
	if c[ts[1]] != 0 {
		t.Errorf("a benched target was returned %d times in 3000; want 0", c[ts[1]])
	}
	if c[ts[0]]+c[ts[2]] != 3000 || c[ts[0]] < 1000 || c[ts[2]] < 1000 {
		t.Errorf("Next over 2 active targets gave %d, %d; want all 3000, each at least 1000", c[ts[0]], c[ts[2]])
	}
	if u, bn := b.Usable(); u != 2 || bn != 1 {
		t.Errorf("Usable() = %d, %d; want 2, 1", u, bn)
	}
	clk.Advance(9 * time.Second)
	if c := counts(b, 30); c[ts[1]] != 0 {
		t.Errorf("before the cooldown ended, the benched target was returned %d times", c[ts[1]])
	}
}

// TestBalancerProbeOnce checks that once a bench ends, exactly one of many
// concurrent callers gets the target, as a probe.
func TestBalancerProbeOnce(t *testing.T) {
	b, clk := newBalancer(t, 3, Options{Cooldown: 10 * time.Second})
	ts := b.Targets()
	benched := ts[1]
	benchTarget(t, b, benched)
	clk.Advance(10 * time.Second)
	if got := benched.State(clk.Now()); got != "probing" {
		t.Errorf("State after the cooldown = %q; want probing", got)
	}
	if u, bn := b.Usable(); u != 3 || bn != 0 {
		t.Errorf("Usable() after the cooldown = %d, %d; want 3, 0", u, bn)
	}

	const callers = 300
	var (
		got   atomic.Int32
		start = make(chan struct{})
		wg    sync.WaitGroup
	)
	for range callers {
		wg.Go(func() {
			<-start
			if b.Next() == benched {
				got.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	if n := got.Load(); n != 1 {
		t.Fatalf("%d concurrent Next calls after the cooldown handed out the benched target %d times; want 1", callers, n)
	}
	if got := benched.State(clk.Now()); got != "probing" {
		t.Errorf("State while probed = %q; want probing", got)
	}
	if c := counts(b, 300); c[benched] != 0 {
		t.Errorf("while its probe runs, the target was handed out %d more times; want 0", c[benched])
	}

	b.Succeeded(benched)
	if got := benched.State(clk.Now()); got != "active" {
		t.Errorf("State after a successful probe = %q; want active", got)
	}
	if !benched.BenchedUntil().IsZero() || benched.Reason() != "" {
		t.Errorf("after a successful probe BenchedUntil, Reason = %v, %q; want zero, empty", benched.BenchedUntil(), benched.Reason())
	}
	if c := counts(b, 300); c[benched] != 100 {
		t.Errorf("after a successful probe the target got %d of 300; want 100", c[benched])
	}
}

// probe advances the clock past tg's bench and calls Next until it hands
// tg out, which must happen within one turn of the rotation.
func probe(t *testing.T, b *Balancer, clk *clock, tg *Target) {
	t.Helper()
	clk.Set(tg.BenchedUntil())
	for range len(b.Targets()) {
		if b.Next() == tg {
			if tg.state.Load() != stateProbing {
				t.Fatalf("Next handed out %s in state %d; want probing", tg, tg.state.Load())
			}
			return
		}
	}
	t.Fatalf("Next did not hand out %s within %d calls after its cooldown", tg, len(b.Targets()))
}

func TestBalancerCooldownGrows(t *testing.T) {
	b, clk := newBalancer(t, 3, Options{Cooldown: 10 * time.Second, MaxCooldown: 75 * time.Second})
	tg := b.Targets()[2]
	benchTarget(t, b, tg)
	if got, want := tg.BenchedUntil().Sub(clk.Now()), 10*time.Second; got != want {
		t.Fatalf("first bench = %v; want %v", got, want)
	}
	// Each failed probe benches again at once, for twice as long, up to
	// MaxCooldown.
	for i, want := range []time.Duration{20 * time.Second, 40 * time.Second, 75 * time.Second, 75 * time.Second, 75 * time.Second} {
		probe(t, b, clk, tg)
		if !b.Failed(tg, fmt.Sprintf("probe %d", i)) {
			t.Fatalf("Failed on probe %d = false; want true (a failed probe benches at once)", i)
		}
		if got := tg.BenchedUntil().Sub(clk.Now()); got != want {
			t.Errorf("bench after failed probe %d = %v; want %v", i, got, want)
		}
		if got := tg.State(clk.Now()); got != "benched" {
			t.Errorf("State after failed probe %d = %q; want benched", i, got)
		}
		if got, want := tg.Reason(), fmt.Sprintf("probe %d", i); got != want {
			t.Errorf("Reason = %q; want %q", got, want)
		}
	}
	// A success resets the growth: the next bench is the first again.
	probe(t, b, clk, tg)
	b.Succeeded(tg)
	benchTarget(t, b, tg)
	if got, want := tg.BenchedUntil().Sub(clk.Now()), 10*time.Second; got != want {
		t.Errorf("bench after a success = %v; want %v", got, want)
	}
}

func TestBalancerReleased(t *testing.T) {
	b, clk := newBalancer(t, 3, Options{})
	tg := b.Targets()[0]
	benchTarget(t, b, tg)
	until := tg.BenchedUntil()
	probe(t, b, clk, tg)

	// The probe ended without telling anything: another request probes.
	b.Released(tg)
	if got := tg.State(clk.Now()); got != "probing" {
		t.Errorf("State after Released = %q; want probing (expired bench)", got)
	}
	if !tg.BenchedUntil().Equal(until) {
		t.Errorf("Released moved BenchedUntil from %v to %v", until, tg.BenchedUntil())
	}
	if c := counts(b, 3); c[tg] != 1 {
		t.Errorf("after Released, one turn of Next gave the target %d times; want 1 (a new probe)", c[tg])
	}
	// Released on a target that is not probing does nothing.
	b.Succeeded(tg)
	b.Released(tg)
	if got := tg.State(clk.Now()); got != "active" {
		t.Errorf("Released on an active target: State = %q; want active", got)
	}
}

func TestBalancerAllBenched(t *testing.T) {
	b, clk := newBalancer(t, 3, Options{Cooldown: time.Minute})
	ts := b.Targets()
	// Benched in the order 2, 0, 1: 2 has been benched longest.
	for _, i := range []int{2, 0, 1} {
		if !b.Bench(ts[i], "down") {
			t.Fatalf("Bench(%s) = false; want true", ts[i])
		}
		clk.Advance(time.Second)
	}
	if u, bn := b.Usable(); u != 0 || bn != 3 {
		t.Errorf("Usable() = %d, %d; want 0, 3", u, bn)
	}
	for i := range 6 {
		if got := b.Next(); got != ts[2] {
			t.Fatalf("Next() #%d with all benched = %s; want %s (benched longest)", i, got, ts[2])
		}
	}
	for _, tg := range ts {
		if got := tg.State(clk.Now()); got != "benched" {
			t.Errorf("%s State = %q; want benched (fallback use is not a probe)", tg, got)
		}
	}
	// A success on the fallback target puts it back in rotation.
	b.Succeeded(ts[2])
	if c := counts(b, 30); c[ts[2]] != 30 {
		t.Errorf("after a success, the only active target got %d of 30; want 30", c[ts[2]])
	}
	if u, bn := b.Usable(); u != 1 || bn != 2 {
		t.Errorf("Usable() = %d, %d; want 1, 2", u, bn)
	}
}

func TestTargetState(t *testing.T) {
	b, clk := newBalancer(t, 2, Options{Cooldown: 5 * time.Second})
	tg := b.Targets()[0]
	for _, step := range []struct {
		name string
		do   func()
		want string
	}{
		{"new", func() {}, "active"},
		{"benched", func() { b.Bench(tg, "x") }, "benched"},
		{"just before the end", func() { clk.Advance(5*time.Second - time.Nanosecond) }, "benched"},
		{"bench ended", func() { clk.Advance(time.Nanosecond) }, "probing"},
		{"probe handed out", func() { probe(t, b, clk, tg) }, "probing"},
		{"probe failed", func() { b.Failed(tg, "y") }, "benched"},
		{"second bench ended", func() { clk.Set(tg.BenchedUntil()) }, "probing"},
		{"probe handed out again", func() { probe(t, b, clk, tg) }, "probing"},
		{"probe succeeded", func() { b.Succeeded(tg) }, "active"},
	} {
		step.do()
		if got := tg.State(clk.Now()); got != step.want {
			t.Errorf("%s: State = %q; want %q", step.name, got, step.want)
		}
	}
}

// TestBalancerConcurrent runs every operation at once under the race
// detector, with a real clock and a tiny cooldown so targets keep moving
// between active, benched and probing.
func TestBalancerConcurrent(t *testing.T) {
	targets := make([]*Target, 4)
	for i := range targets {
		targets[i] = NewTarget(mustURL(t, fmt.Sprintf("https://t%d.example", i)), Bearer)
	}
	b := NewBalancer(targets, Options{FailThreshold: 2, Cooldown: 50 * time.Microsecond, MaxCooldown: time.Millisecond})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				tg := b.Next()
				if tg == nil {
					t.Error("Next() = nil")
					return
				}
				tg.CountRequest(i%3 == 0)
				switch (i + w) % 5 {
				case 0, 1:
					b.Failed(tg, "status 503")
				case 2:
					b.Succeeded(tg)
				case 3:
					b.Released(tg)
				case 4:
					if i%50 == 0 {
						b.Bench(tg, "correlated")
					}
				}
				_ = tg.State(b.Now())
				_ = tg.Reason()
				_ = tg.BenchedUntil()
				b.Usable()
			}
		})
	}
	wg.Wait()
	var total uint64
	for _, tg := range targets {
		total += tg.Requests()
	}
	if total != 8*2000 {
		t.Errorf("Requests over all targets = %d; want %d", total, 8*2000)
	}
}

// BenchmarkNext measures the lock-free hot path with every target active.
// It is fair to compare across changes: the target set, the clock (the
// wall clock, as in production) and the parallelism are fixed, and nothing
// but Next runs in the loop.
func BenchmarkNext(b *testing.B) {
	targets := make([]*Target, 3)
	for i := range targets {
		targets[i] = NewTarget(mustURL(b, fmt.Sprintf("https://t%d.example", i)), Bearer)
	}
	bal := NewBalancer(targets, Options{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			bal.Next()
		}
	})
}

// TestBalancerBenchNotProbedAtOnce stops a bench inside its clock read and
// calls Next meanwhile: a target being benched must not be handed out as a
// probe of its new bench before that bench has even started.
func TestBalancerBenchNotProbedAtOnce(t *testing.T) {
	clk := newClock()
	var armed atomic.Bool
	entered, release := make(chan struct{}), make(chan struct{})
	now := func() time.Time {
		if armed.CompareAndSwap(true, false) {
			close(entered)
			<-release
		}
		return clk.Now()
	}
	targets := []*Target{
		NewTarget(mustURL(t, "https://a.example"), Bearer),
		NewTarget(mustURL(t, "https://b.example"), Bearer),
	}
	b := NewBalancer(targets, Options{FailThreshold: 1, Cooldown: time.Minute, Now: now})
	tg := targets[0]

	armed.Store(true)
	benched := make(chan bool)
	go func() { benched <- b.Failed(tg, "status 503") }()
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("Failed never read the clock")
	}
	for range 4 {
		b.Next()
	}
	close(release)
	if !<-benched {
		t.Fatal("Failed with threshold 1 = false; want true")
	}
	if got := tg.State(clk.Now()); got != "benched" {
		t.Errorf("State right after a bench = %q; want benched", got)
	}
	if c := counts(b, 10); c[tg] != 0 {
		t.Errorf("right after a bench, the target was handed out %d times; want 0", c[tg])
	}
}
