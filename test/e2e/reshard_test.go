package e2e

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kube-zen/zen-watcher/internal/testenv"
	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/shard"
)

// TestReshardKeepsWhatWasHandedOn: two replicas have handed on every Warning of 25 namespaces
// when a third joins. Each replica restarts its informers on its new share and re-lists it, and
// hands on again only the Warnings of namespaces it did not own before — for the two, those the
// table moved to them (none: chunks move only to the newcomer); for the newcomer, all of its share. Every Warning still has
// exactly one Observation, and the newcomer sends no create for a Warning whose Observation exists.
func TestReshardKeepsWhatWasHandedOn(t *testing.T) {
	redisSrv, err := testenv.StartRedis()
	if err != nil {
		t.Fatal(err)
	}
	defer redisSrv.Close()
	ensureNamespace(t, haNamespace)
	l := &load{namespaces: faultNamespaces(t, "atlas", "beacon", "cobalt", "delta", "ember")}
	ingester(t, "warnings-reshard", v1alpha1.IngesterSpec{Source: "k8sevents", Adapter: v1alpha1.AdapterK8sEvents,
		Informer: &v1alpha1.InformerSource{Version: "v1", Resource: "events", FieldSelector: "type=Warning", Namespaces: l.namespaces}})
	const release = "reshard-keep"
	owners := func(members ...string) map[string]map[string]bool {
		table := publishedTable(t, release, members...)
		out := map[string]map[string]bool{}
		for _, id := range members {
			out[id] = map[string]bool{}
			for _, ns := range l.namespaces {
				out[id][ns] = table.Owner(shard.Hash(ns)) == id
			}
		}
		return out
	}
	// A dedup window of 2 s: the Warnings are older than that when the third replica re-lists them,
	// so nothing but the written Observations it read keeps their creates from the API server.
	rs, _ := startProxied(t, release, redisSrv.Addr, []string{"rk-a", "rk-b"}, "-dedup-window", "2s")
	waitMembers(t, rs, 2)
	was := owners("rk-a", "rk-b")
	l.run(t, 20*time.Millisecond)
	time.Sleep(6 * time.Second)
	l.pause()
	exactlyOnce(t, l, "two replicas")
	const processed = `zen_watcher_optimization_source_events_processed_total{source="k8sevents"}`
	before := map[string]float64{}
	for id, r := range rs {
		before[id] = r.metric(processed)
	}

	time.Sleep(2 * time.Second) // past the dedup window
	joined := time.Now()
	more, proxies := startProxied(t, release, redisSrv.Addr, []string{"rk-c"}, "-dedup-window", "2s")
	rs["rk-c"] = more["rk-c"]
	waitMembers(t, rs, 3)
	perNamespace := map[string]int{}
	for n := range int(l.created.Load()) {
		perNamespace[l.namespaces[n%len(l.namespaces)]]++
	}
	now := owners("rk-a", "rk-b", "rk-c")
	want := map[string]float64{}
	for id := range rs {
		for ns, owned := range now[id] {
			if owned && !was[id][ns] {
				want[id] += float64(perNamespace[ns])
			}
		}
	}
	eventually(t, 30*time.Second, func(context.Context) error {
		for id, r := range rs {
			if got := r.metric(processed) - before[id]; got != want[id] {
				return fmt.Errorf("%s handed on %.0f Warnings again after the reshard, want %.0f (those of namespaces new to it)", id, got, want[id])
			}
		}
		return nil
	})
	time.Sleep(3 * time.Second) // a late re-list of what stayed would show now
	for id, r := range rs {
		got := r.metric(processed) - before[id]
		t.Logf("%s: handed on %.0f Warnings again after the reshard (of namespaces new to it: %.0f)", id, got, want[id])
		if got != want[id] {
			t.Errorf("%s handed on %.0f Warnings again, want %.0f", id, got, want[id])
		}
	}
	if want["rk-c"] == 0 {
		t.Error("the newcomer owns none of the Warnings: the reshard proves nothing")
	}
	// What the newcomer re-listed was written already: it sent no create for it.
	creates := proxies["rk-c"].count(joined, "POST", "/observations")
	known := rs["rk-c"].metric(`zen_watcher_observations_known_written_total{source="k8sevents"}`)
	t.Logf("rk-c: %.0f re-listed findings known written, %d creates sent", known, creates)
	if creates != 0 || known != want["rk-c"] {
		t.Errorf("rk-c sent %d creates for %.0f re-listed findings already written (%.0f known), want 0", creates, want["rk-c"], known)
	}
	exactlyOnce(t, l, "after a third replica joined")
}

// publishedTable waits for release's leader to publish a table of members, and returns it.
func publishedTable(t *testing.T, release string, members ...string) *shard.Table {
	t.Helper()
	return publishedTableIn(t, cluster.Kube, haNamespace, release, members...)
}

// publishedTableIn is publishedTable in namespace of the API server kube reaches.
func publishedTableIn(t *testing.T, kube kubernetes.Interface, namespace, release string, members ...string) *shard.Table {
	t.Helper()
	var table *shard.Table
	eventually(t, 30*time.Second, func(ctx context.Context) error {
		cm, err := kube.CoreV1().ConfigMaps(namespace).Get(ctx, shard.TableConfigMap(release), metav1.GetOptions{})
		if err != nil {
			return err
		}
		if table, err = shard.DecodeTable([]byte(cm.Data[shard.TableKey])); err != nil {
			return err
		}
		if got := table.Members(); !slices.Equal(got, members) {
			return fmt.Errorf("the published table (generation %d) is of %v, want %v", table.Generation, got, members)
		}
		return nil
	})
	return table
}

// waitMembers waits until every replica counts n members.
func waitMembers(t *testing.T, rs map[string]*replica, n int) {
	t.Helper()
	eventually(t, 30*time.Second, func(context.Context) error {
		for id, r := range rs {
			if got := r.metric("zen_watcher_shard_members"); got != float64(n) {
				return fmt.Errorf("%s counts %.0f members, want %d", id, got, n)
			}
		}
		return nil
	})
}
