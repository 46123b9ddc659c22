package redisstate

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestReplayMemoryLost: a replay is refused across guards of one release; once Redis restarts
// empty, a signature that could have been accepted before is unverifiable rather than new, while
// one made a window after the loss is judged again. A guard that never knew the old memory (a
// replica started after the loss) cannot tell.
func TestReplayMemoryLost(t *testing.T) {
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1})
	defer c.Close()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	a, b := NewReplayGuard(c, "replay", log), NewReplayGuard(c, "replay", log)
	const ttl = 10 * time.Minute // a five-minute timestamp window
	now := time.Now()
	if fresh, err := a.Remember(ctx, "sig-1", now, ttl); !fresh || err != nil {
		t.Fatalf("first sight: %v %v", fresh, err)
	}
	if fresh, err := b.Remember(ctx, "sig-1", now, ttl); fresh || err != nil {
		t.Fatalf("replay to another replica: fresh %v, %v", fresh, err)
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	for _, g := range []*ReplayGuard{a, b} {
		if fresh, err := g.Remember(ctx, "sig-1", now, ttl); fresh || !errors.Is(err, ErrLost) {
			t.Errorf("replay after Redis restarted empty: fresh %v, %v; want ErrLost", fresh, err)
		}
	}
	if _, err := a.Remember(ctx, "sig-2", time.Now(), ttl); !errors.Is(err, ErrLost) {
		t.Errorf("a signature made just after the loss, within a window of it: %v, want ErrLost", err)
	}
	later := time.Now().Add(ttl/2 + time.Second)
	if fresh, err := a.Remember(ctx, "sig-3", later, ttl); !fresh || err != nil {
		t.Errorf("a signature made a window after the loss: %v %v", fresh, err)
	}
	if fresh, err := a.Remember(ctx, "sig-3", later, ttl); fresh || err != nil {
		t.Errorf("its replay: fresh %v, %v", fresh, err)
	}
	started := NewReplayGuard(c, "replay", log)
	if fresh, err := started.Remember(ctx, "sig-4", now, ttl); !fresh || err != nil {
		t.Errorf("a guard that never knew the lost memory: %v %v", fresh, err)
	}
	// Redis away: an error, which the tiered guard judges as unchecked.
	if err := srv.Pause(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = srv.Resume() }()
	tctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := a.Remember(tctx, "sig-5", time.Now(), ttl); err == nil {
		t.Error("Remember with Redis paused answered")
	}
}
