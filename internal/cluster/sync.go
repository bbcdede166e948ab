package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gpt-load/gpt-load/internal/keymanager"
	"github.com/gpt-load/gpt-load/internal/upstream"
)

var _ keymanager.Listener = (*Cluster)(nil)
var _ upstream.Listener = (*Cluster)(nil)

// subscriber applies other replicas' changes as they are published. After
// the subscription breaks and comes back, it asks for a full resync, since
// messages sent in between are lost.
func (c *Cluster) subscriber(ctx context.Context) {
	defer c.done.Done()
	var psMu sync.Mutex
	ps := c.rdb.Subscribe(ctx, c.channel)
	current := func() *redis.PubSub { psMu.Lock(); defer psMu.Unlock(); return ps }
	defer func() { current().Close() }()
	// Closing it ends a receive in progress at once: Close does not wait
	// for the receive timeout.
	defer context.AfterFunc(ctx, func() { current().Close() })()
	// Set at first too: what was published between the load in New and
	// the subscription taking effect was missed.
	var broken atomic.Bool
	broken.Store(true)
	backoff := backoffMin
	for ctx.Err() == nil {
		if c.resubscribe.Swap(false) {
			// The master changed under us (a failover): a subscription
			// may still sit on the old one, which hears nothing now.
			psMu.Lock()
			ps.Close()
			ps = c.rdb.Subscribe(ctx, c.channel)
			psMu.Unlock()
			broken.Store(true)
		}
		msg, err := ps.ReceiveTimeout(ctx, time.Second)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				// Quiet channel: a ping makes a dead connection show.
				ps.Ping(ctx)
				continue
			}
			if ctx.Err() != nil {
				return
			}
			broken.Store(true)
			select {
			case <-ctx.Done():
				return
			case <-c.reconnected:
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, backoffMax)
			continue
		}
		backoff = backoffMin
		switch m := msg.(type) {
		case *redis.Subscription:
			if broken.Swap(false) {
				c.requestResync()
			}
		case *redis.Message:
			c.handle(m.Payload)
		}
	}
}

// requestResync makes the writer load the whole state again.
func (c *Cluster) requestResync() {
	c.resyncWanted.Store(true)
	c.poke()
}

// handle applies another replica's published verdict or reset.
func (c *Cluster) handle(payload string) {
	v, ok := decode(payload)
	if !ok || v.From == c.replica {
		return
	}
	c.applyMu.Lock()
	defer c.applyMu.Unlock()
	c.mu.Lock()
	epoch := c.epoch
	c.mu.Unlock()
	if v.Epoch > epoch {
		c.resetTo(v.Epoch)
	}
	switch v.Kind {
	case kindKey:
		if k := (*c.byFP.Load())[v.FP]; k != nil {
			c.adoptKey(k, v, false)
		}
	case kindTarget:
		if t := c.targetFP[v.FP]; t != nil {
			c.adoptTarget(t, v, false)
		}
	}
}

// adoptKey applies a verdict on k unless it is older than what this
// replica has seen, or of an older epoch. The verdict on this replica's
// own change (reply) applies even at a version it has seen: the change
// was dropped, and the local state it made must yield. While a change of
// k's is queued here, only the version is noted: the queued change goes
// to Redis next and its verdict is applied then. Caller holds applyMu.
func (c *Cluster) adoptKey(k *keymanager.Key, v verdict, reply bool) {
	c.mu.Lock()
	_, queued := c.pendingKeys[k]
	known := c.knownKeys[k]
	fresh := v.Epoch == c.epoch && (v.Ver > known || reply && v.Ver == known)
	if fresh {
		c.knownKeys[k] = v.Ver
	}
	c.mu.Unlock()
	if fresh && !queued {
		c.applyKey(k, v)
	}
}

// adoptTarget is adoptKey for a target.
func (c *Cluster) adoptTarget(t *upstream.Target, v verdict, reply bool) {
	c.mu.Lock()
	_, queued := c.pendingTargets[t]
	known := c.knownTargets[t]
	fresh := v.Ver > known || reply && v.Ver == known
	if fresh {
		c.knownTargets[t] = v.Ver
	}
	c.mu.Unlock()
	if fresh && !queued {
		c.applyTarget(t, v)
	}
}

// resetTo resets this replica's keys as a reset of epoch e (decided by
// another replica, or while this one was cut off) asks: the keys file is
// read again, every key is active, and the changes queued before it are
// dropped. Caller holds applyMu.
func (c *Cluster) resetTo(e int64) {
	if c.onReset != nil {
		if err := c.onReset(); err != nil {
			c.log.WithError(err).Error("reset from another replica: keeping the old keys")
		}
	}
	c.KeysChanged()
	c.mu.Lock()
	c.epoch = max(c.epoch, e)
	c.pendingKeys = map[*keymanager.Key]change{}
	clear(c.knownKeys)
	c.mu.Unlock()
	c.log.WithField("epoch", e).Info("keys reset by another replica's /reset-keys")
}

// resync says hello to Redis (generation and epoch), then loads the whole
// shared state and applies it:
//   - a reset this replica missed is done here first;
//   - a Redis that lost its data (a new generation, or none yet) gets this
//     replica's blacklists and rests written back, so a restart without
//     persistence does not make the replicas forget them;
//   - a stored state newer than what this replica has seen is applied;
//   - a local blacklist Redis does not hold is written back (it cannot
//     have been lifted: a lift is remembered for liftMemory);
//   - keys and targets with a change queued here are left alone: the
//     change goes to Redis next and Redis's verdict on it is applied.
func (c *Cluster) resync(ctx context.Context) error {
	c.applyMu.Lock()
	defer c.applyMu.Unlock()
	c.mu.Lock()
	known, mine := c.epochKnown, c.epoch
	c.mu.Unlock()
	res, err := helloScript.Run(ctx, c.rdb, []string{c.metaKey()}, newReplicaID(), mine, c.channel, c.replica).Slice()
	if err != nil {
		return err
	}
	if len(res) != 4 {
		return fmt.Errorf("redis: unexpected hello answer %v", res)
	}
	gen, _ := res[0].(string)
	epoch, _ := res[1].(int64)
	made, _ := res[2].(int64)
	now, _ := res[3].(int64)
	keyStates, err := c.load(ctx, kindKey, c.base+"key:", epoch, now)
	if err != nil {
		return err
	}
	targetStates, err := c.load(ctx, kindTarget, c.base+"target:", epoch, now)
	if err != nil {
		return err
	}
	if known && epoch > mine {
		c.resetTo(epoch)
	}
	c.mu.Lock()
	lost := made == 1 || (c.gen != "" && c.gen != gen)
	if lost {
		// Versions of the lost data mean nothing in the new one.
		clear(c.knownKeys)
		clear(c.knownTargets)
	}
	c.gen, c.epoch, c.epochKnown = gen, epoch, true
	pendingKeys := make(map[*keymanager.Key]bool, len(c.pendingKeys))
	for k, ch := range c.pendingKeys {
		pendingKeys[k] = true
		if !known {
			// Decided before this replica first reached Redis.
			ch.epoch = epoch
			c.pendingKeys[k] = ch
		}
	}
	pendingTargets := make(map[*upstream.Target]bool, len(c.pendingTargets))
	for t := range c.pendingTargets {
		pendingTargets[t] = true
	}
	c.mu.Unlock()

	var writeBack []*keymanager.Key
	for fp, k := range *c.byFP.Load() {
		if pendingKeys[k] {
			continue
		}
		v, stored := keyStates[fp]
		local := k.Snapshot()
		switch {
		case local.State == keymanager.Blacklisted && (!stored || lost):
			writeBack = append(writeBack, k)
		case local.State == keymanager.Cooling && lost && local.Until.After(c.now()):
			writeBack = append(writeBack, k)
		case stored:
			c.adoptKey(k, v, false)
		case local.State != keymanager.Active:
			// A rest that ended in Redis's time, or a state of an epoch
			// Redis no longer holds.
			c.applyKey(k, verdict{Kind: kindKey, State: stateActive})
		}
	}
	if len(writeBack) > 0 {
		c.log.WithField("keys", len(writeBack)).Info("redis lacked this replica's key states: writing them back")
		c.mu.Lock()
		for _, k := range writeBack {
			ch := keyChange(k, k.Snapshot())
			ch.epoch, ch.basis = c.epoch, c.knownKeys[k]
			c.pendingKeys[k] = ch
		}
		c.mu.Unlock()
		c.poke()
	}
	for fp, t := range c.targetFP {
		if pendingTargets[t] {
			continue
		}
		if v, ok := targetStates[fp]; ok {
			c.adoptTarget(t, v, false)
		} else if !t.Active() && !lost {
			c.applyTarget(t, verdict{Kind: kindTarget, State: stateActive})
		}
	}
	return nil
}

// load reads every stored state under prefix, as of Redis time now in
// epoch.
func (c *Cluster) load(ctx context.Context, kind, prefix string, epoch, now int64) (map[string]verdict, error) {
	out := map[string]verdict{}
	names, err := c.scan(ctx, match(prefix))
	if err != nil {
		return nil, err
	}
	for len(names) > 0 {
		batch := names[:min(len(names), 1000)]
		names = names[len(batch):]
		pipe := c.rdb.Pipeline()
		cmds := make([]*redis.MapStringStringCmd, len(batch))
		for i, n := range batch {
			cmds[i] = pipe.HGetAll(ctx, n)
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return nil, err
		}
		for i, n := range batch {
			// A state stored under an older epoch is absent: a reset
			// came after it.
			if h := cmds[i].Val(); len(h) > 0 && atoi(h["epoch"]) == epoch && h["epoch"] != "" {
				fp := strings.TrimPrefix(n, prefix)
				out[fp] = fromHash(kind, fp, h, epoch, now)
			}
		}
	}
	return out, nil
}
