package cluster_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/sirupsen/logrus"

	"github.com/gpt-load/gpt-load/internal/cluster"
	"github.com/gpt-load/gpt-load/internal/keymanager"
	"github.com/gpt-load/gpt-load/internal/outcome"
	"github.com/gpt-load/gpt-load/internal/testlog"
	"github.com/gpt-load/gpt-load/internal/testredis"
	"github.com/gpt-load/gpt-load/internal/upstream"
)

// TestConvergence is the replicas' invariant harness (SPEC §17, issue 20):
// CONVERGE_SEEDS seeds (default 3; `make chaos` runs 100) from
// CONVERGE_SEED_BASE (default 1), or the one seed CONVERGE_SEED. Each seed
// runs three in-process replicas (a key manager, a balancer and a Cluster,
// each with its own connection to a real redis-server through a link the
// test can cut) through a random sequence of key faults, rests, re-checks
// that pass, resets, reloads that drop and re-add keys, replica outages
// and Redis restarts with and without persistence. After every step that
// ends an outage, and at the end, it checks:
//
//	agree:     every replica shows the same blacklisted keys, and the same
//	           rests (those with over 1.5 s left, deadlines within 1 s),
//	           within 2 s of Redis being reachable;
//	kept:      no blacklist lost unless a reset, a passing re-check or a
//	           re-add came after it (in Redis's order);
//	reset:     nothing decided before a reset survives it.
//
// A failure prints its seed; CONVERGE_SEED=n reruns it.
func TestConvergence(t *testing.T) {
	seeds, err := convergeSeeds(os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	for _, seed := range seeds {
		t.Run("seed="+strconv.FormatUint(seed, 10), func(t *testing.T) {
			runConvergence(t, seed)
		})
	}
}

func convergeSeeds(getenv func(string) string) ([]uint64, error) {
	if s := getenv("CONVERGE_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("CONVERGE_SEED=%q: want a number", s)
		}
		return []uint64{n}, nil
	}
	count, base := uint64(3), uint64(1)
	if s := getenv("CONVERGE_SEEDS"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil || n == 0 || n > 100_000 {
			return nil, fmt.Errorf("CONVERGE_SEEDS=%q: want a count from 1 to 100000", s)
		}
		count = n
	}
	if s := getenv("CONVERGE_SEED_BASE"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("CONVERGE_SEED_BASE=%q: want a number", s)
		}
		base = n
	}
	seeds := make([]uint64, count)
	for i := range seeds {
		seeds[i] = base + uint64(i)
	}
	return seeds, nil
}

// agreeWithin is how long replicas may take to agree once Redis is
// reachable before the harness calls it a failure. `make chaos`
// (CONVERGE_SEEDS set) holds SPEC §17's 2 s, run alone; the short run in
// `make test`, which shares the machine with every other package, only
// catches replicas that never agree (20 s), since a 2 s bound failed there
// for nothing. They take tens of milliseconds; each check logs it.
var agreeWithin = func() time.Duration {
	if os.Getenv("CONVERGE_SEEDS") != "" || os.Getenv("CONVERGE_SEED") != "" {
		return 2 * time.Second
	}
	return 20 * time.Second
}()

// node is one in-process replica.
type node struct {
	name    string
	keys    *keymanager.Manager
	targets *upstream.Balancer
	c       *cluster.Cluster
	link    *testredis.Link
	file    []string // its keys file
	cut     bool
	cutStep int // the step its outage began
	// pending is what it decided while cut off, per key: the latest
	// decision, as its queue keeps it.
	pending map[string]string
}

type noCounters struct{}

func (noCounters) Totals() outcome.Totals { return outcome.Totals{} }

// world is the harness's model of the shared state, in Redis's order.
type world struct {
	t     *testing.T
	seed  uint64
	step  int
	all   []string
	nodes []*node
	redis *testredis.Server
	rdb   *redis.Client
	// persistent: the Redis keeps its data across restarts.
	persistent bool
	// must: keys whose blacklist must be in force; mustNot: keys that
	// must not be blacklisted. A key in neither may be either (a
	// write-back after Redis lost its data may bring back a blacklist a
	// replica away at the time still held).
	must, mustNot map[string]bool
	resetStep     int
	liftStep      map[string]int // last lift, re-add or reset in Redis
	changeStep    map[string]int // last change of any kind in Redis
	changeBy      map[string]*node
	dropped       map[string]bool // removed from every keys file now
	log           []string
}

func runConvergence(t *testing.T, seed uint64) {
	r := rand.New(rand.NewPCG(seed, 0xc0417))
	persistent := r.IntN(2) == 0
	var rs *testredis.Server
	if persistent {
		rs = testredis.StartPersistent(t)
	} else {
		rs = testredis.Start(t)
	}
	w := &world{t: t, seed: seed, all: makeKeys(seed, 8), redis: rs, persistent: persistent,
		must: map[string]bool{}, mustNot: map[string]bool{}, liftStep: map[string]int{},
		changeStep: map[string]int{}, changeBy: map[string]*node{}, dropped: map[string]bool{}}
	defer func() {
		if t.Failed() {
			t.Logf("seed %d (Redis persistent: %v); rerun with CONVERGE_SEED=%d; steps:\n%s", seed, persistent, seed, strings.Join(w.log, "\n"))
		}
	}()
	target, _ := url.Parse("http://127.0.0.1:1")
	for i := range 3 {
		n := &node{name: fmt.Sprintf("r%d", i), link: testredis.NewLink(t, rs.Addr), file: slices.Clone(w.all), pending: map[string]string{}}
		n.keys = keymanager.New(n.file, keymanager.Options{BlacklistThreshold: 1})
		n.targets = upstream.NewBalancer([]*upstream.Target{upstream.NewTarget(target, upstream.StyleForHost("127.0.0.1"))}, upstream.Options{})
		logs := &testlog.Buffer{}
		logger := logrus.New()
		logger.SetOutput(logs)
		logger.SetLevel(logrus.DebugLevel)
		c, err := cluster.New(context.Background(), cluster.Options{
			URL: n.link.URL, Prefix: "conv:", FingerprintSecret: "s", Log: logger.WithField("replica", n.name),
			OnReset: func() error { n.keys.Reset(n.file); return nil },
		}, n.keys, n.targets, noCounters{})
		if err != nil {
			t.Fatal(err)
		}
		n.c = c
		t.Cleanup(func() {
			c.Close()
			if t.Failed() {
				t.Logf("%s's log:\n%s", n.name, logs.String())
			}
		})
		w.nodes = append(w.nodes, n)
	}
	w.rdb = redis.NewClient(&redis.Options{Addr: rs.Addr, MaxRetries: -1})
	t.Cleanup(func() { w.rdb.Close() })
	w.settle("start")

	const steps = 40
	for w.step = 1; w.step <= steps && !t.Failed(); w.step++ {
		n := w.nodes[r.IntN(len(w.nodes))]
		k := w.all[r.IntN(len(w.all))]
		switch p := r.IntN(100); {
		case p < 25:
			w.block(n, k)
		case p < 40:
			w.rest(n, k, time.Duration(1+r.IntN(4))*time.Second)
		case p < 50:
			w.recheck(n, k)
		case p < 56:
			w.reset(n)
		case p < 64:
			w.reload(k)
		case p < 80:
			if n.cut {
				w.restore(n)
			} else {
				w.cutOff(n)
			}
		case p < 88:
			w.restartRedis()
		default:
			// Successes change no state; they are the common case.
			if kk := w.key(n, k); kk != nil {
				n.keys.Succeeded(kk)
			}
		}
	}
	for _, n := range w.nodes {
		if n.cut {
			w.restore(n)
		}
	}
	w.check("end")
}

func (w *world) logf(format string, args ...any) {
	w.log = append(w.log, fmt.Sprintf("%3d ", w.step)+fmt.Sprintf(format, args...))
}

// key is n's object for raw, nil when its keys file does not hold it.
func (w *world) key(n *node, raw string) *keymanager.Key {
	for _, k := range n.keys.Keys() {
		if k.Secret().Reveal() == raw {
			return k
		}
	}
	return nil
}

func (w *world) state(n *node, raw string) keymanager.Snapshot {
	if k := w.key(n, raw); k != nil {
		return k.Snapshot()
	}
	return keymanager.Snapshot{State: keymanager.Active}
}

// decided records a change n decided on k: at once in Redis when n is
// connected, else queued until it is back.
func (w *world) decided(n *node, k, op string) {
	if n.cut {
		n.pending[k] = op
		return
	}
	w.inRedis(n, k, op)
	w.settle(op + " " + k[len(k)-4:] + " by " + n.name)
}

// inRedis applies a change to the model as Redis's script does.
func (w *world) inRedis(n *node, k, op string) {
	w.changeStep[k], w.changeBy[k] = w.step, n
	switch op {
	case "block":
		w.must[k] = true
		delete(w.mustNot, k)
	case "lift", "readd":
		delete(w.must, k)
		w.mustNot[k] = true
		w.liftStep[k] = w.step
	}
}

func (w *world) block(n *node, k string) {
	kk := w.key(n, k)
	if kk == nil {
		return
	}
	w.logf("%s blacklists %s (cut off: %v)", n.name, k[len(k)-4:], n.cut)
	n.keys.Blacklist(kk, "invalid_api_key", 401)
	w.decided(n, k, "block")
}

func (w *world) rest(n *node, k string, d time.Duration) {
	kk := w.key(n, k)
	if kk == nil || kk.Snapshot().State == keymanager.Blacklisted {
		return
	}
	w.logf("%s rests %s for %v (cut off: %v)", n.name, k[len(k)-4:], d, n.cut)
	n.keys.Cool(kk, time.Now().Add(d), "rate_limit_exceeded", 429)
	if n.cut {
		n.pending[k] = "rest" // the queue keeps the latest decision
		return
	}
	w.settle("rest " + k[len(k)-4:] + " by " + n.name)
}

// recheck is a re-check of k on n that passes: a lift, if n holds k out.
func (w *world) recheck(n *node, k string) {
	kk := w.key(n, k)
	if kk == nil || kk.Snapshot().State != keymanager.Blacklisted {
		return
	}
	w.logf("%s re-check lifts %s (cut off: %v)", n.name, k[len(k)-4:], n.cut)
	n.keys.Restore(kk)
	w.decided(n, k, "lift")
}

func (w *world) reset(n *node) {
	w.logf("%s resets (cut off: %v)", n.name, n.cut)
	n.keys.Reset(n.file)
	err := n.c.Reset(context.Background())
	if n.cut {
		if err == nil {
			w.t.Errorf("step %d: a reset on cut-off %s said it was shared", w.step, n.name)
		}
		clear(n.pending)
		return
	}
	if err != nil {
		w.t.Fatalf("step %d: reset on %s: %v", w.step, n.name, err)
	}
	w.resetStep = w.step
	clear(w.must)
	for _, k := range w.all {
		w.mustNot[k] = true
		w.liftStep[k] = w.step
		w.changeStep[k], w.changeBy[k] = w.step, n
	}
	for _, o := range w.nodes {
		if !o.cut {
			clear(o.pending)
		}
	}
	w.settle("reset by " + n.name)
}

// reload drops k from every keys file (SIGHUP), or re-adds it.
func (w *world) reload(k string) {
	drop := !w.dropped[k]
	w.logf("reload: %s %s on every replica", map[bool]string{true: "drop", false: "re-add"}[drop], k[len(k)-4:])
	w.dropped[k] = drop
	for _, n := range w.nodes {
		n.file = slices.DeleteFunc(slices.Clone(w.all), func(s string) bool { return w.dropped[s] })
		n.keys.Reload(n.file)
		n.c.KeysReloaded()
		if drop {
			delete(n.pending, k)
		} else if n.cut {
			n.pending[k] = "readd"
		}
	}
	if !drop && w.connected() > 0 {
		var by *node
		for _, n := range w.nodes {
			if !n.cut {
				by = n
			}
		}
		w.inRedis(by, k, "readd")
	}
	w.settle("reload")
}

func (w *world) connected() int {
	n := 0
	for _, o := range w.nodes {
		if !o.cut {
			n++
		}
	}
	return n
}

func (w *world) cutOff(n *node) {
	w.logf("%s cut off from Redis", n.name)
	n.link.Cut()
	n.cut, n.cutStep = true, w.step
	w.waitFor(10*time.Second, n.name+" notices the outage", func() bool { return !n.c.Up() })
}

// restore ends n's outage: what it queued reaches Redis, where the model
// decides, as the script does, what applies.
func (w *world) restore(n *node) {
	w.logf("%s reaches Redis again", n.name)
	resetSince := w.resetStep > n.cutStep
	for k, op := range n.pending {
		if resetSince || w.dropped[k] {
			continue // an older epoch, or a key no longer held
		}
		liftSince := w.liftStep[k] > n.cutStep
		switch op {
		case "block":
			if !liftSince {
				w.inRedis(n, k, op)
			}
		case "lift":
			if w.changeStep[k] <= n.cutStep || w.changeBy[k] == n {
				w.inRedis(n, k, op)
			}
		case "readd":
			w.inRedis(n, k, op)
		}
	}
	clear(n.pending)
	n.link.Restore()
	n.cut = false
	w.check("after " + n.name + " is back")
}

// restartRedis kills Redis and starts it again: with persistence it keeps
// its data; without, it comes back empty and the replicas write back what
// they hold.
func (w *world) restartRedis() {
	w.logf("Redis restarts (persistent: %v)", w.persistent)
	w.redis.Restart()
	if !w.persistent {
		// The connected replicas must first learn that Redis lost its
		// data (a new generation), or check() would see them agree on
		// the state before the restart.
		w.waitFor(agreeWithin, "the connected replicas resynchronise with the empty Redis", func() bool {
			gen := w.rdb.HGet(context.Background(), "{conv:}meta", "gen").Val()
			for _, n := range w.nodes {
				if !n.cut && (gen == "" || n.c.Generation() != gen) {
					return false
				}
			}
			return true
		})
		// A replica away now writes back, when it returns, blacklists
		// the others may have lifted meanwhile, and its queued changes
		// meet states whose versions it never saw: those keys may be
		// either.
		for _, n := range w.nodes {
			if !n.cut {
				continue
			}
			for _, k := range w.all {
				if w.state(n, k).State == keymanager.Blacklisted || n.pending[k] != "" {
					delete(w.mustNot, k)
					delete(w.must, k)
				}
			}
		}
	}
	w.check("after Redis restarted")
}

// settle waits until every connected replica has sent what it decided and
// all of them agree.
func (w *world) settle(what string) {
	w.t.Helper()
	w.waitFor(agreeWithin, what+": the connected replicas settle and agree", func() bool {
		for _, n := range w.nodes {
			if !n.cut && !n.c.Settled() {
				return false
			}
		}
		return w.disagreement(false) == ""
	})
}

// check waits (agreeWithin) for every connected replica to agree, then
// checks the model's musts.
func (w *world) check(what string) {
	w.t.Helper()
	start := time.Now()
	var last string
	for {
		settled := true
		for _, n := range w.nodes {
			if !n.cut && !n.c.Settled() {
				settled = false
			}
		}
		if last = w.disagreement(false); settled && last == "" {
			break
		}
		if time.Since(start) > agreeWithin {
			w.t.Errorf("seed %d step %d (%s): replicas do not agree within %v of Redis being reachable: %s", w.seed, w.step, what, agreeWithin, last)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	w.logf("agree after %v", time.Since(start).Round(time.Millisecond))
	for _, n := range w.nodes {
		if n.cut {
			continue
		}
		for _, k := range w.all {
			if w.dropped[k] {
				continue
			}
			black := w.state(n, k).State == keymanager.Blacklisted
			if w.must[k] && !black {
				w.t.Errorf("seed %d step %d (%s): %s lost the blacklist of %s (kept)", w.seed, w.step, what, n.name, k[len(k)-4:])
			}
			if w.mustNot[k] && black {
				w.t.Errorf("seed %d step %d (%s): %s shows %s blacklisted, decided before a reset, lift or re-add that came after it (reset)", w.seed, w.step, what, n.name, k[len(k)-4:])
			}
		}
	}
}

// disagreement describes how the connected replicas differ, "" if not.
func (w *world) disagreement(_ bool) string {
	var first *node
	for _, n := range w.nodes {
		if n.cut {
			continue
		}
		if first == nil {
			first = n
			continue
		}
		for _, k := range w.all {
			if w.dropped[k] {
				continue
			}
			a, b := w.state(first, k), w.state(n, k)
			now := time.Now()
			switch {
			case (a.State == keymanager.Blacklisted) != (b.State == keymanager.Blacklisted):
				return fmt.Sprintf("%s: %s %v, %s %v", k[len(k)-4:], first.name, a.State, n.name, b.State)
			case a.State == keymanager.Cooling && a.Until.Sub(now) > 1500*time.Millisecond,
				b.State == keymanager.Cooling && b.Until.Sub(now) > 1500*time.Millisecond:
				if a.State != b.State || a.Until.Sub(b.Until).Abs() > time.Second {
					return fmt.Sprintf("%s: %s %v until %v, %s %v until %v", k[len(k)-4:], first.name, a.State,
						a.Until.Format("15:04:05.000"), n.name, b.State, b.Until.Format("15:04:05.000"))
				}
			}
		}
	}
	return ""
}

func (w *world) waitFor(timeout time.Duration, what string, cond func() bool) {
	w.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			w.t.Fatalf("seed %d step %d: %s: not within %v", w.seed, w.step, what, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
