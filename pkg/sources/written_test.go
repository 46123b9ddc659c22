package sources

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
	w := &WrittenObservations{Client: client, Keep: 200 * time.Millisecond, Wrap: func(lw cache.ListerWatcher) cache.ListerWatcher {
		wrapped++
		return lw
	}}
	if w.Written("shop", "trivy-1") {
		t.Fatal("known before any load")
	}
	n, err := w.Load(context.Background())
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
