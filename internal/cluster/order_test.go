package cluster_test

import (
	"context"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gpt-load/gpt-load/internal/cluster"
	"github.com/gpt-load/gpt-load/internal/server"
	"github.com/gpt-load/gpt-load/internal/testredis"
)

// The tests of this file are SPEC §17's ordering rules, each a case that
// broke before changes were ordered in Redis (issue 20): order and
// deadlines come from Redis, not from the replicas' clocks.

// linked starts a replica that reaches Redis through its own link, which
// the test can cut to give that replica alone an outage.
func (f *fixture) linked(t *testing.T, name string, edit ...func(*replicaOpts)) (*replica, *testredis.Link) {
	t.Helper()
	link := testredis.NewLink(t, f.Redis.Addr)
	r := f.replica(t, name, append([]func(*replicaOpts){func(o *replicaOpts) { o.RedisURL = link.URL }}, edit...)...)
	return r, link
}

// redisState waits until r's /health shows Redis as want ("up", "down").
func redisState(t *testing.T, r *replica, want string) {
	t.Helper()
	waitFor(t, 10*time.Second, r.Name+` shows "redis":"`+want+`"`, func() bool {
		_, h := r.health(t)
		return h.Redis == want
	})
}

// settled makes sure everything r had queued for Redis before this call
// has reached the others: it blacklists marker through r and waits until
// every replica of others shows it. Changes leave a replica in the order
// of its flushes, so a change queued before the marker's went first.
func settled(t *testing.T, f *fixture, r *replica, marker string, others ...*replica) {
	t.Helper()
	f.Script.set(marker, onlyFrom(r.Name, invalidKey))
	blacklistThrough(t, r, marker)
	for _, o := range others {
		waitFor(t, propagation, o.Name+" shows the marker "+preview(marker), func() bool {
			_, ok := o.benched(t, marker)
			return ok
		})
	}
}

// TestEndedRestLiftsNothing: a replica cut off from Redis rests a key
// shortly (Retry-After: 1) after another replica blacklisted it; the rest
// has ended by the time the first is back. Flushed then, it must not lift
// the blacklist: an ended rest is not a lift. Before, it was flushed as
// "active" with a newer time and lifted the blacklist everywhere.
func TestEndedRestLiftsNothing(t *testing.T) {
	f := newFixture(t, 21, 6)
	k, marker := f.Keys[0], f.Keys[1]
	a, link := f.linked(t, "a")
	b := f.replica(t, "b")

	link.Cut()
	redisState(t, a, "down")
	// The blacklist comes first, the rest after it (unheard of by a).
	f.Script.set(k, onlyFrom("b", invalidKey))
	blacklistThrough(t, b, k)
	f.Script.set(k, onlyFrom("a", rateLimited(1)))
	if got := blacklistThrough(t, a, k); got.Type != "temporary" {
		t.Fatalf("a: %+v; want k resting", got)
	}
	waitFor(t, 5*time.Second, "a's rest of k ends", func() bool { _, ok := a.benched(t, k); return !ok })

	link.Restore()
	redisState(t, a, "up")
	settled(t, f, a, marker, b)
	for _, r := range []*replica{a, b} {
		if got, ok := r.benched(t, k); !ok || got.Type != "permanent" {
			t.Errorf("%s after a's ended rest reached Redis: %+v (out: %v); want k blacklisted", r.Name, got, ok)
		}
	}
}

// TestRestNeverLowersBlacklistWhateverTheClocks: a replica whose clock is
// ten minutes ahead rests a key while cut off; meanwhile another replica
// blacklists it. Before, the rest's "newer" time made the first replica
// keep its rest over the blacklist (and show the key active when it
// ended). Severity comes first: both show the blacklist.
func TestRestNeverLowersBlacklistWhateverTheClocks(t *testing.T) {
	f := newFixture(t, 22, 6)
	k, marker := f.Keys[0], f.Keys[1]
	ahead := func(o *replicaOpts) { o.Clock = func() time.Time { return time.Now().Add(10 * time.Minute) } }
	a, link := f.linked(t, "a", ahead)
	b := f.replica(t, "b")

	link.Cut()
	redisState(t, a, "down")
	f.Script.set(k, onlyFrom("a", rateLimited(60)))
	blacklistThrough(t, a, k)
	f.Script.set(k, onlyFrom("b", invalidKey))
	blacklistThrough(t, b, k)

	link.Restore()
	redisState(t, a, "up")
	settled(t, f, a, marker, b)
	for _, r := range []*replica{a, b} {
		if got, ok := r.benched(t, k); !ok || got.Type != "permanent" || got.Reason != "invalid_api_key" {
			t.Errorf("%s: %+v (out: %v); want k blacklisted for invalid_api_key", r.Name, got, ok)
		}
	}
}

// TestResetWinsOverChangesQueuedBeforeIt: a replica cut off from Redis
// blacklists a key; another replica's /reset-keys comes while it is away.
// Back, the queued blacklist (decided before the reset, in Redis's order)
// is dropped and the replica resets too. Before, the blacklist was written
// back at reconnect and applied everywhere: the reset was undone. A reset
// asked of the cut-off replica holds there only, and its answer says so.
func TestResetWinsOverChangesQueuedBeforeIt(t *testing.T) {
	f := newFixture(t, 23, 6)
	k, marker := f.Keys[0], f.Keys[1]
	a, link := f.linked(t, "a")
	b := f.replica(t, "b")

	link.Cut()
	redisState(t, a, "down")
	f.Script.set(k, onlyFrom("a", invalidKey))
	blacklistThrough(t, a, k)
	f.Script.set(k, nil)
	var rk server.ResetKeys
	if status := b.do(t, http.MethodPost, "/reset-keys", &rk); status != http.StatusOK || !strings.Contains(rk.Message, "every replica") {
		t.Fatalf("b: POST /reset-keys = %d %q; want 200 saying every replica", status, rk.Message)
	}

	link.Restore()
	redisState(t, a, "up")
	waitFor(t, propagation, "a resets as b asked", func() bool { _, ok := a.benched(t, k); return !ok })
	settled(t, f, a, marker, b)
	for _, r := range []*replica{a, b} {
		if got, ok := r.benched(t, k); ok {
			t.Errorf("%s shows %+v: a blacklist decided before the reset survived it", r.Name, got)
		}
	}

	// Cut off, a reset is this replica's alone.
	link.Cut()
	redisState(t, a, "down")
	if status := a.do(t, http.MethodPost, "/reset-keys", &rk); status != http.StatusOK || !strings.Contains(rk.Message, "this replica only") {
		t.Errorf("a, cut off: POST /reset-keys = %d %q; want 200 saying this replica only", status, rk.Message)
	}
	if _, ok := a.benched(t, marker); ok {
		t.Error("a still shows the marker after its own reset")
	}
	if _, ok := b.benched(t, marker); !ok {
		t.Error("a reset on a cut-off replica reached b")
	}
	link.Restore()
	redisState(t, a, "up")
	waitFor(t, propagation, "a takes the shared blacklist back", func() bool { _, ok := a.benched(t, marker); return ok })
}

// TestReaddedKeyStaysActive: a key blacklisted everywhere is removed from
// the keys file and re-added (SIGHUP on each replica): it is active
// everywhere, and stays so when a replica reconnects to Redis. Before,
// Redis kept the old blacklist for ever and the reconnecting replica
// applied it again (the re-added key's change time was 0).
func TestReaddedKeyStaysActive(t *testing.T) {
	f := newFixture(t, 24, 6)
	k, marker := f.Keys[0], f.Keys[1]
	path := f.opts.KeysFile
	a, link := f.linked(t, "a")
	b := f.replica(t, "b")
	f.Script.set(k, onlyFrom("a", invalidKey))
	blacklistThrough(t, a, k)
	waitFor(t, propagation, "b shows k", func() bool { _, ok := b.benched(t, k); return ok })
	f.Script.set(k, nil)

	reload := func(keys []string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(strings.Join(keys, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, r := range []*replica{a, b} {
			if err := r.App.Reload(false); err != nil {
				t.Fatalf("%s: reload: %v", r.Name, err)
			}
		}
	}
	reload(f.Keys[1:])
	reload(f.Keys)
	for _, r := range []*replica{a, b} {
		if got, ok := r.benched(t, k); ok {
			t.Errorf("%s right after the re-add: %+v; want k active", r.Name, got)
		}
	}

	link.Cut()
	redisState(t, a, "down")
	link.Restore()
	redisState(t, a, "up")
	settled(t, f, a, marker, b)
	for _, r := range []*replica{a, b} {
		if got, ok := r.benched(t, k); ok {
			t.Errorf("%s after a reconnected: %+v; want the re-added key still active", r.Name, got)
		}
	}
}

// TestLateChangeOnResetKeyDropped: a request in flight during /reset-keys
// gets its 429 after the reset, on the key object the reset replaced.
// Before, that rest reached Redis and the other replica cooled the key
// while the resetting one showed it active. Now it is dropped: it was
// decided on a key this replica no longer holds.
func TestLateChangeOnResetKeyDropped(t *testing.T) {
	f := newFixture(t, 25, 3)
	k, marker := f.Keys[0], f.Keys[1]
	a, b := f.replica(t, "a"), f.replica(t, "b")
	held, release := make(chan struct{}), make(chan struct{})
	var once atomic.Bool
	f.Script.set(k, onlyFrom("a", func(w http.ResponseWriter, r *http.Request) {
		if once.CompareAndSwap(false, true) {
			close(held)
			<-release
			rateLimited(60)(w, r)
			return
		}
		answerOK(w, r)
	}))
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-held:
				return
			default:
			}
			if _, err := a.trySend(); err != nil {
				return
			}
		}
	}()
	select {
	case <-held:
	case <-time.After(5 * time.Second):
		t.Fatal("no request through a reached k within 5s")
	}
	if status := a.do(t, http.MethodPost, "/reset-keys", nil); status != http.StatusOK {
		t.Fatalf("a: POST /reset-keys = %d; want 200", status)
	}
	close(release)
	<-done
	settled(t, f, a, marker, b)
	for _, r := range []*replica{a, b} {
		if got, ok := r.benched(t, k); ok {
			t.Errorf("%s shows %+v: a rest decided on the key object the reset replaced came back", r.Name, got)
		}
	}
}

// TestClocksMinutesApart: replicas' clocks differ by ten minutes either
// way. A 60 s rest decided by the one ahead lasts about 60 s on its peers
// (before: 11 minutes, its deadline read on their clocks), and a re-check
// lift by the one behind ends a blacklist decided by a peer (before:
// dropped as "older").
func TestClocksMinutesApart(t *testing.T) {
	f := newFixture(t, 26, 6)
	rested, dead := f.Keys[0], f.Keys[1]
	skew := func(d time.Duration, recheck time.Duration) func(*replicaOpts) {
		return func(o *replicaOpts) {
			o.Clock = func() time.Time { return time.Now().Add(d) }
			o.Recheck = recheck
		}
	}
	ahead := f.replica(t, "ahead", skew(10*time.Minute, 0))
	b := f.replica(t, "b")
	// Only the replica behind runs re-checks.
	behind := f.replica(t, "behind", skew(-10*time.Minute, 300*time.Millisecond))

	f.Script.set(rested, onlyFrom("ahead", rateLimited(60)))
	blacklistThrough(t, ahead, rested)
	for _, r := range []*replica{b, behind} {
		var got server.BlacklistedKey
		waitFor(t, propagation, r.Name+" shows the rest", func() bool {
			var ok bool
			got, ok = r.benched(t, rested)
			return ok
		})
		if got.Until == nil {
			t.Fatalf("%s: %+v; want a rest with a deadline", r.Name, got)
		}
		until, err := time.Parse(time.RFC3339, *got.Until)
		if err != nil {
			t.Fatalf("%s: until %q: %v", r.Name, *got.Until, err)
		}
		// /blacklist shows times on the replica's own clock.
		now := time.Now()
		if r == behind {
			now = now.Add(-10 * time.Minute)
		}
		if left := until.Sub(now); left < 50*time.Second || left > 70*time.Second {
			t.Errorf("%s: a 60 s rest decided by a replica 10 min ahead ends in %v; want about 60s", r.Name, left.Round(time.Second))
		}
	}

	f.Script.set(dead, onlyFrom("b", invalidKey))
	blacklistThrough(t, b, dead)
	waitFor(t, propagation, "behind shows the blacklist", func() bool { _, ok := behind.benched(t, dead); return ok })
	f.Script.set(dead, nil) // the key works again: behind's re-check lifts it
	for _, r := range []*replica{behind, b, ahead} {
		waitFor(t, 5*time.Second, r.Name+" shows the lift of the replica behind", func() bool {
			_, ok := r.benched(t, dead)
			return !ok
		})
	}
}

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
	stored := keyName(defaultPrefix, bad)
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

// TestFingerprintsAreKeyed: with REDIS_FINGERPRINT_SECRET the name of a
// key's state in Redis is its HMAC, which a guessed key's plain SHA-256
// does not find; without it, the replica warns at start.
func TestFingerprintsAreKeyed(t *testing.T) {
	f := newFixture(t, 27, 3)
	bad := f.Keys[0]
	f.Script.set(bad, invalidKey)
	rdb := redisClient(t, f.Redis)
	a := f.replica(t, "a")
	blacklistThrough(t, a, bad)
	waitFor(t, propagation, "the state reaches Redis under the keyed name", func() bool {
		return rdb.Exists(context.Background(), keyName(defaultPrefix, bad)).Val() == 1
	})
	plain := "{" + defaultPrefix + "}key:" + cluster.Fingerprint("", bad)
	if rdb.Exists(context.Background(), plain).Val() != 0 {
		t.Errorf("Redis holds %s, the plain hash of the key", plain)
	}
	if n := a.count(0, "REDIS_FINGERPRINT_SECRET is not set"); n != 0 {
		t.Errorf("a replica with a secret warned %d times about not having one", n)
	}
	bare := f.replica(t, "bare", func(o *replicaOpts) { o.Vars = map[string]string{"REDIS_FINGERPRINT_SECRET": ""} })
	if n := bare.count(0, "REDIS_FINGERPRINT_SECRET is not set"); n != 1 {
		t.Errorf("a replica without a secret warned %d times; want once", n)
	}
}
