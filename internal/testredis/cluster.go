package testredis

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// clusterNodeTimeout is how long a cluster node may be silent before the
// others count it failing (Redis's default is 15 s).
const clusterNodeTimeout = 1000 * time.Millisecond

// slots is the number of hash slots of a Redis Cluster.
const slots = 16384

// Cluster is a Redis Cluster of masters without replicas, on loopback,
// without persistence: a node stopped and restarted comes back with its
// slots (its nodes.conf stays in its directory) but no data.
type Cluster struct {
	// URL is redis-cluster://host:port,host:port,...
	URL   string
	Nodes []*Server
	first []int // first[i] is node i's first slot; it owns up to first[i+1]-1
}

// StartCluster starts n nodes, gives each an equal range of slots, joins
// them and waits until every node reports the cluster ok. Without
// redis-server the test is skipped (failed under CI), as with Start.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	bin := lookPath(t, "redis-server", "redis-server")
	c := &Cluster{}
	var addrs []string
	for range n {
		srv := launch(t, bin, func(*Server) []string {
			// The bus port is chosen, not port+10000, which may be taken
			// or out of range.
			return []string{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
				"--cluster-node-timeout", strconv.FormatInt(clusterNodeTimeout.Milliseconds(), 10),
				"--cluster-port", strconv.Itoa(freePort(t))}
		})
		c.Nodes = append(c.Nodes, srv)
		addrs = append(addrs, srv.Addr)
	}
	c.URL = "redis-cluster://" + strings.Join(addrs, ",")

	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	first := c.Nodes[0].client()
	defer first.Close()
	for i, srv := range c.Nodes {
		lo, hi := i*slots/n, (i+1)*slots/n-1
		c.first = append(c.first, lo)
		rdb := srv.client()
		err := rdb.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", lo, hi).Err()
		bus := ""
		if err == nil {
			bus, err = busPort(ctx, rdb)
		}
		rdb.Close()
		if err != nil {
			t.Fatalf("testredis: cluster node %s: %v", srv.Addr, err)
		}
		if i > 0 {
			host, port, _ := net.SplitHostPort(srv.Addr)
			if err := first.Do(ctx, "CLUSTER", "MEET", host, port, bus).Err(); err != nil {
				t.Fatalf("testredis: CLUSTER MEET %s: %v", srv.Addr, err)
			}
		}
	}
	if err := poll(ctx, func() bool { return c.OK(ctx) }); err != nil {
		t.Fatalf("testredis: the cluster is not ok within %v:\n%s", readyTimeout, c.Output())
	}
	return c
}

// busPort returns the cluster bus port a node was started with.
func busPort(ctx context.Context, rdb *redis.Client) (string, error) {
	m, err := rdb.ConfigGet(ctx, "cluster-port").Result()
	if err != nil {
		return "", err
	}
	return m["cluster-port"], nil
}

func (s *Server) client() *redis.Client {
	return redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1})
}

// OK reports whether every node answers and reports cluster_state:ok
// knowing all the nodes.
func (c *Cluster) OK(ctx context.Context) bool {
	want := fmt.Sprintf("cluster_known_nodes:%d\r", len(c.Nodes))
	for _, srv := range c.Nodes {
		rdb := srv.client()
		info, err := rdb.ClusterInfo(ctx).Result()
		rdb.Close()
		if err != nil || !strings.Contains(info, "cluster_state:ok\r") || !strings.Contains(info, want) {
			return false
		}
	}
	return true
}

// NodeFor returns the node that owns key's slot, asking any node that
// answers for the slot.
func (c *Cluster) NodeFor(ctx context.Context, key string) (*Server, error) {
	var lastErr error
	for _, srv := range c.Nodes {
		rdb := srv.client()
		slot, err := rdb.ClusterKeySlot(ctx, key).Result()
		rdb.Close()
		if err != nil {
			lastErr = err
			continue
		}
		owner := 0
		for i, lo := range c.first {
			if int(slot) >= lo {
				owner = i
			}
		}
		return c.Nodes[owner], nil
	}
	return nil, lastErr
}

// Output returns what every node printed, for a failed test's log.
func (c *Cluster) Output() string {
	var b strings.Builder
	for i, srv := range c.Nodes {
		fmt.Fprintf(&b, "--- node %d %s\n%s", i+1, srv.Addr, srv.Output())
	}
	return b.String()
}
