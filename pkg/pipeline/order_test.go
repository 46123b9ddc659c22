package pipeline

import (
	"testing"
	"time"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
)

func TestDecideOrder(t *testing.T) {
	p := DefaultOrderPolicy()
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	long := now.Add(-time.Hour)
	ff, df := v1alpha1.OrderFilterFirst, v1alpha1.OrderDedupFirst
	stats := func(events, low, dedupSeen, dedupDropped uint64) OrderStats {
		return OrderStats{Events: events, LowSeverity: low, DedupSeen: dedupSeen, DedupDropped: dedupDropped}
	}
	cases := []struct {
		name       string
		s          OrderStats
		current    v1alpha1.Order
		lastChange time.Time
		want       v1alpha1.Order
	}{
		{"mostly low severity", stats(1000, 850, 1000, 100), df, long, ff},
		{"mostly duplicates", stats(1000, 100, 1000, 600), ff, long, df},
		{"neither: keep", stats(1000, 400, 1000, 300), df, long, df},
		{"too few findings", stats(50, 50, 50, 0), df, long, df},
		{"within cooldown", stats(1000, 900, 1000, 0), df, now.Add(-time.Minute), df},
		{"just past cooldown", stats(1000, 900, 1000, 0), df, now.Add(-5 * time.Minute), ff},
		// Hysteresis: filter_first stays at 65% low (threshold 70%, margin 10%)...
		{"hysteresis keeps filter_first", stats(1000, 650, 1000, 550), ff, long, ff},
		// ...but dedup_first is not entered at 65% low unless duplicates say so.
		{"65% low does not enter filter_first", stats(1000, 650, 1000, 0), df, long, df},
		{"hysteresis keeps dedup_first", stats(1000, 0, 1000, 450), df, long, df},
		{"45% duplicates does not enter dedup_first", stats(1000, 0, 1000, 450), ff, long, ff},
		{"both, dedup cheaper overall", OrderStats{Events: 1000, LowSeverity: 800, FilterSeen: 1000, FilterDropped: 800,
			DedupSeen: 1000, DedupDropped: 900, FilterNanos: 1000, FilterSamples: 1, DedupNanos: 100, DedupSamples: 1}, ff, long, df},
		{"both, filter cheaper overall", OrderStats{Events: 1000, LowSeverity: 800, FilterSeen: 1000, FilterDropped: 800,
			DedupSeen: 1000, DedupDropped: 600, FilterNanos: 100, FilterSamples: 1, DedupNanos: 1000, DedupSamples: 1}, df, long, ff},
		{"both, no costs yet: keep", stats(1000, 900, 1000, 900), df, long, df},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := DecideOrder(p, tc.s, tc.current, tc.lastChange, now); got != tc.want {
				t.Errorf("DecideOrder = %s, want %s", got, tc.want)
			}
		})
	}
}

// TestStatsSinceACounterReset: counts that went down (a source reconfigured by an Ingester edit,
// a restarted replica) started again, so the interval's counts are all of them; subtracting would
// wrap the unsigned counters and report, say, every finding as low severity.
func TestStatsSinceACounterReset(t *testing.T) {
	prev := OrderStats{Events: 1000, LowSeverity: 900, FilterSeen: 1000, DedupSeen: 1000, DedupDropped: 10}
	for _, tc := range []struct {
		name string
		cur  OrderStats
		want OrderStats
	}{
		{"grew", OrderStats{Events: 1100, LowSeverity: 950, FilterSeen: 1100, DedupSeen: 1100, DedupDropped: 12},
			OrderStats{Events: 100, LowSeverity: 50, FilterSeen: 100, DedupSeen: 100, DedupDropped: 2}},
		{"reset", OrderStats{Events: 40, LowSeverity: 0, FilterSeen: 40, DedupSeen: 40},
			OrderStats{Events: 40, LowSeverity: 0, FilterSeen: 40, DedupSeen: 40}},
		{"one counter reset", OrderStats{Events: 1200, LowSeverity: 5, FilterSeen: 1200, DedupSeen: 1200, DedupDropped: 11},
			OrderStats{Events: 1200, LowSeverity: 5, FilterSeen: 1200, DedupSeen: 1200, DedupDropped: 11}},
	} {
		got := tc.cur.Since(prev)
		if got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
		if r := got.LowSeverityRatio(); r < 0 || r > 1 {
			t.Errorf("%s: low severity ratio %v", tc.name, r)
		}
	}
}
