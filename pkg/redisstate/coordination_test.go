package redisstate

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

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
	for _, key := range []string{"zw:coord:stats:zw-0", "zw:coord:order", "zw:coord:ha"} {
		if ttl := c.PTTL(ctx, key).Val(); ttl <= 0 {
			t.Errorf("%s has no TTL (%v)", key, ttl)
		}
	}
}
