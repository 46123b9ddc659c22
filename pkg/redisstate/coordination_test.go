package redisstate

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/kube-zen/zen-watcher/internal/testenv"
	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/pipeline"
)

// TestCoordinationAgainstRedis round-trips every piece of shared state through a real redis-server
// and checks that each key expires.
func TestCoordinationAgainstRedis(t *testing.T) {
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer c.Close()
	co := NewCoordination(c, "coord")

	if err := co.PublishStats(ctx, "zw-0", map[string]pipeline.OrderStats{"falco": {Events: 10, DedupSeen: 10, DedupDropped: 7}}); err != nil {
		t.Fatal(err)
	}
	if err := co.PublishStats(ctx, "zw-1", map[string]pipeline.OrderStats{"falco": {Events: 5}, "trivy": {Events: 3}}); err != nil {
		t.Fatal(err)
	}
	all, err := co.AllStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if all["zw-0"]["falco"].DedupDropped != 7 || all["zw-1"]["trivy"].Events != 3 || len(all) != 2 {
		t.Errorf("statistics %+v", all)
	}
	if err := co.PublishOrders(ctx, map[string]v1alpha1.Order{"falco": v1alpha1.OrderDedupFirst}); err != nil {
		t.Fatal(err)
	}
	if o, err := co.Orders(ctx); err != nil || o["falco"] != v1alpha1.OrderDedupFirst {
		t.Errorf("orders %v %v", o, err)
	}
	if _, _, ok, err := co.Tuning(ctx); ok || err != nil {
		t.Errorf("tuning before any was published: %v %v", ok, err)
	}
	if err := co.PublishTuning(ctx, 90*time.Second, 12000); err != nil {
		t.Fatal(err)
	}
	if w, n, ok, err := co.Tuning(ctx); !ok || err != nil || w != 90*time.Second || n != 12000 {
		t.Errorf("tuning %v %d %v %v", w, n, ok, err)
	}
	for _, key := range []string{"zw:{coord}:stats", "zw:coord:order", "zw:coord:ha"} {
		if ttl := c.PTTL(ctx, key).Val(); ttl <= 0 {
			t.Errorf("%s has no TTL (%v)", key, ttl)
		}
	}
}

// TestStaleReplicasDropOut: a replica that stopped publishing for longer than statsTTL is left
// out of AllStats, which removes its field; publishing reads nothing back.
func TestStaleReplicasDropOut(t *testing.T) {
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer c.Close()
	co := NewCoordination(c, "stale")
	past := NewCoordination(c, "stale")
	past.now = func() time.Time { return time.Now().Add(-statsTTL - time.Second) }
	if err := past.PublishStats(ctx, "gone", map[string]pipeline.OrderStats{"falco": {Events: 1}}); err != nil {
		t.Fatal(err)
	}
	if err := co.PublishStats(ctx, "live", map[string]pipeline.OrderStats{"falco": {Events: 2}}); err != nil {
		t.Fatal(err)
	}
	if !c.HExists(ctx, "zw:{stale}:stats", "gone").Val() {
		t.Fatal("a publish removed another replica's field: only the leader's read prunes")
	}
	all, err := co.AllStats(ctx)
	if err != nil || len(all) != 1 || all["live"]["falco"].Events != 2 {
		t.Errorf("statistics %v %v, want only the live replica's", all, err)
	}
	if c.HExists(ctx, "zw:{stale}:stats", "gone").Val() {
		t.Error("the stale replica's field was not removed")
	}
}

// TestSharedStateOnARedisCluster: on a real three-node Redis Cluster the leader reads every
// replica's statistics (a SCAN reached only one node's keys), and dedup claims and counts spread
// over the slots work per key.
func TestSharedStateOnARedisCluster(t *testing.T) {
	rc, err := testenv.StartRedisCluster(3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rc.Close() })
	ctx := context.Background()
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: rc.Addrs})
	defer c.Close()
	co := NewCoordination(c, "cluster")
	const members = 12
	for i := range members {
		if err := co.PublishStats(ctx, fmt.Sprintf("zw-%d", i), map[string]pipeline.OrderStats{"falco": {Events: uint64(i + 1)}}); err != nil {
			t.Fatal(err)
		}
	}
	for range 5 { // a SCAN would answer from a different node each time
		all, err := co.AllStats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != members {
			t.Fatalf("the leader saw %d of %d replicas' statistics", len(all), members)
		}
	}
	s := NewDedupStore(c, Options{Release: "cluster"})
	defer s.Close()
	for k := range uint64(50) {
		if ok, _, err := s.Claim(ctx, k, time.Minute, k+1); !ok || err != nil {
			t.Fatalf("claim %d: %v %v", k, ok, err)
		}
		if ok, _, err := s.Claim(ctx, k, time.Minute, k+100); ok || err != nil {
			t.Fatalf("second claim %d: %v %v", k, ok, err)
		}
		if n, h, err := s.Incr(ctx, k, time.Minute, 7); n != 1 || h.Token != 7 || err != nil {
			t.Fatalf("count %d: %d %+v %v", k, n, h, err)
		}
	}
}
