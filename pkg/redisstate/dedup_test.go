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

	if ok, h, err := s.Claim(ctx, key, time.Minute, 7); !ok || err != nil || h.Left <= time.Minute-time.Second || h.Left > time.Minute {
		t.Fatalf("first claim: %v %+v %v, want first with about a minute left", ok, h, err)
	}
	time.Sleep(20 * time.Millisecond)
	// Another replica's claim of the same key: not first, and it learns what is left of the
	// holder's claim, not a window of its own.
	ok, h, err := s.Claim(ctx, key, time.Hour, 8)
	if ok || err != nil || h.Left <= 0 || h.Left >= time.Minute {
		t.Fatalf("second claim: %v %+v %v, want not first with (0, 1m) left", ok, h, err)
	}
	if ttl := c.PTTL(ctx, redisKey).Val(); ttl <= 0 || ttl > time.Minute {
		t.Errorf("claim key %s has TTL %v, want (0, 1m]", redisKey, ttl)
	}
	// A release by a token that does not hold the claim takes nothing back.
	if err := s.Release(ctx, key, false, 8); err != nil {
		t.Fatal(err)
	}
	if c.Exists(ctx, redisKey).Val() != 1 {
		t.Fatal("a release by another token deleted the claim")
	}
	if err := s.Release(ctx, key, false, 7); err != nil {
		t.Fatal(err)
	}
	if ok, _, _ := s.Claim(ctx, key, time.Minute, 9); !ok {
		t.Error("claim after release was not new")
	}

	ckey := uint64(0xdef)
	countKey := "zw:semantics:c:def"
	var window uint64
	for want := int64(1); want <= 3; want++ {
		n, h, err := s.Incr(ctx, ckey, time.Minute, uint64(100+want))
		if n != want || err != nil {
			t.Fatalf("incr: %d %v, want %d", n, err, want)
		}
		if want == 1 {
			window = h.Token
		}
		if h.Token != 101 || h.Left <= 0 || h.Left > time.Minute {
			t.Errorf("occurrence %d: window %+v, want the first one's token (101) and (0, 1m] left", want, h)
		}
	}
	ttl1 := c.PTTL(ctx, countKey).Val()
	time.Sleep(20 * time.Millisecond)
	_, _, _ = s.Incr(ctx, ckey, time.Minute, 200)
	// The window starts at the first occurrence: later ones do not push it out.
	if ttl2 := c.PTTL(ctx, countKey).Val(); ttl2 >= ttl1 {
		t.Errorf("window was extended: %v then %v", ttl1, ttl2)
	}
	if err := s.Release(ctx, ckey, true, 999); err != nil {
		t.Fatal(err)
	}
	if v, _ := c.HGet(ctx, countKey, "n").Int(); v != 4 {
		t.Errorf("count after a release of another window %d, want 4", v)
	}
	if err := s.Release(ctx, ckey, true, window); err != nil {
		t.Fatal(err)
	}
	if v, _ := c.HGet(ctx, countKey, "n").Int(); v != 3 {
		t.Errorf("count after release %d, want 3", v)
	}
}

// TestLateReleaseLeavesANewerClaim: a release that arrives after its claim expired and another
// replica claimed the key again (a writer retry that outlasted the window) leaves the newer claim.
func TestLateReleaseLeavesANewerClaim(t *testing.T) {
	ctx := context.Background()
	a, c := newStore(t, "late")
	b, _ := newStore(t, "late")
	if ok, _, err := a.Claim(ctx, 0x1, 50*time.Millisecond, 1); !ok || err != nil {
		t.Fatalf("a's claim: %v %v", ok, err)
	}
	time.Sleep(80 * time.Millisecond)
	if ok, _, err := b.Claim(ctx, 0x1, time.Minute, 2); !ok || err != nil {
		t.Fatalf("b's claim after a's expired: %v %v", ok, err)
	}
	if err := a.Release(ctx, 0x1, false, 1); err != nil {
		t.Fatal(err)
	}
	if v := c.Get(ctx, "zw:late:d:1").Val(); v != "2" {
		t.Errorf("after a's late release the key holds %q, want b's claim (2)", v)
	}
	if ok, _, _ := a.Claim(ctx, 0x1, time.Minute, 3); ok {
		t.Error("a claimed the key again while b holds it")
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
				ok, _, err := s.Claim(ctx, uint64(k+1), time.Minute, uint64(k+1))
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
	if _, _, err := s.Claim(context.Background(), 1, time.Minute, 1); err == nil {
		t.Fatal("no error from a Redis that is not there")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("failure took %v", d)
	}
}

// TestBatchJudgesEachCommand: in one pipelined batch, a command Redis refuses (a count on a key
// of the wrong type) fails only its own request; the claims and counts beside it succeed.
func TestBatchJudgesEachCommand(t *testing.T) {
	ctx := context.Background()
	s, c := newStore(t, "mixed")
	if err := c.LPush(ctx, "zw:mixed:c:bad", "x").Err(); err != nil {
		t.Fatal(err)
	}
	batch := []*request{
		{op: opClaim, key: 0x1, ttl: time.Minute, token: 1, done: make(chan result, 1)},
		{op: opIncr, key: 0xbad, ttl: time.Minute, token: 2, done: make(chan result, 1)},
		{op: opIncr, key: 0x2, ttl: time.Minute, token: 3, done: make(chan result, 1)},
		{op: opClaim, key: 0x3, ttl: time.Minute, token: 4, done: make(chan result, 1)},
	}
	s.send(batch)
	got := make([]result, len(batch))
	for i, r := range batch {
		got[i] = <-r.done
	}
	if got[1].err == nil {
		t.Errorf("the count on a list key succeeded: %+v", got[1])
	}
	for _, i := range []int{0, 2, 3} {
		if got[i].err != nil {
			t.Errorf("request %d failed beside the refused one: %v", i, got[i].err)
		}
	}
	if !got[0].ok || !got[3].ok || got[2].n != 1 {
		t.Errorf("claims %v %v and count %d, want true true 1", got[0].ok, got[3].ok, got[2].n)
	}
	if ttl := c.PTTL(ctx, "zw:mixed:c:2").Val(); ttl <= 0 || ttl > time.Minute {
		t.Errorf("a new count's window is %v, want (0, 1m]", ttl)
	}
}
