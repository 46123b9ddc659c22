package e2e

import (
	"context"
	"fmt"
	"net/http"
	"syscall"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kube-zen/zen-watcher/internal/testenv"
	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/obsclient"
	"github.com/kube-zen/zen-watcher/pkg/shard"
)

// TestAPIServerRestart runs three replicas on a control plane of the test's own, under a steady
// load of warnings, and restarts kube-apiserver under them (etcd and certificates stay, as in a
// control-plane upgrade). Afterwards every warning has exactly one Observation, there is one
// leader, every namespace is owned by exactly one live replica, and an idle period writes nothing.
func TestAPIServerRestart(t *testing.T) {
	cp, err := testenv.StartProcessCluster()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.Stop() })
	redisSrv, err := testenv.StartRedis()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = redisSrv.Close() })
	ctx := context.Background()
	l := &load{kube: cp.Kube, cfg: cp.Config}
	for _, ns := range []string{"zen-restart", "payments", "checkout", "frontend", "search", "catalog",
		"identity", "billing", "shipping", "inventory", "analytics", "notifications", "reporting",
		"recommendations", "media", "gateway", "orders", "reviews", "ledger", "support"} {
		if _, err := cp.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
			metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if ns != "zen-restart" {
			l.namespaces = append(l.namespaces, ns)
		}
	}
	var replicas []*replica
	for i := range 3 {
		id := fmt.Sprintf("rs-%d", i)
		replicas = append(replicas, startReplica(t, id, "-kubeconfig", cp.Kubeconfig, "-namespace", "zen-restart",
			"-member-id", id, "-redis-addr", redisSrv.Addr, "-member-lease-duration", "4s", "-member-renew-interval", "1s",
			"-leader-lease-duration", "4s", "-leader-renew-deadline", "3s", "-leader-retry-period", "500ms"))
	}
	for _, r := range replicas {
		r.WaitReady(t, 60*time.Second)
	}
	l.run(t, 40*time.Millisecond)
	time.Sleep(3 * time.Second)

	if err := cp.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	down := time.Now()
	time.Sleep(5 * time.Second) // the load's creates fail meanwhile and are retried, never counted
	if err := cp.StartAPIServer(); err != nil {
		t.Fatal(err)
	}
	t.Logf("kube-apiserver down for %s", time.Since(down).Round(100*time.Millisecond))
	time.Sleep(5 * time.Second)
	l.pause()
	exactlyOnce(t, l, "after the API server restart")

	leaderLease, err := cp.Kube.CoordinationV1().Leases("zen-restart").Get(ctx, "zen-watcher-leader", metav1.GetOptions{})
	if err != nil || leaderLease.Spec.HolderIdentity == nil {
		t.Fatalf("no leader after the restart: %v", err)
	}
	leaders := 0
	for _, r := range replicas {
		if r.metric("zen_watcher_leader") == 1 {
			leaders++
		}
	}
	if leaders != 1 {
		t.Errorf("%d replicas say they lead", leaders)
	}
	// Each namespace has exactly one owner among the live members, and the replicas' own counts
	// of the namespaces they own add up to all of them.
	leases, err := cp.Kube.CoordinationV1().Leases("zen-restart").List(ctx, metav1.ListOptions{LabelSelector: shard.LabelMember + "=zen-watcher"})
	if err != nil {
		t.Fatal(err)
	}
	var ptrs []*coordinationv1.Lease
	for i := range leases.Items {
		ptrs = append(ptrs, &leases.Items[i])
	}
	members := shard.LiveMembers(ptrs, time.Now())
	if len(members) != 3 {
		t.Fatalf("members after the restart: %v", members)
	}
	nss, err := cp.Kube.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	owned := 0.0
	for _, r := range replicas {
		owned += r.metric("zen_watcher_shard_namespaces_owned")
	}
	if int(owned) != len(nss.Items) {
		t.Errorf("replicas own %v namespaces between them, the cluster has %d", owned, len(nss.Items))
	}

	// Idle: nothing new for a while.
	c, err := obsclient.New(cp.Config)
	if err != nil {
		t.Fatal(err)
	}
	before, err := c.ListObservations(ctx, "", v1alpha1.LabelSource+"=k8sevents")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Second)
	after, err := c.ListObservations(ctx, "", v1alpha1.LabelSource+"=k8sevents")
	if err != nil {
		t.Fatal(err)
	}
	if len(after.Items) != len(before.Items) {
		t.Errorf("idle period wrote %d Observations", len(after.Items)-len(before.Items))
	}

	// How the warnings were shared with these names, as each replica's informer saw them: the
	// ring is deterministic for given members and namespaces, and with names like these (not a
	// numbered series, which FNV-1a clusters) each replica holds 20-45%.
	total, shares := 0.0, map[string]float64{}
	for _, r := range replicas {
		shares[r.Name] = r.metric(`zen_watcher_optimization_source_events_processed_total{source="k8sevents"}`)
		total += shares[r.Name]
	}
	for _, r := range replicas {
		share := shares[r.Name] / total
		t.Logf("%s processed %.0f%% of the warnings", r.Name, 100*share)
		if share < 0.20 || share > 0.45 {
			t.Errorf("%s processed %.0f%% of the warnings, want 20-45%%", r.Name, 100*share)
		}
	}
}

// TestShutdownDelayKeepsServing: told to stop, a replica with -shutdown-delay fails its readiness
// at once, goes on accepting and writing webhooks for the delay, then stops.
func TestShutdownDelayKeepsServing(t *testing.T) {
	ensureNamespace(t, "zen-system")
	ensureNamespace(t, "draining")
	ingester(t, "falco-draining", v1alpha1.IngesterSpec{Source: "falcodr", Adapter: v1alpha1.AdapterFalco,
		Webhook: &v1alpha1.WebhookSource{Path: "/falcodr", Auth: v1alpha1.WebhookAuth{Type: v1alpha1.WebhookAuthNone}}})
	const delay = 3 * time.Second
	r := startReplica(t, "draining", "-namespace", "zen-system", "-release", "draining", "-member-id", "draining",
		"-shutdown-delay", delay.String())
	r.WaitReady(t, 60*time.Second)
	waitRoute(t, r, "/falcodr")
	alert := func(n int) []byte {
		return fmt.Appendf(nil, `{"output":"draining %d","priority":"Warning","rule":"Draining","time":"2026-12-01T10:00:00Z",`+
			`"hostname":"node-1","output_fields":{"k8s.ns.name":"draining","k8s.pod.name":"cart-%d"}}`, n, n)
	}
	if err := r.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	signalled := time.Now()
	eventually(t, 2*time.Second, func(context.Context) error {
		resp, err := http.Get("http://" + r.MetricsAddr + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return fmt.Errorf("still ready")
		}
		return nil
	})
	if code := post(t, r, "/falcodr", "", alert(1)); code != http.StatusAccepted {
		t.Fatalf("an alert during the delay: HTTP %d, want 202", code)
	}
	if time.Since(signalled) >= delay {
		t.Fatal("the checks took longer than the delay: the test proves nothing")
	}
	select {
	case <-r.Exited():
		if took := time.Since(signalled); took < delay {
			t.Errorf("exited %v after SIGTERM, before the delay of %v", took, delay)
		}
	case <-time.After(delay + 15*time.Second):
		t.Fatal("not stopped long after the delay")
	}
	waitObservations(t, "draining", "falcodr", 1)
}
