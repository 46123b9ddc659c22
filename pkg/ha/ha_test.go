package ha

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/metrics"
	"github.com/kube-zen/zen-watcher/pkg/pipeline"
)

func TestOptimization(t *testing.T) {
	o := DefaultOptimization()
	cases := []struct {
		rate       float64
		wantWindow time.Duration
	}{
		{0, 300 * time.Second}, {1, 300 * time.Second}, {500, 60 * time.Second}, {5000, 60 * time.Second},
	}
	for _, tc := range cases {
		if got := o.Window(tc.rate); got != tc.wantWindow {
			t.Errorf("Window(%v) = %v, want %v", tc.rate, got, tc.wantWindow)
		}
	}
	if w := o.Window(20); w <= 60*time.Second || w >= 300*time.Second {
		t.Errorf("Window(20) = %v, want between the bounds", w)
	}
	if a, b := o.Window(10), o.Window(100); a <= b {
		t.Errorf("the window does not shrink as traffic grows: %v then %v", a, b)
	}
	if n := o.CacheSize(0.1, 3, 300*time.Second); n != o.MinCache {
		t.Errorf("idle cache %d, want the minimum %d", n, o.MinCache)
	}
	if n := o.CacheSize(10000, 1, 60*time.Second); n != o.MaxCache {
		t.Errorf("busy cache %d, want the maximum %d", n, o.MaxCache)
	}
	if n := o.Bound(50000, 16<<20); n != (16<<20)/10/48 {
		t.Errorf("cache bound under a 16 MiB limit: %d", n)
	}
	if n := o.Bound(50000, 0); n != 50000 {
		t.Errorf("unknown limit capped the cache to %d", n)
	}
}

// memState is SharedState in memory, for the coordinator's logic.
type memState struct {
	mu     sync.Mutex
	stats  map[string]map[string]pipeline.OrderStats
	orders map[string]v1alpha1.Order
	window time.Duration
	cache  int
	term   int64
	writes int // the fenced writes that landed
}

// refused is memState's fenced refusal.
type refused struct{}

func (refused) Error() string { return "refused" }
func (refused) Fenced() bool  { return true }

func (m *memState) BeginTerm(context.Context, string) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.term++
	return m.term, nil
}

// fenced runs write if term is the newest.
func (m *memState) fenced(term int64, write func()) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if term != m.term {
		return refused{}
	}
	write()
	m.writes++
	return nil
}

func (m *memState) PublishStats(_ context.Context, member string, s map[string]pipeline.OrderStats) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.stats[member] = s
	return nil
}
func (m *memState) AllStats(context.Context) (map[string]map[string]pipeline.OrderStats, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]map[string]pipeline.OrderStats{}
	for k, v := range m.stats {
		out[k] = v
	}
	return out, nil
}
func (m *memState) PublishOrders(_ context.Context, term int64, o map[string]v1alpha1.Order) error {
	return m.fenced(term, func() { m.orders = o })
}
func (m *memState) Orders(context.Context) (map[string]v1alpha1.Order, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.orders, nil
}
func (m *memState) PublishTuning(_ context.Context, term int64, w time.Duration, c int) error {
	return m.fenced(term, func() { m.window, m.cache = w, c })
}
func (m *memState) Tuning(context.Context) (time.Duration, int, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.window, m.cache, m.cache > 0, nil
}

type nopSink struct{}

func (nopSink) Put(context.Context, *pipeline.Event) error { return nil }

func newReplica(t *testing.T, state SharedState, self string) (*Coordinator, *pipeline.Pipeline, *pipeline.LocalCache) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	m := metrics.New(prometheus.NewRegistry())
	cache := pipeline.NewLocalCache(10000)
	p, err := pipeline.New(pipeline.Config{DedupWindow: time.Hour}, pipeline.NewTiered(cache, nil, m, log), nopSink{}, m)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Configure("falco", pipeline.SourceConfig{Order: v1alpha1.OrderAuto,
		Filter: &pipeline.FilterConfig{MinSeverity: "medium"}, Dedup: &pipeline.DedupConfig{Strategy: v1alpha1.DedupFingerprint}}); err != nil {
		t.Fatal(err)
	}
	policy := pipeline.DefaultOrderPolicy()
	policy.Cooldown = 0
	c := NewCoordinator(CoordinatorConfig{Self: self, State: state, Pipeline: p, Cache: cache, Optimize: true,
		Optimization: DefaultOptimization(), Policy: policy, Members: func() int { return 2 }, Metrics: m, Log: log})
	return c, p, cache
}

// TestLeaderDecidesFromEveryReplica: two replicas each see half of a stream of duplicates; neither
// alone has enough findings to decide, the leader over both does, and both apply its order and
// tuning.
func TestLeaderDecidesFromEveryReplica(t *testing.T) {
	state := &memState{stats: map[string]map[string]pipeline.OrderStats{}}
	leader, pa, _ := newReplica(t, state, "zw-0")
	follower, pb, cacheB := newReplica(t, state, "zw-1")
	feed := func(p *pipeline.Pipeline, n int) {
		for range n {
			ev := &pipeline.Event{Source: "falco", Category: "security", Severity: "high", EventType: "runtime_alert", Rule: "same"}
			if err := p.Handle(context.Background(), ev); err != nil {
				t.Fatal(err)
			}
		}
	}
	ctx := context.Background()
	leader.BeginLeading(Unfenced)
	// What the replicas counted before this leader's term is its baseline, not its first
	// interval: the first round decides nothing and publishes no tuning.
	feed(pa, 500)
	leader.SyncOnce(ctx)
	follower.SyncOnce(ctx)
	leader.last = time.Now().Add(-time.Second)
	leader.LeadOnce(ctx, time.Now())
	if len(state.orders) != 0 || state.window != 0 {
		t.Fatalf("the baseline round published orders %v and window %v", state.orders, state.window)
	}
	feed(pa, 60) // 60 + 60 findings: 120 ≥ the 100 needed, 99% duplicates
	feed(pb, 60)
	leader.SyncOnce(ctx)
	follower.SyncOnce(ctx)
	leader.last = time.Now().Add(-10 * time.Second)
	leader.LeadOnce(ctx, time.Now())
	if state.orders["falco"] != v1alpha1.OrderDedupFirst {
		t.Fatalf("published orders %v", state.orders)
	}
	follower.SyncOnce(ctx)
	if pb.Order("falco") != v1alpha1.OrderDedupFirst || pa.Order("falco") != v1alpha1.OrderDedupFirst {
		t.Errorf("orders in force: leader %s, follower %s", pa.Order("falco"), pb.Order("falco"))
	}
	// 120 findings in 10 s is 12/s: a window between the bounds, and the minimum cache, which the
	// leader approaches from the 10,000 in force by an eighth a round.
	if state.window <= 60*time.Second || state.window >= 300*time.Second || cacheB.Capacity() != 10000-10000/8 {
		t.Errorf("tuning: window %v, follower cache %d", state.window, cacheB.Capacity())
	}
	// A replica that restarted (its counts went down) contributes all it counted.
	d := leader.deltas(map[string]map[string]pipeline.OrderStats{"zw-0": {"falco": {Events: 5}}})
	if d["falco"].Events != 5 {
		t.Errorf("delta after a restart: %+v", d["falco"])
	}
}

// TestLeaderSumsStatusCounts: the status counts are every replica's seen and written summed, and
// only the leader, while its fence holds and once it has read them this term, has them to give.
func TestLeaderSumsStatusCounts(t *testing.T) {
	ctx := context.Background()
	state := &memState{stats: map[string]map[string]pipeline.OrderStats{}}
	leader, pa, _ := newReplica(t, state, "zw-0")
	follower, pb, _ := newReplica(t, state, "zw-1")
	leader.cfg.Seen = func(string) int64 { return 7 }
	follower.cfg.Seen = func(string) int64 { return 5 }
	for i, p := range []*pipeline.Pipeline{pa, pa, pb} {
		ev := &pipeline.Event{Source: "falco", Category: "security", Severity: "high", EventType: "runtime_alert", Rule: fmt.Sprint("r", i)}
		if err := p.Handle(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	leader.SyncOnce(ctx)
	follower.SyncOnce(ctx)
	if a, b := state.stats["zw-0"]["falco"].Seen, state.stats["zw-1"]["falco"].Seen; a != 7 || b != 5 {
		t.Fatalf("published seen %d and %d, want 7 and 5", a, b)
	}
	// This test's sink writes nothing; the Observations a writer would have counted:
	for member, n := range map[string]uint64{"zw-0": 2, "zw-1": 1} {
		s := state.stats[member]["falco"]
		s.Written = n
		state.stats[member]["falco"] = s
	}
	if _, _, ok := leader.Counts("falco"); ok {
		t.Fatal("counts before the leader's first round")
	}
	fence := &switchFence{}
	leader.BeginLeading(fence)
	leader.LeadOnce(ctx, time.Now())
	for _, tc := range []struct {
		c             *Coordinator
		source        string
		seen, written int64
		ok            bool
		name          string
	}{
		{leader, "falco", 12, 3, true, "leader"},
		{leader, "none", 0, 0, true, "leader, a source nobody counted"},
		{follower, "falco", 0, 0, false, "follower"},
	} {
		seen, written, ok := tc.c.Counts(tc.source)
		if seen != tc.seen || written != tc.written || ok != tc.ok {
			t.Errorf("%s: Counts(%s) = %d, %d, %v; want %d, %d, %v", tc.name, tc.source, seen, written, ok, tc.seen, tc.written, tc.ok)
		}
	}
	fence.off.Store(true)
	if _, _, ok := leader.Counts("falco"); ok {
		t.Error("a leader whose fence no longer holds still gives counts")
	}
}

// TestFormerLeaderForgetsRatios: the cluster-wide ratios are the leader's alone; a replica whose
// leadership ended publishes none, or max() over the replicas would pick up its last values.
func TestFormerLeaderForgetsRatios(t *testing.T) {
	state := &memState{stats: map[string]map[string]pipeline.OrderStats{}}
	c, p, _ := newReplica(t, state, "zw-0")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Lead(ctx, 10*time.Millisecond, Unfenced); close(done) }()
	series := func() int {
		return testutil.CollectAndCount(c.cfg.Metrics.LowSeverityPercent) +
			testutil.CollectAndCount(c.cfg.Metrics.DedupRateRatio) + testutil.CollectAndCount(c.cfg.Metrics.DedupEffectiveness)
	}
	deadline := time.Now().Add(10 * time.Second)
	for series() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("the leader published %d ratio series, want 3", series())
		}
		ev := &pipeline.Event{Source: "falco", Category: "security", Severity: "low", EventType: "runtime_alert", Rule: "r"}
		if err := p.Handle(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
		c.SyncOnce(context.Background())
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	if n := series(); n != 0 {
		t.Errorf("a former leader still publishes %d ratio series", n)
	}
}
