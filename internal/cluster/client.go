package cluster

import (
	"context"

	"github.com/redis/go-redis/v9"

	"github.com/gpt-load/gpt-load/internal/redisurl"
)

// newClient returns go-redis's client for REDIS_URL's form: a failover
// client for redis-sentinel:// (it asks the sentinels where the master is),
// a cluster client for redis-cluster:// (it follows the slot map and its
// MOVED/ASK redirects), and a plain client for redis:// and rediss://.
//
// Every form bounds dialing, reading and writing by opTimeout, as one round
// of our commands is, and every form leaves the backing off to the writer
// loop. Retries inside go-redis differ by form:
//
//   - One server: none (MaxRetries -1). A retry cannot outlast an outage
//     that our loop then waits out anyway, and a retried pipeline whose
//     first send landed adds the counter deltas twice.
//   - Sentinel: one. Through a failover the client finds the new master by
//     itself: each new connection asks a sentinel for the master's address,
//     and go-redis drops pooled connections to the old master when a
//     sentinel announces +switch-master. What it cannot undo is a command
//     already sent on a connection to the old master after that master was
//     demoted (a planned SENTINEL FAILOVER, or an old master back as a
//     replica): that answers READONLY, go-redis closes the connection, and
//     one retry runs on a fresh connection to the new master. Without it,
//     every planned switchover would show as an outage (logged, /health
//     "redis":"down", a full resync). More retries would not help: while
//     the master is dead and not yet replaced (down-after-milliseconds
//     plus an election: seconds), the sentinels still name the dead one,
//     and our loop's backoff is the right wait.
//   - Cluster: none per node, but redirects as go-redis sets them
//     (MaxRedirects 3): a MOVED or ASK after a slot moved or a replica was
//     promoted is how the client learns the new owner, and following it is
//     not a retry of a failure.
func newClient(rawURL string) (redis.UniversalClient, error) {
	switch redisurl.Scheme(rawURL) {
	case redisurl.SentinelScheme:
		u, err := redisurl.Parse(rawURL)
		if err != nil {
			return nil, err
		}
		return redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName:    u.Master,
			SentinelAddrs: u.Addrs,
			Username:      u.Username,
			Password:      u.Password,
			DB:            u.DB,
			MaxRetries:    1,
			DialTimeout:   opTimeout,
			ReadTimeout:   opTimeout,
			WriteTimeout:  opTimeout,
		}), nil
	case redisurl.ClusterScheme:
		u, err := redisurl.Parse(rawURL)
		if err != nil {
			return nil, err
		}
		return redis.NewClusterClient(&redis.ClusterOptions{
			Addrs:        u.Addrs,
			Username:     u.Username,
			Password:     u.Password,
			MaxRetries:   -1,
			DialTimeout:  opTimeout,
			ReadTimeout:  opTimeout,
			WriteTimeout: opTimeout,
		}), nil
	default:
		ro, err := redis.ParseURL(rawURL)
		if err != nil {
			return nil, err
		}
		ro.MaxRetries = -1
		ro.DialTimeout = opTimeout
		ro.ReadTimeout = opTimeout
		ro.WriteTimeout = opTimeout
		return redis.NewClient(ro), nil
	}
}

// scanNode returns where a SCAN over a deployment's names must run. In a
// Redis Cluster a SCAN sees one node only; every name of a deployment
// shares one hash tag, so one slot, so the node is the master owning the
// slot of slotKey, any name of the deployment. Elsewhere it is rdb itself.
func scanNode(ctx context.Context, rdb redis.UniversalClient, slotKey string) (redis.Cmdable, error) {
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		return cc.MasterForKey(ctx, slotKey)
	}
	return rdb, nil
}

// scan iterates over the names matching pattern where scanNode says. If
// that node cannot be found, the iterator yields nothing and its Err says
// why.
func scan(ctx context.Context, rdb redis.UniversalClient, slotKey, pattern string, count int64) *redis.ScanIterator {
	node, err := scanNode(ctx, rdb, slotKey)
	if err != nil {
		cmd := redis.NewScanCmd(ctx, nil)
		cmd.SetErr(err)
		return cmd.Iterator()
	}
	return node.Scan(ctx, 0, pattern, count).Iterator()
}
