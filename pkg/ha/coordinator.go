package ha

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/metrics"
	"github.com/kube-zen/zen-watcher/pkg/pipeline"
)

// SharedState is what replicas share; Redis (redisstate.Coordination) in production.
//
// The leader's writes are fenced by the term that BeginTerm hands out, each greater than any before
// it: a write under any other term than the newest, or when the state holds none (it was lost),
// fails with an error whose Fenced method returns true, so that a deposed leader's late write
// cannot land.
type SharedState interface {
	PublishStats(ctx context.Context, member string, stats map[string]pipeline.OrderStats) error
	AllStats(ctx context.Context) (map[string]map[string]pipeline.OrderStats, error)
	BeginTerm(ctx context.Context, leader string) (term int64, err error)
	PublishOrders(ctx context.Context, term int64, orders map[string]v1alpha1.Order) error
	Orders(ctx context.Context) (map[string]v1alpha1.Order, error)
	PublishTuning(ctx context.Context, term int64, window time.Duration, cacheSize int) error
	Tuning(ctx context.Context) (window time.Duration, cacheSize int, ok bool, err error)
}

// fenced reports whether err is a shared state's refusal of a write under a term that is not
// the newest.
func fenced(err error) bool {
	var f interface{ Fenced() bool }
	return errors.As(err, &f) && f.Fenced()
}

// CoordinatorConfig holds what a Coordinator needs.
type CoordinatorConfig struct {
	Self     string
	State    SharedState
	Pipeline *pipeline.Pipeline
	Cache    *pipeline.LocalCache
	// Optimize turns HA optimization on (haOptimization.enabled); off, the window and cache size
	// stay as configured.
	Optimize     bool
	Optimization Optimization
	Policy       pipeline.OrderPolicy
	// Members returns the number of live replicas.
	Members func() int
	// Seen returns the findings a source produced on this replica (the Ingester manager's count),
	// published beside the pipeline's statistics so the leader can sum them for the Ingester's
	// status; nil publishes none.
	Seen    func(source string) int64
	Metrics *metrics.Metrics
	Log     *slog.Logger
}

// Coordinator is one replica's part in acting as one: every replica publishes its statistics and
// applies what the leader decided; the leader decides.
type Coordinator struct {
	cfg CoordinatorConfig

	// The leader's state, reset at the start of each term.
	fence Fence
	term  int64                                     // 0 until a term is begun in the shared state
	prev  map[string]map[string]pipeline.OrderStats // member → source → cumulative
	// primed is false until the leader's first round has read where the counts stand.
	primed bool
	last   time.Time
	tune   tuning

	// mu guards what the status writer reads from another goroutine: the fence of the term and
	// the counts summed over the replicas at its last round (nil until its first).
	mu     sync.Mutex
	totals map[string]pipeline.OrderStats
}

// NewCoordinator returns a coordinator.
func NewCoordinator(cfg CoordinatorConfig) *Coordinator {
	return &Coordinator{cfg: cfg}
}

// RunReplica publishes this replica's statistics and applies the leader's decisions every interval
// until ctx ends.
func (c *Coordinator) RunReplica(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.SyncOnce(ctx)
		}
	}
}

// SyncOnce publishes statistics and applies orders and tuning once.
func (c *Coordinator) SyncOnce(ctx context.Context) {
	stats := map[string]pipeline.OrderStats{}
	for _, s := range c.cfg.Pipeline.Stats() {
		if c.cfg.Seen != nil {
			s.Stats.Seen = uint64(max(c.cfg.Seen(s.Source), 0))
		}
		stats[s.Source] = s.Stats
	}
	if err := c.cfg.State.PublishStats(ctx, c.cfg.Self, stats); err != nil && ctx.Err() == nil {
		c.cfg.Log.Debug("publishing statistics", "error", err)
	}
	if orders, err := c.cfg.State.Orders(ctx); err == nil {
		for src, o := range orders {
			if c.cfg.Pipeline.SetOrder(src, o) {
				c.cfg.Log.Info("applied the leader's processing order", "source", src, "order", o)
			}
		}
	}
	if !c.cfg.Optimize {
		return
	}
	window, size, ok, err := c.cfg.State.Tuning(ctx)
	if err != nil || !ok {
		return
	}
	c.cfg.Pipeline.SetDedupWindow(window)
	size = c.cfg.Optimization.Bound(size, c.cfg.Optimization.MemoryLimit)
	if c.cfg.Cache.Capacity() != size {
		c.cfg.Cache.SetCapacity(size)
		c.cfg.Metrics.DedupCacheSize.Set(float64(c.cfg.Cache.Capacity()))
	}
}

// Lead decides every interval until ctx (the leadership's) ends; it acts only while fence holds.
// Its first round only reads where every replica's
// counts stand and what tuning is in force: a new leader has no previous round, and taking all
// counts since the replicas started for one interval's would jump the dedup window and cache
// size to their bounds at every leader change.
func (c *Coordinator) Lead(ctx context.Context, interval time.Duration, fence Fence) {
	c.BeginLeading(fence)
	defer c.setTotals(nil)
	defer c.forgetRatios()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			c.LeadOnce(ctx, now)
		}
	}
}

// forgetRatios removes the cluster-wide ratios this replica published while it led. Left standing,
// a former leader's last values would be taken by the max() of dashboards and alerts over the new
// leader's.
func (c *Coordinator) forgetRatios() {
	c.cfg.Metrics.LowSeverityPercent.Reset()
	c.cfg.Metrics.DedupRateRatio.Reset()
	c.cfg.Metrics.DedupEffectiveness.Reset()
}

// BeginLeading resets the leader's state for a new term guarded by fence.
func (c *Coordinator) BeginLeading(fence Fence) {
	c.mu.Lock()
	c.fence, c.totals = fence, nil
	c.mu.Unlock()
	c.term, c.primed = 0, false
	c.last = time.Now()
	c.tune = tuning{}
}

// LeadOnce makes one round of the leader's decisions from everyone's statistics since the last
// one. It does nothing once the fence no longer holds.
func (c *Coordinator) LeadOnce(ctx context.Context, now time.Time) {
	if !c.held() {
		return
	}
	if c.term == 0 && !c.beginTerm(ctx) {
		return
	}
	all, err := c.cfg.State.AllStats(ctx)
	if err != nil {
		c.cfg.Log.Warn("reading replicas' statistics", "error", err)
		return
	}
	c.setTotals(all)
	elapsed := now.Sub(c.last)
	c.last = now
	if !c.primed {
		c.prime(ctx, all)
		return
	}
	global := c.deltas(all)
	orders := map[string]v1alpha1.Order{}
	var events uint64
	for _, s := range c.cfg.Pipeline.Stats() {
		d := global[s.Source]
		events += d.Events
		if d.Events > 0 {
			c.cfg.Metrics.LowSeverityPercent.WithLabelValues(s.Source).Set(100 * d.LowSeverityRatio())
			c.cfg.Metrics.DedupRateRatio.WithLabelValues(s.Source).Set(d.DedupRatio())
			if s.Strategy != "" {
				c.cfg.Metrics.DedupEffectiveness.WithLabelValues(s.Source, string(s.Strategy)).Set(d.DedupRatio())
			}
		}
		if !s.Auto {
			continue
		}
		want := pipeline.DecideOrder(c.cfg.Policy, d, s.Order, s.LastChange, now)
		orders[s.Source] = want
		if want != s.Order && c.held() && c.cfg.Pipeline.SetOrder(s.Source, want) {
			c.cfg.Log.Info("changed processing order for all replicas", "source", s.Source, "from", s.Order, "to", want,
				"lowSeverity", d.LowSeverityRatio(), "dedupRate", d.DedupRatio())
		}
	}
	if len(orders) > 0 {
		c.publish(ctx, "publishing orders", func() error { return c.cfg.State.PublishOrders(ctx, c.term, orders) })
	}
	if c.cfg.Optimize && elapsed > 0 {
		window, size := c.tune.next(c.cfg.Optimization, float64(events)/elapsed.Seconds(), c.cfg.Members())
		c.publish(ctx, "publishing tuning", func() error { return c.cfg.State.PublishTuning(ctx, c.term, window, size) })
	}
}

func (c *Coordinator) held() bool { return c.fence == nil || c.fence.Held() }

// Counts returns a source's findings seen and Observations written, summed over every live
// replica as they published them by the leader's last round, and false unless this replica leads
// and has read them this term: one writer of the Ingester's status, with everyone's counts.
// Counts a replica published before it restarted are gone with it; the sum is of the live ones.
func (c *Coordinator) Counts(source string) (seen, written int64, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.totals == nil || c.fence != nil && !c.fence.Held() {
		return 0, 0, false
	}
	t := c.totals[source]
	return int64(t.Seen), int64(t.Written), true
}

// setTotals keeps the status counts of all (member → source → cumulative); nil forgets them.
func (c *Coordinator) setTotals(all map[string]map[string]pipeline.OrderStats) {
	var totals map[string]pipeline.OrderStats
	if all != nil {
		totals = map[string]pipeline.OrderStats{}
		for _, sources := range all {
			for src, s := range sources {
				t := totals[src]
				t.Seen += s.Seen
				t.Written += s.Written
				totals[src] = t
			}
		}
	}
	c.mu.Lock()
	c.totals = totals
	c.mu.Unlock()
}

// beginTerm takes a new term token in the shared state; a leader writes nothing without one.
func (c *Coordinator) beginTerm(ctx context.Context) bool {
	n, err := c.cfg.State.BeginTerm(ctx, c.cfg.Self)
	if err != nil {
		if ctx.Err() == nil {
			c.cfg.Log.Warn("beginning a leader term in the shared state", "error", err)
		}
		return false
	}
	c.term = n
	c.cfg.Log.Info("leader term begun in the shared state", "term", n)
	return true
}

// prime is the baseline round: where every replica's counts stand, and the cache size in force
// (the published one, else this replica's own), from which this term's tuning moves on gently.
func (c *Coordinator) prime(ctx context.Context, all map[string]map[string]pipeline.OrderStats) {
	c.prev, c.primed = all, true
	c.tune = tuning{size: c.cfg.Cache.Capacity()}
	if _, size, ok, err := c.cfg.State.Tuning(ctx); err == nil && ok {
		c.tune.size = size
	}
}

// publish runs one fenced write of the shared state, if the fence still holds. A write refused for
// its term makes the next round begin a new one: while this replica's own fence holds, the other
// term can only be a deposed leader's late command, or the state was lost.
func (c *Coordinator) publish(ctx context.Context, what string, write func() error) {
	if !c.held() {
		return
	}
	err := write()
	switch {
	case err == nil || ctx.Err() != nil:
	case fenced(err):
		c.cfg.Log.Warn("the shared state refused this leader's term; beginning a new one", "term", c.term, "error", err)
		c.term = 0
	default:
		c.cfg.Log.Warn(what, "error", err)
	}
}

// deltas sums, per source, what every replica counted since the last round. A replica whose counts
// went down restarted: all it counted is new.
func (c *Coordinator) deltas(all map[string]map[string]pipeline.OrderStats) map[string]pipeline.OrderStats {
	out := map[string]pipeline.OrderStats{}
	for member, sources := range all {
		prev := c.prev[member]
		for src, cur := range sources {
			d := cur
			if p, ok := prev[src]; ok {
				d = cur.Since(p)
			}
			out[src] = out[src].Add(d)
		}
	}
	c.prev = all
	return out
}
