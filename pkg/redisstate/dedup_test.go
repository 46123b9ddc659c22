package redisstate

import (
	"context"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/kube-zen/zen-watcher/internal/testenv"
)

var srv *testenv.Redis

func TestMain(m *testing.M) {
	os.Exit(testenv.RunWithRedis(m, &srv))
}

func newStore(t *testing.T, release string) (*DedupStore, *redis.Client) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: srv.Addr, DialTimeout: 200 * time.Millisecond,
		ReadTimeout: 200 * time.Millisecond, WriteTimeout: 200 * time.Millisecond})
	s := NewDedupStore(c, Options{Release: release})
	t.Cleanup(func() { s.Close(); _ = c.Close() })
	return s, c
}

func TestDedupStoreAgainstRedis(t *testing.T) {
	ctx := context.Background()
	s, c := newStore(t, "semantics")
	key := uint64(0xabc)
	redisKey := "zw:semantics:d:abc"

	if ok, err := s.Claim(ctx, key, time.Minute); !ok || err != nil {
		t.Fatalf("first claim: %v %v", ok, err)
	}
	if ok, err := s.Claim(ctx, key, time.Minute); ok || err != nil {
		t.Fatalf("second claim: %v %v", ok, err)
	}
	if ttl := c.PTTL(ctx, redisKey).Val(); ttl <= 0 || ttl > time.Minute {
		t.Errorf("claim key %s has TTL %v, want (0, 1m]", redisKey, ttl)
	}
	if err := s.Release(ctx, key, false); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.Claim(ctx, key, time.Minute); !ok {
		t.Error("claim after release was not new")
	}

	ckey := uint64(0xdef)
	for want := int64(1); want <= 3; want++ {
		if n, err := s.Incr(ctx, ckey, time.Minute); n != want || err != nil {
			t.Fatalf("incr: %d %v, want %d", n, err, want)
		}
	}
	ttl1 := c.PTTL(ctx, "zw:semantics:d:def").Val()
	time.Sleep(20 * time.Millisecond)
	_, _ = s.Incr(ctx, ckey, time.Minute)
	// The window starts at the first occurrence: later ones do not push it out.
	if ttl2 := c.PTTL(ctx, "zw:semantics:d:def").Val(); ttl2 >= ttl1 {
		t.Errorf("window was extended: %v then %v", ttl1, ttl2)
	}
	if err := s.Release(ctx, ckey, true); err != nil {
		t.Fatal(err)
	}
	if v, _ := c.Get(ctx, "zw:semantics:d:def").Int(); v != 3 {
		t.Errorf("count after release %d, want 3", v)
	}
}

// TestConcurrentClaimsHaveOneWinner: many callers (as from several replicas) claiming the same keys
// at once get exactly one winner per key, through the batched pipeline.
func TestConcurrentClaimsHaveOneWinner(t *testing.T) {
	ctx := context.Background()
	a, _ := newStore(t, "race")
	b, _ := newStore(t, "race")
	const keys, callers = 200, 16
	var wins [keys]atomic.Int32
	var wg sync.WaitGroup
	for i := range callers {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Go(func() {
			for k := range keys {
				ok, err := s.Claim(ctx, uint64(k+1), time.Minute)
				if err != nil {
					t.Error(err)
					return
				}
				if ok {
					wins[k].Add(1)
				}
			}
		})
	}
	wg.Wait()
	for k := range wins {
		if n := wins[k].Load(); n != 1 {
			t.Errorf("key %d: %d winners", k, n)
		}
	}
}

func TestStoreReportsRedisDown(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DialTimeout: 100 * time.Millisecond, MaxRetries: -1})
	s := NewDedupStore(c, Options{Release: "down"})
	defer s.Close()
	start := time.Now()
	if _, err := s.Claim(context.Background(), 1, time.Minute); err == nil {
		t.Fatal("no error from a Redis that is not there")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("failure took %v", d)
	}
}
