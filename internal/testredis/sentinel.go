package testredis

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Sentinel timings, short so that a test sees a failover within seconds.
const (
	// downAfter is how long the master must be silent before a sentinel
	// thinks it down (Redis's default is 30 s).
	downAfter = 1000 * time.Millisecond
	// failoverTimeout bounds one failover attempt; a failed election is
	// retried after twice this (Redis's default is 3 min).
	failoverTimeout = 3 * time.Second
	// readyTimeout bounds the wait for sentinels to find each other and
	// the replica (their hello messages go every 2 s).
	readyTimeout = 20 * time.Second
)

// Sentinel is a master, one replica of it, and three sentinels watching
// the master under MasterName with a quorum of 2, all on loopback.
type Sentinel struct {
	// URL is redis-sentinel://host:port,host:port,host:port/MasterName.
	URL        string
	MasterName string
	Master     *Server
	Replica    *Server
	Sentinels  []*Server
}

// StartSentinel starts the set and waits until it can fail over: the
// replica is in sync and every sentinel knows the replica and the two
// other sentinels. Without redis-server or redis-sentinel the test is
// skipped (failed under CI), as with Start.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	sentinelBin := lookPath(t, "redis-sentinel", "redis-sentinel")
	s := &Sentinel{MasterName: "mymaster", Master: Start(t)}
	masterHost, masterPort, _ := net.SplitHostPort(s.Master.Addr)
	s.Replica = launch(t, s.Master.bin, func(*Server) []string {
		return []string{"--replicaof", masterHost, masterPort}
	})
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	replica := s.Replica.client()
	defer replica.Close()
	s.until(t, ctx, "the replica is in sync with the master", func() bool {
		return strings.Contains(replica.Info(ctx, "replication").Val(), "master_link_status:up")
	})

	addrs := make([]string, 3)
	for i := range addrs {
		srv := launch(t, sentinelBin, func(srv *Server) []string {
			conf := filepath.Join(srv.dir, "sentinel.conf")
			// A sentinel rewrites its file; each run starts from this one.
			text := fmt.Sprintf("sentinel monitor %[1]s %[2]s %[3]s 2\n"+
				"sentinel down-after-milliseconds %[1]s %[4]d\n"+
				"sentinel failover-timeout %[1]s %[5]d\n"+
				"sentinel parallel-syncs %[1]s 1\n",
				s.MasterName, masterHost, masterPort, downAfter.Milliseconds(), failoverTimeout.Milliseconds())
			if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
				t.Fatalf("testredis: %v", err)
			}
			return []string{conf}
		})
		s.Sentinels = append(s.Sentinels, srv)
		addrs[i] = srv.Addr
	}
	s.URL = "redis-sentinel://" + strings.Join(addrs, ",") + "/" + s.MasterName
	for _, srv := range s.Sentinels {
		sc := redis.NewSentinelClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1})
		s.until(t, ctx, "sentinel "+srv.Addr+" knows the replica and the other sentinels", func() bool {
			m := sc.Master(ctx, s.MasterName).Val()
			return m["num-slaves"] == "1" && m["num-other-sentinels"] == "2"
		})
		sc.Close()
	}
	return s
}

// MasterAddr asks the sentinels, in turn, where the master is.
func (s *Sentinel) MasterAddr(ctx context.Context) (string, error) {
	var lastErr error
	for _, srv := range s.Sentinels {
		sc := redis.NewSentinelClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1})
		addr, err := sc.GetMasterAddrByName(ctx, s.MasterName).Result()
		sc.Close()
		if err == nil {
			return net.JoinHostPort(addr[0], addr[1]), nil
		}
		lastErr = err
	}
	return "", lastErr
}

// Output returns what every process of the set printed, for a failed
// test's log.
func (s *Sentinel) Output() string {
	var b strings.Builder
	fmt.Fprintf(&b, "--- first master %s\n%s", s.Master.Addr, s.Master.Output())
	fmt.Fprintf(&b, "--- first replica %s\n%s", s.Replica.Addr, s.Replica.Output())
	for i, srv := range s.Sentinels {
		fmt.Fprintf(&b, "--- sentinel %d %s\n%s", i+1, srv.Addr, srv.Output())
	}
	return b.String()
}

// until polls cond until it holds or ctx ends, which fails the test.
func (s *Sentinel) until(t testing.TB, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	if err := poll(ctx, cond); err != nil {
		t.Fatalf("testredis: %s: not within %v:\n%s", what, readyTimeout, s.Output())
	}
}

// poll calls cond every 20 ms until it holds or ctx ends.
func poll(ctx context.Context, cond func() bool) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}
