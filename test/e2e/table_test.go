package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kube-zen/zen-watcher/internal/testenv"
	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/obsclient"
	"github.com/kube-zen/zen-watcher/pkg/redisstate"
	"github.com/kube-zen/zen-watcher/pkg/shard"
)

// TestTableSpreadsAlikeNames: three replicas start on an almost empty cluster of the test's own;
// then sixty namespaces named team-1…team-60 appear — names whose FNV-1a hashes share their high
// bits, so they land in one or two chunks of the table cut before them. The leader cuts the table
// again within 60 s, and Warning Events created in them afterwards are written about a third by
// each replica, with the API server sending each replica only what it owns.
func TestTableSpreadsAlikeNames(t *testing.T) {
	cp, err := testenv.StartCluster(testenv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.Stop() })
	ctx := context.Background()
	const home = "zen-table"
	if _, err := cp.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: home}},
		metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ids := []string{"tb-a", "tb-b", "tb-c"}
	rs := startMembersOn(t, cp, home, ids)
	first := publishedTableIn(t, cp.Kube, home, "zen-watcher", ids...)

	var teams []string
	for i := range 60 {
		ns := fmt.Sprintf("team-%d", i+1)
		teams = append(teams, ns)
		if _, err := cp.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
			metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	created := time.Now()
	weighed := shard.CountWeighted(teams)
	t.Logf("the first table (generation %d) gives the teams max/avg %.2f", first.Generation, first.Imbalance(weighed, ids))
	var table *shard.Table
	eventually(t, 60*time.Second, func(context.Context) error {
		table = publishedTableIn(t, cp.Kube, home, "zen-watcher", ids...)
		if table.Generation == first.Generation {
			return fmt.Errorf("no new table since generation %d", first.Generation)
		}
		for id, r := range rs {
			if g := r.metric("zen_watcher_shard_table_generation"); g != float64(table.Generation) {
				return fmt.Errorf("%s applies generation %.0f, the leader published %d", id, g, table.Generation)
			}
		}
		return nil
	})
	t.Logf("re-cut %s after the namespaces appeared: generation %d, teams max/avg %.2f",
		time.Since(created).Round(100*time.Millisecond), table.Generation, table.Imbalance(weighed, ids))

	before := map[string]float64{}
	dropped := map[string]float64{}
	for id, r := range rs {
		before[id] = r.metric(`zen_watcher_observations_created_total{source="k8sevents"}`)
		dropped[id] = r.metric(`zen_watcher_shard_objects_total{outcome="dropped"}`)
	}
	const perNamespace = 5
	for _, ns := range teams {
		for i := range perNamespace {
			ev := warningEvent(ns, fmt.Sprintf("spread-%d", i), "Pod", fmt.Sprintf("pod-%d", i), "BackOff",
				fmt.Sprintf("Back-off restarting failed container %d", i), corev1.EventTypeWarning)
			if _, err := cp.Kube.CoreV1().Events(ns).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	want := len(teams) * perNamespace
	obs, err := obsclient.New(cp.Config)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, func(ctx context.Context) error {
		list, err := obs.ListObservations(ctx, "", v1alpha1.LabelSource+"=k8sevents")
		if err != nil {
			return err
		}
		n := 0
		for _, o := range list.Items {
			if strings.HasPrefix(o.Namespace, "team-") {
				n++
			}
		}
		if n != want {
			return fmt.Errorf("%d Observations in the teams' namespaces, want %d", n, want)
		}
		return nil
	})
	for id, r := range rs {
		wrote := r.metric(`zen_watcher_observations_created_total{source="k8sevents"}`) - before[id]
		share := wrote / float64(want)
		kept := r.metric(`zen_watcher_shard_objects_total{outcome="kept"}`)
		drop := r.metric(`zen_watcher_shard_objects_total{outcome="dropped"}`) - dropped[id]
		t.Logf("%s wrote %.0f of %d (%.0f%%); its watches delivered %.0f objects it kept, %.0f it dropped",
			id, wrote, want, 100*share, kept, drop)
		if share < 0.28 || share > 0.39 {
			t.Errorf("%s wrote %.0f%% of the Observations, want 28-39%%", id, 100*share)
		}
		if kept <= 0 || drop > 0.05*kept {
			t.Errorf("%s received %.0f objects beyond the %.0f it owns, want at most 5%%", id, drop, kept)
		}
	}
}

// TestTableWeighsNamespaces: replicas sharing a real Redis publish what their namespaces weigh —
// the objects their watches hold and the changes to them — and the leader cuts the table again by
// those weights: when the namespaces one replica owns fill with Warning Events, their chunks are
// spread, not left with it as a count of namespaces would.
func TestTableWeighsNamespaces(t *testing.T) {
	cp, err := testenv.StartCluster(testenv.Options{})
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
	const home = "zen-weights"
	names := []string{home, "shop", "payments", "checkout", "search", "monitoring", "logging", "argocd"}
	for c := 'a'; c <= 'p'; c++ {
		names = append(names, "team-"+string(c))
	}
	for _, ns := range names {
		if _, err := cp.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
			metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	ids := []string{"wt-a", "wt-b", "wt-c"}
	startMembersOn(t, cp, home, ids, "-redis-addr", redisSrv.Addr, "-shard-load-recut-interval", "5s")
	first := publishedTableIn(t, cp.Kube, home, "zen-watcher", ids...)
	// The busiest replica's namespaces fill up; the others get a little.
	heavy := first.Owner(shard.Hash("shop"))
	var busy int
	for _, ns := range names {
		n := 2
		if first.Owner(shard.Hash(ns)) == heavy {
			n, busy = 30, busy+1
		}
		for i := range n {
			ev := warningEvent(ns, fmt.Sprintf("weigh-%d", i), "Pod", fmt.Sprintf("pod-%d", i), "BackOff",
				fmt.Sprintf("Back-off restarting failed container %d", i), corev1.EventTypeWarning)
			if _, err := cp.Kube.CoreV1().Events(ns).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	co := redisstate.NewCoordination(redis.NewClient(&redis.Options{Addr: redisSrv.Addr}), "zen-watcher")
	var table *shard.Table
	var measured map[string]float64
	eventually(t, 90*time.Second, func(ctx context.Context) error {
		if measured, err = co.Weights(ctx); err != nil {
			return err
		}
		if measured["shop"] < 30 {
			return fmt.Errorf("shop, with 30 Warning Events, weighs %v", measured["shop"])
		}
		table = publishedTableIn(t, cp.Kube, home, "zen-watcher", ids...)
		if table.Generation == first.Generation {
			return fmt.Errorf("no new table since generation %d", first.Generation)
		}
		// A re-cut may come while the weights are still being measured (the Events created
		// over a few seconds); the one wanted is cut by what is measured now.
		cut, now := 0.0, 0.0
		for _, w := range table.Weights {
			cut += w
		}
		for _, n := range shard.Weighed(names, measured) {
			now += n.Weight
		}
		if cut < 0.8*now {
			return fmt.Errorf("generation %d was cut at weight %.0f in all, %.0f is measured now", table.Generation, cut, now)
		}
		return nil
	})
	weighed := shard.Weighed(names, measured)
	was, now := first.Imbalance(weighed, ids), table.Imbalance(weighed, ids)
	total := 0.0
	for _, w := range table.Weights {
		total += w
	}
	t.Logf("%s owned %d of %d namespaces, filled; measured max/avg %.2f under the first table, %.2f under generation %d (chunk weights %.0f in all)",
		heavy, busy, len(names), was, now, table.Generation, total)
	if total <= float64(len(names)) {
		t.Errorf("the re-cut table weighs its chunks %.0f in all, the namespaces' count: not by what was measured", total)
	}
	if now > 1.35 || now > was/1.5 {
		t.Errorf("max/avg %.2f after the re-cut, %.2f before: the weights did not even the load out", now, was)
	}
}

// startMembersOn starts replicas ids on the cluster cp, at home, with short leases, and waits until
// each is ready and counts them all as members.
func startMembersOn(t *testing.T, cp *testenv.Cluster, home string, ids []string, extra ...string) map[string]*replica {
	t.Helper()
	rs := map[string]*replica{}
	for _, id := range ids {
		args := append([]string{"-kubeconfig", cp.Kubeconfig, "-namespace", home, "-member-id", id,
			"-member-lease-duration", "4s", "-member-renew-interval", "1s",
			"-leader-lease-duration", "4s", "-leader-renew-deadline", "3s", "-leader-retry-period", "500ms"}, extra...)
		rs[id] = startReplica(t, id, args...)
	}
	for _, r := range rs {
		r.WaitReady(t, 60*time.Second)
	}
	waitMembers(t, rs, len(ids))
	return rs
}
