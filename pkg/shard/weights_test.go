package shard

import (
	"context"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
)

func pod(ns, name string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
}

// TestSharderWeighsWhatItsWatchesDeliver: a namespace weighs one, plus the objects the replica's
// watches hold in it, plus its changes, forgotten with a half-life of a minute; namespaces of
// other members are not reported, and a new share starts from what its informers list.
func TestSharderWeighsWhatItsWatchesDeliver(t *testing.T) {
	s := newTestSharder("zw-a")
	all := append([]string{"shop", "payments"}, names("team-%d", 40)...)
	s.SetNamespaces(all)
	s.SetMembers([]string{"zw-a", "zw-b"})
	var mine, other []string
	for _, ns := range all {
		if s.Owns(ns) {
			mine = append(mine, ns)
		} else {
			other = append(other, ns)
		}
	}
	if len(mine) < 2 || len(other) == 0 {
		t.Fatalf("owned %d of %d namespaces", len(mine), len(all))
	}
	heavy, light, foreign := mine[0], mine[1], other[0]
	fw := watch.NewFakeWithChanSize(16, false)
	lw := &cache.ListWatch{
		ListWithContextFunc: func(context.Context, metav1.ListOptions) (runtime.Object, error) {
			return &corev1.PodList{Items: []corev1.Pod{*pod(heavy, "p1"), *pod(heavy, "p2"), *pod(heavy, "p3"),
				*pod(light, "p1"), *pod(foreign, "p1")}}, nil
		},
		WatchFuncWithContext: func(context.Context, metav1.ListOptions) (watch.Interface, error) { return fw, nil },
	}
	s.Apply(s.Share())
	wrapped := s.Wrap(lw)
	ctx := context.Background()
	if _, err := cache.ToListerWithContext(wrapped).ListWithContext(ctx, metav1.ListOptions{}); err != nil {
		t.Fatal(err)
	}
	w, err := cache.ToWatcherWithContext(wrapped).WatchWithContext(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fw.Add(pod(heavy, "p4"))
	fw.Modify(pod(light, "p1"))
	fw.Modify(pod(light, "p1"))
	fw.Delete(pod(heavy, "p1"))
	fw.Add(pod(foreign, "p2"))
	for range 4 { // the foreign namespace's event is not delivered
		<-w.ResultChan()
	}
	now := time.Now()
	got := s.weigher.weigh(now, s.Owns)
	want := map[string]float64{heavy: 1 + 3 + 2, light: 1 + 1 + 2}
	if len(got) != len(want) || got[heavy] != want[heavy] || got[light] != want[light] {
		t.Fatalf("weights %v, want %v", got, want)
	}
	got = s.weigher.weigh(now.Add(time.Minute), s.Owns)
	if got[heavy] != 1+3+1 || got[light] != 1+1+1 {
		t.Errorf("a minute later the changes should count half: %v", got)
	}

	s.SetMembers([]string{"zw-a", "zw-b", "zw-c"}) // a new share: its informers start again
	if got := s.weigher.weigh(now.Add(2*time.Minute), s.Owns); got[heavy] > 1.5 {
		t.Errorf("what the stopped informers held still weighs: %v", got)
	}
}

// TestLeaderCutsByWeight: with the replicas' measured weights, the leader's table evens out the
// objects, not the namespaces; a shift of load alone is re-cut only after the load interval, new
// namespaces after the least interval.
func TestLeaderCutsByWeight(t *testing.T) {
	cfg := LeadConfig{Quiet: time.Nanosecond, MinInterval: time.Minute, LoadInterval: time.Hour}
	cfg.setDefaults()
	all := nameSets()["realistic mix of 300"]
	members := []string{"zw-a", "zw-b", "zw-c"}
	s := newTestSharder("zw-a")
	s.SetMembers(members)
	s.SetNamespaces(all)
	byCount, _ := s.next(cfg, time.Time{}, nil)
	byCount.Generation = 1
	s.SetPublished(byCount)
	// The busy namespaces are where one replica happens to own them: skewed weights, heavier
	// in zw-a's namespaces.
	r := rand.New(rand.NewPCG(3, 4))
	measured := map[string]float64{}
	for _, n := range all {
		measured[n] = math.Round(20 * math.Exp(r.NormFloat64()))
		if byCount.Owner(Hash(n)) == "zw-a" {
			measured[n] *= 3
		}
	}
	weighed := Weighed(all, measured)
	was := byCount.Imbalance(weighed, members)
	lastCut := time.Now()
	if n, why := s.next(cfg, lastCut, measured); n != nil {
		t.Fatalf("re-cut (%s) for load within the load interval", why)
	}
	cut, why := s.next(cfg, lastCut.Add(-time.Hour), measured)
	if why != "re-cut" {
		t.Fatalf("load max/avg %.2f under the count-weighted table, and no re-cut (%q)", was, why)
	}
	got := checkTable(t, "weighed", cut, weighed, members)
	t.Logf("objects max/avg %.2f under the count-weighted table; max/min %.2f after the weighed re-cut", was, got)
	if was <= 1.15 {
		t.Errorf("the count-weighted table was already even (%.2f): the test shows nothing", was)
	}
	cut.Generation = 2
	s.SetPublished(cut)

	// The load shifts to zw-b's namespaces: re-cut after the load interval, not sooner for a
	// namespace created beside it; sooner for sixty named alike, which crowd a member.
	shifted := map[string]float64{}
	for n, w := range measured {
		shifted[n] = w
		if cut.Owner(Hash(n)) == "zw-b" {
			shifted[n] *= 4
		}
	}
	cfg.MinInterval = time.Nanosecond
	lastCut = time.Now()
	if n, why := s.next(cfg, lastCut, shifted); n != nil {
		t.Errorf("re-cut (%s) for load alone within the load interval", why)
	}
	time.Sleep(time.Millisecond)
	s.SetNamespaces(append(slices.Clone(all), "checkout-v2"))
	if n, why := s.next(cfg, lastCut, shifted); n != nil {
		t.Errorf("re-cut (%s) for shifted load and one namespace created, within the load interval", why)
	}
	alike := crowding(t, cut, 60)
	s.SetNamespaces(append(slices.Clone(all), alike...))
	if n, why := s.next(cfg, lastCut, measured); why != "re-cut" {
		t.Errorf("sixty namespaces named alike, all in %s's chunks, not re-cut after the least interval: %q %v",
			cut.Owner(Hash(alike[0])), why, n)
	}
	if n, why := s.next(cfg, lastCut.Add(-time.Hour), shifted); why != "re-cut" {
		t.Errorf("shifted load not re-cut after the load interval: %q %v", why, n)
	}
}

// crowding returns n names alike (a numbered series) that all fall in one member's chunks of t,
// as such series often do (see docs/ARCHITECTURE.md).
func crowding(t *testing.T, table *Table, n int) []string {
	t.Helper()
	for _, prefix := range []string{"checkout-v", "team-", "tenant-", "ci-run-", "pr-", "load-", "app-", "feature-"} {
		series := names(prefix+"%d", n)
		owner := table.Owner(Hash(series[0]))
		if !slices.ContainsFunc(series, func(s string) bool { return table.Owner(Hash(s)) != owner }) {
			return series
		}
	}
	t.Fatal("no numbered series of the ones tried falls in one member's chunks")
	return nil
}

// TestCrowded: what appeared since the cut moves it sooner only when it crowds a member.
func TestCrowded(t *testing.T) {
	members := []string{"zw-a", "zw-b", "zw-c"}
	base := nameSets()["realistic mix of 300"]
	table := NewTable(CountWeighted(base), members, DefaultChunks, nil)
	for _, tc := range []struct {
		name   string
		cutFor []string
		now    []string
		want   bool
	}{
		{"nothing new", base, base, false},
		{"one namespace created", base, append(slices.Clone(base), "feature-login-v2"), false},
		{"one deleted", base, base[1:], false},
		{"sixty named alike", base, append(slices.Clone(base), names("team-%d", 60)...), true},
		{"nothing known", nil, append(slices.Clone(base), names("team-%d", 60)...), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			known, expected := expect(CountWeighted(tc.now), hashSet(tc.cutFor))
			if got := crowded(table, known, expected, members); got != tc.want {
				t.Errorf("crowded = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestWeighedFallsBackToOne: a namespace nothing was measured in weighs one.
func TestWeighedFallsBackToOne(t *testing.T) {
	got := Weighed([]string{"a", "b", "c"}, map[string]float64{"a": 7, "c": 0})
	for i, want := range []float64{7, 1, 1} {
		if got[i].Weight != want {
			t.Errorf("%d: weight %v, want %v", i, got[i].Weight, want)
		}
	}
}

// TestWeighingAWatchList: a watch that begins with the initial events (the informers' watch-list)
// delivers everything held, as a list does: starting it again does not count the objects twice.
func TestWeighingAWatchList(t *testing.T) {
	s := newTestSharder("zw-a")
	s.UseTenure(&stubTenure{}) // a member alone owns everything; only its tenure makes it wrap
	s.SetNamespaces([]string{"shop"})
	s.SetMembers([]string{"zw-a"})
	s.Apply(s.Share())
	var fw *watch.FakeWatcher
	wrapped := s.Wrap(&cache.ListWatch{
		WatchFuncWithContext: func(context.Context, metav1.ListOptions) (watch.Interface, error) {
			fw = watch.NewFakeWithChanSize(4, false)
			return fw, nil
		},
	})
	initial := true
	for range 2 {
		w, err := cache.ToWatcherWithContext(wrapped).WatchWithContext(context.Background(),
			metav1.ListOptions{SendInitialEvents: &initial})
		if err != nil {
			t.Fatal(err)
		}
		fw.Add(pod("shop", "p1"))
		fw.Add(pod("shop", "p2"))
		<-w.ResultChan()
		<-w.ResultChan()
		w.Stop()
	}
	// Held: 2 objects; changes: the 4 initial events delivered.
	if got := s.weigher.weigh(time.Now(), s.Owns)["shop"]; got != 1+2+4 {
		t.Errorf("shop weighs %v after a watch-list started twice, want %v", got, 1+2+4)
	}
}

// TestNewLeaderCountsFromTheLastPublication: a replica that has just become leader does not re-cut
// for load the moment it leads; it counts the load interval from the published table's time.
func TestNewLeaderCountsFromTheLastPublication(t *testing.T) {
	cfg := LeadConfig{Quiet: time.Nanosecond, MinInterval: time.Nanosecond, LoadInterval: time.Hour}
	cfg.setDefaults()
	all := nameSets()["realistic mix of 300"]
	members := []string{"zw-a", "zw-b", "zw-c"}
	for _, tc := range []struct {
		name      string
		published time.Time
		recut     bool
	}{
		{"published a minute ago", time.Now().Add(-time.Minute), false},
		{"published two hours ago", time.Now().Add(-2 * time.Hour), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestSharder("zw-b")
			s.SetMembers(members)
			s.SetNamespaces(all)
			table := NewTable(CountWeighted(all), members, DefaultChunks, nil)
			table.Generation, table.PublishedAt = 4, tc.published
			s.SetPublished(table)
			measured := map[string]float64{}
			for _, n := range all {
				if table.Owner(Hash(n)) == "zw-a" {
					measured[n] = 50
				}
			}
			_, why := s.next(cfg, time.Time{}, measured)
			if got := why == "re-cut"; got != tc.recut {
				t.Errorf("re-cut %v (%q), want %v", got, why, tc.recut)
			}
		})
	}
}

// TestWeighingBesideARestart: the replica reports its weights while a share is applied that
// restarts the informers, many times over, from two goroutines. Weighing asks the Sharder which
// namespaces it owns, and Apply forgets the weigher's tallies under the Sharder's lock: neither may
// wait for the other's lock while holding its own.
func TestWeighingBesideARestart(t *testing.T) {
	tenure := &stubTenure{}
	s := newTestSharder("zw-a")
	s.UseTenure(tenure)
	s.SetNamespaces(names("team-%d", 40))
	s.SetMembers([]string{"zw-a"})
	lw := &cache.ListWatch{ListWithContextFunc: func(context.Context, metav1.ListOptions) (runtime.Object, error) {
		return &corev1.PodList{Items: []corev1.Pod{*pod("team-1", "p1"), *pod("team-2", "p1")}}, nil
	}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		stop := make(chan struct{})
		weighed := make(chan struct{})
		go func() {
			defer close(weighed)
			for {
				select {
				case <-stop:
					return
				default:
					s.Weights()
				}
			}
		}()
		for range 2000 {
			tenure.n.Add(1) // the tenure ended: the informers restart and the tallies are forgotten
			s.Apply(s.Share())
			if _, err := cache.ToListerWithContext(s.Wrap(lw)).ListWithContext(context.Background(), metav1.ListOptions{}); err != nil {
				t.Error(err)
				break
			}
		}
		close(stop)
		<-weighed
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("weighing and applying a share still wait for each other after 30 s: they deadlocked")
	}
}
