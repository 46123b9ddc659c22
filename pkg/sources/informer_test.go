package sources

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	fakediscovery "k8s.io/client-go/discovery/fake"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	kubetesting "k8s.io/client-go/testing"

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
