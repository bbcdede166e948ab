package testredis

import (
	"context"
	"testing"
	"time"
)

func TestSentinelFailsOverWhenTheMasterDies(t *testing.T) {
	s := StartSentinel(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if got, err := s.MasterAddr(ctx); err != nil || got != s.Master.Addr {
		t.Fatalf("MasterAddr() = %q, %v; want %q", got, err, s.Master.Addr)
	}
	killed := time.Now()
	s.Master.Stop()
	err := poll(ctx, func() bool {
		got, err := s.MasterAddr(ctx)
		return err == nil && got == s.Replica.Addr
	})
	if err != nil {
		t.Fatalf("the sentinels did not promote the replica %s: %v\n%s", s.Replica.Addr, err, s.Output())
	}
	t.Logf("replica promoted %v after the master was killed", time.Since(killed).Round(time.Millisecond))
	rdb := s.Replica.client()
	defer rdb.Close()
	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Errorf("SET on the promoted replica: %v; want it to take writes", err)
	}
}

func TestClusterNodeComesBackWithItsSlots(t *testing.T) {
	c := StartCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	owner, err := c.NodeFor(ctx, "{gpt-load}:key:")
	if err != nil {
		t.Fatal(err)
	}
	rdb := owner.client()
	defer rdb.Close()
	if err := rdb.Set(ctx, "{gpt-load}:x", "v", 0).Err(); err != nil {
		t.Fatalf("SET on the slot's owner %s: %v", owner.Addr, err)
	}
	owner.Restart()
	if err := poll(ctx, func() bool { return c.OK(ctx) }); err != nil {
		t.Fatalf("the cluster is not ok again after %s restarted: %v\n%s", owner.Addr, err, c.Output())
	}
	if n := rdb.Exists(ctx, "{gpt-load}:x").Val(); n != 0 {
		t.Errorf("after a restart the node holds %d of the keys it had; want 0 (no persistence)", n)
	}
	if err := rdb.Set(ctx, "{gpt-load}:x", "v", 0).Err(); err != nil {
		t.Errorf("SET on %s after its restart: %v; want it to own the slot still", owner.Addr, err)
	}
}
