package redisstate

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/pipeline"
)

// Coordination is the state replicas share to act as one: each replica's pipeline statistics, the
// processing order the leader chose per source, and the dedup window and cache size of HA
// optimization. Every key expires, so a release that goes away leaves nothing behind.
type Coordination struct {
	client redis.UniversalClient
	prefix string
}

// NewCoordination returns the shared state of release.
func NewCoordination(client redis.UniversalClient, release string) *Coordination {
	return &Coordination{client: client, prefix: "zw:" + release + ":"}
}

// statsTTL outlives a few publishing rounds; a replica that stops publishing drops out.
const statsTTL = 30 * time.Second

// PublishStats stores one replica's cumulative statistics per source.
func (c *Coordination) PublishStats(ctx context.Context, member string, stats map[string]pipeline.OrderStats) error {
	if len(stats) == 0 {
		return nil
	}
	key := c.prefix + "stats:" + member
	fields := make(map[string]any, len(stats))
	for src, s := range stats {
		b, err := json.Marshal(s)
		if err != nil {
			return err
		}
		fields[src] = b
	}
	pipe := c.client.TxPipeline()
	pipe.HSet(ctx, key, fields)
	pipe.PExpire(ctx, key, statsTTL)
	_, err := pipe.Exec(ctx)
	return err
}

// AllStats returns every live replica's statistics: member → source → statistics.
func (c *Coordination) AllStats(ctx context.Context) (map[string]map[string]pipeline.OrderStats, error) {
	out := map[string]map[string]pipeline.OrderStats{}
	iter := c.client.Scan(ctx, 0, c.prefix+"stats:*", 100).Iterator()
	for iter.Next(ctx) {
		key := iter.Val()
		vals, err := c.client.HGetAll(ctx, key).Result()
		if err != nil {
			return nil, err
		}
		member := strings.TrimPrefix(key, c.prefix+"stats:")
		out[member] = map[string]pipeline.OrderStats{}
		for src, v := range vals {
			var s pipeline.OrderStats
			if err := json.Unmarshal([]byte(v), &s); err != nil {
				return nil, fmt.Errorf("statistics of %s/%s: %w", member, src, err)
			}
			out[member][src] = s
		}
	}
	return out, iter.Err()
}

// PublishOrders stores the order in force per source.
func (c *Coordination) PublishOrders(ctx context.Context, orders map[string]v1alpha1.Order) error {
	if len(orders) == 0 {
		return nil
	}
	fields := make(map[string]any, len(orders))
	for src, o := range orders {
		fields[src] = string(o)
	}
	pipe := c.client.TxPipeline()
	pipe.HSet(ctx, c.prefix+"order", fields)
	pipe.Expire(ctx, c.prefix+"order", 24*time.Hour)
	_, err := pipe.Exec(ctx)
	return err
}

// Orders returns the orders the leader published.
func (c *Coordination) Orders(ctx context.Context) (map[string]v1alpha1.Order, error) {
	vals, err := c.client.HGetAll(ctx, c.prefix+"order").Result()
	if err != nil {
		return nil, err
	}
	out := make(map[string]v1alpha1.Order, len(vals))
	for src, v := range vals {
		out[src] = v1alpha1.Order(v)
	}
	return out, nil
}

// PublishTuning stores the dedup window and local cache size that HA optimization chose.
func (c *Coordination) PublishTuning(ctx context.Context, window time.Duration, cacheSize int) error {
	pipe := c.client.TxPipeline()
	pipe.HSet(ctx, c.prefix+"ha", "windowMs", window.Milliseconds(), "cacheSize", cacheSize)
	pipe.Expire(ctx, c.prefix+"ha", 10*time.Minute)
	_, err := pipe.Exec(ctx)
	return err
}

// Tuning returns what HA optimization published; ok is false when nothing is in force.
func (c *Coordination) Tuning(ctx context.Context) (window time.Duration, cacheSize int, ok bool, err error) {
	vals, err := c.client.HGetAll(ctx, c.prefix+"ha").Result()
	if err != nil || len(vals) == 0 {
		return 0, 0, false, err
	}
	ms, err1 := strconv.ParseInt(vals["windowMs"], 10, 64)
	n, err2 := strconv.Atoi(vals["cacheSize"])
	if err1 != nil || err2 != nil {
		return 0, 0, false, fmt.Errorf("malformed tuning %v", vals)
	}
	return time.Duration(ms) * time.Millisecond, n, true, nil
}
