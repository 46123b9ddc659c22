package shard

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/kube-zen/zen-watcher/internal/testenv"
)

// servers are two real API servers: one with ShardedListAndWatch, one without.
var servers = map[string]*testenv.Cluster{}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	for name, opts := range map[string]testenv.Options{"gate-on": {}, "gate-off": {DisableSharding: true}} {
		c, err := testenv.StartCluster(opts)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer c.Stop()
		servers[name] = c
	}
	return m.Run()
}

func configMapsLW(kube kubernetes.Interface) cache.ListerWatcher {
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return kube.CoreV1().ConfigMaps(metav1.NamespaceAll).List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return kube.CoreV1().ConfigMaps(metav1.NamespaceAll).Watch(ctx, o)
		},
	}
}

// TestShardedListWatch: three members' wrapped informers together see every object exactly once,
// each only those of the namespaces it owns, with and without the API server's help — for names
// that differ at the start and for names that differ only at the end.
func TestShardedListWatch(t *testing.T) {
	for name, c := range servers {
		for names, pattern := range map[string]string{"unlike": "%[2]d-shard-%[1]s", "alike": "%[1]s-shard-%[2]d"} {
			t.Run(name+"/"+names, func(t *testing.T) {
				testShardedListWatch(t, c, func(i int) string { return fmt.Sprintf(pattern, name, i) })
			})
		}
	}
}

func testShardedListWatch(t *testing.T, c *testenv.Cluster, nsName func(int) string) {
	{
		{
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var namespaces []string
			for i := range 12 {
				ns := nsName(i)
				namespaces = append(namespaces, ns)
				if _, err := c.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
				if _, err := c.Kube.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "before"}}, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			members := []string{"zw-0", "zw-1", "zw-2"}
			table := NewTable(CountWeighted(namespaces), members, DefaultChunks, nil)
			stores := map[string]cache.Store{}
			for _, m := range members {
				inf := cache.NewSharedIndexInformer(Wrap(configMapsLW(c.Kube), table.Ranges(m)), &corev1.ConfigMap{}, 0, cache.Indexers{})
				stores[m] = inf.GetStore()
				go inf.RunWithContext(ctx)
				if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
					t.Fatal("not synced")
				}
			}
			// Objects created after the lists arrive through the watches.
			for _, ns := range namespaces {
				if _, err := c.Kube.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "after"}}, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			deadline := time.Now().Add(10 * time.Second)
			for {
				seen := map[string][]string{}
				for m, s := range stores {
					for _, o := range s.List() {
						cm := o.(*corev1.ConfigMap)
						if slices.Contains(namespaces, cm.Namespace) {
							seen[cm.Namespace+"/"+cm.Name] = append(seen[cm.Namespace+"/"+cm.Name], m)
						}
					}
				}
				ok := len(seen) == 2*len(namespaces)
				for key, ms := range seen {
					ns := key[:len(key)-len("/before")]
					if key[len(key)-6:] == "/after" {
						ns = key[:len(key)-len("/after")]
					}
					if owner := table.Owner(Hash(ns)); len(ms) != 1 || ms[0] != owner {
						sort.Strings(ms)
						t.Fatalf("%s held by %v, owner %s", key, ms, owner)
					}
				}
				if ok {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%d of %d objects seen", len(seen), 2*len(namespaces))
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
}

// TestServerFiltersWithTheGate: with the gate on, the API server itself returns only the share.
func TestServerFiltersWithTheGate(t *testing.T) {
	c := servers["gate-on"]
	ctx := context.Background()
	// Names that differ only in their last characters share their hashes' high bits; the table is
	// cut where they are, so each member still owns about a third of them.
	var names []string
	for i := range 30 {
		names = append(names, fmt.Sprintf("server-%02d", i))
	}
	table := NewTable(CountWeighted(names), []string{"zw-0", "zw-1", "zw-2"}, DefaultChunks, nil)
	owner := table.Owner(Hash(names[0]))
	share := table.Ranges(owner)
	want := 0
	for _, ns := range names {
		if _, err := c.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Kube.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cm"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if table.Owner(Hash(ns)) == owner {
			want++
		}
	}
	filtered, err := c.Kube.CoreV1().ConfigMaps(metav1.NamespaceAll).List(ctx, metav1.ListOptions{ShardSelector: share.Selector()})
	if err != nil {
		t.Fatalf("LIST with a selector of %d ranges (%d bytes): %v", len(share), len(share.Selector()), err)
	}
	got := 0
	for _, cm := range filtered.Items {
		if o := table.Owner(Hash(cm.Namespace)); o != owner {
			t.Errorf("the server returned %s/%s of %s", cm.Namespace, cm.Name, o)
		}
		if slices.Contains(names, cm.Namespace) {
			got++
		}
	}
	if got != want || want < 8 || want > 12 {
		t.Errorf("the server returned %d of the %d ConfigMaps in %s's namespaces", got, want, owner)
	}
	t.Logf("selector of %d ranges, %d bytes; %d of 30 namespaces owned", len(share), len(share.Selector()), want)
}

// countingLW counts the objects the API server returns to the lists and watches through it.
type countingLW struct {
	next   cache.ListerWatcher
	listed atomic.Int64
	events atomic.Int64
}

func (c *countingLW) List(o metav1.ListOptions) (runtime.Object, error) {
	return c.ListWithContext(context.Background(), o)
}

func (c *countingLW) ListWithContext(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
	list, err := cache.ToListerWithContext(c.next).ListWithContext(ctx, o)
	if err == nil {
		items, _ := meta.ExtractList(list)
		c.listed.Add(int64(len(items)))
	}
	return list, err
}

func (c *countingLW) Watch(o metav1.ListOptions) (watch.Interface, error) {
	return c.WatchWithContext(context.Background(), o)
}

func (c *countingLW) WatchWithContext(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
	w, err := cache.ToWatcherWithContext(c.next).WatchWithContext(ctx, o)
	if err != nil {
		return nil, err
	}
	return watch.Filter(w, func(e watch.Event) (watch.Event, bool) {
		if e.Type != watch.Bookmark {
			c.events.Add(1)
		}
		return e, true
	}), nil
}

// TestEmptyShareFailsClosed: a replica that owns nothing (no members, or none but others) keeps
// nothing, and with the gate on the API server sends it nothing either — it once listed and
// watched every object with no selector at all.
func TestEmptyShareFailsClosed(t *testing.T) {
	for name, c := range servers {
		{
			t.Run(name, func(t *testing.T) {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				create := func(cm string) {
					for i := range 5 {
						ns := fmt.Sprintf("closed-%s-%d", name, i)
						if cm == "before" {
							if _, err := c.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
								t.Fatal(err)
							}
						}
						if _, err := c.Kube.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: cm}}, metav1.CreateOptions{}); err != nil {
							t.Fatal(err)
						}
					}
				}
				create("before")
				counting := &countingLW{next: configMapsLW(c.Kube)}
				share := NewTable(nil, nil, DefaultChunks, nil).Ranges("zw-0") // no members at all
				inf := cache.NewSharedIndexInformer(Wrap(counting, share), &corev1.ConfigMap{}, 0, cache.Indexers{})
				go inf.RunWithContext(ctx)
				if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
					t.Fatal("not synced")
				}
				create("after")
				// The objects created after the list would arrive through the watch within this.
				time.Sleep(2 * time.Second)
				if n := len(inf.GetStore().List()); n != 0 {
					t.Errorf("an informer that owns nothing holds %d objects", n)
				}
				if name == "gate-on" && counting.listed.Load()+counting.events.Load() != 0 {
					t.Errorf("the API server sent %d listed objects and %d watch events to a replica that owns nothing",
						counting.listed.Load(), counting.events.Load())
				}
				t.Logf("the API server sent %d listed objects and %d watch events", counting.listed.Load(), counting.events.Load())
			})
		}
	}
}

// TestInformerDropsWhatLeftTheShare: an informer started on a share keeps nothing of the namespaces
// that left it when the share changes — their new owner lists them, and a finding handed on by
// both would cost a refused create — and keeps reading the ones that stayed: a share that only
// shrank is applied without a restart.
func TestInformerDropsWhatLeftTheShare(t *testing.T) {
	c := servers["gate-on"]
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	namespaces := names("moving-%d", 24)
	for _, ns := range namespaces {
		if _, err := c.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	s := newTestSharder("zw-a")
	s.SetNamespaces(namespaces)
	s.SetMembers([]string{"zw-a", "zw-b"})
	s.Apply(s.Share())
	inf := cache.NewSharedIndexInformer(s.Wrap(configMapsLW(c.Kube)), &corev1.ConfigMap{}, 0, cache.Indexers{})
	go inf.RunWithContext(ctx)
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		t.Fatal("not synced")
	}
	before := s.Share()
	s.SetMembers([]string{"zw-a", "zw-b", "zw-c"}) // the informer runs on, applied or not
	shrank := len(s.Share().Minus(before)) == 0
	if step, _ := s.Apply(s.Share()); shrank != (step == Narrow) {
		t.Errorf("the share only shrank: %v, but Apply asks the informers to %v", shrank, step)
	}
	var stayed, left []string
	for _, ns := range namespaces {
		switch h := Hash(ns); {
		case before.Contains(h) && s.Owns(ns):
			stayed = append(stayed, ns)
		case before.Contains(h):
			left = append(left, ns)
		}
	}
	if len(stayed) == 0 || len(left) == 0 {
		t.Fatalf("a third member moved %d of the namespaces and kept %d, want some of each", len(left), len(stayed))
	}
	for _, ns := range namespaces {
		if _, err := c.Kube.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "after"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	ours := map[string]bool{}
	for _, ns := range namespaces {
		ours[ns] = true
	}
	// Other tests on this server write ConfigMaps named "after" too; only this test's namespaces count.
	held := func() map[string]bool {
		out := map[string]bool{}
		for _, o := range inf.GetStore().List() {
			if cm := o.(*corev1.ConfigMap); cm.Name == "after" && ours[cm.Namespace] {
				out[cm.Namespace] = true
			}
		}
		return out
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(held()) < len(stayed) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	got := held()
	for _, ns := range stayed {
		if !got[ns] {
			t.Errorf("the informer did not get %s, which stayed in its share", ns)
		}
	}
	for _, ns := range left {
		if got[ns] {
			t.Errorf("the informer kept %s, which left its share before it was restarted", ns)
		}
	}
	if len(got) != len(stayed) {
		t.Errorf("the informer holds %d namespaces' objects, want the %d that stayed", len(got), len(stayed))
	}
}

// TestWatchRenewsWhenThePieceNarrows: a watch of a set of informers ends once its ranges shrink,
// for the informer to watch on through the narrower selector; not before it has run long enough
// to be taken for a normal end, and not at all when it was stopped first.
func TestWatchRenewsWhenThePieceNarrows(t *testing.T) {
	fw := watch.NewFake()
	narrowed := make(chan struct{})
	began := time.Now()
	renewOnNarrow(fw, narrowed)
	close(narrowed)
	if ran := awaitEnd(t, fw, began); ran < shortWatch {
		t.Errorf("the watch ended after %v, shorter than %v: the informer would list again", ran, shortWatch)
	}

	stopped := watch.NewFake()
	w := renewOnNarrow(stopped, make(chan struct{}))
	w.Stop()
	w.Stop() // the informer may stop it again
	if !stopped.IsStopped() {
		t.Error("Stop did not stop the watch underneath")
	}
}

// TestWatchRenewsCountingFromTheInitialEvents: a watch that streams the initial events is timed from
// their end, as the informer times it. Narrowed just after the initial events' bookmark, which came
// more than shortWatch after the watch began, it ends no sooner than shortWatch after the bookmark:
// ended at once, it would read to the informer as a failed watch, to back off from and list again.
func TestWatchRenewsCountingFromTheInitialEvents(t *testing.T) {
	s := newTestSharder("a")
	s.SetNamespaces(names("team-%d", 40))
	s.SetMembers([]string{"a"})
	s.Apply(s.Share())
	fw := watch.NewFakeWithChanSize(1, false)
	lw := &cache.ListWatch{WatchFuncWithContext: func(context.Context, metav1.ListOptions) (watch.Interface, error) { return fw, nil }}
	initial := true
	w, err := cache.ToWatcherWithContext(s.Within(s.Share(), nil, nil)(lw)).WatchWithContext(context.Background(),
		metav1.ListOptions{SendInitialEvents: &initial})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	time.Sleep(shortWatch + 100*time.Millisecond) // the initial events take their time
	fw.Action(watch.Bookmark, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{ResourceVersion: "7",
		Annotations: map[string]string{metav1.InitialEventsAnnotationKey: "true"}}})
	<-w.ResultChan()
	bookmarked := time.Now()
	s.SetMembers([]string{"a", "b"}) // the share shrinks, and the piece with it
	if ran := awaitEnd(t, fw, bookmarked); ran < shortWatch {
		t.Errorf("the watch ended %v after its initial events, shorter than %v: the informer would list again", ran, shortWatch)
	}
}

// awaitEnd waits for a narrowed watch to be ended, at most 10 s, and returns how long after from
// it was.
func awaitEnd(t *testing.T, fw *watch.FakeWatcher, from time.Time) time.Duration {
	t.Helper()
	for !fw.IsStopped() {
		if time.Since(from) > 10*time.Second {
			t.Fatal("the watch was not ended after its ranges shrank")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(from)
}

// stopReporter is a watch whose Stop reports the closed stream as an error event before the
// channel closes, as a stream watch may when its reader sees the body closed under it.
type stopReporter struct {
	result chan watch.Event
	once   sync.Once
}

func (s *stopReporter) ResultChan() <-chan watch.Event { return s.result }

func (s *stopReporter) Stop() {
	s.once.Do(func() {
		go func() {
			s.result <- watch.Event{Type: watch.Error, Object: &metav1.Status{Message: "response body closed"}}
			close(s.result)
		}()
	})
}

// TestRenewedWatchEndsWithoutError: a watch ended because its piece narrowed ends quietly even
// when the stream reports its stop as an error — the informer would take that for a failed watch,
// back off and list — while a watch ended by the server keeps its error.
func TestRenewedWatchEndsWithoutError(t *testing.T) {
	for name, narrow := range map[string]bool{"narrowed": true, "failed": false} {
		t.Run(name, func(t *testing.T) {
			under := &stopReporter{result: make(chan watch.Event)}
			p := newPiece(pointsOf([]uint64{1, 2}))
			lw := &listerWatcher{piece: p, next: &cache.ListWatch{
				WatchFuncWithContext: func(context.Context, metav1.ListOptions) (watch.Interface, error) { return under, nil },
			}}
			w, err := lw.WatchWithContext(context.Background(), metav1.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer w.Stop()
			if narrow {
				p.narrow(pointsOf([]uint64{1}))
			} else {
				under.Stop()
			}
			var errs int
			timeout := time.After(10 * time.Second)
			for done := false; !done; {
				select {
				case e, ok := <-w.ResultChan():
					done = !ok
					if ok && e.Type == watch.Error {
						errs++
					}
				case <-timeout:
					t.Fatal("the watch did not end")
				}
			}
			if want := map[bool]int{true: 0, false: 1}[narrow]; errs != want {
				t.Errorf("the watch ended with %d errors, want %d", errs, want)
			}
		})
	}
}

// TestNarrowingRenewsWithoutAList: an informer whose piece narrows again and again watches on
// through each narrower selector, from where it was: it lists once, when it starts, and keeps
// receiving what is created in the namespaces left to it.
func TestNarrowingRenewsWithoutAList(t *testing.T) {
	c := servers["gate-on"]
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	namespaces := names("renew-%d", 16)
	for _, ns := range namespaces {
		if _, err := c.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	keep := func(n int) Ranges { return points(namespaces[:n]) }
	var lists, watches atomic.Int32
	cms := c.Kube.CoreV1().ConfigMaps(metav1.NamespaceAll)
	p := newPiece(keep(len(namespaces)))
	lw := &listerWatcher{piece: p, next: &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			lists.Add(1)
			return cms.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			if o.SendInitialEvents != nil && *o.SendInitialEvents {
				lists.Add(1) // a watch that lists first, where the server streams lists
			} else {
				watches.Add(1)
			}
			return cms.Watch(ctx, o)
		},
	}}
	inf := cache.NewSharedIndexInformer(lw, &corev1.ConfigMap{}, 0, cache.Indexers{})
	go inf.RunWithContext(ctx)
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		t.Fatal("not synced")
	}
	const rounds = 6
	for round := 1; round <= rounds; round++ {
		kept := len(namespaces) - 2*round
		p.narrow(keep(kept))
		deadline := time.Now().Add(10 * time.Second)
		for lists.Load()+watches.Load() <= int32(round) { // renewed, or listed anew
			if time.Now().After(deadline) {
				t.Fatalf("round %d: the watch was not renewed after the piece narrowed", round)
			}
			time.Sleep(20 * time.Millisecond)
		}
		ns := namespaces[kept-1]
		name := fmt.Sprintf("round-%d", round)
		if _, err := c.Kube.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		for {
			if _, ok, _ := inf.GetStore().GetByKey(ns + "/" + name); ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d: %s/%s, created in the share left, never reached the informer", round, ns, name)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if n := lists.Load(); n != 1 {
		t.Errorf("the informer listed %d times through %d narrowings, want once", n, rounds)
	}
}

// namespacesWithBefore creates n namespaces named prefix-0, prefix-1, ..., with a ConfigMap named
// "before" in each, and returns their names.
func namespacesWithBefore(t *testing.T, c *testenv.Cluster, prefix string, n int) []string {
	t.Helper()
	ctx := context.Background()
	var names []string
	for i := range n {
		ns := fmt.Sprintf("%s-%d", prefix, i)
		names = append(names, ns)
		if _, err := c.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Kube.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "before"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	return names
}

// TestBridgeWatchesFromNow: a Bridge lists nothing, and an informer on it holds exactly what is
// created in the share after it started, on a server with and without the gate; its list is not
// repeated once its watch breaks.
func TestBridgeWatchesFromNow(t *testing.T) {
	for name, c := range servers {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			names := namespacesWithBefore(t, c, "bridge-"+name, 8)
			table := NewTable(CountWeighted(names), []string{"zw-0", "zw-1"}, DefaultChunks, nil)
			lw, ok := Wrap(configMapsLW(c.Kube), table.Ranges("zw-0")).(interface{ Bridge() cache.ListerWatcher })
			if !ok {
				t.Fatal("a sharded ListerWatcher has no Bridge")
			}
			bridge := lw.Bridge()
			inf := cache.NewSharedIndexInformer(bridge, &corev1.ConfigMap{}, 0, cache.Indexers{})
			go inf.RunWithContext(ctx)
			if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
				t.Fatal("not synced")
			}
			if n := len(inf.GetStore().List()); n != 0 {
				t.Fatalf("the bridge listed %d objects, want none", n)
			}
			want := map[string]bool{}
			for _, ns := range names {
				if _, err := c.Kube.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "after"}}, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
				if table.Owner(Hash(ns)) == "zw-0" {
					want[ns+"/after"] = true
				}
			}
			if len(want) == 0 || len(want) == len(names) {
				t.Fatalf("zw-0 owns %d of %d namespaces: the test needs some of each", len(want), len(names))
			}
			deadline := time.Now().Add(10 * time.Second)
			for {
				got := map[string]bool{}
				for _, o := range inf.GetStore().List() {
					cm := o.(*corev1.ConfigMap)
					got[cm.Namespace+"/"+cm.Name] = true
				}
				if maps.Equal(got, want) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the bridge holds %v, want %v", slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
				}
				time.Sleep(50 * time.Millisecond)
			}

			lctx, lcancel := context.WithTimeout(ctx, 300*time.Millisecond)
			defer lcancel()
			if _, err := cache.ToListerWithContext(bridge).ListWithContext(lctx, metav1.ListOptions{}); err == nil || lctx.Err() == nil {
				t.Errorf("a second list of the bridge returned (%v) before it was stopped", err)
			}
		})
	}
}

// TestScopeReadsOnlyItsNamespaces: an informer scoped to a few namespaces holds the objects of
// those in its share and no other, and with the gate on the API server sends it nothing else
// either; past MaxScoped namespaces it reads its whole share, as an unscoped one does.
func TestScopeReadsOnlyItsNamespaces(t *testing.T) {
	for name, c := range servers {
		t.Run(name, func(t *testing.T) {
			names := namespacesWithBefore(t, c, "scope-"+name, 10)
			table := NewTable(CountWeighted(names), []string{"zw-0", "zw-1"}, DefaultChunks, nil)
			var mine, theirs []string
			for _, ns := range names {
				if table.Owner(Hash(ns)) == "zw-0" {
					mine = append(mine, ns)
				} else {
					theirs = append(theirs, ns)
				}
			}
			if len(mine) < 2 || len(theirs) < 2 {
				t.Fatalf("zw-0 owns %v of %v: the test needs two of each", mine, names)
			}
			tooMany := slices.Clone(names)
			for i := len(tooMany); i <= MaxScoped; i++ {
				tooMany = append(tooMany, fmt.Sprintf("absent-%d", i))
			}
			for _, tc := range []struct {
				scope []string
				want  []string // the namespaces whose objects the informer holds
				exact bool     // whether, with the gate on, the server sends these objects alone
			}{
				{scope: []string{mine[0], mine[1], theirs[0], theirs[1]}, want: mine[:2], exact: true},
				{scope: theirs[:2], want: nil, exact: true},
				{scope: tooMany, want: mine},
			} {
				t.Run(fmt.Sprintf("%d namespaces", len(tc.scope)), func(t *testing.T) {
					testScope(t, c, table.Ranges("zw-0"), tc.scope, tc.want, names, tc.exact && name == "gate-on")
				})
			}
		})
	}
}

func testScope(t *testing.T, c *testenv.Cluster, share Ranges, scope, want, created []string, exact bool) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	counting := &countingLW{next: configMapsLW(c.Kube)}
	lw := Wrap(counting, share)
	lw.(interface{ Scope([]string) }).Scope(scope)
	inf := cache.NewSharedIndexInformer(lw, &corev1.ConfigMap{}, 0, cache.Indexers{})
	go inf.RunWithContext(ctx)
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		t.Fatal("not synced")
	}
	after := "after-" + strconv.Itoa(len(scope))
	for _, ns := range created {
		if _, err := c.Kube.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: after}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	wantKeys := map[string]bool{} // every object of the namespaces wanted, those of the cases before too
	for _, ns := range want {
		list, err := c.Kube.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, cm := range list.Items {
			wantKeys[ns+"/"+cm.Name] = true
		}
	}
	held := func() map[string]bool {
		got := map[string]bool{}
		for _, o := range inf.GetStore().List() {
			cm := o.(*corev1.ConfigMap)
			if slices.Contains(created, cm.Namespace) {
				got[cm.Namespace+"/"+cm.Name] = true
			}
		}
		return got
	}
	deadline := time.Now().Add(10 * time.Second)
	for !maps.Equal(held(), wantKeys) {
		if time.Now().After(deadline) {
			t.Fatalf("the informer holds %v, want %v", slices.Sorted(maps.Keys(held())), slices.Sorted(maps.Keys(wantKeys)))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(want) == 0 {
		time.Sleep(2 * time.Second) // what the watch would deliver arrives within this
		if got := held(); len(got) != 0 {
			t.Fatalf("the informer holds %v, want nothing", slices.Sorted(maps.Keys(got)))
		}
	}
	sent := counting.listed.Load() + counting.events.Load()
	if exact && sent != int64(len(wantKeys)) {
		t.Errorf("the API server sent %d objects (%d listed, %d watch events), want the %d in scope",
			sent, counting.listed.Load(), counting.events.Load(), len(wantKeys))
	}
	t.Logf("the API server sent %d listed objects and %d watch events; %d held", counting.listed.Load(), counting.events.Load(), len(wantKeys))
}

func TestPoints(t *testing.T) {
	for _, tc := range []struct {
		names []string
		want  int
	}{
		{names: []string{"a"}, want: 1},
		{names: []string{"team-1", "team-2", "team-1"}, want: 2},
		{names: []string{"payments", "kube-system", "default", "monitoring"}, want: 4},
	} {
		rs := points(tc.names)
		if len(rs) != tc.want {
			t.Errorf("points(%v) = %v, want %d ranges", tc.names, rs, tc.want)
		}
		for _, ns := range tc.names {
			h := Hash(ns)
			if !rs.Contains(h) || rs.Contains(h+1) || rs.Contains(h-1) {
				t.Errorf("points(%v) = %v: %s's hash %#x alone should be in it", tc.names, rs, ns, h)
			}
		}
	}
	// The last hash there is: its point ends at 2^64, and adjacent points merge into one range.
	top := ^uint64(0)
	rs := pointsOf([]uint64{top, 5, top - 1, 4})
	if want := (Ranges{{Start: 4, End: 6}, {Start: top - 1, End: 0}}); !slices.Equal(rs, want) {
		t.Errorf("pointsOf = %v, want %v", rs, want)
	}
	if !rs.Contains(top) || rs.Contains(0) || rs.Contains(6) || rs.Contains(top-2) {
		t.Errorf("pointsOf = %v holds the wrong hashes", rs)
	}
}
