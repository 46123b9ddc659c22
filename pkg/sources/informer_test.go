package sources

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	fakediscovery "k8s.io/client-go/discovery/fake"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	kubetesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/metrics"
	"github.com/kube-zen/zen-watcher/pkg/pipeline"
)

// recorder is a Handler that fails the first attempt at rules listed in failOnce.
type recorder struct {
	mu       sync.Mutex
	got      []string
	failOnce map[string]bool
}

func (r *recorder) Handle(_ context.Context, ev *pipeline.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failOnce[ev.Rule] {
		delete(r.failOnce, ev.Rule)
		return errors.New("queue full")
	}
	r.got = append(r.got, ev.Rule)
	return nil
}

func (r *recorder) rules() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := append([]string(nil), r.got...)
	sort.Strings(out)
	return out
}

// oneFindingPerKey is a parser: one finding per data key of a ConfigMap.
var oneFindingPerKey = ObjectParserFunc(func(obj *unstructured.Unstructured) ([]*pipeline.Event, error) {
	data, _, err := unstructured.NestedStringMap(obj.Object, "data")
	if err != nil {
		return nil, err
	}
	var out []*pipeline.Event
	for k := range data {
		out = append(out, &pipeline.Event{Category: v1alpha1.CategoryCompliance, Severity: "low", EventType: "x",
			Resource: Self(obj), Rule: k, Stateful: true})
	}
	return out, nil
})

func TestInformerHandsOnOnlyNewFindingsAndRetriesUnwritten(t *testing.T) {
	// The fake client cannot stream a watch-list; the real API server can (see test/e2e).
	t.Setenv("KUBE_FEATURE_WatchListClient", "false")
	gvr := schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
	cm := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": "results", "namespace": "ci", "uid": "u1"},
		"data":     map[string]any{"a": "1", "b": "2"},
	}}
	scheme := runtime.NewScheme()
	client := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(scheme,
		map[schema.GroupVersionResource]string{gvr: "ConfigMapList"}, cm)
	disc := &fakediscovery.FakeDiscovery{Fake: &kubetesting.Fake{}}
	disc.Resources = []*metav1.APIResourceList{{GroupVersion: "v1", APIResources: []metav1.APIResource{{Name: "configmaps", Namespaced: true}}}}
	m := metrics.New(prometheus.NewRegistry())
	inf := NewInformer(InformerConfig{Source: "test", GVR: gvr}, client, disc, oneFindingPerKey, nil, m,
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	inf.resync = 200 * time.Millisecond
	h := &recorder{failOnce: map[string]bool{"b": true}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = inf.Run(ctx, h) }()

	waitFor := func(want []string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			got := h.rules()
			if equalStrings(got, want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("handed on %v, want %v", got, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// a is handed on; b fails once and comes again at the resync.
	waitFor([]string{"a", "b"})
	// A new key: only it is new. The same object again: nothing.
	cm.Object["data"] = map[string]any{"a": "1", "b": "2", "c": "3"}
	if _, err := client.Resource(gvr).Namespace("ci").Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor([]string{"a", "b", "c"})
	time.Sleep(500 * time.Millisecond) // two resyncs
	waitFor([]string{"a", "b", "c"})
	if !inf.HasSynced() || inf.FindingsSeen() != 3 {
		t.Errorf("synced %v, seen %d", inf.HasSynced(), inf.FindingsSeen())
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// configMapsGVR is the resource the ConfigMap fixtures are served as.
var configMapsGVR = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}

// configMap is a ConfigMap whose data has one entry per key (a finding each, oneFindingPerKey).
func configMap(ns, name, uid string, keys ...string) *unstructured.Unstructured {
	data := map[string]any{}
	for _, k := range keys {
		data[k] = "1"
	}
	return &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": name, "namespace": ns, "uid": uid}, "data": data}}
}

// configMapClients serves objs as ConfigMaps, and discovery that says so.
func configMapClients(objs ...runtime.Object) (*dynamicfake.FakeDynamicClient, *fakediscovery.FakeDiscovery) {
	client := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{configMapsGVR: "ConfigMapList"}, objs...)
	disc := &fakediscovery.FakeDiscovery{Fake: &kubetesting.Fake{}}
	disc.Resources = []*metav1.APIResourceList{{GroupVersion: "v1", APIResources: []metav1.APIResource{{Name: "configmaps", Namespaced: true}}}}
	return client, disc
}

// TestRestartedInformerKeepsWhatStays: an informer restarted on a new share inherits what the
// one before it handed on: it hands on nothing again in the namespace that stays, everything in
// the one it owns anew (the memory of the namespace it no longer owns is dropped), and forgets
// an object deleted while no informer watched.
func TestRestartedInformerKeepsWhatStays(t *testing.T) {
	t.Setenv("KUBE_FEATURE_WatchListClient", "false")
	gvr, cm := configMapsGVR, configMap
	client, disc := configMapClients(cm("stays", "a", "u1", "stays-1", "stays-2"), cm("stays", "gone", "u2", "gone-1"),
		cm("moves", "b", "u3", "moves-1"))
	m := metrics.New(prometheus.NewRegistry())
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	run := func(inf *Informer, h Handler) (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { _ = inf.Run(ctx, h); close(done) }()
		deadline := time.Now().Add(5 * time.Second)
		for !inf.HasSynced() {
			if time.Now().After(deadline) {
				t.Fatal("informer did not sync")
			}
			time.Sleep(10 * time.Millisecond)
		}
		return func() { cancel(); <-done }
	}
	first := NewInformer(InformerConfig{Source: "test", GVR: gvr}, client, disc, oneFindingPerKey, nil, m, log)
	h1 := &recorder{}
	stop := run(first, h1)
	time.Sleep(100 * time.Millisecond)
	stop()
	if got := h1.rules(); !equalStrings(got, []string{"gone-1", "moves-1", "stays-1", "stays-2"}) {
		t.Fatalf("the first informer handed on %v", got)
	}
	ctx := context.Background()
	if err := client.Resource(gvr).Namespace("stays").Delete(ctx, "gone", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	changed := cm("stays", "a", "u1", "stays-1", "stays-2", "stays-3")
	if _, err := client.Resource(gvr).Namespace("stays").Update(ctx, changed, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	// The new share owns "stays" and not "moves"; the informer is told only what it owns, and it
	// lists both (no wrap here), so "moves" is the namespace it owns anew in this test.
	second := NewInformer(InformerConfig{Source: "test", GVR: gvr}, client, disc, oneFindingPerKey, nil, m, log)
	second.Inherit(first, func(ns string) bool { return ns == "stays" })
	h2 := &recorder{}
	stop = run(second, h2)
	defer stop()
	time.Sleep(100 * time.Millisecond)
	if got := h2.rules(); !equalStrings(got, []string{"moves-1", "stays-3"}) {
		t.Errorf("the restarted informer handed on %v, want only moves-1 (not remembered) and stays-3 (new)", got)
	}
	if n := second.handed.len(); n != 2 {
		t.Errorf("%d objects remembered, want 2 (the deleted one forgotten)", n)
	}
}

// TestJoinedInformersShareWhatTheyHandedOn: an informer added over the namespaces a share gained
// (Join) records what it hands on with the informer beside it, so that one restarted on the whole
// share hands on neither's findings again; and a restarted informer's pruning of the objects deleted
// while none watched leaves alone what an informer joined to it recorded since.
func TestJoinedInformersShareWhatTheyHandedOn(t *testing.T) {
	t.Setenv("KUBE_FEATURE_WatchListClient", "false")
	gvr, cm := configMapsGVR, configMap
	client, disc := configMapClients(cm("kept", "a", "u1", "kept-1"), cm("kept", "gone", "u2", "gone-1"),
		cm("gained", "b", "u3", "gained-1"))
	m := metrics.New(prometheus.NewRegistry())
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	in := func(namespaces ...string) *Informer {
		return NewInformer(InformerConfig{Source: "test", GVR: gvr, Namespaces: namespaces}, client, disc,
			oneFindingPerKey, nil, m, log)
	}
	run := func(inf *Informer) (h *recorder, stop func()) {
		h = &recorder{}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { _ = inf.Run(ctx, h); close(done) }()
		for deadline := time.Now().Add(5 * time.Second); !inf.HasSynced(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("informer did not sync")
			}
		}
		time.Sleep(100 * time.Millisecond)
		return h, func() { cancel(); <-done }
	}
	first := in("kept")
	h1, stop1 := run(first)
	joined := in("gained")
	joined.Join(first)
	h2, stop2 := run(joined)
	stop1()
	stop2()
	got := append(h1.rules(), h2.rules()...)
	if sort.Strings(got); !equalStrings(got, []string{"gained-1", "gone-1", "kept-1"}) {
		t.Fatalf("the two informers handed on %v", got)
	}
	ctx := context.Background()
	if err := client.Resource(gvr).Namespace("kept").Delete(ctx, "gone", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}

	restarted := in()
	restarted.Inherit(first, func(string) bool { return true })
	h3, stop3 := run(restarted)
	stop3()
	if got := h3.rules(); len(got) != 0 {
		t.Errorf("the informer restarted on the whole share handed on %v again", got)
	}
	if n := restarted.handed.len(); n != 2 {
		t.Errorf("%d objects remembered after the restart, want 2 (the deleted one forgotten)", n)
	}

	// Restarted on "kept" alone; "gained" is gained anew and its informer syncs first.
	if _, err := client.Resource(gvr).Namespace("gained").Create(ctx, cm("gained", "c", "u4", "gained-2"),
		metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	again := in("kept")
	again.Inherit(restarted, func(ns string) bool { return ns == "kept" })
	late := in("gained")
	late.Join(again)
	h4, stop4 := run(late)
	defer stop4()
	h5, stop5 := run(again)
	defer stop5()
	if got := h4.rules(); !equalStrings(got, []string{"gained-1", "gained-2"}) {
		t.Errorf("the informer over the namespace gained anew handed on %v", got)
	}
	if got := h5.rules(); len(got) != 0 {
		t.Errorf("the informer restarted on what it kept handed on %v again", got)
	}
	if n := again.handed.len(); n != 3 {
		t.Errorf("%d objects remembered, want 3: the restarted informer's pruning dropped what the joined one recorded", n)
	}
}

// TestNarrowedInformerForgetsWhatLeft: an informer that runs on while its share shrinks hands on
// nothing more of the namespace that left, and Narrow drops that namespace's objects from its
// cache and from what it handed on.
func TestNarrowedInformerForgetsWhatLeft(t *testing.T) {
	t.Setenv("KUBE_FEATURE_WatchListClient", "false")
	gvr, cm := configMapsGVR, configMap
	client, disc := configMapClients(cm("stays", "a", "u1", "stays-1"), cm("moves", "b", "u2", "moves-1"),
		cm("moves", "c", "u3", "moves-2"))
	var moved atomic.Bool
	owns := func(ns string) bool { return ns == "stays" || !moved.Load() }
	inf := NewInformer(InformerConfig{Source: "test", GVR: gvr, Owns: owns}, client, disc, oneFindingPerKey, nil,
		metrics.New(prometheus.NewRegistry()), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if n := inf.Narrow(); n != 0 {
		t.Errorf("an informer not started forgot %d objects", n)
	}
	h := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = inf.Run(ctx, h); close(done) }()
	defer func() { cancel(); <-done }()
	for deadline := time.Now().Add(5 * time.Second); !inf.HasSynced(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("informer did not sync")
		}
	}
	moved.Store(true)
	// No ListerWatcher narrows this informer, so the change reaches it: the informer drops it.
	if _, err := client.Resource(gvr).Namespace("moves").Update(ctx, cm("moves", "b", "u2", "moves-1", "moves-3"),
		metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Resource(gvr).Namespace("stays").Update(ctx, cm("stays", "a", "u1", "stays-1", "stays-2"),
		metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); len(h.rules()) < 4; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("handed on %v, want the stays-2 added", h.rules())
		}
	}
	time.Sleep(100 * time.Millisecond) // a moves-3 handed on would show now
	if got := h.rules(); !equalStrings(got, []string{"moves-1", "moves-2", "stays-1", "stays-2"}) {
		t.Errorf("handed on %v; moves-3 came after its namespace left the share", got)
	}
	if n := inf.Narrow(); n != 2 {
		t.Errorf("Narrow forgot %d objects, want the 2 of the namespace that left", n)
	}
	store := *inf.store.Load()
	if keys := store.ListKeys(); !equalStrings(keys, []string{"stays/a"}) {
		t.Errorf("the cache holds %v after Narrow, want stays/a", keys)
	}
	if n := inf.handed.len(); n != 1 {
		t.Errorf("%d objects remembered as handed on after Narrow, want 1", n)
	}
}

// eventRecorder is a Handler that keeps the events handed on.
type eventRecorder struct {
	mu  sync.Mutex
	got []*pipeline.Event
}

func (r *eventRecorder) Handle(_ context.Context, ev *pipeline.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, ev)
	return nil
}

func (r *eventRecorder) byRule(rule string) []*pipeline.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*pipeline.Event
	for _, ev := range r.got {
		if ev.Rule == rule {
			out = append(out, ev)
		}
	}
	return out
}

// TestInformerWithdrawsFindingsOfNamespacesLetGo: a finding's Withdrawn follows whether the
// replica owns its object's namespace now, not when it was handed on; one the writer reports
// handed over is handed on again by the next resync.
func TestInformerWithdrawsFindingsOfNamespacesLetGo(t *testing.T) {
	t.Setenv("KUBE_FEATURE_WatchListClient", "false")
	gvr := schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
	cm := func(ns, uid, key string) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "ConfigMap",
			"metadata": map[string]any{"name": "r", "namespace": ns, "uid": uid}, "data": map[string]any{key: "1"}}}
	}
	client := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{gvr: "ConfigMapList"}, cm("kept", "u1", "kept-1"), cm("moving", "u2", "moving-1"))
	disc := &fakediscovery.FakeDiscovery{Fake: &kubetesting.Fake{}}
	disc.Resources = []*metav1.APIResourceList{{GroupVersion: "v1", APIResources: []metav1.APIResource{{Name: "configmaps", Namespaced: true}}}}
	var lost atomic.Bool
	owns := func(ns string) bool { return ns == "kept" || (ns == "moving" && !lost.Load()) }
	inf := NewInformer(InformerConfig{Source: "test", GVR: gvr, Owns: owns}, client, disc, oneFindingPerKey, nil,
		metrics.New(prometheus.NewRegistry()), slog.New(slog.NewTextHandler(io.Discard, nil)))
	inf.resync = time.Second // the shortest client-go allows
	h := &eventRecorder{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = inf.Run(ctx, h) }()
	handedOn := func(rule string, n int) []*pipeline.Event {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for len(h.byRule(rule)) < n {
			if time.Now().After(deadline) {
				t.Fatalf("%s handed on %d times, want %d", rule, len(h.byRule(rule)), n)
			}
			time.Sleep(10 * time.Millisecond)
		}
		return h.byRule(rule)
	}
	kept, moving := handedOn("kept-1", 1)[0], handedOn("moving-1", 1)[0]
	for _, ev := range []*pipeline.Event{kept, moving} {
		if ev.Withdrawn == nil || ev.Withdrawn() {
			t.Fatalf("%s: withdrawn while its namespace is owned", ev.Rule)
		}
	}
	lost.Store(true)
	if !moving.Withdrawn() || kept.Withdrawn() {
		t.Errorf("after letting go of moving: moving withdrawn %v, kept withdrawn %v", moving.Withdrawn(), kept.Withdrawn())
	}
	time.Sleep(1500 * time.Millisecond) // a resync: a finding handed on and not reported back is not handed on again
	if n := len(h.byRule("moving-1")); n != 1 {
		t.Fatalf("moving-1 handed on %d times before the writer reported it", n)
	}
	lost.Store(false)
	moving.Done(pipeline.OutcomeHandedOver, nil)
	handedOn("moving-1", 2)
}

// TestWatchDeliveryCountsWatchedAdds: an object created while the informer watches is timed from
// its creationTimestamp; one of the first list is not (it was not delivered late, only listed).
func TestWatchDeliveryCountsWatchedAdds(t *testing.T) {
	t.Setenv("KUBE_FEATURE_WatchListClient", "false")
	gvr := schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
	configMap := func(name string, created time.Time) *unstructured.Unstructured {
		u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "ConfigMap",
			"metadata": map[string]any{"name": name, "namespace": "ci", "uid": name}, "data": map[string]any{name: "1"}}}
		u.SetCreationTimestamp(metav1.NewTime(created))
		return u
	}
	client := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{gvr: "ConfigMapList"}, configMap("listed", time.Now().Add(-time.Hour)))
	disc := &fakediscovery.FakeDiscovery{Fake: &kubetesting.Fake{}}
	disc.Resources = []*metav1.APIResourceList{{GroupVersion: "v1", APIResources: []metav1.APIResource{{Name: "configmaps", Namespaced: true}}}}
	m := metrics.New(prometheus.NewRegistry())
	inf := NewInformer(InformerConfig{Source: "test", GVR: gvr}, client, disc, oneFindingPerKey, nil, m,
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	h := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = inf.Run(ctx, h) }()
	waitRules := func(want ...string) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !equalStrings(h.rules(), want); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("handed on %v, want %v", h.rules(), want)
			}
		}
	}
	waitRules("listed")
	if _, err := client.Resource(gvr).Namespace("ci").Create(ctx, configMap("late", time.Now().Add(-3*time.Second)), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitRules("late", "listed")
	var got dto.Metric
	if err := m.WatchDelivery.WithLabelValues("test").(prometheus.Histogram).Write(&got); err != nil {
		t.Fatal(err)
	}
	if n, sum := got.GetHistogram().GetSampleCount(), got.GetHistogram().GetSampleSum(); n != 1 || sum < 3 || sum > 60 {
		t.Errorf("watch delivery: %d observations summing to %.1f s, want one of about 3 s", n, sum)
	}
}

// heldList holds back what it lists until release is closed: the list itself when holdList is set
// (a slow list), else its objects' hand-over (Holding: the Observations written are being read).
// Its Bridge watches from now, and says when it does.
type heldList struct {
	next     cache.ListerWatcher
	holdList bool
	release  chan struct{}
	watching chan struct{}
	// bridged, when set, is what the bridge's findings wait for.
	bridged chan struct{}
}

func (l *heldList) List(o metav1.ListOptions) (runtime.Object, error) {
	return l.ListWithContext(context.Background(), o)
}

func (l *heldList) ListWithContext(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
	if l.holdList {
		<-l.release
	}
	return cache.ToListerWithContext(l.next).ListWithContext(ctx, o)
}

func (l *heldList) ListedAfter() <-chan struct{} {
	if l.holdList {
		return nil
	}
	return l.release
}

func (l *heldList) Watch(o metav1.ListOptions) (watch.Interface, error) {
	return l.WatchWithContext(context.Background(), o)
}

func (l *heldList) WatchWithContext(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
	return cache.ToWatcherWithContext(l.next).WatchWithContext(ctx, o)
}

func (l *heldList) Bridge() cache.ListerWatcher {
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			list, err := cache.ToListerWithContext(l.next).ListWithContext(ctx, o)
			if err == nil {
				list.(*unstructured.UnstructuredList).Items = nil // the resource version alone
			}
			return list, err
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			w, err := l.WatchWithContext(ctx, o)
			close(l.watching)
			return w, err
		},
	}
	if l.bridged == nil {
		return lw
	}
	return &heldBridge{ListWatch: lw, after: l.bridged}
}

// heldBridge is a bridge whose findings wait for after (BridgeHolding).
type heldBridge struct {
	*cache.ListWatch
	after chan struct{}
}

func (b *heldBridge) BridgedAfter() <-chan struct{} { return b.after }

// arrivals records each finding's rule and whether it was marked re-listed.
type arrivals struct {
	mu  sync.Mutex
	got map[string][]bool
}

func (a *arrivals) Handle(_ context.Context, ev *pipeline.Event) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.got[ev.Rule] = append(a.got[ev.Rule], ev.Relisted)
	return nil
}

func (a *arrivals) snapshot() map[string][]bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return maps.Clone(a.got)
}

// TestBridgeHandsOnWhileListing: an informer whose ListerWatcher bridges hands on an object created
// while its list is held back — the list slow, or its objects waiting for the read of what is
// written — marked as possibly written; once the list is handed on, that object is not handed on
// again, the listed one is, and later changes come through the informer's own watch. A bridge that
// holds (BridgeHolding, a joining replica's) hands the object on only once let go.
func TestBridgeHandsOnWhileListing(t *testing.T) {
	for name, c := range map[string]struct{ holdList, holdBridge bool }{
		"slow list":              {holdList: true},
		"read pending":           {},
		"slow list, bridge held": {holdList: true, holdBridge: true},
	} {
		t.Run(name, func(t *testing.T) { testBridge(t, c.holdList, c.holdBridge) })
	}
}

func testBridge(t *testing.T, holdList, holdBridge bool) {
	t.Setenv("KUBE_FEATURE_WatchListClient", "false")
	client, disc := configMapClients(configMap("ci", "listed", "u1", "listed-1"))
	held := &heldList{holdList: holdList, release: make(chan struct{}), watching: make(chan struct{})}
	if holdBridge {
		held.bridged = make(chan struct{})
	}
	wrap := func(lw cache.ListerWatcher) cache.ListerWatcher { held.next = lw; return held }
	inf := NewInformer(InformerConfig{Source: "test", GVR: configMapsGVR}, client, disc, oneFindingPerKey, wrap,
		metrics.New(prometheus.NewRegistry()), slog.New(slog.NewTextHandler(io.Discard, nil)))
	h := &arrivals{got: map[string][]bool{}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if inf.Watching() {
		t.Fatal("watching before it runs")
	}
	go func() { _ = inf.Run(ctx, h) }()
	wait := func(want map[string][]bool) {
		t.Helper()
		waitArrivals(t, h, want)
	}
	select {
	case <-held.watching:
	case <-time.After(5 * time.Second):
		t.Fatal("the informer opened no bridge while its list was held")
	}
	late := configMap("ci", "late", "u2", "late-1")
	if _, err := client.Resource(configMapsGVR).Namespace("ci").Create(ctx, late, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if holdBridge {
		time.Sleep(300 * time.Millisecond)
		wait(map[string][]bool{}) // the bridge holds what it watched
		close(held.bridged)
	}
	wait(map[string][]bool{"late-1": {true}})
	time.Sleep(200 * time.Millisecond) // the held list hands on nothing meanwhile
	wait(map[string][]bool{"late-1": {true}})
	if inf.HasSynced() {
		t.Fatal("synced before its list was let through")
	}
	if !inf.Watching() {
		t.Fatal("not watching, though its bridge handed a change on")
	}
	close(held.release)
	wait(map[string][]bool{"late-1": {true}, "listed-1": {true}})
	for deadline := time.Now().Add(5 * time.Second); !inf.HasSynced(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("informer did not sync")
		}
	}
	late.Object["data"] = map[string]any{"late-1": "1", "late-2": "1"}
	if _, err := client.Resource(configMapsGVR).Namespace("ci").Update(ctx, late, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	wait(map[string][]bool{"late-1": {true}, "listed-1": {true}, "late-2": {false}})
	time.Sleep(200 * time.Millisecond) // nothing more comes
	wait(map[string][]bool{"late-1": {true}, "listed-1": {true}, "late-2": {false}})
}

// scoped is a decorated ListerWatcher that records what it was scoped to (Scoping).
type scoped struct {
	cache.ListerWatcher
	scope []string
	calls int
}

func (s *scoped) Scope(namespaces []string) { s.scope, s.calls = namespaces, s.calls+1 }

// TestInformerScopesSeveralNamespaces: an informer over several namespaces asks its decorated
// ListerWatcher for those alone; one over all namespaces, or one (read through a namespaced
// request already), does not.
func TestInformerScopesSeveralNamespaces(t *testing.T) {
	client, disc := configMapClients()
	for _, tc := range []struct {
		namespaces []string
		want       []string
	}{
		{namespaces: nil},
		{namespaces: []string{"only"}},
		{namespaces: []string{"shop", "payments", "kube-system"}, want: []string{"shop", "payments", "kube-system"}},
	} {
		s := &scoped{}
		wrap := func(lw cache.ListerWatcher) cache.ListerWatcher { s.ListerWatcher = lw; return s }
		NewInformer(InformerConfig{Source: "test", GVR: configMapsGVR, Namespaces: tc.namespaces}, client, disc,
			oneFindingPerKey, wrap, metrics.New(prometheus.NewRegistry()), slog.New(slog.NewTextHandler(io.Discard, nil)))
		if want := min(len(tc.want), 1); s.calls != want || !slices.Equal(s.scope, tc.want) {
			t.Errorf("namespaces %v: scoped %d times to %v, want %d to %v", tc.namespaces, s.calls, s.scope, want, tc.want)
		}
	}
}

// holdOnly holds what its informer lists until release (sources.Holding) and bridges nothing;
// watching is closed once its watch is open.
type holdOnly struct {
	cache.ListerWatcher
	release, watching chan struct{}
	once              sync.Once
}

func (l *holdOnly) ListedAfter() <-chan struct{} { return l.release }

func (l *holdOnly) Watch(o metav1.ListOptions) (watch.Interface, error) {
	return l.WatchWithContext(context.Background(), o)
}

func (l *holdOnly) WatchWithContext(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
	w, err := cache.ToWatcherWithContext(l.ListerWatcher).WatchWithContext(ctx, o)
	l.once.Do(func() { close(l.watching) })
	return w, err
}

// TestWatchedWhileHeldCountsAsBridged: a change the informer's own watch delivers while its list
// is held waits behind the list and is handed on marked as possibly written — the member that read
// the namespace before may have written it — and one that arrives after the list was let through
// is handed on as new.
func TestWatchedWhileHeldCountsAsBridged(t *testing.T) {
	t.Setenv("KUBE_FEATURE_WatchListClient", "false")
	client, disc := configMapClients(configMap("ci", "listed", "u1", "listed-1"))
	held := &holdOnly{release: make(chan struct{}), watching: make(chan struct{})}
	wrap := func(lw cache.ListerWatcher) cache.ListerWatcher { held.ListerWatcher = lw; return held }
	inf := NewInformer(InformerConfig{Source: "test", GVR: configMapsGVR}, client, disc, oneFindingPerKey, wrap,
		metrics.New(prometheus.NewRegistry()), slog.New(slog.NewTextHandler(io.Discard, nil)))
	h := &arrivals{got: map[string][]bool{}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = inf.Run(ctx, h) }()
	select {
	case <-held.watching:
	case <-time.After(5 * time.Second):
		t.Fatal("the informer did not watch while its list was held")
	}
	create := func(name, key string) {
		t.Helper()
		if _, err := client.Resource(configMapsGVR).Namespace("ci").Create(ctx, configMap("ci", name, name, key),
			metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	create("during", "during-1")
	time.Sleep(200 * time.Millisecond) // delivered, and waiting behind the list
	if got := h.snapshot(); len(got) != 0 {
		t.Fatalf("handed on %v while the list was held", got)
	}
	close(held.release)
	want := map[string][]bool{"listed-1": {true}, "during-1": {true}}
	waitArrivals(t, h, want)
	create("after", "after-1")
	want["after-1"] = []bool{false}
	waitArrivals(t, h, want)
}

func waitArrivals(t *testing.T, h *arrivals, want map[string][]bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !reflect.DeepEqual(h.snapshot(), want); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("handed on %v, want %v", h.snapshot(), want)
		}
	}
}
