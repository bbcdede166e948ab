package cluster_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gpt-load/gpt-load/internal/testredis"
	"github.com/gpt-load/gpt-load/internal/testupstream"
)

// tagPrefix is the REDIS_PREFIX of the Redis Cluster tests. Its hash tag
// puts every name the replicas use in one slot whether or not the names
// carry a tag of their own ("{"+prefix+"}key:…" keeps "{gpt-load" as the
// tag), so a SCAN on the slot's master sees the whole deployment.
const tagPrefix = "{gpt-load}:"

// newHAFixture is newFixture over a Redis given by URL (Sentinel or
// Cluster) instead of one server.
func newHAFixture(t testing.TB, seed uint64, nkeys int, redisURL, prefix string) *fixture {
	t.Helper()
	f := &fixture{Script: newScript(), Keys: makeKeys(seed, nkeys)}
	f.Upstream = testupstream.New(t, f.Script.serve)
	f.opts = replicaOpts{RedisURL: redisURL, Prefix: prefix, KeysFile: writeKeysFile(t, f.Keys), Upstreams: []string{f.Upstream.URL}}
	return f
}

// traffic sends chat completions through replicas from two goroutines
// until stopped, counting what did not answer 200.
type traffic struct {
	sent, failed atomic.Int64
	firstErr     atomic.Pointer[string]
	// from and firstOK: the first success of a request sent at or after
	// from, in unix nanoseconds (0: none yet).
	from, firstOK atomic.Int64
	stop          chan struct{}
	wg            sync.WaitGroup
	once          sync.Once
}

func startTraffic(t testing.TB, rs ...*replica) *traffic {
	t.Helper()
	tr := &traffic{stop: make(chan struct{})}
	for g := range 2 {
		tr.wg.Add(1)
		go func() {
			defer tr.wg.Done()
			for i := g; ; i++ {
				select {
				case <-tr.stop:
					return
				default:
				}
				r := rs[i%len(rs)]
				start := time.Now()
				status, err := r.trySend()
				tr.sent.Add(1)
				if err != nil || status != http.StatusOK {
					tr.failed.Add(1)
					msg := fmt.Sprintf("%s: status %d, error %v", r.Name, status, err)
					tr.firstErr.CompareAndSwap(nil, &msg)
					continue
				}
				if from := tr.from.Load(); from != 0 && start.UnixNano() >= from {
					tr.firstOK.CompareAndSwap(0, time.Now().UnixNano())
				}
			}
		}()
	}
	t.Cleanup(tr.Stop)
	waitFor(t, 5*time.Second, "the traffic runs", func() bool { return tr.sent.Load() >= 40 })
	return tr
}

// mark starts watching for the first success of a request sent from now.
func (tr *traffic) mark(at time.Time) { tr.from.Store(at.UnixNano()) }

// Stop ends the traffic and waits for requests in flight.
func (tr *traffic) Stop() { tr.once.Do(func() { close(tr.stop); tr.wg.Wait() }) }

// check stops the traffic and fails the test if any request failed.
func (tr *traffic) check(t testing.TB, around string) {
	t.Helper()
	tr.Stop()
	if n := tr.failed.Load(); n != 0 {
		t.Errorf("%d of %d requests failed %s; want 0 (first: %s)", n, tr.sent.Load(), around, *tr.firstErr.Load())
	}
}

// milestone is a condition of a timeline and when it first held.
type milestone struct {
	name string
	cond func() bool
	at   time.Duration // since the timeline's start; 0: not yet
}

// timeline polls milestones together every 10 ms until all have held,
// recording when each first did, and fails the test at the deadline. It
// logs the timeline either way.
func timeline(t testing.TB, start time.Time, timeout time.Duration, ms ...*milestone) {
	t.Helper()
	defer func() {
		var b strings.Builder
		for _, m := range ms {
			if m.at == 0 {
				fmt.Fprintf(&b, "\n  %-58s not within %v", m.name, timeout)
				continue
			}
			fmt.Fprintf(&b, "\n  %-58s +%v", m.name, m.at.Round(time.Millisecond))
		}
		t.Logf("timeline from %s:%s", start.Format("15:04:05.000"), b.String())
	}()
	deadline := start.Add(timeout)
	for {
		pending := 0
		for _, m := range ms {
			if m.at == 0 && m.cond() {
				m.at = time.Since(start)
			}
			if m.at == 0 {
				pending++
			}
		}
		if pending == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("timeline: %d milestones not reached within %v", pending, timeout)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// logged reports whether r logged a message starting with msg after offset.
func logged(r *replica, offset int, msg string) func() bool {
	return func() bool { return r.count(offset, msg) > 0 }
}

// shows reports whether r's /blacklist holds key.
func shows(t testing.TB, r *replica, key string) func() bool {
	return func() bool {
		_, ok := r.benched(t, key)
		return ok
	}
}

func TestSentinelFailoverKeepsStateAndServes(t *testing.T) {
	s := testredis.StartSentinel(t)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("Redis processes:\n%s", s.Output())
		}
	})
	f := newHAFixture(t, 31, 4, s.URL, "")
	before, after := f.Keys[1], f.Keys[2]
	f.Script.set(before, invalidKey)
	a, b := f.replica(t, "a"), f.replica(t, "b")

	blacklistThrough(t, a, before)
	took := waitFor(t, propagation, "b shows the key a blacklisted before the failover", shows(t, b, before))
	t.Logf("b applied a's blacklisting after %v, through the first master", took)

	// The sentinels announce the new master on +switch-master.
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.Sentinels[0].Addr, MaxRetries: -1})
	t.Cleanup(func() { sc.Close() })
	ps := sc.Subscribe(ctx, "+switch-master")
	t.Cleanup(func() { ps.Close() })
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatalf("subscribe to +switch-master: %v", err)
	}
	var switched atomic.Bool
	go func() {
		if _, err := ps.ReceiveMessage(ctx); err == nil {
			switched.Store(true)
		}
	}()

	tr := startTraffic(t, a, b)
	aOff, bOff := len(a.Logs.String()), len(b.Logs.String())
	killed := time.Now()
	tr.mark(killed)
	s.Master.Stop()
	sentAtKill := tr.sent.Load()
	timeline(t, killed, 30*time.Second,
		&milestone{name: "first request sent after the kill served", cond: func() bool { return tr.firstOK.Load() != 0 }},
		&milestone{name: `a logs "redis unreachable"`, cond: logged(a, aOff, "redis unreachable")},
		&milestone{name: `b logs "redis unreachable"`, cond: logged(b, bOff, "redis unreachable")},
		&milestone{name: "sentinel announces +switch-master (replica promoted)", cond: switched.Load},
		&milestone{name: `a logs "redis connected" (new master)`, cond: logged(a, aOff, "redis connected")},
		&milestone{name: `b logs "redis connected" (new master)`, cond: logged(b, bOff, "redis connected")},
	)
	if t.Failed() {
		t.FailNow()
	}
	if got, err := s.MasterAddr(ctx); err != nil || got != s.Replica.Addr {
		t.Fatalf("the sentinels name %q (%v) as master; want the replica %s", got, err, s.Replica.Addr)
	}
	for _, r := range []*replica{a, b} {
		if status, h := r.health(t); status != http.StatusOK || h.Redis != "up" {
			t.Errorf("%s: /health = %d, redis %q after the failover; want 200, up", r.Name, status, h.Redis)
		}
		if _, ok := r.benched(t, before); !ok {
			t.Errorf("%s: /blacklist lost the key blacklisted before the failover", r.Name)
		}
	}

	// A change made after the failover is shared through the new master.
	f.Script.set(after, onlyFrom("b", invalidKey))
	changed := time.Now()
	blacklistThrough(t, b, after)
	took = waitFor(t, propagation, "a shows the key b blacklisted after the failover", shows(t, a, after))
	t.Logf("first state change after the failover: made by b %v after the kill, shown by a %v after b had it",
		changed.Sub(killed).Round(time.Millisecond), took.Round(time.Millisecond))

	tr.check(t, "around the failover")
	t.Logf("%d requests served during the failover (%d in all), none failed", tr.sent.Load()-sentAtKill, tr.sent.Load())

	// A replica that starts now loads both keys from the new master: the
	// state lives in Redis, not only in the replicas that were there.
	c := f.replica(t, "c")
	for _, key := range []string{before, after} {
		waitFor(t, 2*propagation, "c, started after the failover, shows "+preview(key), shows(t, c, key))
	}
}

func TestClusterNodeRestartResyncs(t *testing.T) {
	rc := testredis.StartCluster(t, 3)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("Redis processes:\n%s", rc.Output())
		}
	})
	f := newHAFixture(t, 32, 5, rc.URL, tagPrefix)
	first, during, after := f.Keys[1], f.Keys[2], f.Keys[3]
	f.Script.set(first, invalidKey)
	a, b := f.replica(t, "a"), f.replica(t, "b")

	blacklistThrough(t, a, first)
	took := waitFor(t, propagation, "b shows the key a blacklisted", shows(t, b, first))
	t.Logf("b applied a's blacklisting after %v, through the cluster", took)

	// The deployment's names share one slot: one node holds them all.
	ctx := context.Background()
	var owner *testredis.Server
	for _, n := range rc.Nodes {
		rdb := redis.NewClient(&redis.Options{Addr: n.Addr, MaxRetries: -1})
		size := rdb.DBSize(ctx).Val()
		rdb.Close()
		if size > 0 {
			if owner != nil {
				t.Fatalf("nodes %s and %s both hold names: the deployment spans slots", owner.Addr, n.Addr)
			}
			owner = n
		}
	}
	if owner == nil {
		t.Fatal("no cluster node holds the shared state")
	}

	tr := startTraffic(t, a, b)
	aOff, bOff := len(a.Logs.String()), len(b.Logs.String())
	stopped := time.Now()
	owner.Stop()
	timeline(t, stopped, 10*time.Second,
		&milestone{name: `a logs "redis unreachable"`, cond: logged(a, aOff, "redis unreachable")},
		&milestone{name: `b logs "redis unreachable"`, cond: logged(b, bOff, "redis unreachable")},
	)
	// A change during the outage stays on b for now.
	f.Script.set(during, onlyFrom("b", invalidKey))
	blacklistThrough(t, b, during)
	if _, ok := a.benched(t, during); ok {
		t.Fatal("a shows the key b blacklisted while the slot's node is down: the test proves nothing")
	}

	restarted := time.Now()
	owner.Restart()
	timeline(t, restarted, 20*time.Second,
		&milestone{name: "the cluster reports ok", cond: func() bool { return rc.OK(ctx) }},
		&milestone{name: `a logs "redis connected"`, cond: logged(a, aOff, "redis connected")},
		&milestone{name: `b logs "redis connected"`, cond: logged(b, bOff, "redis connected")},
		&milestone{name: "a shows the key b blacklisted during the outage", cond: shows(t, a, during)},
	)
	if t.Failed() {
		t.FailNow()
	}
	for _, r := range []*replica{a, b} {
		for _, key := range []string{first, during} {
			if _, ok := r.benched(t, key); !ok {
				t.Errorf("%s: /blacklist lost %s across the node's restart", r.Name, preview(key))
			}
		}
	}

	f.Script.set(after, onlyFrom("a", invalidKey))
	blacklistThrough(t, a, after)
	took = waitFor(t, propagation, "b shows a key a blacklisted after the restart", shows(t, b, after))
	t.Logf("a change after the restart reached b in %v", took.Round(time.Millisecond))
	tr.check(t, "around the node's restart")
	t.Logf("%d requests served around the node's restart, none failed", tr.sent.Load())

	// The node came back empty; the replicas wrote their states back, so
	// a replica that starts now loads them from it.
	c := f.replica(t, "c")
	for _, key := range []string{first, during, after} {
		waitFor(t, 2*propagation, "c, started after the restart, shows "+preview(key), shows(t, c, key))
	}
}

// TestSentinelSwitchoverServes: a planned switchover (SENTINEL FAILOVER)
// demotes a master that still runs. Requests never fail, changes made
// right after it (the old master not yet a replica) and later are shared
// and stored on the new master, and the log says
// whether the replicas saw an outage (a write that met the demoted master
// is re-sent once to the new one, so usually they do not).
func TestSentinelSwitchoverServes(t *testing.T) {
	s := testredis.StartSentinel(t)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("Redis processes:\n%s", s.Output())
		}
	})
	f := newHAFixture(t, 33, 5, s.URL, "")
	before, during, after := f.Keys[1], f.Keys[2], f.Keys[3]
	f.Script.set(before, invalidKey)
	a, b := f.replica(t, "a"), f.replica(t, "b")
	blacklistThrough(t, a, before)
	waitFor(t, propagation, "b shows the key a blacklisted before the switchover", shows(t, b, before))

	ctx := context.Background()
	tr := startTraffic(t, a, b)
	aOff, bOff := len(a.Logs.String()), len(b.Logs.String())
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.Sentinels[0].Addr, MaxRetries: -1})
	t.Cleanup(func() { sc.Close() })
	asked := time.Now()
	if err := sc.Failover(ctx, s.MasterName).Err(); err != nil {
		t.Fatalf("SENTINEL FAILOVER: %v", err)
	}
	took := waitFor(t, 30*time.Second, "the sentinels name the replica as master", func() bool {
		addr, err := s.MasterAddr(ctx)
		return err == nil && addr == s.Replica.Addr
	})
	t.Logf("the sentinels named the new master %v after SENTINEL FAILOVER", took.Round(time.Millisecond))

	// Right after the switch, before the old master follows the new one:
	// the replicas' subscriptions may still be on the old master.
	f.Script.set(during, onlyFrom("b", invalidKey))
	blacklistThrough(t, b, during)
	took = waitFor(t, 2*propagation, "a shows the key b blacklisted right after the switch", shows(t, a, during))
	t.Logf("a change right after the switch reached a in %v", took.Round(time.Millisecond))

	old := redis.NewClient(&redis.Options{Addr: s.Master.Addr, MaxRetries: -1})
	t.Cleanup(func() { old.Close() })
	took = waitFor(t, 30*time.Second, "the old master replicates the new one", func() bool {
		return strings.Contains(old.Info(ctx, "replication").Val(), "master_link_status:up")
	})
	t.Logf("the old master replicated the new one %v later", took.Round(time.Millisecond))
	f.Script.set(after, onlyFrom("b", invalidKey))
	blacklistThrough(t, b, after)
	took = waitFor(t, 2*propagation, "a shows the key b blacklisted after the switchover", shows(t, a, after))
	t.Logf("a change after the switchover reached a in %v", took.Round(time.Millisecond))
	tr.check(t, "around the switchover")
	t.Logf("%d requests in the %v after SENTINEL FAILOVER, none failed; outages logged: a %d, b %d",
		tr.sent.Load(), time.Since(asked).Round(time.Millisecond), a.count(aOff, "redis unreachable"), b.count(bOff, "redis unreachable"))

	c := f.replica(t, "c")
	for _, key := range []string{before, during, after} {
		waitFor(t, 2*propagation, "c, started after the switchover, shows "+preview(key), shows(t, c, key))
	}
}
