package pipeline

import (
	"time"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
)

// OrderStats are a source's counts, cumulative; Sub gives those of an interval.
type OrderStats struct {
	Events        uint64
	LowSeverity   uint64 // findings of severity low or info
	FilterSeen    uint64
	FilterDropped uint64
	DedupSeen     uint64
	DedupDropped  uint64
	// Stage cost, sampled: total nanoseconds over the number of samples.
	FilterNanos, FilterSamples uint64
	DedupNanos, DedupSamples   uint64
	// Seen and Written are what an Ingester's status reports, summed over the replicas by the
	// leader: the findings the source produced on a replica (set by the caller that counts them;
	// the pipeline sees only those handed on) and the Observations the replica wrote for it. No
	// order decision reads them, so Sub and Since leave them out.
	Seen, Written uint64
}

// Sub returns the counts since prev.
func (s OrderStats) Sub(prev OrderStats) OrderStats {
	return OrderStats{
		Events:        s.Events - prev.Events,
		LowSeverity:   s.LowSeverity - prev.LowSeverity,
		FilterSeen:    s.FilterSeen - prev.FilterSeen,
		FilterDropped: s.FilterDropped - prev.FilterDropped,
		DedupSeen:     s.DedupSeen - prev.DedupSeen,
		DedupDropped:  s.DedupDropped - prev.DedupDropped,
		FilterNanos:   s.FilterNanos - prev.FilterNanos,
		FilterSamples: s.FilterSamples - prev.FilterSamples,
		DedupNanos:    s.DedupNanos - prev.DedupNanos,
		DedupSamples:  s.DedupSamples - prev.DedupSamples,
	}
}

// Since returns the counts since prev, or all of s when a counter went down: the counts started
// again (a restarted replica, a source reconfigured by an Ingester edit), and subtracting would
// wrap the unsigned counters into nonsense.
func (s OrderStats) Since(prev OrderStats) OrderStats {
	if s.Events < prev.Events || s.LowSeverity < prev.LowSeverity || s.FilterSeen < prev.FilterSeen ||
		s.FilterDropped < prev.FilterDropped || s.DedupSeen < prev.DedupSeen || s.DedupDropped < prev.DedupDropped ||
		s.FilterNanos < prev.FilterNanos || s.FilterSamples < prev.FilterSamples ||
		s.DedupNanos < prev.DedupNanos || s.DedupSamples < prev.DedupSamples {
		return s
	}
	return s.Sub(prev)
}

// Add returns the sum of two sources of counts (replicas' statistics, aggregated).
func (s OrderStats) Add(o OrderStats) OrderStats {
	return OrderStats{
		Events:        s.Events + o.Events,
		LowSeverity:   s.LowSeverity + o.LowSeverity,
		FilterSeen:    s.FilterSeen + o.FilterSeen,
		FilterDropped: s.FilterDropped + o.FilterDropped,
		DedupSeen:     s.DedupSeen + o.DedupSeen,
		DedupDropped:  s.DedupDropped + o.DedupDropped,
		FilterNanos:   s.FilterNanos + o.FilterNanos,
		FilterSamples: s.FilterSamples + o.FilterSamples,
		DedupNanos:    s.DedupNanos + o.DedupNanos,
		DedupSamples:  s.DedupSamples + o.DedupSamples,
	}
}

// LowSeverityRatio is the share of findings of severity low or info.
func (s OrderStats) LowSeverityRatio() float64 { return ratio(s.LowSeverity, s.Events) }

// DedupRatio is the share of findings that reached dedup and were recognized as duplicates.
func (s OrderStats) DedupRatio() float64 { return ratio(s.DedupDropped, s.DedupSeen) }

// FilterRatio is the share of findings that reached the filter and were dropped by it.
func (s OrderStats) FilterRatio() float64 { return ratio(s.FilterDropped, s.FilterSeen) }

func ratio(a, b uint64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func meanNanos(total, samples uint64) float64 {
	if samples == 0 {
		return 0
	}
	return float64(total) / float64(samples)
}

// OrderPolicy holds the thresholds of the automatic order.
type OrderPolicy struct {
	// LowSeverityThreshold: at least this share of low-severity findings favours filter_first.
	LowSeverityThreshold float64
	// DedupRateThreshold: at least this share of duplicates favours dedup_first.
	DedupRateThreshold float64
	// Hysteresis: an order in force is kept until its reason falls this far below its threshold.
	Hysteresis float64
	// Cooldown is the least time between two changes of a source's order.
	Cooldown time.Duration
	// MinEvents is the least number of findings in an interval to decide anything on.
	MinEvents uint64
}

// DefaultOrderPolicy is the performance guide's: 70% low severity, 50% duplicates, 5 minutes.
func DefaultOrderPolicy() OrderPolicy {
	return OrderPolicy{
		LowSeverityThreshold: 0.70,
		DedupRateThreshold:   0.50,
		Hysteresis:           0.10,
		Cooldown:             5 * time.Minute,
		MinEvents:            100,
	}
}

// DecideOrder chooses filter_first or dedup_first for a source from its statistics over the last
// interval. current is the order in force, changed at lastChange. The result is current unless the
// evidence is clear: enough findings, the cooldown over, and a threshold crossed (by the hysteresis
// margin when leaving the current order). When both thresholds are crossed the order with the lower
// expected cost per finding wins: a stage costs its mean time on every finding that reaches it.
func DecideOrder(p OrderPolicy, s OrderStats, current v1alpha1.Order, lastChange, now time.Time) v1alpha1.Order {
	if s.Events < p.MinEvents || now.Sub(lastChange) < p.Cooldown {
		return current
	}
	lowThr, dedupThr := p.LowSeverityThreshold, p.DedupRateThreshold
	switch current {
	case v1alpha1.OrderFilterFirst:
		lowThr -= p.Hysteresis
	case v1alpha1.OrderDedupFirst:
		dedupThr -= p.Hysteresis
	}
	wantFilter := s.LowSeverityRatio() >= lowThr
	wantDedup := s.DedupRatio() >= dedupThr
	switch {
	case wantFilter && wantDedup:
		cf := meanNanos(s.FilterNanos, s.FilterSamples)
		cd := meanNanos(s.DedupNanos, s.DedupSamples)
		if cf == 0 || cd == 0 {
			return current
		}
		filterFirst := cf + (1-s.FilterRatio())*cd
		dedupFirst := cd + (1-s.DedupRatio())*cf
		if dedupFirst < filterFirst {
			return v1alpha1.OrderDedupFirst
		}
		return v1alpha1.OrderFilterFirst
	case wantFilter:
		return v1alpha1.OrderFilterFirst
	case wantDedup:
		return v1alpha1.OrderDedupFirst
	}
	return current
}
