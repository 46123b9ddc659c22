package pipeline

import (
	"context"
	"fmt"
	"testing"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
)

// mixEvents is a realistic mix: five sources, severities 15% critical/high, 30% medium, 55% low or
// info, findings over 200 namespaces, about 40% of them repeats of an earlier one.
func mixEvents(n int) []Event {
	sources := []string{"trivy", "kyverno", "falco", "k8sevents", "certmanager"}
	sevs := []v1alpha1.Severity{"critical", "high", "high", "medium", "medium", "medium", "low", "low", "low", "low", "info",
		"low", "info", "medium", "low", "info", "low", "medium", "low", "info"}
	evs := make([]Event, n)
	for i := range evs {
		id := i
		if i%5 < 2 && i > 0 { // 40% repeat an earlier finding
			id = i / 2
		}
		evs[i] = Event{
			Source: sources[id%len(sources)], Category: v1alpha1.CategorySecurity,
			Severity: sevs[id%len(sevs)], EventType: "vulnerability",
			Resource: v1alpha1.ResourceRef{Kind: "Pod", Namespace: fmt.Sprintf("team-%d", id%200), Name: fmt.Sprintf("app-%d", id%1000)},
			Rule:     fmt.Sprintf("CVE-2026-%06d", id),
		}
	}
	return evs
}

func benchPipeline(b *testing.B, filter FilterConfig) {
	m := newMetrics()
	p, err := New(Config{}, NewTiered(NewLocalCache(10000), nil, m, discardLog()), discardSink{}, m)
	if err != nil {
		b.Fatal(err)
	}
	templates := mixEvents(1 << 16)
	for _, s := range []string{"trivy", "kyverno", "falco", "k8sevents", "certmanager"} {
		if err := p.Configure(s, SourceConfig{
			Order:  v1alpha1.OrderFilterFirst,
			Filter: &filter,
			Dedup:  &DedupConfig{Strategy: v1alpha1.DedupFingerprint},
		}); err != nil {
			b.Fatal(err)
		}
	}
	// Events are recycled from a ring, as a source's would be garbage: what is measured is the
	// pipeline's own cost per finding.
	ring := make([]Event, 4096)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ev := &ring[i&(len(ring)-1)]
		*ev = templates[i&(len(templates)-1)]
		if err := p.Handle(ctx, ev); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkPipelineListRules: list rules and local dedup, the hot path.
func BenchmarkPipelineListRules(b *testing.B) {
	benchPipeline(b, FilterConfig{
		MinSeverity:       v1alpha1.SeverityLow,
		ExcludeNamespaces: []string{"kube-system", "team-7"},
		ExcludeRules:      []string{"CVE-2026-000001"},
	})
}

// BenchmarkPipelineCEL adds a typical three-clause CEL expression to the list rules.
func BenchmarkPipelineCEL(b *testing.B) {
	benchPipeline(b, FilterConfig{
		MinSeverity: v1alpha1.SeverityLow,
		Expression:  `severityRank >= 2 && ns.startsWith('team-') && !(rule in ['CVE-2026-000001', 'CVE-2026-000002'])`,
	})
}

func BenchmarkFingerprint(b *testing.B) {
	ev := mixEvents(1)[0]
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		ev.FP = Fingerprint(&ev)
	}
}

func BenchmarkLocalCacheClaim(b *testing.B) {
	c := NewLocalCache(10000)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		c.Claim(mix(uint64(i%20000)), int64(i), int64(i)+1e12)
	}
}

// BenchmarkWritable is the check every webhook finding passes before it is acknowledged: a Falco
// alert of the usual size, with a dozen output fields.
func BenchmarkWritable(b *testing.B) {
	ev := &Event{Source: "falco", Category: v1alpha1.CategorySecurity, Severity: v1alpha1.SeverityHigh, EventType: "runtime_alert",
		Title: "Terminal shell in container", Resource: v1alpha1.ResourceRef{APIVersion: "v1", Kind: "Pod", Namespace: "shop", Name: "cart-0"},
		Description: "A shell was spawned in a container with an attached terminal (user=root shell=bash parent=runc)",
		Details:     map[string]string{}}
	for i := range 12 {
		ev.Details[fmt.Sprintf("output_fields.field%d", i)] = fmt.Sprintf("value of field %d <with> some & text", i)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := Writable(ev); err != nil {
			b.Fatal(err)
		}
	}
}
