package integration

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/metrics"
	"github.com/kube-zen/zen-watcher/pkg/obsclient"
	"github.com/kube-zen/zen-watcher/pkg/pipeline"
	"github.com/kube-zen/zen-watcher/pkg/redisstate"
)

// replica is one pipeline as a zen-watcher process has it: local tier, Redis, writer, real client.
type replica struct {
	pipe    *pipeline.Pipeline
	metrics *metrics.Metrics
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	mu      sync.Mutex
	out     map[pipeline.Outcome]int
	errs    []error
}

func newReplica(t *testing.T, release string, useRedis bool) *replica {
	t.Helper()
	return newReplicaWith(t, release, useRedis, pipeline.SourceConfig{
		Order: v1alpha1.OrderFilterFirst,
		Dedup: &pipeline.DedupConfig{Strategy: v1alpha1.DedupFingerprint},
	})
}

// newReplicaWith is newReplica with processing defaults of the test's own.
func newReplicaWith(t *testing.T, release string, useRedis bool, defaults pipeline.SourceConfig) *replica {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	m := metrics.New(prometheus.NewRegistry())
	client, err := obsclient.New(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	var shared pipeline.Store
	if useRedis {
		rc := redis.NewClient(&redis.Options{Addr: redisS.Addr, DialTimeout: 200 * time.Millisecond,
			ReadTimeout: 200 * time.Millisecond, WriteTimeout: 200 * time.Millisecond, MaxRetries: -1})
		store := redisstate.NewDedupStore(rc, redisstate.Options{Release: release})
		t.Cleanup(func() { store.Close(); _ = rc.Close() })
		shared = store
	}
	writer := pipeline.NewWriter(pipeline.WriterConfig{Workers: 8, Namespace: "default"}, client, m, log)
	pipe, err := pipeline.New(pipeline.Config{
		Defaults:    defaults,
		DedupWindow: time.Hour,
	}, pipeline.NewTiered(pipeline.NewLocalCache(10000), shared, m, log), writer, m)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &replica{pipe: pipe, metrics: m, cancel: cancel, out: map[pipeline.Outcome]int{}}
	r.wg.Go(func() { writer.Run(ctx) })
	t.Cleanup(r.stop)
	return r
}

func (r *replica) stop() {
	r.cancel()
	r.wg.Wait()
}

// handle sends one finding and waits for its outcome.
func (r *replica) handle(t *testing.T, ev *pipeline.Event) pipeline.Outcome {
	t.Helper()
	done := make(chan pipeline.Outcome, 1)
	ev.Done = func(o pipeline.Outcome, err error) {
		if err != nil {
			r.mu.Lock()
			r.errs = append(r.errs, err)
			r.mu.Unlock()
		}
		done <- o
	}
	if err := r.pipe.Handle(context.Background(), ev); err != nil {
		t.Fatalf("Handle: %v", err)
	}
	select {
	case o := <-done:
		r.mu.Lock()
		r.out[o]++
		r.mu.Unlock()
		return o
	case <-time.After(30 * time.Second):
		t.Fatal("no outcome within 30s")
		return 0
	}
}

func namespace(t *testing.T, name string) {
	t.Helper()
	_, err := cluster.Kube.CoreV1().Namespaces().Create(context.Background(),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

// vuln is a state finding: the i-th vulnerability of a report in ns.
func vuln(ns string, i int) *pipeline.Event {
	return &pipeline.Event{
		Source: "trivy", Category: v1alpha1.CategorySecurity, Severity: v1alpha1.SeverityHigh,
		EventType: "vulnerability",
		Resource:  v1alpha1.ResourceRef{APIVersion: "apps/v1", Kind: "ReplicaSet", Namespace: ns, Name: "coredns"},
		Rule:      fmt.Sprintf("CVE-2026-%05d", i),
		Title:     fmt.Sprintf("CVE-2026-%05d in libfoo", i),
		Details:   map[string]string{"vulnerabilityID": fmt.Sprintf("CVE-2026-%05d", i), "installedVersion": "1.0"},
		Stateful:  true,
	}
}

// alert is finding i as an occurrence (an alert) rather than a state: dedup across replicas goes
// through Redis for it.
func alert(ns string, i int) *pipeline.Event {
	ev := vuln(ns, i)
	ev.Stateful, ev.Instance = false, fmt.Sprint(i)
	return ev
}

func countObservations(t *testing.T, ns string) (int, map[string]v1alpha1.Observation) {
	t.Helper()
	client, err := obsclient.New(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	list, err := client.ListObservations(context.Background(), ns, "")
	if err != nil {
		t.Fatal(err)
	}
	byRule := map[string]v1alpha1.Observation{}
	for _, o := range list.Items {
		byRule[string(o.Spec.Details["vulnerabilityID"])] = o
	}
	return len(list.Items), byRule
}

// TestWriterWritesExactObservations: findings through the pipeline into the real API server, with
// every field as the finding had it; repeats are deduplicated, not written.
func TestWriterWritesExactObservations(t *testing.T) {
	ns := "writer"
	namespace(t, ns)
	r := newReplica(t, "writer", true)
	for i := range 50 {
		if o := r.handle(t, vuln(ns, i)); o != pipeline.OutcomeWritten {
			t.Fatalf("finding %d: %v (%v)", i, o, r.errs)
		}
	}
	for i := range 50 {
		if o := r.handle(t, vuln(ns, i)); o != pipeline.OutcomeDeduplicated {
			t.Fatalf("repeat %d: %v", i, o)
		}
	}
	n, byRule := countObservations(t, ns)
	if n != 50 {
		t.Fatalf("%d Observations, want 50", n)
	}
	o := byRule["CVE-2026-00007"]
	s := o.Spec
	if s.Source != "trivy" || s.Severity != "high" || s.Category != "security" || s.EventType != "vulnerability" ||
		s.Resource.Kind != "ReplicaSet" || s.Resource.Name != "coredns" || s.Title != "CVE-2026-00007 in libfoo" ||
		s.Details["installedVersion"] != "1.0" || o.Labels[v1alpha1.LabelSeverity] != "high" ||
		o.Name != "trivy-"+s.Fingerprint {
		t.Errorf("observation: %s %+v", o.Name, s)
	}
}

// TestRedisStoppedMidStream: two replicas share Redis and see the same alerts; Redis stops half
// way and comes back. No error escapes, dedup goes on locally, and every alert still has exactly
// one Observation (the names derived from each occurrence hold the line while Redis is away).
func TestRedisStoppedMidStream(t *testing.T) {
	ns := "redis-outage"
	namespace(t, ns)
	a, b := newReplica(t, "outage", true), newReplica(t, "outage", true)
	const total = 120
	for i := range total {
		if i == total/3 {
			if err := redisS.Stop(); err != nil {
				t.Fatal(err)
			}
		}
		if i == 2*total/3 {
			if err := redisS.Start(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(6 * time.Second) // past the longest store backoff
		}
		a.handle(t, alert(ns, i))
		b.handle(t, alert(ns, i))
	}
	if len(a.errs)+len(b.errs) > 0 {
		t.Errorf("errors escaped: %v %v", a.errs, b.errs)
	}
	n, byRule := countObservations(t, ns)
	if n != total || len(byRule) != total {
		t.Errorf("%d Observations for %d distinct findings, want %d", n, len(byRule), total)
	}
	written := a.out[pipeline.OutcomeWritten] + b.out[pipeline.OutcomeWritten]
	if written != total {
		t.Errorf("%d written in all, want %d", written, total)
	}
	for name, r := range map[string]*replica{"a": a, "b": b} {
		if testutil.ToFloat64(r.metrics.DedupFallbacks) == 0 {
			t.Errorf("replica %s never fell back to its local tier", name)
		}
		if testutil.ToFloat64(r.metrics.SharedStoreAvailable) != 1 {
			t.Errorf("replica %s does not report Redis back", name)
		}
	}
}

// TestRestartWritesNothingNew: a new pipeline (a restarted replica, its local state gone, Redis
// flushed) re-reading the same state findings creates no new Observation.
func TestRestartWritesNothingNew(t *testing.T) {
	ns := "restart"
	namespace(t, ns)
	first := newReplica(t, "restart", true)
	for i := range 40 {
		first.handle(t, vuln(ns, i))
	}
	first.stop()
	rc := redis.NewClient(&redis.Options{Addr: redisS.Addr})
	defer rc.Close()
	if err := rc.FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	second := newReplica(t, "restart", true)
	for i := range 40 {
		if o := second.handle(t, vuln(ns, i)); o != pipeline.OutcomeDeduplicated {
			t.Fatalf("finding %d after restart: %v", i, o)
		}
	}
	if n, _ := countObservations(t, ns); n != 40 {
		t.Errorf("%d Observations after restart, want 40", n)
	}
}
