package redisstate

import (
	"context"
	"errors"
	"fmt"
	"strings"
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
	term, err := co.BeginTerm(ctx, "zw-0")
	if err != nil {
		t.Fatal(err)
	}
	if err := co.PublishOrders(ctx, term, map[string]v1alpha1.Order{"falco": v1alpha1.OrderDedupFirst}); err != nil {
		t.Fatal(err)
	}
	if o, err := co.Orders(ctx); err != nil || o["falco"] != v1alpha1.OrderDedupFirst {
		t.Errorf("orders %v %v", o, err)
	}
	if _, _, ok, err := co.Tuning(ctx); ok || err != nil {
		t.Errorf("tuning before any was published: %v %v", ok, err)
	}
	if err := co.PublishTuning(ctx, term, 90*time.Second, 12000); err != nil {
		t.Fatal(err)
	}
	if w, n, ok, err := co.Tuning(ctx); !ok || err != nil || w != 90*time.Second || n != 12000 {
		t.Errorf("tuning %v %d %v %v", w, n, ok, err)
	}
	for _, key := range []string{"zw:{coord}:stats", "zw:{coord}:order", "zw:{coord}:ha", "zw:{coord}:term"} {
		if ttl := c.PTTL(ctx, key).Val(); ttl <= 0 {
			t.Errorf("%s has no TTL (%v)", key, ttl)
		}
	}
}

// TestFencedWrites: once a new leader has begun its term, a deposed leader's writes are refused and
// change nothing; so are writes after the state lost its term, until a new term begins.
func TestFencedWrites(t *testing.T) {
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer c.Close()
	co := NewCoordination(c, "fence")
	old, err := co.BeginTerm(ctx, "zw-0")
	if err != nil {
		t.Fatal(err)
	}
	if err := co.PublishTuning(ctx, old, time.Minute, 50000); err != nil {
		t.Fatal(err)
	}
	cur, err := co.BeginTerm(ctx, "zw-1")
	if err != nil || cur <= old {
		t.Fatalf("new term %d after %d: %v", cur, old, err)
	}
	if n, leader, err := co.Term(ctx); n != cur || leader != "zw-1" || err != nil {
		t.Errorf("term %d of %q (%v), want %d of zw-1", n, leader, err, cur)
	}
	if err := co.PublishTuning(ctx, cur, 2*time.Minute, 20000); err != nil {
		t.Fatal(err)
	}
	type write struct {
		name string
		do   func(term int64) error
	}
	writes := []write{
		{"tuning", func(term int64) error { return co.PublishTuning(ctx, term, 5*time.Minute, 5000) }},
		{"orders", func(term int64) error {
			return co.PublishOrders(ctx, term, map[string]v1alpha1.Order{"falco": v1alpha1.OrderDedupFirst})
		}},
	}
	unchanged := func(when string) {
		t.Helper()
		if w, n, _, _ := co.Tuning(ctx); w != 2*time.Minute || n != 20000 {
			t.Errorf("%s: tuning %v %d, want the current leader's", when, w, n)
		}
		if o, _ := co.Orders(ctx); len(o) != 0 {
			t.Errorf("%s: orders %v landed", when, o)
		}
	}
	for _, w := range writes {
		err := w.do(old)
		var f interface{ Fenced() bool }
		if !errors.As(err, &f) || !f.Fenced() {
			t.Errorf("the deposed leader's %s: %v, want a fenced refusal", w.name, err)
		}
	}
	unchanged("after the deposed leader's writes")
	if err := c.Del(ctx, "zw:{fence}:term").Err(); err != nil {
		t.Fatal(err)
	}
	for _, w := range writes {
		if err := w.do(cur); err == nil || !strings.Contains(err.Error(), "no leader term") {
			t.Errorf("%s with no term in the state: %v, want a fenced refusal", w.name, err)
		}
	}
	unchanged("after writes with no term")
	again, err := co.BeginTerm(ctx, "zw-1")
	if err != nil {
		t.Fatal(err)
	}
	if err := co.PublishTuning(ctx, again, 3*time.Minute, 30000); err != nil {
		t.Errorf("the new term's write: %v", err)
	}
	if err := co.PublishTuning(ctx, cur, time.Minute, 5000); err == nil {
		t.Error("a term from before the state was lost was accepted")
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
	term, err := co.BeginTerm(ctx, "zw-0")
	if err != nil {
		t.Fatal(err)
	}
	if err := co.PublishTuning(ctx, term, time.Minute, 9000); err != nil {
		t.Fatalf("a fenced write on a cluster: %v", err)
	}
	if err := co.PublishTuning(ctx, term-1, time.Minute, 5000); err == nil {
		t.Error("a fenced write under an old term landed on a cluster")
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
