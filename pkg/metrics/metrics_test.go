package metrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestMetricsLint checks every metric against Prometheus' naming and help conventions, and that
// none carries a high-cardinality label.
func TestMetricsLint(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	// Touch every vector so that it has a series to lint.
	m.ObservationsCreated.WithLabelValues("trivy").Inc()
	m.ObservationsFiltered.WithLabelValues("trivy").Inc()
	m.ObservationsDeduplicated.WithLabelValues("trivy").Inc()
	m.ObservationsFailed.WithLabelValues("trivy", "invalid").Inc()
	m.EventsProcessed.WithLabelValues("trivy").Inc()
	m.ProcessingLatency.WithLabelValues("trivy").Observe(0.01)
	m.PipelineErrors.WithLabelValues("trivy", "filter").Inc()
	m.SourceEventsIgnored.WithLabelValues("trivy", "malformed").Inc()
	m.SeverityUnknown.WithLabelValues("trivy").Inc()
	m.ObservationsRateLimited.WithLabelValues("trivy").Inc()
	m.DedupEffectiveness.WithLabelValues("trivy", "fingerprint").Set(0.5)
	m.LowSeverityPercent.WithLabelValues("trivy").Set(50)
	m.DedupRateRatio.WithLabelValues("trivy").Set(0.5)
	m.StrategyChanges.WithLabelValues("trivy").Inc()
	m.OrderInForce.WithLabelValues("trivy", "filter_first").Set(1)
	m.WebhookRequests.WithLabelValues("falco", "202").Inc()
	m.WebhookBytes.WithLabelValues("falco").Add(10)
	m.WebhookRejected.WithLabelValues("falco", "too_large").Inc()
	m.SourceReady.WithLabelValues("falco").Set(1)
	m.CleanupDeleted.WithLabelValues("expired").Inc()
	m.CleanupRuns.WithLabelValues("complete").Inc()

	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if !strings.HasPrefix(f.GetName(), "zen_watcher_") {
			t.Errorf("%s: not in the zen_watcher namespace", f.GetName())
		}
		for _, s := range f.GetMetric() {
			for _, l := range s.GetLabel() {
				switch l.GetName() {
				case "namespace", "name", "resource", "pod", "fingerprint":
					t.Errorf("%s: high-cardinality label %q", f.GetName(), l.GetName())
				}
			}
		}
	}
}
