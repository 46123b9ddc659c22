package pipeline

import (
	"time"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
)

// FromIngester resolves an Ingester's processing block and TTL over the daemon's defaults: what the
// Ingester sets wins, what it leaves out comes from defaults. The result is compiled (and so
// checked) by Pipeline.Configure.
func FromIngester(spec *v1alpha1.IngesterSpec, defaults SourceConfig) SourceConfig {
	out := defaults
	p := spec.Processing
	if p.Order != "" {
		out.Order = p.Order
	}
	if p.Filter != nil {
		f := p.Filter
		out.Filter = &FilterConfig{
			MinSeverity:       f.MinSeverity,
			IncludeNamespaces: f.IncludeNamespaces,
			ExcludeNamespaces: f.ExcludeNamespaces,
			Kinds:             f.Kinds,
			EventTypes:        f.EventTypes,
			Categories:        f.Categories,
			ExcludeRules:      f.ExcludeRules,
			Expression:        f.Expression,
		}
	}
	if d := p.Dedup; d != nil {
		if d.Enabled != nil && !*d.Enabled {
			out.Dedup = nil
		} else {
			out.Dedup = resolveDedup(d, defaults.Dedup)
		}
	}
	if rl := p.RateLimit; rl != nil {
		out.RateLimit = &RateLimitConfig{PerSecond: float64(rl.EventsPerSecond), Burst: int(rl.Burst)}
	}
	if spec.TTLSecondsAfterCreation != nil {
		out.TTL = time.Duration(*spec.TTLSecondsAfterCreation) * time.Second
	}
	return out
}

func resolveDedup(d *v1alpha1.DedupSpec, defaults *DedupConfig) *DedupConfig {
	out := DedupConfig{Strategy: v1alpha1.DedupFingerprint}
	if defaults != nil {
		out = *defaults
	}
	if d.Strategy != "" {
		out.Strategy = d.Strategy
	}
	if d.Window != nil {
		out.Window = d.Window.Duration
	}
	if d.MaxEventsPerWindow > 0 {
		out.MaxEventsPerWindow = int64(d.MaxEventsPerWindow)
	}
	if len(d.Fields) > 0 {
		out.Fields = d.Fields
	}
	return &out
}
