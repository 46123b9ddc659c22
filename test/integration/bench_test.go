package integration

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/metrics"
	"github.com/kube-zen/zen-watcher/pkg/obsclient"
	"github.com/kube-zen/zen-watcher/pkg/pipeline"
)

const benchWorkers = 16

// BenchmarkWriterVsClientGo writes the same number of equally sized Observations into the real API
// server twice in one run: with a plain client-go loop (dynamic client, benchWorkers goroutines, no
// rate limit) and through the pipeline and its writer (benchWorkers workers). It reports both rates
// and their ratio; the pipeline's target is at least 0.75 of the plain loop.
func BenchmarkWriterVsClientGo(b *testing.B) {
	const perRun = 1500
	ns := fmt.Sprintf("bench-%d", time.Now().UnixNano())
	namespaceB(b, ns)
	cfg := rest.CopyConfig(cluster.Config)
	cfg.QPS, cfg.Burst = -1, 1000
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	// Warm the API server up: the first seconds after start are slower.
	plainLoop(b, dyn, ns, "warm", 300)
	var raw, ours float64
	for i := 0; i < b.N; i++ {
		raw += plainLoop(b, dyn, ns, fmt.Sprintf("raw%d", i), perRun)
		ours += pipelineRun(b, cfg, ns, fmt.Sprintf("zw%d", i), perRun)
	}
	b.ReportMetric(raw/float64(b.N), "raw-creates/s")
	b.ReportMetric(ours/float64(b.N), "pipeline-creates/s")
	b.ReportMetric(ours/raw, "ratio")
}

func namespaceB(b *testing.B, name string) {
	_, err := cluster.Kube.CoreV1().Namespaces().Create(context.Background(),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		b.Fatal(err)
	}
}

func benchFinding(ns, run string, i int) *pipeline.Event {
	ev := vuln(ns, i)
	ev.Rule = fmt.Sprintf("%s-%s", run, ev.Rule)
	ev.Description = "A vulnerability of the kind a scanner reports, with a description of typical length " +
		"that says what is affected and how an attacker could use it."
	return ev
}

// plainLoop creates n Observations, as the writer would build them, with the dynamic client.
func plainLoop(b *testing.B, dyn dynamic.Interface, ns, run string, n int) float64 {
	objs := make([]*unstructured.Unstructured, n)
	for i := range objs {
		ev := benchFinding(ns, run, i)
		ev.FP = pipeline.Fingerprint(ev)
		u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(pipeline.BuildObservation(ev, "default"))
		if err != nil {
			b.Fatal(err)
		}
		obj := &unstructured.Unstructured{Object: u}
		obj.SetAPIVersion(v1alpha1.SchemeGroupVersion.String())
		obj.SetKind("Observation")
		objs[i] = obj
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range benchWorkers {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				_, err := dyn.Resource(v1alpha1.ObservationResource).Namespace(ns).
					Create(context.Background(), objs[i], metav1.CreateOptions{})
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	return float64(n) / time.Since(start).Seconds()
}

// pipelineRun sends n distinct findings through a pipeline with dedup and its writer, and times
// them until the last Observation is written.
func pipelineRun(b *testing.B, cfg *rest.Config, ns, run string, n int) float64 {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	m := metrics.New(prometheus.NewRegistry())
	client, err := obsclient.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	writer := pipeline.NewWriter(pipeline.WriterConfig{Workers: benchWorkers, Namespace: "default"}, client, m, log)
	pipe, err := pipeline.New(pipeline.Config{Defaults: pipeline.SourceConfig{
		Order: v1alpha1.OrderFilterFirst,
		Dedup: &pipeline.DedupConfig{Strategy: v1alpha1.DedupFingerprint},
	}}, pipeline.NewTiered(pipeline.NewLocalCache(10000), nil, m, log), writer, m)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go writer.Run(ctx)
	evs := make([]*pipeline.Event, n)
	var wg sync.WaitGroup
	wg.Add(n)
	for i := range evs {
		evs[i] = benchFinding(ns, run, i)
		evs[i].Done = func(o pipeline.Outcome, err error) {
			if o != pipeline.OutcomeWritten {
				b.Errorf("outcome %v: %v", o, err)
			}
			wg.Done()
		}
	}
	start := time.Now()
	for _, ev := range evs {
		if err := pipe.Handle(ctx, ev); err != nil {
			b.Fatal(err)
		}
	}
	wg.Wait()
	return float64(n) / time.Since(start).Seconds()
}
