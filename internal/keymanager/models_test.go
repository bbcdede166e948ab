package keymanager

import (
	"fmt"
	"testing"
	"time"
)

func TestExcludeModel(t *testing.T) {
	clk := newClock()
	m := New(testKeys(3), Options{Now: clk.Now, ModelCooldown: time.Minute})
	k0 := keyAt(t, m, 0)
	if m.AnyModelExcluded() {
		t.Fatal("a fresh manager reports model exclusions")
	}
	if !m.ExcludeModel(k0, "gpt-4o", 0) {
		t.Error("ExcludeModel(new pair) = false; want true")
	}
	if m.ExcludeModel(k0, "gpt-4o", 0) {
		t.Error("ExcludeModel(same pair again) = true; want false")
	}
	for range 30 {
		k, excluded, err := m.NextFor("gpt-4o")
		if err != nil || excluded || k == k0 {
			t.Fatalf("NextFor(gpt-4o) = %v, %v, %v; want a key other than the excluded one", k, excluded, err)
		}
	}
	seen := map[*Key]int{}
	for range 30 {
		k, _, _ := m.NextFor("gpt-4o-mini")
		seen[k]++
	}
	if seen[k0] != 10 {
		t.Errorf("the key excluded for gpt-4o served gpt-4o-mini %d of 30 times; want 10", seen[k0])
	}
	if s := m.Snapshots(false)[0]; s.State != Active || len(s.Models) != 1 || s.Models[0].Model != "gpt-4o" {
		t.Errorf("snapshot = %+v; want active with gpt-4o excluded", s)
	}
	clk.Advance(time.Minute)
	if k0.excludedFor("gpt-4o", clk.Now().UnixNano()) {
		t.Error("the exclusion outlived MODEL_COOLDOWN")
	}
	if !m.ExcludeModel(k0, "gpt-4o", 0) {
		t.Error("ExcludeModel after expiry = false; want a new pair")
	}
}

// TestNextForAllExcluded: when every key is excluded for a model, one is
// still returned, marked excluded, so the client gets the provider's own
// answer.
func TestNextForAllExcluded(t *testing.T) {
	m := New(testKeys(4), Options{})
	for _, k := range m.Keys() {
		m.ExcludeModel(k, "gpt-nope", 0)
	}
	k, excluded, err := m.NextFor("gpt-nope")
	if err != nil || k == nil || !excluded {
		t.Errorf("NextFor(model every key lacks) = %v, %v, %v; want a key, excluded", k, excluded, err)
	}
}

func TestModelExclusionsBounded(t *testing.T) {
	m := New(testKeys(1), Options{})
	k := keyAt(t, m, 0)
	for i := range MaxModelsPerKey + 10 {
		m.ExcludeModel(k, fmt.Sprintf("model-%d", i), 0)
	}
	s := k.Snapshot()
	if len(s.Models) != MaxModelsPerKey {
		t.Fatalf("%d models excluded; want the bound %d", len(s.Models), MaxModelsPerKey)
	}
	if s.Models[0].Model != "model-10" || s.Models[len(s.Models)-1].Model != fmt.Sprintf("model-%d", MaxModelsPerKey+9) {
		t.Errorf("kept %s..%s; want the newest (oldest dropped)", s.Models[0].Model, s.Models[len(s.Models)-1].Model)
	}
}

func TestNextForWithoutExclusionsDoesNotAllocate(t *testing.T) {
	m := New(testKeys(1000), Options{})
	if n := testing.AllocsPerRun(1000, func() { m.NextFor("gpt-4o") }); n != 0 {
		t.Errorf("NextFor allocates %v times; want 0", n)
	}
	m.ExcludeModel(keyAt(t, m, 3), "gpt-4o", 0)
	if n := testing.AllocsPerRun(1000, func() { m.NextFor("gpt-4o") }); n != 0 {
		t.Errorf("NextFor with an exclusion allocates %v times; want 0", n)
	}
}

func TestQuotaExhaustedRestsUntilReset(t *testing.T) {
	clk := newClock()
	m := New(testKeys(2), Options{Now: clk.Now})
	k := keyAt(t, m, 0)
	reset := clk.Now().Add(20 * time.Second)
	if !m.ObserveQuota(k, Quota{RequestsRemaining: 0, TokensRemaining: 500, Reset: reset}) {
		t.Fatal("ObserveQuota(0 requests left) did not rest the key")
	}
	s := m.Snapshots(false)[0]
	if s.State != Cooling || s.Reason != ReasonQuotaHeaders || !s.Until.Equal(reset) || s.Quota.TokensRemaining != 500 {
		t.Errorf("snapshot = %+v; want cooling (quota_headers) until the reset, 500 tokens seen", s)
	}
	if k.limitStreak.Load() != 0 {
		t.Error("a quota rest touched the rate-limit doubling")
	}
	// Plenty left: nothing changes but the figures.
	if m.ObserveQuota(keyAt(t, m, 1), Quota{RequestsRemaining: 10, TokensRemaining: -1}) {
		t.Error("ObserveQuota(10 left) rested the key")
	}
}

// TestApplySetsWhatItIsTold: the shared state is ordered in Redis, so
// Apply sets the state it is given, a cooling over a blacklist included,
// and a lift clears the failure count.
func TestApplySetsWhatItIsTold(t *testing.T) {
	m := New(testKeys(2), Options{})
	k := keyAt(t, m, 0)
	m.Blacklist(k, "invalid_api_key", 401)
	until := time.Now().Add(time.Minute).Truncate(time.Millisecond)
	m.Apply(k, Change{State: Cooling, Until: until, Reason: "rate_limit_exceeded", Status: 429, FailCount: 2})
	if s := k.Snapshot(); s.State != Cooling || !s.Until.Equal(until) || s.Reason != "rate_limit_exceeded" || s.FailCount != 2 {
		t.Errorf("after applying a rest over a blacklist: %+v; want cooling until %v for rate_limit_exceeded, 2 failures", s, until)
	}
	m.Apply(k, Change{State: Active})
	if s := k.Snapshot(); s.State != Active || s.FailCount != 0 {
		t.Errorf("after applying a lift: %v with %d failures; want active with 0", s.State, s.FailCount)
	}
}

// BenchmarkNextFor measures choosing a key for a model without exclusions
// (exactly Next) and with every tenth key excluded for the requested
// model (its own rotation: a binary search over the exclusions). Fair like
// BenchmarkNext: the rotation is rebuilt before the timer starts.
func BenchmarkNextFor(b *testing.B) {
	for _, n := range []int{1000, 1_000_000} {
		for _, excluded := range []bool{false, true} {
			name := fmt.Sprintf("keys=%d/no-exclusions", n)
			if excluded {
				name = fmt.Sprintf("keys=%d/excluded=10%%", n)
			}
			b.Run(name, func(b *testing.B) {
				m := New(testKeys(n), Options{})
				if excluded {
					for i, k := range m.Keys() {
						if i%10 == 3 {
							m.ExcludeModel(k, "gpt-4o", 0)
						}
					}
					settle(b, m)
				}
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if k, excl, err := m.NextFor("gpt-4o"); err != nil || excl || k == nil {
							b.Errorf("NextFor = %v, %v, %v", k, excl, err)
							return
						}
					}
				})
			})
		}
	}
}
