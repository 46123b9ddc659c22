package chart

import (
	"context"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
)

// TestInstallUpgradeUninstall installs the chart with its default Ingesters, scales it to five
// replicas with helm upgrade, and uninstalls it, checking the objects at each step. There are no
// kubelets here, so nothing waits for pods.
func TestInstallUpgradeUninstall(t *testing.T) {
	const ns, release = "chart-life", "life"
	ctx := context.Background()
	runHelm(t, "install", release, ".", "-n", ns, "--create-namespace", "--set", "sources.create=true",
		"--set", "metrics.prometheusRule.enabled=true")
	t.Cleanup(func() {
		_, _ = command(chartDir, helm, "uninstall", release, "-n", ns, "--kubeconfig", cluster.Kubeconfig)
	})

	deps := cluster.Kube.AppsV1().Deployments(ns)
	dep, err := deps.Get(ctx, "life-zen-watcher", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *dep.Spec.Replicas != 3 || dep.Spec.Template.Spec.ServiceAccountName != "life-zen-watcher" {
		t.Errorf("installed: %d replicas, service account %q", *dep.Spec.Replicas, dep.Spec.Template.Spec.ServiceAccountName)
	}
	if _, err := deps.Get(ctx, "life-zen-watcher-redis", metav1.GetOptions{}); err != nil {
		t.Errorf("bundled Redis: %v", err)
	}
	dyn, err := dynamic.NewForConfig(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	ings, err := dyn.Resource(v1alpha1.IngesterResource).Namespace(ns).List(ctx, metav1.ListOptions{})
	if err != nil || len(ings.Items) != 8 {
		t.Fatalf("Ingesters: %v, %v", ings, err)
	}

	runHelm(t, "upgrade", release, ".", "-n", ns, "--reuse-values", "--set", "replicaCount=5")
	dep, err = deps.Get(ctx, "life-zen-watcher", metav1.GetOptions{})
	if err != nil || *dep.Spec.Replicas != 5 {
		t.Fatalf("after upgrade: %v, %v", dep.Spec.Replicas, err)
	}
	rule := promRule(t, dyn, ns, "life-zen-watcher")
	if !strings.Contains(rule, "zen_watcher_shard_members{namespace=\"chart-life\"}) < 5") {
		t.Errorf("members alert not following replicaCount:\n%s", rule)
	}
	if out := runHelm(t, "status", release, "-n", ns); !strings.Contains(out, "REVISION: 2") {
		t.Errorf("status after upgrade:\n%s", out)
	}

	runHelm(t, "uninstall", release, "-n", ns)
	for _, name := range []string{"life-zen-watcher", "life-zen-watcher-redis"} {
		if _, err := deps.Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("%s after uninstall: %v", name, err)
		}
	}
	if _, err := cluster.Kube.RbacV1().ClusterRoles().Get(ctx, "life-zen-watcher", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("ClusterRole after uninstall: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		ings, err = dyn.Resource(v1alpha1.IngesterResource).Namespace(ns).List(ctx, metav1.ListOptions{})
		if err == nil && len(ings.Items) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Ingesters after uninstall: %d, %v", len(ings.Items), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
