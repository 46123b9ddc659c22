package redisstate

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
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
	stats  string
	now    func() time.Time
}

// NewCoordination returns the shared state of release.
func NewCoordination(client redis.UniversalClient, release string) *Coordination {
	// Every replica's statistics are fields of one hash, under a hash tag: one HGETALL reads them
	// all, also on a Redis Cluster, where a SCAN sees only the keys of the node it happens to ask.
	return &Coordination{client: client, prefix: "zw:" + release + ":", stats: "zw:{" + release + "}:stats", now: time.Now}
}

// statsTTL outlives a few publishing rounds; a replica that stops publishing drops out.
const statsTTL = 30 * time.Second

// published is one replica's field of the statistics hash.
type published struct {
	AtMs    int64                          `json:"at"`
	Sources map[string]pipeline.OrderStats `json:"sources"`
}

// PublishStats stores one replica's cumulative statistics per source, stamped with when.
func (c *Coordination) PublishStats(ctx context.Context, member string, stats map[string]pipeline.OrderStats) error {
	if len(stats) == 0 {
		return nil
	}
	b, err := json.Marshal(published{AtMs: c.now().UnixMilli(), Sources: stats})
	if err != nil {
		return err
	}
	pipe := c.client.TxPipeline()
	pipe.HSet(ctx, c.stats, member, b)
	pipe.PExpire(ctx, c.stats, statsTTL)
	_, err = pipe.Exec(ctx)
	return err
}

// AllStats returns every live replica's statistics: member → source → statistics, and removes the
// fields of replicas that stopped publishing. Only the leader reads them all, so pruning here
// costs one read a round instead of one per replica and publish.
func (c *Coordination) AllStats(ctx context.Context) (map[string]map[string]pipeline.OrderStats, error) {
	live, stale, err := c.read(ctx)
	if err != nil || len(stale) == 0 {
		return live, err
	}
	// A replica that resumes between the read and the removal loses one round's figures; it
	// publishes again at its next tick.
	if err := c.client.HDel(ctx, c.stats, stale...).Err(); err != nil {
		return nil, fmt.Errorf("removing the statistics of stopped replicas %v: %w", stale, err)
	}
	return live, nil
}

// read splits the statistics hash into the live replicas' statistics and the stale members.
func (c *Coordination) read(ctx context.Context) (map[string]map[string]pipeline.OrderStats, []string, error) {
	vals, err := c.client.HGetAll(ctx, c.stats).Result()
	if err != nil {
		return nil, nil, err
	}
	cutoff := c.now().Add(-statsTTL).UnixMilli()
	out := map[string]map[string]pipeline.OrderStats{}
	var stale []string
	for member, v := range vals {
		var p published
		if err := json.Unmarshal([]byte(v), &p); err != nil {
			return nil, nil, fmt.Errorf("statistics of %s: %w", member, err)
		}
		if p.AtMs < cutoff {
			stale = append(stale, member)
			continue
		}
		out[member] = p.Sources
	}
	return out, stale, nil
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
