package redisstate

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// ReplayGuard remembers webhook signatures in Redis, so that a request replayed to any replica of
// the release is refused (it implements the webhook server's ReplayGuard).
type ReplayGuard struct {
	client redis.UniversalClient
	prefix string
}

// NewReplayGuard returns a ReplayGuard whose keys are zw:<release>:replay:<signature>.
func NewReplayGuard(client redis.UniversalClient, release string) *ReplayGuard {
	return &ReplayGuard{client: client, prefix: "zw:" + release + ":replay:"}
}

// Remember records key for ttl and reports whether it was new.
func (g *ReplayGuard) Remember(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	ok, err := g.client.SetNX(ctx, g.prefix+key, 1, ttl).Result()
	if err != nil {
		return false, fmt.Errorf("remembering a webhook signature: %w", err)
	}
	return ok, nil
}
