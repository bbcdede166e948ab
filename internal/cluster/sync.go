package cluster

import (
	"context"
	"errors"
	"net"
	"strings"
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
	ps := c.rdb.Subscribe(ctx, c.channel())
	defer ps.Close()
	// Closing it ends a receive in progress at once: Close does not wait
	// for the receive timeout.
	defer context.AfterFunc(ctx, func() { ps.Close() })()
	// Set at first too: what was published between the load in New and
	// the subscription taking effect was missed.
	var broken atomic.Bool
	broken.Store(true)
	backoff := backoffMin
	for ctx.Err() == nil {
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

func (c *Cluster) handle(payload string) {
	e, ok := decode(payload)
	if !ok || e.From == c.replica {
		return
	}
	c.applyMu.Lock()
	defer c.applyMu.Unlock()
	switch e.Kind {
	case kindKey:
		c.applyKey(e)
	case kindTarget:
		c.applyTarget(e)
	case kindReset:
		c.applyReset()
	}
}

// applyReset re-reads this replica's keys as another replica's
// /reset-keys asked.
func (c *Cluster) applyReset() {
	if c.onReset != nil {
		if err := c.onReset(); err != nil {
			c.log.WithError(err).Error("reset from another replica: keeping the old keys")
		}
	}
	c.KeysChanged()
	c.mu.Lock()
	c.pendingKeys = map[*keymanager.Key]struct{}{}
	c.mu.Unlock()
}

// resync loads the whole shared state and applies it, ordered by time:
// a stored change newer than the local state wins, and a local change
// newer than Redis's (or one Redis does not hold) is written back, except
// where a reset newer than it cleared the states. So a Redis restarted
// without persistence gets the replicas' states back instead of making
// them forget their blacklists, and changes still queued here are written
// next and win.
func (c *Cluster) resync(ctx context.Context) error {
	c.applyMu.Lock()
	defer c.applyMu.Unlock()
	keyStates, err := c.load(ctx, kindKey, c.prefix+"key:")
	if err != nil {
		return err
	}
	targetStates, err := c.load(ctx, kindTarget, c.prefix+"target:")
	if err != nil {
		return err
	}
	resetAt, err := c.rdb.Get(ctx, c.resetKey()).Int64()
	if err != nil && !errors.Is(err, redis.Nil) {
		return err
	}
	c.mu.Lock()
	pendingKeys := make(map[*keymanager.Key]bool, len(c.pendingKeys))
	for k := range c.pendingKeys {
		pendingKeys[k] = true
	}
	pendingTargets := make(map[*upstream.Target]bool, len(c.pendingTargets))
	for t := range c.pendingTargets {
		pendingTargets[t] = true
	}
	c.mu.Unlock()

	byFP := *c.byFP.Load()
	var writeBack []*keymanager.Key
	for fp, k := range byFP {
		if pendingKeys[k] {
			continue
		}
		local := k.Snapshot()
		localAt := micros(local.ChangedAt)
		e, ok := keyStates[fp]
		switch {
		case ok && e.At >= localAt:
			c.applyKey(e)
		case local.State == keymanager.Active:
			// Nothing to hold against Redis.
		case resetAt > localAt:
			// Cleared by a reset this replica did not hear.
			c.keys.Apply(k, keymanager.Change{State: keymanager.Active, At: fromMicros(resetAt)})
		default:
			writeBack = append(writeBack, k)
		}
	}
	if len(writeBack) > 0 {
		c.log.WithField("keys", len(writeBack)).Info("redis lacked this replica's newer key states: writing them back")
		c.mu.Lock()
		for _, k := range writeBack {
			c.pendingKeys[k] = struct{}{}
		}
		c.mu.Unlock()
		c.poke()
	}
	for fp, t := range c.targetFP {
		if pendingTargets[t] {
			continue
		}
		e, ok := targetStates[fp]
		if !ok {
			e = event{Kind: kindTarget, FP: fp, State: stateActive}
		}
		c.applyTarget(e)
	}
	return nil
}

// load reads every stored state under prefix.
func (c *Cluster) load(ctx context.Context, kind, prefix string) (map[string]event, error) {
	out := map[string]event{}
	iter := scan(ctx, c.rdb, c.keyKey(""), match(prefix), 1000)
	var names []string
	for iter.Next(ctx) {
		names = append(names, iter.Val())
	}
	if err := iter.Err(); err != nil {
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
			if h := cmds[i].Val(); len(h) > 0 {
				fp := strings.TrimPrefix(n, prefix)
				out[fp] = fromHash(kind, fp, h)
			}
		}
	}
	return out, nil
}
