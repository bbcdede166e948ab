package keymanager

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testKeys returns n distinct raw keys, "sk-test-000000" onwards.
func testKeys(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("sk-test-%06d", i)
	}
	return out
}

// clock is an injectable clock for Options.Now, safe for concurrent use.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano())
	return c
}

func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// keyAt returns the *Key for keys[i] of m's current set.
func keyAt(t *testing.T, m *Manager, i int) *Key {
	t.Helper()
	all := m.view.Load().all
	if i < 0 || i >= len(all) {
		t.Fatalf("keyAt(%d) with %d keys", i, len(all))
	}
	return all[i]
}

// draw calls Next n times and counts the keys it returns by raw value.
func draw(t *testing.T, m *Manager, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		k, err := m.Next()
		if err != nil {
			t.Fatalf("Next() error = %v; want a key", err)
		}
		got[k.Secret().Reveal()]++
	}
	return got
}

// checkEven checks that the usable keys got n/len(usable) ± 1 of n draws
// each (floor or ceiling, since the cursor is one counter) and every other
// key got none.
func checkEven(t *testing.T, got map[string]int, all []string, usable []string, n int) {
	t.Helper()
	lo := n / len(usable)
	hi := lo
	if n%len(usable) != 0 {
		hi++
	}
	for _, k := range all {
		c := got[k]
		if !slices.Contains(usable, k) {
			if c != 0 {
				t.Errorf("Next() returned benched key %s %d times; want 0", k, c)
			}
			continue
		}
		if c < lo || c > hi {
			t.Errorf("Next() returned %s %d times of %d over %d usable keys; want %d..%d", k, c, n, len(usable), lo, hi)
		}
	}
}

func TestNextRoundRobinOrder(t *testing.T) {
	cases := []struct {
		name       string
		keys, draw int
		start      int
	}{
		{"one key", 1, 5, 0},
		{"two keys", 2, 7, 0},
		{"three keys start 1", 3, 10, 1},
		{"seven keys start 6", 7, 50, 6},
		{"hundred keys start 42", 100, 1000, 42},
		{"start beyond count wraps", 5, 12, 7},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			keys := testKeys(tc.keys)
			m := New(keys, Options{StartIndex: tc.start})
			for i := range tc.draw {
				k, err := m.Next()
				if err != nil {
					t.Fatalf("Next() #%d error = %v; want a key", i, err)
				}
				if got, want := k.Secret().Reveal(), keys[(tc.start+i)%tc.keys]; got != want {
					t.Fatalf("Next() #%d = %s; want %s", i, got, want)
				}
			}
		})
	}
}

func TestStartIndex(t *testing.T) {
	keys := testKeys(10)
	for _, start := range []int{0, 1, 5, 9} {
		t.Run(fmt.Sprint(start), func(t *testing.T) {
			m := New(keys, Options{StartIndex: start})
			if got := m.CurrentIndex(); got != start {
				t.Errorf("CurrentIndex() before any Next = %d; want %d", got, start)
			}
			k, err := m.Next()
			if err != nil {
				t.Fatalf("Next() error = %v; want a key", err)
			}
			if got := k.Secret().Reveal(); got != keys[start] {
				t.Errorf("New(StartIndex: %d).Next() = %s; want %s", start, got, keys[start])
			}
		})
	}
}

func TestNextEven(t *testing.T) {
	for _, k := range []int{1, 2, 3, 10, 97} {
		for _, n := range []int{1, k - 1, k, 10*k + 3, 1000} {
			if n <= 0 {
				continue
			}
			t.Run(fmt.Sprintf("K=%d/N=%d", k, n), func(t *testing.T) {
				keys := testKeys(k)
				m := New(keys, Options{StartIndex: k / 2})
				checkEven(t, draw(t, m, n), keys, keys, n)
			})
		}
	}
}

// TestNextConcurrentEven draws from many goroutines at once; run with -race.
func TestNextConcurrentEven(t *testing.T) {
	cases := []struct {
		name          string
		keys, benched int
	}{
		{"all active", 7, 0},
		{"two benched", 9, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			keys := testKeys(tc.keys)
			m := New(keys, Options{})
			for i := range tc.benched {
				m.Blacklist(keyAt(t, m, 2*i), "test", 401)
			}
			var usable []string
			for i, k := range keys {
				if i%2 == 1 || i >= 2*tc.benched {
					usable = append(usable, k)
				}
			}
			const goroutines, each = 8, 1001
			counts := make([]map[string]int, goroutines)
			errs := make(chan error, goroutines)
			var wg sync.WaitGroup
			for g := range goroutines {
				counts[g] = map[string]int{}
				wg.Go(func() {
					for range each {
						k, err := m.Next()
						if err != nil {
							errs <- err
							return
						}
						counts[g][k.Secret().Reveal()]++
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatalf("Next() error = %v; want a key", err)
			}
			total := map[string]int{}
			for _, c := range counts {
				for k, n := range c {
					total[k] += n
				}
			}
			checkEven(t, total, keys, usable, goroutines*each)
		})
	}
}

// TestBenchedShareSpread benches keys and checks the remaining keys share
// evenly: a benched key's share is spread, not dumped on its neighbour.
func TestBenchedShareSpread(t *testing.T) {
	cases := []struct {
		name        string
		keys        int
		blacklisted []int
		cooling     []int
		start       int
	}{
		{"blacklist first", 5, []int{0}, nil, 0},
		{"blacklist middle", 5, []int{2}, nil, 0},
		{"blacklist last", 5, []int{4}, nil, 3},
		{"blacklist two adjacent", 6, []int{2, 3}, nil, 1},
		{"cool one", 5, nil, []int{1}, 0},
		{"cool and blacklist", 8, []int{0, 5}, []int{1, 6}, 4},
		{"all but one", 4, []int{0, 1}, []int{3}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			keys := testKeys(tc.keys)
			m := New(keys, Options{StartIndex: tc.start, Now: clk.Now})
			draw(t, m, 3) // bench mid-rotation, not at a clean boundary
			benched := map[int]bool{}
			for _, i := range tc.blacklisted {
				m.Blacklist(keyAt(t, m, i), "invalid key", 401)
				benched[i] = true
			}
			for _, i := range tc.cooling {
				m.Cool(keyAt(t, m, i), clk.Now().Add(time.Minute), "rate limited", 429)
				benched[i] = true
			}
			var usable []string
			for i, k := range keys {
				if !benched[i] {
					usable = append(usable, k)
				}
			}
			for _, n := range []int{1, len(usable), 10*len(usable) + 1, 997} {
				checkEven(t, draw(t, m, n), keys, usable, n)
			}
		})
	}
}

func TestCoolReturnsByItself(t *testing.T) {
	cases := []struct {
		name     string
		deadline time.Duration // from now
		wait     time.Duration // clock advance before the second round
	}{
		{"past deadline stays in rotation", -time.Second, 0},
		{"deadline now stays in rotation", 0, 0},
		{"future deadline returns after it", 30 * time.Second, 30 * time.Second},
		{"future deadline returns well after it", 30 * time.Second, time.Hour},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			keys := testKeys(4)
			m := New(keys, Options{Now: clk.Now})
			cooled := keyAt(t, m, 1)
			m.Cool(cooled, clk.Now().Add(tc.deadline), "rate limited", 429)
			if tc.deadline > 0 {
				checkEven(t, draw(t, m, 30), keys, []string{keys[0], keys[2], keys[3]}, 30)
				clk.Advance(tc.deadline - time.Nanosecond)
				checkEven(t, draw(t, m, 3), keys, []string{keys[0], keys[2], keys[3]}, 3)
				if c := m.Counts(); c.Cooling != 1 || c.Active != 3 {
					t.Errorf("Counts() before the deadline = %+v; want 1 cooling, 3 active", c)
				}
				clk.Advance(tc.wait - tc.deadline + time.Nanosecond)
			}
			checkEven(t, draw(t, m, 40), keys, keys, 40)
			if c := m.Counts(); c != (Counts{Total: 4, Active: 4}) {
				t.Errorf("Counts() after the deadline = %+v; want all 4 active", c)
			}
		})
	}
}

// TestCoolReturnsWithRealClock: without an injected clock, a short
// cooldown ends by itself. It waits on the condition with a deadline.
func TestCoolReturnsWithRealClock(t *testing.T) {
	keys := testKeys(2)
	m := New(keys, Options{})
	m.Cool(keyAt(t, m, 0), time.Now().Add(5*time.Millisecond), "rate limited", 429)
	deadline := time.Now().Add(5 * time.Second)
	for {
		k, err := m.Next()
		if err != nil {
			t.Fatalf("Next() error = %v; want a key", err)
		}
		if k.Secret().Reveal() == keys[0] {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Next() never returned the cooled key within 5s of a 5ms cooldown")
		}
	}
}

func TestNoUsableKeys(t *testing.T) {
	cases := []struct {
		name    string
		bench   func(m *Manager, clk *clock, k []*Key)
		retryAt time.Duration // from the clock's start; 0: zero RetryAt
		back    int           // the key usable again at retryAt
	}{
		{"all blacklisted", func(m *Manager, _ *clock, k []*Key) {
			for _, x := range k {
				m.Blacklist(x, "invalid", 401)
			}
		}, 0, 0},
		{"all cooling", func(m *Manager, clk *clock, k []*Key) {
			m.Cool(k[0], clk.Now().Add(3*time.Minute), "limit", 429)
			m.Cool(k[1], clk.Now().Add(40*time.Second), "limit", 429)
			m.Cool(k[2], clk.Now().Add(2*time.Minute), "limit", 429)
		}, 40 * time.Second, 1},
		{"cooling and blacklisted", func(m *Manager, clk *clock, k []*Key) {
			m.Blacklist(k[0], "invalid", 401)
			m.Cool(k[1], clk.Now().Add(90*time.Second), "limit", 429)
			m.Blacklist(k[2], "invalid", 403)
		}, 90 * time.Second, 1},
		{"cooled twice keeps the later deadline", func(m *Manager, clk *clock, k []*Key) {
			m.Blacklist(k[0], "invalid", 401)
			m.Blacklist(k[1], "invalid", 401)
			m.Cool(k[2], clk.Now().Add(10*time.Second), "limit", 429)
			m.Cool(k[2], clk.Now().Add(20*time.Second), "limit", 429)
		}, 20 * time.Second, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			start := clk.Now()
			m := New(testKeys(3), Options{Now: clk.Now})
			tc.bench(m, clk, m.view.Load().all)
			k, err := m.Next()
			if err == nil {
				t.Fatalf("Next() = %s, nil; want a *NoKeysError", k.Preview())
			}
			var nk *NoKeysError
			if !errors.As(err, &nk) || !IsNoKeys(err) {
				t.Fatalf("Next() error = %T %v; want *NoKeysError", err, err)
			}
			if tc.retryAt == 0 {
				if !nk.RetryAt.IsZero() {
					t.Errorf("Next() RetryAt = %v; want zero", nk.RetryAt)
				}
				return
			}
			if want := start.Add(tc.retryAt); !nk.RetryAt.Equal(want) {
				t.Errorf("Next() RetryAt = %v; want %v", nk.RetryAt, want)
			}
			clk.Advance(tc.retryAt - time.Nanosecond)
			if _, err := m.Next(); !IsNoKeys(err) {
				t.Errorf("Next() just before RetryAt error = %v; want *NoKeysError", err)
			}
			clk.Advance(time.Nanosecond)
			want := testKeys(3)[tc.back]
			for range 3 {
				k, err := m.Next()
				if err != nil {
					t.Fatalf("Next() at RetryAt error = %v; want %s", err, want)
				}
				if got := k.Secret().Reveal(); got != want {
					t.Errorf("Next() at RetryAt = %s; want %s", got, want)
				}
			}
		})
	}
}

func TestIsNoKeys(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"other", errors.New("boom"), false},
		{"no keys", &NoKeysError{}, true},
		{"wrapped", fmt.Errorf("attempt 2: %w", &NoKeysError{RetryAt: time.Unix(1, 0)}), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := IsNoKeys(tc.err); got != tc.want {
				t.Errorf("IsNoKeys(%v) = %v; want %v", tc.err, got, tc.want)
			}
		})
	}
}

func TestRestore(t *testing.T) {
	keys := testKeys(3)
	m := New(keys, Options{})
	k := keyAt(t, m, 1)
	k.consecutive.Store(5)
	m.Blacklist(k, "invalid", 401)
	checkEven(t, draw(t, m, 10), keys, []string{keys[0], keys[2]}, 10)
	m.Restore(k)
	if s := m.Snapshots(false)[1]; s.State != Active || s.FailCount != 0 || s.Reason != "" || !s.Since.IsZero() {
		t.Errorf("Snapshots()[1] after Restore = %+v; want active, no reason, no fail count", s)
	}
	checkEven(t, draw(t, m, 30), keys, keys, 30)
}

func TestReloadKeepsState(t *testing.T) {
	clk := newClock()
	m := New([]string{"sk-a", "sk-b", "sk-c", "sk-d"}, Options{Now: clk.Now})
	a, b, c := keyAt(t, m, 0), keyAt(t, m, 1), keyAt(t, m, 2)
	b.CountRequest(401, true)
	m.Blacklist(b, "invalid api key", 401)
	c.CountRequest(429, true)
	m.Cool(c, clk.Now().Add(time.Minute), "rate limited", 429)
	a.CountRequest(200, false)

	// sk-a and sk-d are removed, sk-e and sk-f are new.
	got := m.Reload([]string{"sk-e", "sk-c", "sk-b", "sk-f"})
	if want := (ReloadResult{Total: 4, Added: 2, Removed: 2}); got != want {
		t.Errorf("Reload() = %+v; want %+v", got, want)
	}
	if m.Len() != 4 {
		t.Errorf("Len() = %d; want 4", m.Len())
	}
	if keyAt(t, m, 2) != b || keyAt(t, m, 1) != c {
		t.Errorf("Reload() replaced retained keys; want the same *Key values")
	}
	want := map[string]State{"sk-e": Active, "sk-c": Cooling, "sk-b": Blacklisted, "sk-f": Active}
	for i, s := range m.Snapshots(false) {
		raw := keyAt(t, m, i).Secret().Reveal()
		if s.State != want[raw] {
			t.Errorf("Snapshots()[%d] (%s) state = %v; want %v", i, raw, s.State, want[raw])
		}
	}
	if s := m.Snapshots(false)[2]; s.Requests != 1 || s.Failures != 1 || s.LastStatus != 401 || s.Reason != "invalid api key" {
		t.Errorf("Snapshots()[2] (sk-b) = %+v; want its counters and reason kept", s)
	}
	if c := m.Counts(); c != (Counts{Total: 4, Active: 2, Cooling: 1, Blacklisted: 1}) {
		t.Errorf("Counts() = %+v; want 4 total, 2 active, 1 cooling, 1 blacklisted", c)
	}
	all := []string{"sk-a", "sk-b", "sk-c", "sk-d", "sk-e", "sk-f"}
	checkEven(t, draw(t, m, 101), all, []string{"sk-e", "sk-f"}, 101)
	clk.Advance(time.Minute)
	checkEven(t, draw(t, m, 99), all, []string{"sk-e", "sk-c", "sk-f"}, 99)

	// A removed key re-added is new: active with cleared counters.
	m.Reload([]string{"sk-a", "sk-b"})
	if s := m.Snapshots(false)[0]; s.State != Active || s.Requests != 0 {
		t.Errorf("Snapshots()[0] (re-added sk-a) = %+v; want active with no requests", s)
	}
	checkEven(t, draw(t, m, 10), all, []string{"sk-a"}, 10)
}

// TestReloadRemovedKeyBenchedLate: a request that still holds a removed key
// may report on it after the reload; that must not disturb the new set.
func TestReloadRemovedKeyBenchedLate(t *testing.T) {
	m := New([]string{"sk-a", "sk-b"}, Options{})
	old := keyAt(t, m, 0)
	m.Reload([]string{"sk-b", "sk-c"})
	m.Blacklist(old, "invalid", 401)
	all := []string{"sk-a", "sk-b", "sk-c"}
	checkEven(t, draw(t, m, 20), all, []string{"sk-b", "sk-c"}, 20)
	if c := m.Counts(); c != (Counts{Total: 2, Active: 2}) {
		t.Errorf("Counts() = %+v; want 2 total, 2 active", c)
	}
}

func TestReset(t *testing.T) {
	clk := newClock()
	keys := testKeys(4)
	m := New(keys, Options{Now: clk.Now})
	for i := range 3 {
		k := keyAt(t, m, i)
		k.CountRequest(401, true)
		k.consecutive.Store(2)
	}
	m.Blacklist(keyAt(t, m, 0), "invalid", 401)
	m.Blacklist(keyAt(t, m, 1), "invalid", 403)
	m.Cool(keyAt(t, m, 2), clk.Now().Add(time.Hour), "limit", 429)

	m.Reset(keys)
	if c := m.Counts(); c != (Counts{Total: 4, Active: 4}) {
		t.Errorf("Counts() after Reset = %+v; want all 4 active", c)
	}
	for i, s := range m.Snapshots(false) {
		if s.State != Active || s.Requests != 0 || s.Failures != 0 || s.LastStatus != 0 || s.FailCount != 0 || s.Reason != "" {
			t.Errorf("Snapshots()[%d] after Reset = %+v; want a fresh active key", i, s)
		}
	}
	if got := m.Snapshots(true); got == nil || len(got) != 0 {
		t.Errorf("Snapshots(true) after Reset = %#v; want an empty non-nil slice", got)
	}
	checkEven(t, draw(t, m, 41), keys, keys, 41)
}

func TestSnapshotsAndCounts(t *testing.T) {
	clk := newClock()
	t0 := clk.Now()
	keys := []string{
		"sk-proj-aaaaaaaaaaaaaaaaaaaaaaaaaaaa1111",
		"sk-proj-bbbbbbbbbbbbbbbbbbbbbbbbbbbb2222",
		"sk-proj-cccccccccccccccccccccccccccc3333",
		"sk-proj-dddddddddddddddddddddddddddd4444",
		"sk-proj-eeeeeeeeeeeeeeeeeeeeeeeeeeee5555",
	}
	m := New(keys, Options{Now: clk.Now})
	a, b, c, d := keyAt(t, m, 0), keyAt(t, m, 1), keyAt(t, m, 2), keyAt(t, m, 3)
	a.CountRequest(200, false)
	a.CountRequest(200, false)
	b.CountRequest(401, true)
	m.Blacklist(b, "invalid api key", 401)
	clk.Advance(time.Second)
	m.Cool(c, clk.Now().Add(time.Minute), "rate limited", 429)
	m.Cool(d, clk.Now().Add(time.Second), "rate limited", 429)

	if got, want := m.Counts(), (Counts{Total: 5, Active: 2, Cooling: 2, Blacklisted: 1}); got != want {
		t.Errorf("Counts() = %+v; want %+v", got, want)
	}
	want := []Snapshot{
		{Preview: "sk-pro…1111", State: Active, Requests: 2, LastStatus: 200},
		{Preview: "sk-pro…2222", State: Blacklisted, Requests: 1, Failures: 1, LastStatus: 401, Reason: "invalid api key", Since: t0},
		{Preview: "sk-pro…3333", State: Cooling, LastStatus: 429, Reason: "rate limited", Since: t0.Add(time.Second), Until: t0.Add(61 * time.Second)},
		{Preview: "sk-pro…4444", State: Cooling, LastStatus: 429, Reason: "rate limited", Since: t0.Add(time.Second), Until: t0.Add(2 * time.Second)},
		{Preview: "sk-pro…5555", State: Active},
	}
	checkSnapshots(t, "Snapshots(false)", m.Snapshots(false), want)
	checkSnapshots(t, "Snapshots(true)", m.Snapshots(true), want[1:4])

	// d's deadline passes: it reads as active without a call to Next.
	clk.Advance(time.Second)
	if got, want := m.Counts(), (Counts{Total: 5, Active: 3, Cooling: 1, Blacklisted: 1}); got != want {
		t.Errorf("Counts() after d's deadline = %+v; want %+v", got, want)
	}
	want[3] = Snapshot{Preview: "sk-pro…4444", State: Active, LastStatus: 429}
	checkSnapshots(t, "Snapshots(false) after d's deadline", m.Snapshots(false), want)
	checkSnapshots(t, "Snapshots(true) after d's deadline", m.Snapshots(true), want[1:3])
	if got := m.Len(); got != 5 {
		t.Errorf("Len() = %d; want 5", got)
	}
}

func checkSnapshots(t *testing.T, name string, got, want []Snapshot) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s = %d snapshots; want %d", name, len(got), len(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.Preview != w.Preview || g.State != w.State || g.Requests != w.Requests || g.Failures != w.Failures ||
			g.LastStatus != w.LastStatus || g.Reason != w.Reason || !g.Since.Equal(w.Since) || !g.Until.Equal(w.Until) || g.FailCount != w.FailCount {
			t.Errorf("%s[%d] = %+v; want %+v", name, i, g, w)
		}
	}
}

// TestCurrentIndex: keys[CurrentIndex()] is the key the next Next returns.
func TestCurrentIndex(t *testing.T) {
	cases := []struct {
		name    string
		keys    int
		start   int
		benched []int
	}{
		{"all active", 5, 0, nil},
		{"all active start 3", 5, 3, nil},
		{"one benched", 5, 0, []int{1}},
		{"several benched", 8, 2, []int{0, 3, 4, 7}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			keys := testKeys(tc.keys)
			m := New(keys, Options{StartIndex: tc.start})
			for _, i := range tc.benched {
				m.Blacklist(keyAt(t, m, i), "invalid", 401)
			}
			for call := range 3 * tc.keys {
				idx := m.CurrentIndex()
				if idx < 0 || idx >= tc.keys {
					t.Fatalf("CurrentIndex() = %d; want 0..%d", idx, tc.keys-1)
				}
				k, err := m.Next()
				if err != nil {
					t.Fatalf("Next() error = %v; want a key", err)
				}
				if got := k.Secret().Reveal(); got != keys[idx] {
					t.Fatalf("call %d: CurrentIndex() = %d (%s); want the index of the key Next returned next, %s", call, idx, keys[idx], got)
				}
			}
		})
	}
}

func TestStateString(t *testing.T) {
	cases := []struct {
		s    State
		want string
	}{{Active, "active"}, {Cooling, "cooling"}, {Blacklisted, "blacklisted"}, {State(9), "unknown"}}
	for _, tc := range cases {
		t.Run(tc.want, func(t *testing.T) {
			if got := tc.s.String(); got != tc.want {
				t.Errorf("State(%d).String() = %q; want %q", tc.s, got, tc.want)
			}
		})
	}
}

func TestKeyPreviewHidesKey(t *testing.T) {
	raw := "sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"
	m := New([]string{raw}, Options{})
	k, err := m.Next()
	if err != nil {
		t.Fatalf("Next() error = %v; want a key", err)
	}
	for name, s := range map[string]string{
		"Preview":          k.Preview(),
		"Secret().String":  k.Secret().String(),
		"Sprint(Secret())": fmt.Sprint(k.Secret()),
		"Snapshot.Preview": m.Snapshots(false)[0].Preview,
	} {
		if s != "sk-pro…6789" {
			t.Errorf("%s = %q; want %q", name, s, "sk-pro…6789")
		}
	}
	if got := k.Secret().Reveal(); got != raw {
		t.Errorf("Secret().Reveal() = %q; want %q", got, raw)
	}
}

// largeN is above the size at which the rotation is rebuilt lazily.
const largeN = 10_001 + 4999

// TestLargeSetBlacklistNeverReturned: with a lazily rebuilt rotation, a key
// is never handed out once Blacklist has returned, even from a stale view.
func TestLargeSetBlacklistNeverReturned(t *testing.T) {
	t.Run("frozen clock", func(t *testing.T) {
		// A frozen clock never lets the rebuild gap pass, so every draw
		// below goes through the skip path of a stale view.
		clk := newClock()
		keys := testKeys(largeN)
		m := New(keys, Options{Now: clk.Now})
		benched := map[string]bool{}
		for i := 0; i < largeN; i += 3 {
			m.Blacklist(keyAt(t, m, i), "invalid", 401)
			benched[keys[i]] = true
		}
		for k, n := range draw(t, m, 3*largeN) {
			if benched[k] {
				t.Fatalf("Next() returned blacklisted key %s %d times; want 0", k, n)
			}
		}
		if c := m.Counts(); c.Blacklisted != len(benched) || c.Active != largeN-len(benched) {
			t.Errorf("Counts() = %+v; want %d blacklisted", c, len(benched))
		}
	})
	t.Run("concurrent", func(t *testing.T) {
		keys := testKeys(largeN)
		rank := make(map[string]int, largeN) // order in which keys are blacklisted
		order := make([]int, 0, largeN/2)
		for i := 0; i < largeN/2; i++ {
			j := (i * 7919) % largeN // spread over the set
			if _, ok := rank[keys[j]]; ok {
				continue
			}
			rank[keys[j]] = len(order)
			order = append(order, j)
		}
		m := New(keys, Options{})
		all := m.view.Load().all
		var done atomic.Int64 // keys order[:done] are blacklisted
		var stop atomic.Bool
		errs := make(chan string, 8)
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for !stop.Load() {
					d := done.Load()
					k, err := m.Next()
					if err != nil {
						errs <- fmt.Sprintf("Next() error = %v; want a key", err)
						return
					}
					if r, ok := rank[k.Secret().Reveal()]; ok && int64(r) < d {
						errs <- fmt.Sprintf("Next() = %s, blacklisted before the call; want a usable key", k.Preview())
						return
					}
				}
			})
		}
		for i, j := range order {
			m.Blacklist(all[j], "invalid", 401)
			done.Store(int64(i + 1))
		}
		stop.Store(true)
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Fatal(e)
		}
		// After a rebuild the survivors share evenly again.
		settle(t, m)
		var usable []string
		for _, k := range keys {
			if _, ok := rank[k]; !ok {
				usable = append(usable, k)
			}
		}
		n := 2*len(usable) + 17
		checkEven(t, draw(t, m, n), keys, usable, n)
	})
}

// settle waits (with a deadline) until the rotation reflects every state
// change and no background rebuild runs, so what follows measures a steady
// state.
func settle(tb testing.TB, m *Manager) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for m.dirty.Load() || m.rebuilding.Load() {
		if time.Now().After(deadline) {
			tb.Fatalf("rotation not rebuilt within 10s")
		}
		m.kick()
		time.Sleep(time.Millisecond) // polling, bounded by the deadline
	}
}

// TestLargeSetRebuildThrottled: a large set rebuilds its rotation in the
// background, at most about once per rebuildGap however many keys change
// state, and Next neither rebuilds nor waits for the rebuild's lock.
func TestLargeSetRebuildThrottled(t *testing.T) {
	clk := newClock()
	keys := testKeys(largeN)
	m := New(keys, Options{Now: clk.Now})
	all := m.view.Load().all

	m.Blacklist(all[0], "invalid", 401)
	settle(t, m)
	if got, want := len(m.view.Load().usable), largeN-1; got != want {
		t.Fatalf("usable keys after the background rebuild = %d; want %d", got, want)
	}

	// A reload or rebuild holding the lock: Next goes on, on the old view,
	// skipping the key that left, and does not rebuild.
	m.mu.Lock()
	v := m.view.Load()
	m.Blacklist(all[1], "invalid", 401)
	for range 3 * largeN {
		k, err := m.Next()
		if err != nil || k == all[1] || k == all[0] {
			m.mu.Unlock()
			t.Fatalf("Next() = %v, %v; want a usable key", k, err)
		}
	}
	if m.view.Load() != v {
		t.Errorf("Next() rebuilt the rotation of a large set; want it left to the background")
	}
	m.mu.Unlock()
	settle(t, m)
	if got, want := len(m.view.Load().usable), largeN-2; got != want {
		t.Errorf("usable keys after rebuild = %d; want %d", got, want)
	}

	// A burst of changes costs a few rebuilds, not one per change.
	before := m.rebuilds.Load()
	start := time.Now()
	for i := 2; i < 202; i++ {
		m.Blacklist(all[i], "invalid", 401)
	}
	settle(t, m)
	elapsed := time.Since(start)
	if got, limit := m.rebuilds.Load()-before, int64(elapsed/rebuildGap)+2; got > limit {
		t.Errorf("200 changes in %v caused %d rebuilds; want at most %d (one per %v)", elapsed, got, limit, rebuildGap)
	}
	if got, want := len(m.view.Load().usable), largeN-202; got != want {
		t.Errorf("usable keys after the burst = %d; want %d", got, want)
	}
}

func TestLargeSetCoolingReturns(t *testing.T) {
	clk := newClock()
	keys := testKeys(largeN)
	m := New(keys, Options{Now: clk.Now})
	for i := range largeN {
		m.Cool(keyAt(t, m, i), clk.Now().Add(time.Duration(i+1)*time.Second), "limit", 429)
	}
	if _, err := m.Next(); !IsNoKeys(err) {
		t.Fatalf("Next() with every key cooling = %v; want *NoKeysError", err)
	}
	clk.Advance(time.Second)
	k, err := m.Next()
	if err != nil {
		t.Fatalf("Next() at the first deadline = %v; want %s", err, keys[0])
	}
	if got := k.Secret().Reveal(); got != keys[0] {
		t.Errorf("Next() at the first deadline = %s; want %s", got, keys[0])
	}
}
