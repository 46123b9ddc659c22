package e2e

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
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
// When the newcomer leaves again, the two list the namespaces they gain back and none they kept.
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
	// owners is which of the Warnings' namespaces each member owns in table.
	owners := func(table *shard.Table, members ...string) map[string]map[string]bool {
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
	rs, proxies := startProxied(t, release, redisSrv.Addr, []string{"rk-a", "rk-b"}, "-dedup-window", "2s")
	waitMembers(t, rs, 2)
	twoTable := publishedTable(t, release, "rk-a", "rk-b")
	was := owners(twoTable, "rk-a", "rk-b")
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
	more, moreProxies := startProxied(t, release, redisSrv.Addr, []string{"rk-c"}, "-dedup-window", "2s")
	rs["rk-c"], proxies["rk-c"] = more["rk-c"], moreProxies["rk-c"]
	waitMembers(t, rs, 3)
	perNamespace := map[string]int{}
	for n := range int(l.created.Load()) {
		perNamespace[l.namespaces[n%len(l.namespaces)]]++
	}
	// gained is how many Warnings each replica's namespaces in to hold that from did not; handedOn
	// waits until each replica has handed on that many since before.
	gained := func(from, to map[string]map[string]bool) map[string]float64 {
		out := map[string]float64{}
		for id := range rs {
			for ns, owned := range to[id] {
				if owned && !from[id][ns] {
					out[id] += float64(perNamespace[ns])
				}
			}
		}
		return out
	}
	handedOn := func(want, before map[string]float64, after string) {
		eventually(t, 30*time.Second, func(context.Context) error {
			for id, r := range rs {
				if got := r.metric(processed) - before[id]; got != want[id] {
					return fmt.Errorf("%s handed on %.0f Warnings again after %s, want %.0f (those of namespaces new to it)",
						id, got, after, want[id])
				}
			}
			return nil
		})
	}
	threeTable := publishedTable(t, release, "rk-a", "rk-b", "rk-c")
	now := owners(threeTable, "rk-a", "rk-b", "rk-c")
	want := gained(was, now)
	handedOn(want, before, "the reshard")
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
	// Only what a replica gains is read anew: one that only gave ranges away lists nothing at all
	// — neither the Observations written nor its sources — and its informers read on; the
	// newcomer lists both for its share. (Balancing the chunks' weights may move a range between
	// the two as well, with or without Warnings in it.)
	for id, p := range proxies {
		observations, events := p.shardedLists(joined, "/observations"), p.shardedLists(joined, "/events")
		gains := gainsRanges(twoTable, threeTable, id)
		t.Logf("%s: %d sharded lists of Observations and %d of Events since the join (gaining ranges: %v)",
			id, observations, events, gains)
		if gains != (observations > 0) || gains != (events > 0) {
			t.Errorf("%s listed the Observations written %d times and the Events %d times, gaining ranges: %v",
				id, observations, events, gains)
		}
	}
	exactlyOnce(t, l, "after a third replica joined")

	// The newcomer leaves: the two gain its namespaces back and list those alone, beside the
	// informers that read the rest all along.
	for id, r := range rs {
		before[id] = r.metric(processed)
	}
	left := time.Now()
	rs["rk-c"].Stop()
	delete(rs, "rk-c")
	waitMembers(t, rs, 2)
	leftTable := publishedTable(t, release, "rk-a", "rk-b")
	want = gained(now, owners(leftTable, "rk-a", "rk-b"))
	handedOn(want, before, "rk-c left")
	gainedSome := false
	for id, p := range proxies {
		if id == "rk-c" {
			continue
		}
		selectors := p.shardSelectors(left, "/events")
		t.Logf("%s: %d sharded lists of Events since rk-c left, gaining %.0f Warnings", id, len(selectors), want[id])
		if gains := gainsRanges(threeTable, leftTable, id); gains != (len(selectors) > 0) {
			t.Errorf("%s listed the Events %d times, gaining ranges: %v", id, len(selectors), gains)
		}
		gainedSome = gainedSome || want[id] > 0
		for _, sel := range selectors {
			ranges := selectorRanges(t, sel)
			for _, ns := range l.namespaces {
				if h := shard.Hash(ns); ranges.Contains(h) && now[id][ns] {
					t.Errorf("%s listed %s again, which it owned all along (selector %s)", id, ns, sel)
				}
			}
		}
	}
	if !gainedSome {
		t.Error("rk-c owned none of the Warnings: its leaving proves nothing")
	}
	exactlyOnce(t, l, "after the third replica left")
}

// gainsRanges reports whether member holds ranges in to that it did not in from.
func gainsRanges(from, to *shard.Table, member string) bool {
	return len(to.Ranges(member).Minus(from.Ranges(member))) > 0
}

// selectorRanges reads the ranges of a shard selector a replica sent.
func selectorRanges(t *testing.T, selector string) shard.Ranges {
	t.Helper()
	var out shard.Ranges
	for _, m := range shardRangeTerm.FindAllStringSubmatch(selector, -1) {
		start, err := strconv.ParseUint(m[1], 16, 64)
		if err != nil {
			t.Fatalf("selector %q: %v", selector, err)
		}
		var end uint64 // 2^64 stands as 0
		if m[2] != "10000000000000000" {
			if end, err = strconv.ParseUint(m[2], 16, 64); err != nil {
				t.Fatalf("selector %q: %v", selector, err)
			}
		}
		out = append(out, shard.Range{Start: start, End: end})
	}
	if len(out) == 0 {
		t.Fatalf("selector %q has no ranges", selector)
	}
	return out
}

var shardRangeTerm = regexp.MustCompile(`shardRange\(object\.metadata\.namespace, '0x([0-9a-f]+)', '0x([0-9a-f]+)'\)`)

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
