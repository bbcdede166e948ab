package cluster_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/gpt-load/gpt-load/internal/cluster"
)

// TestRedisRestartedEmptyGetsStatesBack: a Redis restarted without
// persistence comes back empty. The replicas must not forget the key they
// blacklisted: they write it back, and a replica starting afterwards
// learns it from Redis.
func TestRedisRestartedEmptyGetsStatesBack(t *testing.T) {
	f := newFixture(t, 11, 3)
	bad := f.Keys[2]
	f.Script.set(bad, invalidKey)
	rdb := redisClient(t, f.Redis)
	a, b := f.replica(t, "a"), f.replica(t, "b")
	blacklistThrough(t, a, bad)
	waitFor(t, propagation, "b shows the blacklisted key", func() bool { _, ok := b.benched(t, bad); return ok })

	f.Redis.Restart() // no persistence: everything is gone
	stored := defaultPrefix + "key:" + cluster.Fingerprint(bad)
	took := waitFor(t, 10*time.Second, "the replicas write the blacklist back", func() bool {
		return rdb.HGet(context.Background(), stored, "state").Val() == "blacklisted"
	})
	t.Logf("written back %v after the restart", took)
	for _, r := range []*replica{a, b} {
		if _, ok := r.benched(t, bad); !ok {
			t.Errorf("%s forgot the blacklisted key after Redis came back empty", r.Name)
		}
	}
	c := f.replica(t, "c")
	if _, ok := c.benched(t, bad); !ok {
		t.Error("a replica started after the restart does not know the blacklisted key")
	}
}

// TestOlderOrWeakerChangeNeverLiftsBlacklist publishes, as another
// replica would, changes that are older than a blacklist or weaker than
// it: the replica keeps the key blacklisted. A newer lift (a re-check that
// passed) ends it.
func TestOlderOrWeakerChangeNeverLiftsBlacklist(t *testing.T) {
	f := newFixture(t, 12, 3)
	bad := f.Keys[0]
	f.Script.set(bad, invalidKey)
	rdb := redisClient(t, f.Redis)
	a := f.replica(t, "a")
	blacklistThrough(t, a, bad)
	fp := cluster.Fingerprint(bad)
	publish := func(ev map[string]any) {
		t.Helper()
		ev["from"], ev["kind"], ev["fp"] = "other", "key", fp
		b, _ := json.Marshal(ev)
		if err := rdb.Publish(context.Background(), defaultPrefix+"events", string(b)).Err(); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	publish(map[string]any{"state": "active", "at": now.Add(-time.Hour).UnixMicro()})
	publish(map[string]any{"state": "cooling", "reason": "rate_limit_exceeded", "status": 429,
		"since": now.UnixMilli(), "until": now.Add(time.Minute).UnixMilli(), "at": now.Add(time.Second).UnixMicro()})
	// A marker change after them shows they were all handled.
	marker := f.Keys[1]
	mb, _ := json.Marshal(map[string]any{"from": "other", "kind": "key", "fp": cluster.Fingerprint(marker),
		"state": "blacklisted", "reason": "marker", "status": 401, "since": now.UnixMilli(), "at": now.Add(time.Second).UnixMicro()})
	rdb.Publish(context.Background(), defaultPrefix+"events", string(mb))
	waitFor(t, propagation, "the marker change is applied", func() bool { _, ok := a.benched(t, marker); return ok })
	got, ok := a.benched(t, bad)
	if !ok || got.Type != "permanent" || got.Reason != "invalid_api_key" {
		t.Errorf("after an older lift and a later cooling: %+v (benched %v); want still blacklisted for invalid_api_key", got, ok)
	}
	// A newer lift ends the blacklist.
	publish(map[string]any{"state": "active", "at": time.Now().Add(time.Second).UnixMicro()})
	waitFor(t, propagation, "a newer lift is applied", func() bool { _, ok := a.benched(t, bad); return !ok })
}
