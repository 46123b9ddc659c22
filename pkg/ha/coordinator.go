package ha

import (
	"context"
	"log/slog"
	"time"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/metrics"
	"github.com/kube-zen/zen-watcher/pkg/pipeline"
)

// SharedState is what replicas share; Redis (redisstate.Coordination) in production.
type SharedState interface {
	PublishStats(ctx context.Context, member string, stats map[string]pipeline.OrderStats) error
	AllStats(ctx context.Context) (map[string]map[string]pipeline.OrderStats, error)
	PublishOrders(ctx context.Context, orders map[string]v1alpha1.Order) error
	Orders(ctx context.Context) (map[string]v1alpha1.Order, error)
	PublishTuning(ctx context.Context, window time.Duration, cacheSize int) error
	Tuning(ctx context.Context) (window time.Duration, cacheSize int, ok bool, err error)
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
	Metrics *metrics.Metrics
	Log     *slog.Logger
}

// Coordinator is one replica's part in acting as one: every replica publishes its statistics and
// applies what the leader decided; the leader decides.
type Coordinator struct {
	cfg  CoordinatorConfig
	prev map[string]map[string]pipeline.OrderStats // leader: member → source → cumulative
	// primed is false until the leader's first round has read where the counts stand.
	primed bool
	last   time.Time
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
	size = c.cfg.Optimization.Bound(size, MemoryLimit())
	if c.cfg.Cache.Capacity() != size {
		c.cfg.Cache.SetCapacity(size)
		c.cfg.Metrics.DedupCacheSize.Set(float64(c.cfg.Cache.Capacity()))
	}
}

// Lead decides every interval until ctx (the leadership's) ends. Its first round only reads where
// every replica's counts stand: a new leader has no previous round, and taking all counts since
// the replicas started for one interval's would jump the dedup window and cache size to their
// bounds at every leader change.
func (c *Coordinator) Lead(ctx context.Context, interval time.Duration) {
	c.primed = false
	c.last = time.Now()
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

// LeadOnce makes one round of the leader's decisions from everyone's statistics since the last one.
func (c *Coordinator) LeadOnce(ctx context.Context, now time.Time) {
	all, err := c.cfg.State.AllStats(ctx)
	if err != nil {
		c.cfg.Log.Warn("reading replicas' statistics", "error", err)
		return
	}
	elapsed := now.Sub(c.last)
	c.last = now
	if !c.primed {
		c.prev, c.primed = all, true // the baseline round
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
		if want != s.Order && c.cfg.Pipeline.SetOrder(s.Source, want) {
			c.cfg.Log.Info("changed processing order for all replicas", "source", s.Source, "from", s.Order, "to", want,
				"lowSeverity", d.LowSeverityRatio(), "dedupRate", d.DedupRatio())
		}
	}
	if err := c.cfg.State.PublishOrders(ctx, orders); err != nil && ctx.Err() == nil {
		c.cfg.Log.Warn("publishing orders", "error", err)
	}
	if c.cfg.Optimize && elapsed > 0 {
		rate := float64(events) / elapsed.Seconds()
		window := c.cfg.Optimization.Window(rate)
		size := c.cfg.Optimization.CacheSize(rate, c.cfg.Members(), window)
		if err := c.cfg.State.PublishTuning(ctx, window, size); err != nil && ctx.Err() == nil {
			c.cfg.Log.Warn("publishing tuning", "error", err)
		}
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
