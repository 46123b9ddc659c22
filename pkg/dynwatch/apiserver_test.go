package dynwatch

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/cache"

	"github.com/kube-zen/zen-watcher/internal/testenv"
)

// TestInformerOnARealAPIServer: an informer listing and watching through this client on a real API
// server holds what client-go's dynamic client reads and follows changes, and a watch the server
// refuses fails with its reason.
func TestInformerOnARealAPIServer(t *testing.T) {
	c, err := testenv.StartCluster(testenv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Stop() }()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ours, err := NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	const ns = "dynwatch"
	if _, err := c.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	create := func(i int) {
		t.Helper()
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%d", i), Labels: map[string]string{"n": fmt.Sprint(i)}},
			Data: map[string]string{"i": fmt.Sprint(i)}}
		if _, err := c.Kube.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 40 {
		create(i)
	}

	cms := schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
	ri := ours.Resource(cms).Namespace(ns)
	inf := cache.NewSharedIndexInformer(&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) { return ri.List(ctx, o) },
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return ri.Watch(ctx, o)
		},
	}, &unstructured.Unstructured{}, 0, cache.Indexers{})
	go inf.RunWithContext(ctx)
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		t.Fatal("the informer did not sync")
	}

	// Changes after the sync: one updated, one deleted, one created.
	upd, err := c.Kube.CoreV1().ConfigMaps(ns).Get(ctx, "cm-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	upd.Data["i"] = "changed"
	if _, err := c.Kube.CoreV1().ConfigMaps(ns).Update(ctx, upd, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.Kube.CoreV1().ConfigMaps(ns).Delete(ctx, "cm-2", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	create(40)

	want, err := plain.Resource(cms).Namespace(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	held := func() map[string]any {
		out := map[string]any{}
		for _, o := range inf.GetStore().List() {
			u := o.(*unstructured.Unstructured)
			out[u.GetName()] = u.Object
		}
		return out
	}
	wanted := map[string]any{}
	for _, u := range want.Items {
		u.SetKind("ConfigMap") // a list's items come without it; watch events carry it
		u.SetAPIVersion("v1")
		wanted[u.GetName()] = u.Object
	}
	for deadline := time.Now().Add(30 * time.Second); !reflect.DeepEqual(held(), wanted); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the informer holds %d objects unlike the %d client-go's dynamic client lists", len(held()), len(wanted))
		}
	}
	if got := held()["cm-1"].(map[string]any)["data"].(map[string]any)["i"]; got != "changed" {
		t.Errorf("cm-1 holds %v after its update", got)
	}

	// A watch the server refuses fails with the server's reason, not as an undecodable stream.
	_, err = ri.Watch(ctx, metav1.ListOptions{LabelSelector: "n in in"})
	if !apierrors.IsBadRequest(err) && !apierrors.IsInvalid(err) {
		t.Errorf("a watch with a malformed label selector failed with %v, want the API server's refusal", err)
	}
}
