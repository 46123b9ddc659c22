package cleanup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/kube-zen/zen-watcher/internal/testenv"
	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/ha"
	"github.com/kube-zen/zen-watcher/pkg/metrics"
	"github.com/kube-zen/zen-watcher/pkg/obsclient"
)

var cluster *testenv.Cluster

func TestMain(m *testing.M) {
	os.Exit(testenv.RunWithCluster(m, testenv.Options{}, &cluster))
}

func newCleaner(t *testing.T, cfg Config) (*Cleaner, *metrics.Metrics) {
	t.Helper()
	rc := rest.CopyConfig(cluster.Config)
	rc.QPS, rc.Burst = -1, 1000
	mc, err := NewClient(rc)
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New(prometheus.NewRegistry())
	cfg.Client, cfg.Metrics, cfg.Log = mc, m, slog.New(slog.NewTextHandler(io.Discard, nil))
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c, m
}

func namespaces(t *testing.T, prefix string, n int) []string {
	t.Helper()
	var out []string
	for i := range n {
		ns := fmt.Sprintf("%s-%03d", prefix, i)
		if _, err := cluster.Kube.CoreV1().Namespaces().Create(context.Background(),
			&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		out = append(out, ns)
	}
	return out
}

func observation(ns, name string, expiresAt int64) *v1alpha1.Observation {
	o := &v1alpha1.Observation{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{v1alpha1.LabelSource: "test"}},
		Spec: v1alpha1.ObservationSpec{Source: "test", Category: "security", Severity: "low", EventType: "vulnerability",
			Title: "a finding of typical size, about a resource, with a title people read", DetectedAt: metav1.Now()},
	}
	if expiresAt != 0 {
		o.Labels[v1alpha1.LabelExpiresAt] = strconv.FormatInt(expiresAt, 10)
		ttl := int64(3600)
		o.Spec.TTLSecondsAfterCreation = &ttl
	}
	return o
}

// createMany creates n Observations spread over namespaces with 32 writers.
func createMany(t *testing.T, nss []string, prefix string, n int, expiresAt int64) {
	t.Helper()
	rc := rest.CopyConfig(cluster.Config)
	rc.QPS, rc.Burst = -1, 1000
	c, err := obsclient.New(rc)
	if err != nil {
		t.Fatal(err)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				if err := c.Create(context.Background(), observation(nss[int(i)%len(nss)], fmt.Sprintf("%s-%d", prefix, i), expiresAt)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// count lists every Observation and says how many are expired now and how many live.
func count(t *testing.T) (expired, live int) {
	t.Helper()
	c, _ := newCleaner(t, Config{})
	var items []item
	listed := 0
	if err := c.list(context.Background(), func(it item) { items = append(items, it) }, &listed); err != nil {
		t.Fatal(err)
	}
	return len(items), listed - len(items)
}

// TestCleanupOf45000 is the proof the lifecycle asks for: 50,000 Observations in 100 namespaces,
// 45,000 of them expired; one run deletes exactly those while new Observations keep arriving.
func TestCleanupOf45000(t *testing.T) {
	nss := namespaces(t, "ttl", 100)
	past, future := time.Now().Add(-time.Hour).Unix(), time.Now().Add(24*time.Hour).Unix()
	start := time.Now()
	createMany(t, nss, "expired", 45000, past)
	createMany(t, nss, "live", 5000, future)
	t.Logf("created 50,000 Observations in %s", time.Since(start).Round(time.Second))

	c, m := newCleaner(t, Config{})
	stop := make(chan struct{})
	var steady sync.WaitGroup
	var added atomic.Int64
	steady.Go(func() { // a steady load of new Observations during the run
		oc, _ := obsclient.New(cluster.Config)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if err := oc.Create(context.Background(), observation(nss[i%len(nss)], fmt.Sprintf("new-%d", i), future)); err == nil {
				added.Add(1)
			}
		}
	})
	res, err := c.RunOnce(context.Background(), ha.Unfenced)
	close(stop)
	steady.Wait()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cleanup: listed %d, expired %d, deleted %d in %s (%.0f deletes/s); %d new Observations meanwhile",
		res.Listed, res.Expired, res.Deleted, res.Duration.Round(100*time.Millisecond),
		float64(res.Deleted)/res.Duration.Seconds(), added.Load())
	if res.Expired != 45000 || res.Deleted != 45000 || !res.Complete || res.Errors != 0 {
		t.Errorf("result %+v", res)
	}
	if res.Duration > 2*time.Minute {
		t.Logf("slower than the 2-minute target on this machine")
	}
	expired, live := count(t)
	if expired != 0 || int64(live) != 5000+added.Load() {
		t.Errorf("after cleanup: %d expired, %d live (want 0 and %d)", expired, live, 5000+added.Load())
	}
	if testutil.ToFloat64(m.CleanupDeleted.WithLabelValues("expired")) != 45000 || testutil.ToFloat64(m.CleanupBacklog) != 0 {
		t.Error("metrics do not say 45,000 deleted and no backlog")
	}
	// Clear the live ones for the other tests.
	cl, _ := newCleaner(t, Config{Now: func() time.Time { return time.Now().Add(48 * time.Hour) }})
	if _, err := cl.RunOnce(context.Background(), ha.Unfenced); err != nil {
		t.Fatal(err)
	}
}

// TestStaleDecisionDeletesNothing: an Observation recreated under the same name between the decision
// and the delete survives, because the delete carries the UID and resourceVersion decided on.
func TestStaleDecisionDeletesNothing(t *testing.T) {
	nss := namespaces(t, "stale", 1)
	oc, _ := obsclient.New(cluster.Config)
	if err := oc.Create(context.Background(), observation(nss[0], "x", time.Now().Add(-time.Minute).Unix())); err != nil {
		t.Fatal(err)
	}
	c, _ := newCleaner(t, Config{})
	var items []item
	listed := 0
	if err := c.list(context.Background(), func(it item) { items = append(items, it) }, &listed); err != nil {
		t.Fatal(err)
	}
	mc := c.cfg.Client.Resource(v1alpha1.ObservationResource).Namespace(nss[0])
	if err := mc.Delete(context.Background(), "x", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := oc.Create(context.Background(), observation(nss[0], "x", time.Now().Add(time.Hour).Unix())); err != nil {
		t.Fatal(err)
	}
	for _, it := range items {
		if it.name != "x" {
			continue
		}
		if err := c.delete(context.Background(), ha.Unfenced, it); err == nil {
			t.Fatal("the stale decision deleted the recreated Observation")
		}
	}
	if _, err := mc.Get(context.Background(), "x", metav1.GetOptions{}); err != nil {
		t.Errorf("the recreated Observation is gone: %v", err)
	}
}

func TestDryRunGlobalTTLAndInterruption(t *testing.T) {
	nss := namespaces(t, "dry", 2)
	createMany(t, nss, "old", 300, 0) // no own TTL: the global TTL applies from creation
	later := func() time.Time { return time.Now().Add(8 * 24 * time.Hour) }

	dry, m := newCleaner(t, Config{DryRun: true, Now: later})
	res, err := dry.RunOnce(context.Background(), ha.Unfenced)
	if err != nil || res.Expired < 300 || res.Deleted != 0 || testutil.ToFloat64(m.CleanupBacklog) < 300 {
		t.Fatalf("dry run: %+v %v", res, err)
	}
	if _, live := count(t); live < 300 {
		t.Fatalf("the dry run deleted: %d left", live)
	}
	// With today's clock and a 7-day TTL nothing is expired.
	now, _ := newCleaner(t, Config{})
	if res, _ := now.RunOnce(context.Background(), ha.Unfenced); res.Deleted != 0 {
		t.Fatalf("deleted %d young Observations", res.Deleted)
	}
	// Leadership lost mid-run: the run stops at once, and the next one finishes.
	slow, _ := newCleaner(t, Config{Now: later, DeletesPerSec: 50})
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	res, _ = slow.RunOnce(ctx, ha.Unfenced)
	cancel()
	if res.Complete || res.Deleted >= 300 || res.Duration > 3*time.Second {
		t.Errorf("interrupted run: %+v", res)
	}
	next, _ := newCleaner(t, Config{Now: later})
	if res, err := next.RunOnce(context.Background(), ha.Unfenced); err != nil || !res.Complete {
		t.Fatalf("next run: %+v %v", res, err)
	}
	if expired, _ := count(t); expired != 0 {
		t.Errorf("%d expired left", expired)
	}
	if _, err := New(Config{Schedule: "every tuesday"}); err == nil {
		t.Error("a bad schedule was accepted")
	}
	if _, err := New(Config{Schedule: "0 3 * * *"}); err != nil {
		t.Errorf("a good schedule was refused: %v", err)
	}
}

// TestMetricsFollowTheRun: the deleted count rises while a run deletes, not only when it ends, and
// a replica whose leadership ends reports no backlog.
func TestMetricsFollowTheRun(t *testing.T) {
	nss := namespaces(t, "metrics", 2)
	createMany(t, nss, "m", 200, time.Now().Add(-time.Minute).Unix())
	deleted := func(m *metrics.Metrics) float64 {
		return testutil.ToFloat64(m.CleanupDeleted.WithLabelValues("expired"))
	}

	slow, m := newCleaner(t, Config{DeletesPerSec: 100}) // about two seconds for 200
	done := make(chan Result, 1)
	go func() {
		res, _ := slow.RunOnce(context.Background(), ha.Unfenced)
		done <- res
	}()
	deadline := time.Now().Add(10 * time.Second)
	for deleted(m) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case res := <-done:
		t.Fatalf("the run ended (%+v) before any deletion was counted: %v", res, deleted(m))
	default:
	}
	if n := deleted(m); n == 0 || n >= 200 {
		t.Errorf("%v deletions counted while the run went on, want some and not all", n)
	}
	res := <-done
	if n := deleted(m); n != float64(res.Deleted) || res.Deleted < 200 {
		t.Errorf("%v deletions counted, the run deleted %d", n, res.Deleted)
	}

	createMany(t, nss, "n", 50, time.Now().Add(-time.Minute).Unix())
	dry, dm := newCleaner(t, Config{DryRun: true, Interval: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { dry.Run(ctx, ha.Unfenced); close(stopped) }()
	deadline = time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(dm.CleanupBacklog) < 50 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if b := testutil.ToFloat64(dm.CleanupBacklog); b < 50 {
		t.Fatalf("backlog %v while leading, want at least 50", b)
	}
	cancel() // leadership lost
	<-stopped
	if b := testutil.ToFloat64(dm.CleanupBacklog); b != 0 {
		t.Errorf("backlog %v after leadership ended, want 0", b)
	}
}

// deposeAfter is a Fence that stops holding after n checks.
type deposeAfter struct{ n atomic.Int64 }

func (f *deposeAfter) Held() bool { return f.n.Add(-1) >= 0 }

// TestDeposedLeaderStopsDeleting: a run whose fence stops holding deletes nothing more, says it
// was cut short, and the run loop ends with it.
func TestDeposedLeaderStopsDeleting(t *testing.T) {
	nss := namespaces(t, "deposed", 2)
	createMany(t, nss, "d", 200, time.Now().Add(-time.Minute).Unix())
	c, m := newCleaner(t, Config{DeletesPerSec: 200, Interval: time.Hour})
	fence := &deposeAfter{}
	fence.n.Store(40)
	res, err := c.RunOnce(context.Background(), fence)
	if !errors.Is(err, ha.ErrDeposed) || res.Complete {
		t.Errorf("run after the fence fell: %+v %v, want an incomplete run ended by ha.ErrDeposed", res, err)
	}
	if res.Deleted > 40 {
		t.Errorf("%d deleted with a fence that held for 40 deletes", res.Deleted)
	}
	if expired, _ := count(t); expired < 200-40 {
		t.Errorf("%d expired left, want at least %d", expired, 200-40)
	}
	if n := testutil.ToFloat64(m.CleanupRuns.WithLabelValues("interrupted")); n != 1 {
		t.Errorf("%v interrupted runs counted", n)
	}
	fence.n.Store(0)
	stopped := make(chan struct{})
	go func() { c.Run(context.Background(), fence); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("the run loop went on after the fence fell")
	}
	if b := testutil.ToFloat64(m.CleanupBacklog); b != 0 {
		t.Errorf("backlog %v after the fence fell", b)
	}
}

// TestFenceIsAskedAsTheDeleteGoesOut: a fence that falls after the cleaner's own check, while the
// request is being made (as when the process is paused there), still stops the delete: the
// client's transport asks it again. With a fence that holds, the same Observation is deleted.
func TestFenceIsAskedAsTheDeleteGoesOut(t *testing.T) {
	nss := namespaces(t, "onthewire", 1)
	createMany(t, nss, "w", 1, time.Now().Add(-time.Minute).Unix())
	c, m := newCleaner(t, Config{Interval: time.Hour})
	get := func() error {
		_, err := c.cfg.Client.Resource(v1alpha1.ObservationResource).Namespace(nss[0]).
			Get(context.Background(), "w-0", metav1.GetOptions{})
		return err
	}

	fence := &deposeAfter{}
	fence.n.Store(1) // the cleaner's check passes, the transport's does not
	res, err := c.RunOnce(context.Background(), fence)
	if !errors.Is(err, ha.ErrDeposed) || res.Deleted != 0 {
		t.Errorf("run whose fence fell on the wire: %+v %v, want nothing deleted and ha.ErrDeposed", res, err)
	}
	if n := testutil.ToFloat64(m.CleanupErrors); n != 0 {
		t.Errorf("%v cleanup errors counted for a refused delete", n)
	}
	if err := get(); err != nil {
		t.Fatalf("the Observation after the refused delete: %v", err)
	}

	if _, err := c.RunOnce(context.Background(), ha.Unfenced); err != nil {
		t.Fatal(err)
	}
	if err := get(); !apierrors.IsNotFound(err) {
		t.Errorf("the Observation after a run that leads: %v, want it deleted", err)
	}
}
