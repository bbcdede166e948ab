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
// of our commands is, and none retries a failed command (MaxRetries -1):
// the writer loop does the backing off, and a failure is an outage to log,
// show on /health and end with a resync. That is right for a failover too.
// The failover client finds the new master by itself: each new connection
// asks a sentinel, and pooled connections to the old master are dropped
// when a sentinel announces +switch-master. Until the sentinels promote a
// replica (down-after-milliseconds plus an election: seconds) they name
// the dead master, so a retry within one round meets it again; it only
// delays the outage's report (measured: with one retry the replicas
// logged it about 1 s later and reconnected no sooner). A command that
// meets a demoted master answers READONLY, which closes that connection:
// the next round dials the new master. The cluster client keeps go-redis's
// redirects (MaxRedirects 3): following a MOVED after a failover is how it
// learns the new owner of a slot. go-redis spends the same budget on
// re-sending after a network error (to the same node, then another),
// which cannot be turned off alone; it stays within the round's opTimeout.
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
			MaxRetries:    -1,
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
