package sources

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	metadatafake "k8s.io/client-go/metadata/fake"
	"k8s.io/client-go/tools/cache"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
)

func observationMeta(namespace, name string) *metav1.PartialObjectMetadata {
	return &metav1.PartialObjectMetadata{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.SchemeGroupVersion.String(), Kind: "Observation"},
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
	}
}

// TestWrittenObservations: the Observations listed (through the share's wrap) are known, others
// are not, and none is once the load has been kept its while.
func TestWrittenObservations(t *testing.T) {
	scheme := metadatafake.NewTestScheme()
	if err := metav1.AddMetaToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	client := metadatafake.NewSimpleMetadataClient(scheme,
		observationMeta("shop", "trivy-1"), observationMeta("shop", "trivy-2"), observationMeta("payments", "trivy-1"))
	wrapped := 0
	w := &WrittenObservations{Client: client, Keep: 200 * time.Millisecond}
	within := func(lw cache.ListerWatcher) cache.ListerWatcher {
		wrapped++
		return lw
	}
	if w.Written("shop", "trivy-1") {
		t.Fatal("known before any load")
	}
	n, err := w.Load(context.Background(), within)
	if err != nil || n != 3 || wrapped != 1 {
		t.Fatalf("loaded %d (%v), wrapped %d times", n, err, wrapped)
	}
	for _, c := range []struct {
		namespace, name string
		want            bool
	}{
		{"shop", "trivy-1", true}, {"shop", "trivy-2", true}, {"payments", "trivy-1", true},
		{"payments", "trivy-2", false}, {"shop", "trivy-3", false}, {"shopt", "rivy-1", false},
	} {
		if got := w.Written(c.namespace, c.name); got != c.want {
			t.Errorf("%s/%s known %v, want %v", c.namespace, c.name, got, c.want)
		}
	}
	time.Sleep(300 * time.Millisecond)
	if w.Written("shop", "trivy-1") {
		t.Error("still known after its while")
	}
}

// TestWrittenLoadsAddUp: a second load, of other Observations, keeps the first one's known for
// the rest of its while; each is forgotten after its own.
func TestWrittenLoadsAddUp(t *testing.T) {
	scheme := metadatafake.NewTestScheme()
	if err := metav1.AddMetaToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	client := metadatafake.NewSimpleMetadataClient(scheme,
		observationMeta("shop", "trivy-1"), observationMeta("payments", "trivy-1"))
	narrowTo := "shop"
	w := &WrittenObservations{Client: client, Keep: 400 * time.Millisecond}
	within := func(cache.ListerWatcher) cache.ListerWatcher {
		ns := narrowTo
		return &cache.ListWatch{ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return client.Resource(v1alpha1.SchemeGroupVersion.WithResource("observations")).Namespace(ns).List(ctx, o)
		}}
	}
	ctx := context.Background()
	if n, err := w.Load(ctx, within); err != nil || n != 1 {
		t.Fatalf("first load: %d (%v)", n, err)
	}
	time.Sleep(250 * time.Millisecond)
	narrowTo = "payments"
	if n, err := w.Load(ctx, within); err != nil || n != 1 {
		t.Fatalf("second load: %d (%v)", n, err)
	}
	if !w.Written("shop", "trivy-1") || !w.Written("payments", "trivy-1") {
		t.Fatal("the second load made the first one's Observations unknown")
	}
	time.Sleep(250 * time.Millisecond) // past the first load's while, within the second's
	if w.Written("shop", "trivy-1") || !w.Written("payments", "trivy-1") {
		t.Errorf("known after the first load's while: shop %v (want false), payments %v (want true)",
			w.Written("shop", "trivy-1"), w.Written("payments", "trivy-1"))
	}
}
