package integration

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/metrics"
	"github.com/kube-zen/zen-watcher/pkg/pipeline"
	"github.com/kube-zen/zen-watcher/pkg/redisstate"
)

// tier is one replica's dedup state against the test's real Redis.
func tier(t *testing.T, release string) *pipeline.Tiered {
	t.Helper()
	rc := redis.NewClient(&redis.Options{Addr: redisS.Addr})
	store := redisstate.NewDedupStore(rc, redisstate.Options{Release: release})
	t.Cleanup(func() { store.Close(); _ = rc.Close() })
	m := metrics.New(prometheus.NewRegistry())
	return pipeline.NewTiered(pipeline.NewLocalCache(1000), store, m, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

func redisKeys(t *testing.T, pattern string) []string {
	t.Helper()
	rc := redis.NewClient(&redis.Options{Addr: redisS.Addr})
	defer rc.Close()
	keys, err := rc.Keys(context.Background(), pattern).Result()
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// TestOrderDoesNotChangeWhatIsWritten: the same two occurrences give the same Observations with
// either order. The first is dropped by a filter on its title; with dedup_first it was claimed
// before the filter dropped it, and must give its claim back, or the second (same dedup key, a
// title the filter keeps) would be called a duplicate of nothing.
func TestOrderDoesNotChangeWhatIsWritten(t *testing.T) {
	for _, order := range []v1alpha1.Order{v1alpha1.OrderFilterFirst, v1alpha1.OrderDedupFirst} {
		t.Run(string(order), func(t *testing.T) {
			ns := "order-" + string(order[:5])
			namespace(t, ns)
			r := newReplicaWith(t, "order-"+string(order), true, pipeline.SourceConfig{
				Order:  order,
				Filter: &pipeline.FilterConfig{Expression: `!title.startsWith("noise")`},
				Dedup: &pipeline.DedupConfig{Strategy: v1alpha1.DedupKey,
					Fields: []string{"source", "kind", "namespace", "name", "rule"}},
			})
			noise, real := alert(ns, 1), alert(ns, 1)
			noise.Title, noise.Instance = "noise: a probe", "a"
			real.Title, real.Instance = "CVE-2026-00001 in libfoo", "b"
			if o := r.handle(t, noise); o != pipeline.OutcomeFiltered {
				t.Fatalf("the noisy occurrence: %v, want filtered", o)
			}
			if o := r.handle(t, real); o != pipeline.OutcomeWritten {
				t.Fatalf("the real occurrence: %v, want written (errors %v)", o, r.errs)
			}
			if n, _ := countObservations(t, ns); n != 1 {
				t.Errorf("%d Observations, want 1", n)
			}
		})
	}
}

// blockedSink is a writer whose queue stays full: Put waits until the caller gives up.
type blockedSink struct{}

func (blockedSink) Put(ctx context.Context, _ *pipeline.Event) error {
	<-ctx.Done()
	return ctx.Err()
}

// TestClaimReleasedAfterTheRequestDeadline: a webhook whose deadline passes while the writer's
// queue is full gets an error (no 2xx), and the claim its finding took in Redis is given back
// although the request's context is already cancelled — so the sender's retry is new, not a
// duplicate answered "written" with no Observation behind it.
func TestClaimReleasedAfterTheRequestDeadline(t *testing.T) {
	m := metrics.New(prometheus.NewRegistry())
	pipe, err := pipeline.New(pipeline.Config{
		Defaults: pipeline.SourceConfig{Dedup: &pipeline.DedupConfig{Strategy: v1alpha1.DedupFingerprint},
			Order: v1alpha1.OrderFilterFirst},
		DedupWindow: time.Hour,
	}, tier(t, "deadline"), blockedSink{}, m)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err = pipe.Handle(ctx, alert("deadline", 1))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Handle: %v, want the deadline", err)
	}
	if keys := redisKeys(t, "zw:deadline:d:*"); len(keys) != 0 {
		t.Errorf("claims left in Redis after the failed request: %v", keys)
	}
}

// TestLocalTierEndsWithTheSharedWindow: a replica that learns of another's claim or count keeps it
// locally only as long as Redis does, so that once Redis's window ends the next occurrence is new
// on every replica — not a duplicate until the replica's own, later, expiry.
func TestLocalTierEndsWithTheSharedWindow(t *testing.T) {
	a, b := tier(t, "window"), tier(t, "window")
	ctx := context.Background()
	now := func() int64 { return time.Now().UnixNano() }
	const short, long = 400 * time.Millisecond, 10 * time.Second
	for _, tc := range []struct {
		name string
		take func(tr *pipeline.Tiered, key uint64, window time.Duration) bool
	}{
		{"claim", func(tr *pipeline.Tiered, key uint64, w time.Duration) bool {
			ok, _ := tr.Claim(ctx, key, now(), w)
			return ok
		}},
		{"count", func(tr *pipeline.Tiered, key uint64, w time.Duration) bool {
			ok, _ := tr.Admit(ctx, key, now(), w, 1)
			return ok
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := uint64(tc.name[1]) << 32 // a key of each case's own: the replicas' local tiers live on
			if !tc.take(a, key, short) {
				t.Fatal("a: the first occurrence was not new")
			}
			if tc.take(b, key, long) {
				t.Fatal("b: a's occurrence was not seen in Redis")
			}
			time.Sleep(short + 200*time.Millisecond)
			if !tc.take(b, key, long) {
				t.Errorf("b: after Redis's %v window ended the occurrence was still a duplicate", short)
			}
		})
	}
}
