package redisstate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// ReplayGuard remembers webhook signatures in Redis, so that a request replayed to any replica of
// the release is refused (it implements the webhook server's ReplayGuard).
//
// Beside the signatures it keeps the memory's epoch: when the memory began. A Redis restarted
// empty has none, or one this replica has not seen; from then on, a signature made early enough
// to have been accepted before the loss cannot be judged, and Remember says so (ErrLost) rather
// than call it new.
type ReplayGuard struct {
	client redis.UniversalClient
	prefix string
	epoch  string
	log    *slog.Logger
	now    func() time.Time

	mu      sync.Mutex
	seen    string    // the epoch this replica knows; "" before the first answer
	resetAt time.Time // when the memory was last found lost (zero: never)
}

// ErrLost wraps Remember's error for a signature made before Redis lost the replay memory.
var ErrLost = errors.New("the shared replay memory was lost since this signature was made")

// NewReplayGuard returns a ReplayGuard whose keys are zw:<release>:replay:<signature>.
func NewReplayGuard(client redis.UniversalClient, release string, log *slog.Logger) *ReplayGuard {
	return &ReplayGuard{client: client, prefix: "zw:" + release + ":replay:", epoch: "zw:" + release + ":replay-epoch",
		log: log, now: time.Now}
}

// Remember records key, signed at signedAt, for ttl and reports whether it was new. ttl is how long
// a signature can be replayed: a signature made before the memory was found lost, or up to half
// ttl after (the timestamp window), may have been accepted before the loss.
func (g *ReplayGuard) Remember(ctx context.Context, key string, signedAt time.Time, ttl time.Duration) (bool, error) {
	pipe := g.client.Pipeline()
	set := pipe.SetNX(ctx, g.prefix+key, 1, ttl)
	epoch := pipe.Get(ctx, g.epoch)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return false, fmt.Errorf("remembering a webhook signature: %w", err)
	}
	resetAt, err := g.check(ctx, epoch)
	if err != nil {
		return false, err
	}
	if !resetAt.IsZero() && signedAt.Before(resetAt.Add(ttl/2)) {
		return false, fmt.Errorf("%w (signed %s, memory lost at %s)", ErrLost, signedAt.UTC().Format(time.RFC3339),
			resetAt.UTC().Format(time.RFC3339))
	}
	return set.Val(), nil
}

// check compares the memory's epoch with the one this replica knows, starting one where there is
// none, and returns when the memory was last found lost.
func (g *ReplayGuard) check(ctx context.Context, epoch *redis.StringCmd) (time.Time, error) {
	cur := epoch.Val()
	if errors.Is(epoch.Err(), redis.Nil) {
		cur = strconv.FormatInt(g.now().UnixMilli(), 10)
		ok, err := g.client.SetNX(ctx, g.epoch, cur, 0).Result()
		if err != nil {
			return time.Time{}, fmt.Errorf("starting the replay memory's epoch: %w", err)
		}
		if !ok { // another replica started it meanwhile
			if cur, err = g.client.Get(ctx, g.epoch).Result(); err != nil {
				return time.Time{}, fmt.Errorf("reading the replay memory's epoch: %w", err)
			}
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.seen != "" && g.seen != cur {
		g.resetAt = g.now()
		g.log.Warn("Redis lost the webhook replay memory; signatures made before now are unverifiable for a window",
			"epoch", cur, "previous", g.seen)
	}
	g.seen = cur
	return g.resetAt, nil
}
