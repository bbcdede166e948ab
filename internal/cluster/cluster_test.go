package cluster_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gpt-load/gpt-load/internal/cluster"
	"github.com/gpt-load/gpt-load/internal/testredis"
	"github.com/gpt-load/gpt-load/internal/testupstream"
)

// defaultPrefix is REDIS_PREFIX's default.
const defaultPrefix = "gpt-load:"

// fpSecret is the REDIS_FINGERPRINT_SECRET test replicas share.
const fpSecret = "test-fingerprint-secret"

// keyName is where a replica under prefix stores key's state in Redis.
func keyName(prefix, key string) string {
	return "{" + prefix + "}key:" + cluster.Fingerprint(fpSecret, key)
}

// channelName is the channel replicas under prefix publish on.
func channelName(prefix string) string { return "{" + prefix + "}events" }

// redisClient is a direct client to rs for looking at what the replicas
// stored, closed at the end of the test.
func redisClient(t testing.TB, rs *testredis.Server) *redis.Client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr, MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// fixture is the common setup: one Redis, one recording upstream whose
// answers follow a script, and a keys file the replicas share.
type fixture struct {
	Redis    *testredis.Server
	Script   *script
	Upstream *testupstream.Server
	Keys     []string
	opts     replicaOpts
}

func newFixture(t testing.TB, seed uint64, nkeys int) *fixture {
	t.Helper()
	f := &fixture{Redis: testredis.Start(t), Script: newScript(), Keys: makeKeys(seed, nkeys)}
	f.Upstream = testupstream.New(t, f.Script.serve)
	f.opts = replicaOpts{RedisURL: f.Redis.URL, KeysFile: writeKeysFile(t, f.Keys), Upstreams: []string{f.Upstream.URL}}
	return f
}

// replica starts a replica over the fixture; edit may change its options.
func (f *fixture) replica(t testing.TB, name string, edit ...func(*replicaOpts)) *replica {
	t.Helper()
	o := f.opts
	for _, e := range edit {
		e(&o)
	}
	return startReplica(t, name, o)
}

func TestBlacklistSharedAcrossReplicas(t *testing.T) {
	f := newFixture(t, 1, 3)
	bad := f.Keys[1]
	f.Script.set(bad, invalidKey)
	a, b := f.replica(t, "a"), f.replica(t, "b")

	blacklistThrough(t, a, bad)
	took := waitFor(t, propagation, "b's /blacklist shows the key a blacklisted", func() bool {
		_, ok := b.benched(t, bad)
		return ok
	})
	t.Logf("b applied a's blacklisting after %v", took)
	got, _ := b.benched(t, bad)
	if got.Type != "permanent" || got.Status != http.StatusUnauthorized || got.Reason != "invalid_api_key" {
		t.Errorf("b's /blacklist entry = %+v; want type permanent, status 401, reason invalid_api_key", got)
	}
	if n := len(b.blacklist(t).Keys); n != 1 {
		t.Errorf("b's /blacklist has %d keys; want 1", n)
	}

	offset := f.Upstream.Count()
	b.sendOK(t, 30)
	used := usedBy(f.Upstream, offset, "b")
	if used[bad] != 0 {
		t.Errorf("b sent the key a blacklisted %d times; want 0", used[bad])
	}
	for _, k := range []string{f.Keys[0], f.Keys[2]} {
		if used[k] < 14 || used[k] > 16 {
			t.Errorf("b sent %s %d times of 30; want 15±1 (even rotation over the 2 others)", preview(k), used[k])
		}
	}
}

func TestCoolingSharedAndExpiresOnBoth(t *testing.T) {
	f := newFixture(t, 2, 3)
	limited := f.Keys[0]
	// The first request with the key is rate limited for 2 s; later ones
	// succeed and are remembered with the time and replica.
	type use struct {
		at      time.Time
		replica string
	}
	var (
		mu    sync.Mutex
		uses  []use
		first atomic.Bool
	)
	f.Script.set(limited, func(w http.ResponseWriter, r *http.Request) {
		if first.CompareAndSwap(false, true) {
			rateLimited(2)(w, r)
			return
		}
		mu.Lock()
		uses = append(uses, use{time.Now(), r.Header.Get(replicaHeader)})
		mu.Unlock()
		answerOK(w, r)
	})
	usedAfter := func(name string) (n int, earliest time.Time) {
		mu.Lock()
		defer mu.Unlock()
		for _, u := range uses {
			if u.replica == name {
				if n == 0 {
					earliest = u.at
				}
				n++
			}
		}
		return n, earliest
	}
	a, b := f.replica(t, "a"), f.replica(t, "b")

	onA := blacklistThrough(t, a, limited)
	if onA.Type != "temporary" || onA.Status != http.StatusTooManyRequests || onA.Until == nil {
		t.Fatalf("a's /blacklist entry = %+v; want type temporary, status 429, an until", onA)
	}
	waitFor(t, propagation, "b's /blacklist shows the key cooling on a", func() bool {
		_, ok := b.benched(t, limited)
		return ok
	})
	onB, _ := b.benched(t, limited)
	if onB.Type != "temporary" || onB.Until == nil || *onB.Until != *onA.Until {
		t.Errorf("b's /blacklist entry = %+v; want type temporary until %s (a's deadline)", onB, *onA.Until)
	}
	// Until is the deadline truncated to the second: a use recorded before
	// it was certainly chosen before the deadline.
	until, err := time.Parse(time.RFC3339, *onA.Until)
	if err != nil {
		t.Fatal(err)
	}
	b.sendOK(t, 10)

	waitFor(t, time.Until(until)+3*time.Second, "both replicas use the key again after its deadline", func() bool {
		a.sendOK(t, 1)
		b.sendOK(t, 1)
		na, _ := usedAfter("a")
		nb, _ := usedAfter("b")
		return na > 0 && nb > 0
	})
	for _, name := range []string{"a", "b"} {
		if _, at := usedAfter(name); at.Before(until) {
			t.Errorf("%s used the cooling key at %v, before its deadline %v", name, at.Format(time.RFC3339Nano), until)
		}
	}
	for _, r := range []*replica{a, b} {
		if bl := r.blacklist(t); bl.Count != 0 {
			t.Errorf("%s's /blacklist after the deadline = %+v; want empty", r.Name, bl.Keys)
		}
	}
}

func TestResetKeysOnOneResetsAll(t *testing.T) {
	f := newFixture(t, 3, 3)
	bad := f.Keys[2]
	f.Script.set(bad, invalidKey)
	rdb := redisClient(t, f.Redis)
	a, b := f.replica(t, "a"), f.replica(t, "b")

	blacklistThrough(t, a, bad)
	waitFor(t, propagation, "b's /blacklist shows the key", func() bool {
		_, ok := b.benched(t, bad)
		return ok
	})

	f.Script.set(bad, nil) // the key works again, as after a fix upstream
	if status := b.do(t, http.MethodPost, "/reset-keys", nil); status != http.StatusOK {
		t.Fatalf("b: POST /reset-keys = %d; want 200", status)
	}
	if bl := b.blacklist(t); bl.Count != 0 {
		t.Errorf("b's /blacklist after its reset = %+v; want empty", bl.Keys)
	}
	took := waitFor(t, propagation, "a's /blacklist empties after the reset on b", func() bool {
		return a.blacklist(t).Count == 0
	})
	t.Logf("a applied b's reset after %v", took)
	if names := rdb.Keys(context.Background(), "{"+defaultPrefix+"}key:*").Val(); len(names) != 0 {
		t.Errorf("Redis still holds key states after the reset: %v", names)
	}

	offset := f.Upstream.Count()
	a.sendOK(t, 6)
	if n := usedBy(f.Upstream, offset, "a")[bad]; n < 1 || n > 3 {
		t.Errorf("a sent the reset key %d times of 6; want 2±1 (back in rotation)", n)
	}
}

func TestRedisOutageKeepsServingAndResyncs(t *testing.T) {
	f := newFixture(t, 4, 5)
	downKey, afterKey := f.Keys[3], f.Keys[4]
	rdb := redisClient(t, f.Redis)
	a, b := f.replica(t, "a"), f.replica(t, "b")
	a.sendOK(t, 3)
	b.sendOK(t, 3)
	for _, r := range []*replica{a, b} {
		if status, h := r.health(t); status != http.StatusOK || h.Redis != "up" {
			t.Fatalf("%s: /health = %d %+v; want 200 with redis up", r.Name, status, h)
		}
	}
	logA, logB := a.Logs.Len(), b.Logs.Len()

	// A bounded load through both replicas, running while Redis dies.
	var (
		sent, failed atomic.Int64
		firstErr     atomic.Value
		stop         = make(chan struct{})
		wg           sync.WaitGroup
	)
	// Bounded by time, not by count: a fast machine must not run out of
	// requests before the outage is under way.
	loadEnd := time.Now().Add(30 * time.Second)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(loadEnd); i++ {
				select {
				case <-stop:
					return
				default:
				}
				r := []*replica{a, b}[(g+i)%2]
				status, err := r.trySend()
				sent.Add(1)
				if err != nil || status != http.StatusOK {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%s: status %d, error %v", r.Name, status, err))
				}
			}
		}()
	}
	stopLoad := sync.OnceFunc(func() { close(stop); wg.Wait() })
	t.Cleanup(stopLoad)
	waitFor(t, 5*time.Second, "the load runs", func() bool { return sent.Load() >= 40 })
	f.Redis.Stop()
	redisIs := func(want string) func() bool {
		return func() bool {
			for _, r := range []*replica{a, b} {
				status, h := r.health(t)
				if status != http.StatusOK {
					t.Fatalf("%s: /health = %d %+v during the outage; want 200", r.Name, status, h)
				}
				if h.Redis != want {
					return false
				}
			}
			return true
		}
	}
	waitFor(t, propagation, `both /health show "redis":"down"`, redisIs("down"))
	n := sent.Load()
	waitFor(t, 5*time.Second, "the load goes on during the outage", func() bool { return sent.Load() >= n+100 })
	stopLoad()
	if failed.Load() != 0 {
		t.Errorf("%d of %d requests failed around the outage; want 0 (first: %v)", failed.Load(), sent.Load(), firstErr.Load())
	}
	t.Logf("%d requests through the outage", sent.Load())

	// A key a blacklists while Redis is down stays local for now.
	f.Script.set(downKey, onlyFrom("a", invalidKey))
	blacklistThrough(t, a, downKey)
	if _, ok := b.benched(t, downKey); ok {
		t.Fatal("b shows the key while Redis is down: it learned it by itself, the test proves nothing")
	}

	f.Redis.Restart()
	took := waitFor(t, 10*time.Second, `both /health show "redis":"up"`, redisIs("up"))
	t.Logf("both replicas reconnected %v after Redis restarted", took)
	// Messages are only heard once subscribed again: that must follow.
	took = waitFor(t, propagation, "both replicas subscribe again", func() bool {
		return rdb.PubSubNumSub(context.Background(), channelName(defaultPrefix)).Val()[channelName(defaultPrefix)] == 2
	})
	t.Logf("both replicas resubscribed %v later", took)
	waitFor(t, 5*time.Second, "b shows the key a blacklisted during the outage", func() bool {
		_, ok := b.benched(t, downKey)
		return ok
	})
	// Once reconnected, changes flow as before: within a second.
	f.Script.set(afterKey, onlyFrom("a", invalidKey))
	blacklistThrough(t, a, afterKey)
	took = waitFor(t, propagation, "b shows a key a blacklisted after the outage", func() bool {
		_, ok := b.benched(t, afterKey)
		return ok
	})
	t.Logf("after the outage, b applied a's change after %v", took)

	for _, c := range []struct {
		r      *replica
		offset int
	}{{a, logA}, {b, logB}} {
		if n := c.r.count(c.offset, "redis unreachable"); n != 1 {
			t.Errorf("%s logged the outage %d times; want once\n%s", c.r.Name, n, c.r.redisLogs(c.offset))
		}
		if n := c.r.count(c.offset, "redis connected"); n != 1 {
			t.Errorf("%s logged the reconnection %d times; want once\n%s", c.r.Name, n, c.r.redisLogs(c.offset))
		}
	}
}

func TestLateReplicaLoadsStateBeforeServing(t *testing.T) {
	f := newFixture(t, 5, 3)
	bad := f.Keys[0]
	f.Script.set(bad, invalidKey)
	rdb := redisClient(t, f.Redis)
	a := f.replica(t, "a")
	blacklistThrough(t, a, bad)
	stored := keyName(defaultPrefix, bad)
	waitFor(t, propagation, "a writes the blacklisting to Redis", func() bool {
		return rdb.Exists(context.Background(), stored).Val() == 1
	})

	late := f.replica(t, "late")
	if got, ok := late.benched(t, bad); !ok || got.Type != "permanent" {
		t.Fatalf("the late replica's first /blacklist = %+v; want the key a blacklisted", late.blacklist(t).Keys)
	}
	offset := f.Upstream.Count()
	late.sendOK(t, 10)
	if n := usedBy(f.Upstream, offset, "late")[bad]; n != 0 {
		t.Errorf("the late replica's first requests used the blacklisted key %d times; want 0", n)
	}
}

func TestClusterTotalsSumEveryReplica(t *testing.T) {
	f := newFixture(t, 6, 3)
	a, b := f.replica(t, "a"), f.replica(t, "b")
	a.sendOK(t, 7)
	b.sendOK(t, 5)
	// Each replica adds its counters to Redis and reads the sum back every
	// 500 ms, so the sum may take two such periods to show.
	took := waitFor(t, propagation+500*time.Millisecond, "both /stats show the cluster totals", func() bool {
		sa, sb := a.stats(t), b.stats(t)
		sum := int64(sa.Requests.TotalCount + sb.Requests.TotalCount)
		return sum == 12 && sa.Cluster != nil && sb.Cluster != nil &&
			sa.Cluster.TotalCount == sum && sb.Cluster.TotalCount == sum &&
			sa.Cluster.SuccessCount == sum && sb.Cluster.SuccessCount == sum
	})
	t.Logf("cluster totals settled after %v", took)
	for _, r := range []*replica{a, b} {
		if s := r.stats(t); s.Redis != "up" || s.Cluster.FailureCount != 0 || s.Cluster.RetryCount != 0 {
			t.Errorf("%s: /stats redis %q cluster %+v; want up, no failures or retries", r.Name, s.Redis, *s.Cluster)
		}
	}
}

func TestTargetBenchShared(t *testing.T) {
	f := newFixture(t, 7, 3)
	broken := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusServiceUnavailable, `{"error":{"message":"overloaded","type":"server_error"}}`)
	})
	both := func(o *replicaOpts) { o.Upstreams = []string{broken.URL, f.Upstream.URL} }
	r1, r2 := f.replica(t, "r1", both), f.replica(t, "r2", both)

	waitFor(t, 5*time.Second, "the broken upstream answers 503 three times through r1", func() bool {
		r1.sendOK(t, 1) // retried on the other upstream
		return broken.Count() >= 3
	})
	state := func(r *replica) (string, string) {
		for _, ts := range r.stats(t).Targets {
			if ts.URL == broken.URL {
				return ts.State, ts.BenchedUntil
			}
		}
		t.Fatalf("%s: /stats has no target %s", r.Name, broken.URL)
		return "", ""
	}
	if s, _ := state(r1); s != "benched" {
		t.Fatalf("r1: target state %q after 3 failures; want benched", s)
	}
	took := waitFor(t, propagation, "r2's /stats shows the target r1 benched", func() bool {
		s, _ := state(r2)
		return s == "benched"
	})
	t.Logf("r2 applied the bench after %v", took)
	_, until1 := state(r1)
	if _, until2 := state(r2); until2 != until1 {
		t.Errorf("r2: target benched until %q; want r1's %q", until2, until1)
	}
	n := broken.Count()
	r2.sendOK(t, 10)
	if got := broken.Count(); got != n {
		t.Errorf("r2 sent %d requests to the benched target; want 0", got-n)
	}
}

func TestRecheckLeaseOneReplicaPerInterval(t *testing.T) {
	const interval = 300 * time.Millisecond
	f := newFixture(t, 8, 3)
	bad := f.Keys[1]
	var (
		mu     sync.Mutex
		checks []time.Time
	)
	f.Script.set(bad, func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Path == "/v1/models" {
			mu.Lock()
			checks = append(checks, time.Now())
			mu.Unlock()
		}
		invalidKey(w, r)
	})
	recheck := func(o *replicaOpts) { o.Recheck = interval }
	a, b := f.replica(t, "a", recheck), f.replica(t, "b", recheck)
	blacklistThrough(t, a, bad)
	waitFor(t, propagation, "b's /blacklist shows the key", func() bool {
		_, ok := b.benched(t, bad)
		return ok
	})
	mu.Lock()
	offset := len(checks)
	mu.Unlock()

	var got []time.Time
	waitFor(t, 60*interval, "eight re-checks", func() bool {
		mu.Lock()
		defer mu.Unlock()
		got = slices.Clone(checks[offset:])
		return len(got) >= 8
	})
	// Without the lease both replicas check each interval: n checks span
	// about n/2 intervals. With it, one check per interval (the lease lasts
	// 9/10 of one): n checks span at least n-1 leases. The whole span is
	// checked, not each gap: a check a busy machine delays can come close
	// to the next one, but delays only lengthen the span.
	span := got[len(got)-1].Sub(got[0])
	if least := time.Duration(len(got)-1) * interval * 7 / 10; span < least {
		t.Errorf("%d re-checks within %v; want one per interval (%v), at least %v for them", len(got), span, interval, least)
	}
	for _, r := range []*replica{a, b} {
		if _, ok := r.benched(t, bad); !ok {
			t.Errorf("%s: the key failing its re-check is no longer blacklisted", r.Name)
		}
	}
}
