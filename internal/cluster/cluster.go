// Package cluster shares key and target health and request counters
// between gpt-load replicas through Redis, without putting Redis on the
// request path: changes are queued, written and published in the
// background, and other replicas' changes are applied as they arrive.
package cluster

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/sirupsen/logrus"

	"github.com/gpt-load/gpt-load/internal/keymanager"
	"github.com/gpt-load/gpt-load/internal/outcome"
	"github.com/gpt-load/gpt-load/internal/redisurl"
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
	// backoffMax is short enough that replicas agree within 2 s of Redis
	// being reachable again (SPEC §17): a reconnect attempt is one dial.
	backoffMin = 250 * time.Millisecond
	backoffMax = time.Second
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
	// FingerprintSecret keys the fingerprints that name keys in Redis
	// (REDIS_FINGERPRINT_SECRET); empty: unkeyed, and New warns.
	FingerprintSecret string
	Log               *logrus.Entry
	// OnReset is called when another replica reset the keys (/reset-keys):
	// it re-reads the keys file and clears every key's state locally.
	OnReset func() error
	// Now is the clock the key manager and the balancer use; nil means
	// time.Now. Only durations measured on it are shared.
	Now func() time.Time
}

// Counters are this replica's request counters, read to publish deltas.
type Counters interface {
	Totals() outcome.Totals
}

// Cluster is one replica's link to the shared state. It is safe for
// concurrent use.
type Cluster struct {
	rdb      redis.UniversalClient
	base     string // "{" + prefix + "}": every name shares one hash slot
	channel  string
	secret   []byte
	replica  string
	log      *logrus.Entry
	now      func() time.Time
	keys     *keymanager.Manager
	targets  *upstream.Balancer
	counters Counters
	onReset  func() error

	byFP     atomic.Pointer[map[string]*keymanager.Key]
	targetFP map[string]*upstream.Target

	// mu guards what the request path touches: the queued changes, the
	// versions this replica has seen, and the epoch.
	mu             sync.Mutex
	pendingKeys    map[*keymanager.Key]change
	pendingTargets map[*upstream.Target]change
	knownKeys      map[*keymanager.Key]int64
	knownTargets   map[*upstream.Target]int64
	epoch          int64 // the reset epoch this replica is in
	epochKnown     bool  // epoch was read from Redis at least once
	flushing       bool  // a flush is between taking the queue and applying its verdicts
	gen            string
	wake           chan struct{}

	// applyMu orders the application of verdicts (replies, messages, a
	// resync) and resets.
	applyMu sync.Mutex

	up atomic.Bool
	// resyncWanted asks the writer to load the whole shared state again,
	// without marking Redis down (that would show on /health and log the
	// reconnection twice).
	resyncWanted atomic.Bool
	// reconnected wakes the subscriber out of its backoff when the writer
	// reached Redis again, so that it resubscribes at once.
	reconnected chan struct{}
	// resubscribe asks the subscriber for a new subscription: the master
	// changed (runID).
	resubscribe atomic.Bool
	// runID is the run_id of the Redis server the writer last flushed to,
	// watched with a Sentinel set: a failover changes it, and a write the
	// old master took just before it may be lost (replication is
	// asynchronous), so the replica resubscribes and resynchronises,
	// writing back what the new master lacks. Writer goroutine only.
	runID    string
	watchRun bool
	flushed  outcome.Totals // counter values already added to Redis
	cluster  atomic.Pointer[outcome.Totals]
	stop     context.CancelFunc
	done     sync.WaitGroup
}

// Fingerprint identifies a key in Redis without revealing it: the first 16
// bytes of its HMAC-SHA-256 under secret, in hex; with no secret, of its
// plain SHA-256, which anyone reading Redis can compare with a guess.
func Fingerprint(secret, raw string) string {
	if secret == "" {
		sum := sha256.Sum256([]byte(raw))
		return hex.EncodeToString(sum[:16])
	}
	h := hmac.New(sha256.New, []byte(secret))
	h.Write([]byte(raw))
	return hex.EncodeToString(h.Sum(nil)[:16])
}

func (c *Cluster) fingerprint(raw string) string {
	if c.secret == nil {
		return Fingerprint("", raw)
	}
	h := hmac.New(sha256.New, c.secret)
	h.Write([]byte(raw))
	return hex.EncodeToString(h.Sum(nil)[:16])
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
	base := "{" + opts.Prefix + "}"
	_, sentinel := rdb.(*redis.Client)
	sentinel = sentinel && redisurl.Scheme(opts.URL) == redisurl.SentinelScheme
	c := &Cluster{
		rdb: rdb, base: base, channel: base + "events", replica: newReplicaID(), log: opts.Log,
		now: opts.Now, watchRun: sentinel,
		keys: keys, targets: targets, counters: counters, onReset: opts.OnReset,
		targetFP:       map[string]*upstream.Target{},
		pendingKeys:    map[*keymanager.Key]change{},
		pendingTargets: map[*upstream.Target]change{},
		knownKeys:      map[*keymanager.Key]int64{},
		knownTargets:   map[*upstream.Target]int64{},
		wake:           make(chan struct{}, 1),
		reconnected:    make(chan struct{}, 1),
	}
	if c.now == nil {
		c.now = time.Now
	}
	if opts.FingerprintSecret != "" {
		c.secret = []byte(opts.FingerprintSecret)
	} else {
		c.log.Warn("REDIS_FINGERPRINT_SECRET is not set: keys are named in Redis by a plain SHA-256, so whoever can read Redis can confirm a guessed key; set the same secret on every replica")
	}
	c.cluster.Store(&outcome.Totals{})
	for _, t := range targets.Targets() {
		c.targetFP[c.fingerprint(t.String())] = t
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

// Generation is the id of the Redis data set this replica last
// synchronised with: it changes when Redis lost its data. For tests and
// diagnosis.
func (c *Cluster) Generation() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// Settled reports whether Redis is reachable and every change this replica
// decided has been sent and its verdict applied.
func (c *Cluster) Settled() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.up.Load() && !c.flushing && len(c.pendingKeys) == 0 && len(c.pendingTargets) == 0
}

// ClusterTotals returns the cluster-wide counters as last read.
func (c *Cluster) ClusterTotals() outcome.Totals { return *c.cluster.Load() }

// KeysChanged rebuilds the fingerprint index after the key set changed
// (reload, reset) and forgets what it knew of keys that left.
func (c *Cluster) KeysChanged() { c.keysChanged(false) }

// KeysReloaded is KeysChanged after a reload (SIGHUP): a key the reload
// added is active everywhere, whatever Redis holds from before it was
// removed, and stays so across reconnects until it fails again (§17).
func (c *Cluster) KeysReloaded() { c.keysChanged(true) }

func (c *Cluster) keysChanged(readd bool) {
	all := c.keys.Keys()
	old := c.byFP.Load()
	m := make(map[string]*keymanager.Key, len(all))
	var added []*keymanager.Key
	for _, k := range all {
		fp := c.fingerprint(k.Secret().Reveal())
		m[fp] = k
		if readd && old != nil && (*old)[fp] == nil {
			added = append(added, k)
		}
	}
	c.byFP.Store(&m)
	c.mu.Lock()
	for k := range c.knownKeys {
		if m[c.fingerprint(k.Secret().Reveal())] != k {
			delete(c.knownKeys, k)
		}
	}
	for _, k := range added {
		c.pendingKeys[k] = change{op: opReadd, epoch: c.epoch}
	}
	c.mu.Unlock()
	if len(added) > 0 {
		c.poke()
	}
}

// KeyChanged queues a key's new state for Redis. It never blocks.
func (c *Cluster) KeyChanged(k *keymanager.Key, s keymanager.Snapshot) {
	ch := keyChange(k, s)
	c.mu.Lock()
	ch.epoch, ch.basis = c.epoch, c.knownKeys[k]
	c.pendingKeys[k] = ch
	c.mu.Unlock()
	c.poke()
}

// TargetChanged queues a target's new state for Redis. It never blocks.
func (c *Cluster) TargetChanged(t *upstream.Target) {
	ch := targetChange(t)
	c.mu.Lock()
	ch.epoch, ch.basis = c.epoch, c.knownTargets[t]
	c.pendingTargets[t] = ch
	c.mu.Unlock()
	c.poke()
}

func (c *Cluster) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Redis names. They share the hash tag {prefix}, so that a deployment's
// names live in one slot of a Redis Cluster and a script may touch several.
func (c *Cluster) keyKey(fp string) string    { return c.base + "key:" + fp }
func (c *Cluster) targetKey(fp string) string { return c.base + "target:" + fp }
func (c *Cluster) countersKey() string        { return c.base + "counters" }
func (c *Cluster) leaseKey() string           { return c.base + "recheck-lease" }
func (c *Cluster) metaKey() string            { return c.base + "meta" }

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

// liftMemory is how long Redis remembers a lift (a re-check that passed, a
// re-add): long enough that a replica back from an outage does not write
// back a blacklist decided before it, short enough that the records of a
// large pool do not pile up.
const liftMemory = 24 * time.Hour

// flush sends the queued changes through the change script, applies the
// verdicts Redis returns, and adds the counter deltas. What fails stays
// queued unless something newer was queued meanwhile.
func (c *Cluster) flush(ctx context.Context) error {
	c.mu.Lock()
	keys, targets := c.pendingKeys, c.pendingTargets
	c.pendingKeys, c.pendingTargets = map[*keymanager.Key]change{}, map[*upstream.Target]change{}
	c.flushing = true
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.flushing = false
		c.mu.Unlock()
	}()

	now := c.counters.Totals()
	delta := now.Sub(c.flushed)

	byFP := *c.byFP.Load()
	pipe := c.rdb.Pipeline()
	type sent struct {
		key    *keymanager.Key
		target *upstream.Target
		cmd    *redis.Cmd
	}
	var out []sent
	for k, ch := range keys {
		fp := c.fingerprint(k.Secret().Reveal())
		if byFP[fp] != k {
			// A key object the replica no longer holds: a request in
			// flight across a reset or reload decided on it.
			continue
		}
		out = append(out, sent{key: k, cmd: c.send(ctx, pipe, kindKey, fp, c.keyKey(fp), ch)})
	}
	for t, ch := range targets {
		ch.reason = c.withoutKeys(ch.reason)
		fp := c.fingerprint(t.String())
		out = append(out, sent{target: t, cmd: c.send(ctx, pipe, kindTarget, fp, c.targetKey(fp), ch)})
	}
	if delta != (outcome.Totals{}) {
		pipe.HIncrBy(ctx, c.countersKey(), "total", delta.Total)
		pipe.HIncrBy(ctx, c.countersKey(), "success", delta.Success)
		pipe.HIncrBy(ctx, c.countersKey(), "failure", delta.Failure)
		pipe.HIncrBy(ctx, c.countersKey(), "retries", delta.Retries)
	}
	totals := pipe.HGetAll(ctx, c.countersKey())
	var info *redis.StringCmd
	if c.watchRun {
		info = pipe.Info(ctx, "server")
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		c.requeue(keys, targets)
		return err
	}
	if info != nil {
		if id := runID(info.Val()); id != c.runID {
			if c.runID != "" {
				c.log.WithField("redis", "new master").Info("redis master changed: resubscribing and resynchronising")
				c.resubscribe.Store(true)
				c.requestResync()
			}
			c.runID = id
		}
	}
	c.flushed = now
	c.cluster.Store(parseTotals(totals.Val()))
	c.applyMu.Lock()
	defer c.applyMu.Unlock()
	for _, s := range out {
		text, _ := s.cmd.Val().(string)
		v, ok := decode(text)
		if !ok {
			continue
		}
		c.mu.Lock()
		behind := v.Epoch > c.epoch
		c.mu.Unlock()
		if behind {
			// The change was dropped: a reset came first.
			c.resetTo(v.Epoch)
			continue
		}
		if s.key != nil {
			c.adoptKey(s.key, v, true)
		} else {
			c.adoptTarget(s.target, v, true)
		}
	}
	return nil
}

// send queues one change through the change script on pipe. A rest's
// deadline leaves as the time left on this replica's clock.
func (c *Cluster) send(ctx context.Context, pipe redis.Pipeliner, kind, fp, name string, ch change) *redis.Cmd {
	var rest int64
	if ch.op == opRest {
		rest = ch.until.Sub(c.now()).Milliseconds()
	}
	return changeScript.Eval(ctx, pipe, []string{name, c.metaKey()},
		ch.op, ch.epoch, ch.basis, c.replica, ch.reason, ch.status, ch.fails, rest,
		c.channel, fp, kind, liftMemory.Milliseconds())
}

func (c *Cluster) requeue(keys map[*keymanager.Key]change, targets map[*upstream.Target]change) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, ch := range keys {
		if _, newer := c.pendingKeys[k]; !newer {
			c.pendingKeys[k] = ch
		}
	}
	for t, ch := range targets {
		if _, newer := c.pendingTargets[t]; !newer {
			c.pendingTargets[t] = ch
		}
	}
}

// runID reads run_id from INFO server's answer.
func runID(info string) string {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(line, "run_id:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
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

// Reset starts a new epoch in Redis after this replica's /reset-keys:
// every replica resets, and a change decided before it (in Redis's order),
// even one queued by a replica cut off at the time, is dropped. Cut off
// from Redis, the reset stays on this replica and an error says so.
func (c *Cluster) Reset(ctx context.Context) error {
	c.KeysChanged()
	c.mu.Lock()
	c.pendingKeys = map[*keymanager.Key]change{}
	clear(c.knownKeys)
	c.mu.Unlock()
	if !c.up.Load() {
		return ErrResetNotShared
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	c.mu.Lock()
	mine := c.epoch
	c.mu.Unlock()
	e, err := resetScript.Run(ctx, c.rdb, []string{c.metaKey()}, c.channel, c.replica, mine).Int64()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrResetNotShared, err)
	}
	c.mu.Lock()
	c.epoch = max(c.epoch, e)
	c.mu.Unlock()
	// The states of older epochs count as absent; deleting them only
	// frees the memory.
	if err := c.dropOlder(ctx, match(c.base+"key:"), e); err != nil {
		c.log.WithError(err).Debug("reset: old key states not all deleted; they are ignored")
	}
	return nil
}

// ErrResetNotShared is Reset's error when Redis could not be told: the
// reset holds on this replica only.
var ErrResetNotShared = errors.New("redis is unreachable: the reset holds on this replica only")

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

// dropOlderScript deletes the states in KEYS stored under an epoch older
// than ARGV[1]; the newer ones (decided after a reset) stay.
var dropOlderScript = redis.NewScript(`
for _, k in ipairs(KEYS) do
  if tonumber(redis.call('HGET', k, 'epoch') or '-1') < tonumber(ARGV[1]) then redis.call('DEL', k) end
end
return 0
`)

// dropOlder deletes the states under pattern stored before epoch.
func (c *Cluster) dropOlder(ctx context.Context, pattern string, epoch int64) error {
	names, err := c.scan(ctx, pattern)
	for len(names) > 0 && err == nil {
		batch := names[:min(len(names), 1000)]
		names = names[len(batch):]
		err = dropOlderScript.Run(ctx, c.rdb, batch, epoch).Err()
	}
	return err
}

// scan lists the names that match pattern, on the node that holds the
// deployment's slot (client.go).
func (c *Cluster) scan(ctx context.Context, pattern string) ([]string, error) {
	iter := scan(ctx, c.rdb, c.keyKey(""), pattern, 1000)
	var names []string
	for iter.Next(ctx) {
		names = append(names, iter.Val())
	}
	return names, iter.Err()
}
