package redisstate

import (
	"context"
	"encoding/json"
	"fmt"
)

// weights is one replica's field of the weights hash.
type weights struct {
	AtMs       int64              `json:"at"`
	Namespaces map[string]float64 `json:"namespaces"`
}

// PublishWeights stores what the namespaces member owns weigh, stamped with when. Every replica's
// weights are fields of one hash under the release's tag, like the statistics, and expire with
// them.
func (c *Coordination) PublishWeights(ctx context.Context, member string, ws map[string]float64) error {
	b, err := json.Marshal(weights{AtMs: c.now().UnixMilli(), Namespaces: ws})
	if err != nil {
		return err
	}
	pipe := c.client.TxPipeline()
	pipe.HSet(ctx, c.prefix+"weights", member, b)
	pipe.PExpire(ctx, c.prefix+"weights", statsTTL)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("publishing the weights of %s: %w", member, err)
	}
	return nil
}

// Weights is what the live replicas published, merged: a namespace two replicas weighed (one
// handing it over to the other) weighs the heavier. The fields of replicas that stopped
// publishing are removed, and so is a field that does not parse: it would otherwise outlive every
// replica, the hash's expiry renewed by the others' publishes.
func (c *Coordination) Weights(ctx context.Context) (map[string]float64, error) {
	vals, err := c.client.HGetAll(ctx, c.prefix+"weights").Result()
	if err != nil {
		return nil, fmt.Errorf("reading the namespaces' weights: %w", err)
	}
	cutoff := c.now().Add(-statsTTL).UnixMilli()
	out := map[string]float64{}
	var stale []string
	for member, v := range vals {
		var w weights
		if err := json.Unmarshal([]byte(v), &w); err != nil || w.AtMs < cutoff {
			stale = append(stale, member)
			continue
		}
		for ns, x := range w.Namespaces {
			out[ns] = max(out[ns], x)
		}
	}
	if len(stale) > 0 {
		if err := c.client.HDel(ctx, c.prefix+"weights", stale...).Err(); err != nil {
			return nil, fmt.Errorf("removing the weights of stopped replicas or malformed ones %v: %w", stale, err)
		}
	}
	return out, nil
}
