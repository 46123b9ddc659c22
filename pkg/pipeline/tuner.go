package pipeline

import (
	"context"
	"log/slog"
	"time"

	"github.com/kube-zen/zen-watcher/pkg/metrics"
)

// Tuner applies DecideOrder to every source in auto mode at an interval, over the statistics of the
// interval, and publishes the ratios it decided on as metrics. A single replica runs it over its own
// statistics; with several replicas the leader runs it over the statistics of all.
type Tuner struct {
	pipeline *Pipeline
	policy   OrderPolicy
	metrics  *metrics.Metrics
	log      *slog.Logger
	prev     map[string]OrderStats
}

// NewTuner returns a tuner of p's order with policy.
func NewTuner(p *Pipeline, policy OrderPolicy, m *metrics.Metrics, log *slog.Logger) *Tuner {
	return &Tuner{pipeline: p, policy: policy, metrics: m, log: log, prev: map[string]OrderStats{}}
}

// Run tunes every interval until ctx ends.
func (t *Tuner) Run(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			t.Tune(now)
		}
	}
}

// Tune makes one round of decisions at now.
func (t *Tuner) Tune(now time.Time) {
	for _, s := range t.pipeline.Stats() {
		delta := s.Stats.Since(t.prev[s.Source])
		t.prev[s.Source] = s.Stats
		if delta.Events == 0 {
			continue
		}
		t.metrics.LowSeverityPercent.WithLabelValues(s.Source).Set(100 * delta.LowSeverityRatio())
		t.metrics.DedupRateRatio.WithLabelValues(s.Source).Set(delta.DedupRatio())
		if s.Strategy != "" {
			t.metrics.DedupEffectiveness.WithLabelValues(s.Source, string(s.Strategy)).Set(delta.DedupRatio())
		}
		if !s.Auto {
			continue
		}
		want := DecideOrder(t.policy, delta, s.Order, s.LastChange, now)
		if want != s.Order && t.pipeline.SetOrder(s.Source, want) {
			t.log.Info("changed processing order", "source", s.Source, "from", s.Order, "to", want,
				"lowSeverity", delta.LowSeverityRatio(), "dedupRate", delta.DedupRatio())
		}
	}
}
