package e2e

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kube-zen/zen-watcher/internal/testenv"
	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/metrics"
	"github.com/kube-zen/zen-watcher/pkg/shard"
)

// TestReshardKeepsWhatWasHandedOn: two replicas have handed on every Warning of 25 namespaces
// when a third joins. Each replica restarts its informers on its new share and re-lists it, and
// hands on again only the Warnings of namespaces it did not own before — for the two, those the
// ring moved to them (usually none); for the newcomer, all of its share. Every Warning still has
// exactly one Observation.
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
	rs, _ := startProxied(t, release, redisSrv.Addr, []string{"rk-a", "rk-b"})
	waitMembers(t, rs, 2)
	l.run(t, 20*time.Millisecond)
	time.Sleep(6 * time.Second)
	l.pause()
	exactlyOnce(t, l, "two replicas")
	const processed = `zen_watcher_optimization_source_events_processed_total{source="k8sevents"}`
	before := map[string]float64{}
	for id, r := range rs {
		before[id] = r.metric(processed)
	}

	more, _ := startProxied(t, release, redisSrv.Addr, []string{"rk-c"})
	rs["rk-c"] = more["rk-c"]
	waitMembers(t, rs, 3)
	perNamespace := map[string]int{}
	for n := range int(l.created.Load()) {
		perNamespace[l.namespaces[n%len(l.namespaces)]]++
	}
	owners := func(members ...string) map[string]map[string]bool {
		out := map[string]map[string]bool{}
		for _, id := range members {
			s := shard.NewSharder(id, shard.DefaultPartitions, false, metrics.New(prometheus.NewRegistry()),
				slog.New(slog.NewTextHandler(io.Discard, nil)))
			s.Update(members)
			out[id] = map[string]bool{}
			for _, ns := range l.namespaces {
				out[id][ns] = s.Owns(ns)
			}
		}
		return out
	}
	was, now := owners("rk-a", "rk-b"), owners("rk-a", "rk-b", "rk-c")
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
	exactlyOnce(t, l, "after a third replica joined")
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
