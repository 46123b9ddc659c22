package redisstate

import (
	"context"
	"maps"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestWeightsMergeTheLiveReplicas: against a real Redis, the leader reads the weights every live
// replica published — the heavier where two weighed one namespace — and not a stopped one's or a
// malformed one, whose fields are removed.
func TestWeightsMergeTheLiveReplicas(t *testing.T) {
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer c.Close()
	co := NewCoordination(c, "weights")
	past := NewCoordination(c, "weights")
	past.now = func() time.Time { return time.Now().Add(-statsTTL - time.Second) }
	for _, p := range []struct {
		co     *Coordination
		member string
		ws     map[string]float64
	}{
		{past, "gone", map[string]float64{"shop": 900, "old": 5}},
		{co, "a", map[string]float64{"shop": 40, "payments": 12.5}},
		{co, "b", map[string]float64{"shop": 3, "team-1": 1}},
	} {
		if err := p.co.PublishWeights(ctx, p.member, p.ws); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.HSet(ctx, "zw:{weights}:weights", "bad", "{").Err(); err != nil {
		t.Fatal(err)
	}
	got, err := co.Weights(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]float64{"shop": 40, "payments": 12.5, "team-1": 1}; !maps.Equal(got, want) {
		t.Errorf("weights %v, want %v", got, want)
	}
	for _, f := range []string{"gone", "bad"} {
		if c.HExists(ctx, "zw:{weights}:weights", f).Val() {
			t.Errorf("the field %q was not removed", f)
		}
	}
	if ttl := c.PTTL(ctx, "zw:{weights}:weights").Val(); ttl <= 0 || ttl > statsTTL {
		t.Errorf("the weights expire in %v, want within %v", ttl, statsTTL)
	}
}
