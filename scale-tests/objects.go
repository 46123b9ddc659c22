package main

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"

	"github.com/kube-zen/zen-watcher/internal/testenv"
	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/obsclient"
)

func restConfig(c *testenv.Cluster) *rest.Config {
	rc := rest.CopyConfig(c.Config)
	rc.QPS, rc.Burst = -1, 1000
	return rc
}

// parallel runs fn(i) for i in [0, n) on 16 workers and returns the time it took.
func parallel(n int, fn func(i int) error) (time.Duration, error) {
	var next atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for range 16 {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				if err := fn(i); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err, ok := firstErr.Load().(error); ok {
		return 0, err
	}
	return time.Since(start), nil
}

// rawCeiling is the create rate of a plain client with 16 workers on the same server, now: the
// physical ceiling the run's Observations/s is compared with.
func rawCeiling(ctx context.Context, e *env, tok string) (float64, error) {
	ns := tok + "-raw"
	if err := ensureNamespace(ctx, e, ns); err != nil {
		return 0, err
	}
	oc, err := obsclient.New(restConfig(e.cluster))
	if err != nil {
		return 0, err
	}
	create := func(prefix string, n int) (time.Duration, error) {
		return parallel(n, func(i int) error {
			return oc.Create(ctx, &v1alpha1.Observation{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: prefix + strconv.Itoa(i)},
				Spec: v1alpha1.ObservationSpec{Source: "raw", Category: "operations", Severity: "medium",
					EventType: "back_off", Title: "BackOff on Pod pod-1", Description: "Back-off restarting failed container"},
			})
		})
	}
	if _, err := create("warm-", 300); err != nil {
		return 0, err
	}
	d, err := create("raw-", 1000)
	if err != nil {
		return 0, err
	}
	return 1000 / d.Seconds(), nil
}

// createSyncObjects creates the scenario's Trivy reports without findings over its namespaces,
// before the replicas start: their readiness then measures the sync of that many objects.
func (r *run) createSyncObjects(ctx context.Context) error {
	gvr := schema.GroupVersionResource{Group: "aquasecurity.github.io", Version: "v1alpha1", Resource: "vulnerabilityreports"}
	d, err := parallel(r.sc.SyncObjects, func(i int) error {
		ns := r.namespaces[i%len(r.namespaces)]
		u := vulnerabilityReport(fmt.Sprintf("%s-sync-%d", r.tok, i), ns, fmt.Sprintf("app-%d", i), nil)
		_, err := r.env.dyn.Resource(gvr).Namespace(ns).Create(ctx, u, metav1.CreateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("creating %d reports: %w", r.sc.SyncObjects, err)
	}
	r.res.Extra["syncObjectsCreateSeconds"] = d.Seconds()
	return nil
}

// measureList creates the scenario's Observations and measures etcd's size per Observation and
// listing them all, whole and in pages of 500.
func (r *run) measureList(ctx context.Context) error {
	oc, err := obsclient.New(restConfig(r.env.cluster))
	if err != nil {
		return err
	}
	before := r.env.etcdBytes()
	d, err := parallel(r.sc.ListObservations, func(i int) error {
		ns := r.namespaces[i%len(r.namespaces)]
		return oc.Create(ctx, &v1alpha1.Observation{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("%s-o-%d", r.tok, i),
				Labels: map[string]string{v1alpha1.LabelSource: "scale-" + r.tok, v1alpha1.LabelSeverity: "high", v1alpha1.LabelCategory: "security"}},
			Spec: v1alpha1.ObservationSpec{Source: "scale-" + r.tok, Category: "security", Severity: "high", EventType: "vulnerability",
				Resource: v1alpha1.ResourceRef{APIVersion: "apps/v1", Kind: "Deployment", Namespace: ns, Name: fmt.Sprintf("app-%d", i%500)},
				Title:    fmt.Sprintf("CVE-2026-%05d in libscale 1.0", i%1000), Description: "A vulnerability in libscale 1.0, fixed in 1.1.",
				Details: map[string]v1alpha1.DetailValue{"vulnerabilityID": v1alpha1.DetailValue(fmt.Sprintf("CVE-2026-%05d", i%1000)),
					"installedVersion": "1.0", "fixedVersion": "1.1", "resource": "libscale"}},
		})
	})
	if err != nil {
		return err
	}
	r.res.FindingsIn = r.sc.ListObservations
	r.res.LoadSeconds = d.Seconds()
	after := r.env.etcdBytes()
	r.res.Extra["observationsCreatePerSecond"] = float64(r.sc.ListObservations) / d.Seconds()
	if after > before {
		r.res.Extra["etcdBytesPerObservation"] = float64(after-before) / float64(r.sc.ListObservations)
	}
	sel := v1alpha1.LabelSource + "=scale-" + r.tok
	start := time.Now()
	whole, err := oc.List(ctx, "", metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return fmt.Errorf("listing all: %w", err)
	}
	r.res.Extra["listWholeSeconds"] = time.Since(start).Seconds()
	r.res.Extra["listWholeItems"] = len(whole.Items)
	whole = nil
	start = time.Now()
	n := 0
	if err := oc.EachObservation(ctx, "", sel, 500, func(*v1alpha1.Observation) error { n++; return nil }); err != nil {
		return fmt.Errorf("listing in pages: %w", err)
	}
	r.res.Extra["listPaged500Seconds"] = time.Since(start).Seconds()
	r.res.Extra["listPagedItems"] = n
	if n != r.sc.ListObservations {
		r.res.Lost = r.sc.ListObservations - n
	}
	return nil
}

// createExpired creates the cleanup scenario's Observations: expired ones (their expires-at label
// an hour ago) and a tenth as many live ones, which must survive.
func (r *run) createExpired(ctx context.Context) error {
	oc, err := obsclient.New(restConfig(r.env.cluster))
	if err != nil {
		return err
	}
	n, live := r.sc.CleanupObservations, r.sc.CleanupObservations/10
	past, future := strconv.FormatInt(time.Now().Add(-time.Hour).Unix(), 10), strconv.FormatInt(time.Now().Add(24*time.Hour).Unix(), 10)
	d, err := parallel(n+live, func(i int) error {
		exp, kind := past, "expired"
		if i >= n {
			exp, kind = future, "live"
		}
		ns := r.namespaces[i%len(r.namespaces)]
		return oc.Create(ctx, &v1alpha1.Observation{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("%s-%s-%d", r.tok, kind, i),
				Labels: map[string]string{v1alpha1.LabelSource: "scale-" + kind, v1alpha1.LabelExpiresAt: exp}},
			Spec: v1alpha1.ObservationSpec{Source: "scale-" + kind, Category: "operations", Severity: "low", EventType: "back_off",
				Title: "expired finding"},
		})
	})
	if err != nil {
		return fmt.Errorf("creating Observations to clean up: %w", err)
	}
	r.res.Extra["cleanupCreateSeconds"] = d.Seconds()
	return nil
}

// measureCleanup waits until the leader has deleted every expired Observation, and checks the live
// ones are still there.
func (r *run) measureCleanup(ctx context.Context) error {
	oc, err := obsclient.New(restConfig(r.env.cluster))
	if err != nil {
		return err
	}
	count := func(source string) (int, error) {
		n := 0
		err := oc.EachObservation(ctx, "", v1alpha1.LabelSource+"="+source, 5000, func(*v1alpha1.Observation) error { n++; return nil })
		return n, err
	}
	start := time.Now()
	for {
		left, err := count("scale-expired")
		if err != nil {
			return err
		}
		if left == 0 {
			break
		}
		if time.Since(start) > 10*time.Minute {
			r.res.Lost = left
			break
		}
		time.Sleep(2 * time.Second)
	}
	r.res.LoadSeconds = time.Since(start).Seconds()
	r.res.Extra["cleanupSeconds"] = r.res.LoadSeconds
	r.res.Extra["cleanupExpired"] = r.sc.CleanupObservations
	live, err := count("scale-live")
	if err != nil {
		return err
	}
	r.res.Extra["liveLeft"] = live
	if want := r.sc.CleanupObservations / 10; live != want {
		r.res.Extra["liveDeletedWrongly"] = want - live
		r.res.Lost += want - live
	}
	return nil
}

// vulnerabilityReport is a Trivy Operator report on a Deployment's container "app", as the operator
// writes it, with the given vulnerabilities.
func vulnerabilityReport(name, ns, workload string, vulns []any) *unstructured.Unstructured {
	if vulns == nil {
		vulns = []any{}
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "aquasecurity.github.io/v1alpha1", "kind": "VulnerabilityReport",
		"metadata": map[string]any{"name": name, "namespace": ns, "labels": map[string]any{
			"trivy-operator.resource.kind": "Deployment", "trivy-operator.resource.name": workload,
			"trivy-operator.resource.namespace": ns, "trivy-operator.container.name": "app"}},
		"report": map[string]any{
			"updateTimestamp": time.Now().UTC().Format(time.RFC3339),
			"scanner":         map[string]any{"name": "Trivy", "vendor": "Aqua Security", "version": "0.50.0"},
			"registry":        map[string]any{"server": "index.docker.io"},
			"artifact":        map[string]any{"repository": "library/app", "tag": "1.0"},
			"os":              map[string]any{"family": "debian", "name": "12"},
			"summary": map[string]any{"criticalCount": 0, "highCount": 0, "mediumCount": 0, "lowCount": 0,
				"unknownCount": 0, "noneCount": 0},
			"vulnerabilities": vulns,
		},
	}}
}
