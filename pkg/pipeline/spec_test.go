package pipeline

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
)

func TestFromIngester(t *testing.T) {
	defaults := SourceConfig{
		Order: v1alpha1.OrderAuto,
		Dedup: &DedupConfig{Strategy: v1alpha1.DedupFingerprint, MaxEventsPerWindow: 10},
	}
	off := false
	ttl := int64(86400)
	cases := []struct {
		name  string
		spec  v1alpha1.IngesterSpec
		check func(t *testing.T, c SourceConfig)
	}{
		{"nothing set keeps the defaults", v1alpha1.IngesterSpec{}, func(t *testing.T, c SourceConfig) {
			if c.Order != v1alpha1.OrderAuto || c.Dedup.Strategy != v1alpha1.DedupFingerprint || c.Filter != nil {
				t.Errorf("%+v", c)
			}
		}},
		{"event-stream with a window", v1alpha1.IngesterSpec{Processing: v1alpha1.ProcessingSpec{
			Dedup: &v1alpha1.DedupSpec{Strategy: v1alpha1.DedupEventStream, Window: &metav1.Duration{Duration: 5 * time.Minute}},
		}}, func(t *testing.T, c SourceConfig) {
			if c.Dedup.Strategy != v1alpha1.DedupEventStream || c.Dedup.Window != 5*time.Minute || c.Dedup.MaxEventsPerWindow != 10 {
				t.Errorf("%+v", c.Dedup)
			}
			if defaults.Dedup.Strategy != v1alpha1.DedupFingerprint {
				t.Error("the defaults were modified")
			}
		}},
		{"dedup disabled", v1alpha1.IngesterSpec{Processing: v1alpha1.ProcessingSpec{
			Dedup: &v1alpha1.DedupSpec{Enabled: &off},
		}}, func(t *testing.T, c SourceConfig) {
			if c.Dedup != nil {
				t.Errorf("dedup %+v", c.Dedup)
			}
		}},
		{"filter, order, rate limit and ttl", v1alpha1.IngesterSpec{TTLSecondsAfterCreation: &ttl, Processing: v1alpha1.ProcessingSpec{
			Order:     v1alpha1.OrderDedupFirst,
			Filter:    &v1alpha1.FilterSpec{MinSeverity: "high", Expression: "true"},
			RateLimit: &v1alpha1.RateLimitSpec{EventsPerSecond: 100, Burst: 200},
		}}, func(t *testing.T, c SourceConfig) {
			if c.Order != v1alpha1.OrderDedupFirst || c.Filter.MinSeverity != "high" || c.Filter.Expression != "true" ||
				c.RateLimit.PerSecond != 100 || c.RateLimit.Burst != 200 || c.TTL != 24*time.Hour {
				t.Errorf("%+v", c)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { tc.check(t, FromIngester(&tc.spec, defaults)) })
	}
}
