// Package cluster shares key and target health and request counters
// between gpt-load replicas through Redis, without putting Redis on the
// request path: changes are queued, written and published in the
// background, and other replicas' changes are applied as they arrive.
package cluster

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/sirupsen/logrus"

	"github.com/gpt-load/gpt-load/internal/keymanager"
	"github.com/gpt-load/gpt-load/internal/outcome"
	"github.com/gpt-load/gpt-load/internal/upstream"
)

// Timings. The request path never waits on any of them.
const (
	// flushEvery is how often queued changes and counter deltas are
	// written when nothing else wakes the writer.
	flushEvery = 500 * time.Millisecond
	// opTimeout bounds one round of Redis commands.
	opTimeout = 2 * time.Second
	// backoffMin and backoffMax bound the wait between reconnect attempts.
	backoffMin = 250 * time.Millisecond
	backoffMax = 5 * time.Second
	// startWait is how long New waits for Redis before serving anyway.
	startWait = 2 * time.Second
)

// quietRedis silences go-redis's own logger, which prints every failed
// dial through the standard logger: while Redis is down that is a line per
// attempt, and the outage is logged once by setUp instead
// (docs/operations.md, "Scaling out with Redis"). go-redis offers only a
// process-wide logger, so it is set once, when the first Cluster is made,
// and only in processes that use Redis.
var quietRedis sync.Once

type quietLog struct{}

func (quietLog) Printf(context.Context, string, ...any) {}

// Options configures a Cluster.
type Options struct {
	URL    string // redis://, rediss://, redis-sentinel:// or redis-cluster://
	Prefix string // namespace of every Redis key
	Log    *logrus.Entry
	// OnReset is called when another replica reset the keys (/reset-keys):
	// it re-reads the keys file and clears every key's state locally.
	OnReset func() error
}

// Counters are this replica's request counters, read to publish deltas.
type Counters interface {
	Totals() outcome.Totals
}

// Cluster is one replica's link to the shared state. It is safe for
// concurrent use.
type Cluster struct {
	rdb      redis.UniversalClient
	prefix   string
	replica  string
	log      *logrus.Entry
	keys     *keymanager.Manager
	targets  *upstream.Balancer
	counters Counters
	onReset  func() error

	byFP     atomic.Pointer[map[string]*keymanager.Key]
	targetFP map[string]*upstream.Target

	mu             sync.Mutex
	pendingKeys    map[*keymanager.Key]struct{}
	pendingTargets map[*upstream.Target]struct{}
	wake           chan struct{}

	// applyMu orders other replicas' changes and a resync: a change that
	// arrives while the shared state is loaded is applied after it, not
	// overwritten by the older state just read.
	applyMu sync.Mutex

	up atomic.Bool
	// resyncWanted asks the writer to load the whole shared state again,
	// without marking Redis down (that would show on /health and log the
	// reconnection twice).
	resyncWanted atomic.Bool
	// reconnected wakes the subscriber out of its backoff when the writer
	// reached Redis again, so that it resubscribes at once.
	reconnected chan struct{}
	flushed     outcome.Totals // counter values already added to Redis
	cluster     atomic.Pointer[outcome.Totals]
	stop        context.CancelFunc
	done        sync.WaitGroup
}

// Fingerprint identifies a key in Redis without revealing it: the first 16
// bytes of its SHA-256, in hex.
func Fingerprint(raw string) string {
	sum := sha256.Sum256([]byte(raw))
	return hex.EncodeToString(sum[:16])
}

// New connects to Redis, loads the shared state (waiting a short while for
// Redis, then serving on local state if it is not there) and starts the
// background loops. Close stops them.
func New(ctx context.Context, opts Options, keys *keymanager.Manager, targets *upstream.Balancer, counters Counters) (*Cluster, error) {
	quietRedis.Do(func() { redis.SetLogger(quietLog{}) })
	rdb, err := newClient(opts.URL)
	if err != nil {
		return nil, err
	}
	c := &Cluster{
		rdb: rdb, prefix: opts.Prefix, replica: newReplicaID(), log: opts.Log,
		keys: keys, targets: targets, counters: counters, onReset: opts.OnReset,
		targetFP:       map[string]*upstream.Target{},
		pendingKeys:    map[*keymanager.Key]struct{}{},
		pendingTargets: map[*upstream.Target]struct{}{},
		wake:           make(chan struct{}, 1),
		reconnected:    make(chan struct{}, 1),
	}
	c.cluster.Store(&outcome.Totals{})
	for _, t := range targets.Targets() {
		c.targetFP[Fingerprint(t.String())] = t
	}
	c.KeysChanged()

	// Load before serving when Redis answers soon; otherwise serve and
	// load as soon as it does.
	startCtx, cancel := context.WithTimeout(ctx, startWait)
	if err := c.connect(startCtx); err != nil {
		c.log.WithError(err).Warn("redis unreachable at start: serving on local state until it is back")
	}
	cancel()

	runCtx, stop := context.WithCancel(context.Background())
	c.stop = stop
	c.done.Add(2)
	go c.writer(runCtx)
	go c.subscriber(runCtx)
	keys.SetListener(c)
	targets.SetListener(c)
	return c, nil
}

func newReplicaID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Close stops the loops, writes what is still queued if Redis is up, and
// closes the connection.
func (c *Cluster) Close() {
	c.keys.SetListener(nil)
	c.targets.SetListener(nil)
	c.stop()
	c.done.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if c.up.Load() {
		c.flush(ctx)
	}
	c.rdb.Close()
}

// Up reports whether Redis is reachable.
func (c *Cluster) Up() bool { return c.up.Load() }

// ClusterTotals returns the cluster-wide counters as last read.
func (c *Cluster) ClusterTotals() outcome.Totals { return *c.cluster.Load() }

// KeysChanged rebuilds the fingerprint index after the key set changed
// (reload, reset).
func (c *Cluster) KeysChanged() {
	all := c.keys.Keys()
	m := make(map[string]*keymanager.Key, len(all))
	for _, k := range all {
		m[Fingerprint(k.Secret().Reveal())] = k
	}
	c.byFP.Store(&m)
}

// KeyChanged queues a key's new state for Redis. It never blocks.
func (c *Cluster) KeyChanged(k *keymanager.Key, _ keymanager.Snapshot) {
	c.mu.Lock()
	c.pendingKeys[k] = struct{}{}
	c.mu.Unlock()
	c.poke()
}

// TargetChanged queues a target's new state for Redis. It never blocks.
func (c *Cluster) TargetChanged(t *upstream.Target) {
	c.mu.Lock()
	c.pendingTargets[t] = struct{}{}
	c.mu.Unlock()
	c.poke()
}

func (c *Cluster) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Redis key names.
func (c *Cluster) keyKey(fp string) string    { return c.prefix + "key:" + fp }
func (c *Cluster) targetKey(fp string) string { return c.prefix + "target:" + fp }
func (c *Cluster) countersKey() string        { return c.prefix + "counters" }
func (c *Cluster) channel() string            { return c.prefix + "events" }
func (c *Cluster) leaseKey() string           { return c.prefix + "recheck-lease" }
func (c *Cluster) resetKey() string           { return c.prefix + "reset-at" }

// setUp records the connection state and logs transitions once each.
func (c *Cluster) setUp(up bool, err error) {
	if c.up.Swap(up) == up {
		return
	}
	if up {
		select {
		case c.reconnected <- struct{}{}:
		default:
		}
		c.log.Info("redis connected: sharing key and target health")
		return
	}
	c.log.WithError(err).Warn("redis unreachable: serving on local state, retrying in the background")
}

// connect pings Redis and, when it answers, resynchronises.
func (c *Cluster) connect(ctx context.Context) error {
	if err := c.rdb.Ping(ctx).Err(); err != nil {
		c.setUp(false, err)
		return err
	}
	if err := c.resync(ctx); err != nil {
		c.setUp(false, err)
		return err
	}
	c.setUp(true, nil)
	return nil
}

// writer flushes queued changes and counters, and keeps trying to reach
// Redis while it is down, backing off.
func (c *Cluster) writer(ctx context.Context) {
	defer c.done.Done()
	backoff := backoffMin
	tick := time.NewTicker(flushEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.wake:
		case <-tick.C:
		}
		if resync := c.resyncWanted.Swap(false); !c.up.Load() || resync {
			opCtx, cancel := context.WithTimeout(ctx, opTimeout)
			err := c.connect(opCtx)
			cancel()
			if err != nil {
				select {
				case <-ctx.Done():
					return
				case <-time.After(backoff):
				}
				backoff = min(2*backoff, backoffMax)
				continue
			}
			backoff = backoffMin
		}
		opCtx, cancel := context.WithTimeout(ctx, opTimeout)
		if err := c.flush(opCtx); err != nil && ctx.Err() == nil {
			c.setUp(false, err)
		}
		cancel()
	}
}

// flush writes queued key and target states, publishes them, and adds the
// counter deltas. What fails stays queued.
func (c *Cluster) flush(ctx context.Context) error {
	c.mu.Lock()
	keys, targets := c.pendingKeys, c.pendingTargets
	c.pendingKeys, c.pendingTargets = map[*keymanager.Key]struct{}{}, map[*upstream.Target]struct{}{}
	c.mu.Unlock()

	now := c.counters.Totals()
	delta := now.Sub(c.flushed)

	pipe := c.rdb.Pipeline()
	var events []event
	for k := range keys {
		e := keyEvent(c.replica, k)
		c.writeKey(ctx, pipe, e)
		events = append(events, e)
	}
	for t := range targets {
		e := targetEvent(c.replica, t)
		e.Reason = c.withoutKeys(e.Reason)
		c.writeTarget(ctx, pipe, e)
		events = append(events, e)
	}
	for _, e := range events {
		pipe.Publish(ctx, c.channel(), e.encode())
	}
	if delta != (outcome.Totals{}) {
		pipe.HIncrBy(ctx, c.countersKey(), "total", delta.Total)
		pipe.HIncrBy(ctx, c.countersKey(), "success", delta.Success)
		pipe.HIncrBy(ctx, c.countersKey(), "failure", delta.Failure)
		pipe.HIncrBy(ctx, c.countersKey(), "retries", delta.Retries)
	}
	totals := pipe.HGetAll(ctx, c.countersKey())
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		c.requeue(keys, targets)
		return err
	}
	c.flushed = now
	c.cluster.Store(parseTotals(totals.Val()))
	return nil
}

func (c *Cluster) requeue(keys map[*keymanager.Key]struct{}, targets map[*upstream.Target]struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range keys {
		c.pendingKeys[k] = struct{}{}
	}
	for t := range targets {
		c.pendingTargets[t] = struct{}{}
	}
}

// activeTTL is how long a key's return to rotation stays recorded in
// Redis: long enough that a replica back from an outage learns that a
// blacklist it holds was lifted after it, short enough that the records of
// a large pool do not pile up.
const activeTTL = 24 * time.Hour

// writeKeyScript stores a key's state unless Redis holds a newer change,
// or a blacklist that a cooling change may not lower. KEYS[1] is the
// hash; ARGV: at, state, reason, status, since, until, fails, and the
// expiry in unix milliseconds (0: none).
var writeKeyScript = redis.NewScript(`
local cur = redis.call('HMGET', KEYS[1], 'at', 'state')
if cur[1] then
  local at = tonumber(cur[1])
  if at and at > tonumber(ARGV[1]) then return 0 end
  if cur[2] == 'blacklisted' and ARGV[2] == 'cooling' then return 0 end
end
redis.call('HSET', KEYS[1], 'at', ARGV[1], 'state', ARGV[2], 'reason', ARGV[3], 'status', ARGV[4],
  'since', ARGV[5], 'until', ARGV[6], 'fails', ARGV[7])
if ARGV[8] == '0' then redis.call('PERSIST', KEYS[1]) else redis.call('PEXPIREAT', KEYS[1], ARGV[8]) end
return 1
`)

// writeKey stores a key's state: a hash for a benched key, expiring with a
// cooling deadline; a return to rotation is kept for activeTTL, so that
// its time orders it against older blacklists.
func (c *Cluster) writeKey(ctx context.Context, pipe redis.Pipeliner, e event) {
	expire := e.Until
	switch {
	case e.State == stateActive:
		expire = time.Now().Add(activeTTL).UnixMilli()
	case e.State == stateBlacklisted:
		expire = 0
	}
	writeKeyScript.Eval(ctx, pipe, []string{c.keyKey(e.FP)},
		e.At, e.State, e.Reason, e.Status, e.Since, e.Until, e.Fails, expire)
}

func (c *Cluster) writeTarget(ctx context.Context, pipe redis.Pipeliner, e event) {
	name := c.targetKey(e.FP)
	if e.State == stateActive {
		pipe.Del(ctx, name)
		return
	}
	pipe.HSet(ctx, name, e.fields())
	pipe.PExpireAt(ctx, name, time.UnixMilli(e.Until))
}

func parseTotals(m map[string]string) *outcome.Totals {
	return &outcome.Totals{Total: atoi(m["total"]), Success: atoi(m["success"]), Failure: atoi(m["failure"]), Retries: atoi(m["retries"])}
}

// AcquireRecheck takes the re-check lease for ttl, so that one replica at
// a time re-checks blacklisted keys. With Redis down every replica checks
// on its own.
func (c *Cluster) AcquireRecheck(ctx context.Context, ttl time.Duration) bool {
	if !c.up.Load() {
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	ok, err := c.rdb.SetNX(ctx, c.leaseKey(), c.replica, ttl).Result()
	if err != nil {
		return true
	}
	return ok
}

// Reset tells every replica that the keys were reset here: their shared
// state is deleted and the others re-read their keys files.
func (c *Cluster) Reset(ctx context.Context) error {
	c.KeysChanged()
	c.mu.Lock()
	c.pendingKeys = map[*keymanager.Key]struct{}{}
	c.mu.Unlock()
	if !c.up.Load() {
		return errors.New("redis is down: the reset stays on this replica")
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	// The time of the reset stays, so a replica that was away learns that
	// the states it holds from before were cleared, and does not write
	// them back as it would to a Redis that lost its data.
	if err := c.rdb.Set(ctx, c.resetKey(), time.Now().UnixMicro(), 0).Err(); err != nil {
		return err
	}
	if err := c.deleteMatching(ctx, match(c.prefix+"key:")); err != nil {
		return err
	}
	return c.rdb.Publish(ctx, c.channel(), event{From: c.replica, Kind: kindReset}.encode()).Err()
}

// match is the SCAN pattern of every name that starts with prefix. Glob
// characters in REDIS_PREFIX are escaped: "dep*:" must not match "dep1:"'s
// keys, or a reset would delete another deployment's state.
func match(prefix string) string {
	var b strings.Builder
	for _, r := range prefix {
		if strings.ContainsRune(`\*?[]`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String() + "*"
}

func (c *Cluster) deleteMatching(ctx context.Context, pattern string) error {
	iter := scan(ctx, c.rdb, c.keyKey(""), pattern, 1000)
	var batch []string
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == 1000 {
			if err := c.rdb.Del(ctx, batch...).Err(); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	if err := iter.Err(); err != nil {
		return err
	}
	if len(batch) > 0 {
		return c.rdb.Del(ctx, batch...).Err()
	}
	return nil
}
