package integration

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/metrics"
	"github.com/kube-zen/zen-watcher/pkg/obsclient"
	"github.com/kube-zen/zen-watcher/pkg/pipeline"
	"github.com/kube-zen/zen-watcher/pkg/sources"
)

// keysAsFindings is a parser: one state finding per data key of a ConfigMap.
var keysAsFindings = sources.ObjectParserFunc(func(obj *unstructured.Unstructured) ([]*pipeline.Event, error) {
	data, _, err := unstructured.NestedStringMap(obj.Object, "data")
	if err != nil {
		return nil, err
	}
	var out []*pipeline.Event
	for k := range data {
		out = append(out, &pipeline.Event{Source: "ratelimited", Category: v1alpha1.CategoryCompliance,
			Severity: v1alpha1.SeverityLow, EventType: "check", Resource: sources.Self(obj), Rule: k, Title: k, Stateful: true})
	}
	return out, nil
})

// TestRateLimitedFindingsComeBackAtResync: an informer source with a rate limit of 1/s holds most
// of a report's findings back at first; every one of them is handed on again at a resync and
// written, against the real API server — none is dropped for good.
func TestRateLimitedFindingsComeBackAtResync(t *testing.T) {
	const ns, keys = "ratelimited", 6
	namespace(t, ns)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	m := metrics.New(prometheus.NewRegistry())
	client, err := obsclient.New(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	writer := pipeline.NewWriter(pipeline.WriterConfig{Workers: 4, Namespace: ns}, client, m, log)
	pipe, err := pipeline.New(pipeline.Config{Defaults: pipeline.SourceConfig{
		Order:     v1alpha1.OrderFilterFirst,
		Dedup:     &pipeline.DedupConfig{Strategy: v1alpha1.DedupFingerprint},
		RateLimit: &pipeline.RateLimitConfig{PerSecond: 1, Burst: 1},
	}, DedupWindow: time.Hour}, pipeline.NewTiered(pipeline.NewLocalCache(1000), nil, m, log), writer, m)
	if err != nil {
		t.Fatal(err)
	}
	data := map[string]string{}
	for k := range keys {
		data[fmt.Sprintf("check-%d", k)] = "fail"
	}
	if _, err := cluster.Kube.CoreV1().ConfigMaps(ns).Create(context.Background(), &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "results"}, Data: data}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	disc, err := discovery.NewDiscoveryClientForConfig(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	inf := sources.NewInformer(sources.InformerConfig{Source: "ratelimited", Namespaces: []string{ns},
		GVR: schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}, Resync: time.Second},
		dyn, disc, keysAsFindings, nil, m, log)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go writer.Run(ctx)
	go func() { _ = inf.Run(ctx, pipe) }()

	deadline := time.Now().Add(30 * time.Second)
	for {
		n, _ := countObservations(t, ns)
		if n == keys {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d findings written after 30 s: the rate-limited ones never came back", n, keys)
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(time.Second) // further resyncs must add nothing
	if n, _ := countObservations(t, ns); n != keys {
		t.Errorf("%d Observations after further resyncs, want %d", n, keys)
	}
}
