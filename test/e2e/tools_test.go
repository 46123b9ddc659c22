package e2e

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/kube-zen/zen-watcher/internal/testenv"
	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/obsclient"
)

func dyn(t *testing.T) dynamic.Interface {
	t.Helper()
	d, err := dynamic.NewForConfig(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// resourceOf maps the kinds the tests create to their resources.
func resourceOf(u *unstructured.Unstructured) schema.GroupVersionResource {
	gv, _ := schema.ParseGroupVersion(u.GetAPIVersion())
	plural := strings.ToLower(u.GetKind()) + "s"
	if u.GetKind() == "Ingester" {
		plural = "ingesters"
	}
	return gv.WithResource(plural)
}

// create creates u (in ns when it is namespaced and ns is not empty) and returns what was stored.
func create(t *testing.T, u *unstructured.Unstructured, ns string) *unstructured.Unstructured {
	t.Helper()
	u = u.DeepCopy()
	u.SetResourceVersion("")
	u.SetUID("")
	u.SetCreationTimestamp(metav1.Time{})
	u.SetOwnerReferences(nil)
	if u.GetName() == "" {
		u.SetName(fmt.Sprintf("%s-%d", strings.ToLower(u.GetKind()), time.Now().UnixNano()))
	}
	ri := dyn(t).Resource(resourceOf(u))
	var out *unstructured.Unstructured
	var err error
	if ns != "" {
		u.SetNamespace(ns)
		out, err = ri.Namespace(ns).Create(context.Background(), u, metav1.CreateOptions{})
	} else {
		out, err = ri.Create(context.Background(), u, metav1.CreateOptions{})
	}
	if err != nil {
		t.Fatalf("creating %s %s: %v", u.GetKind(), u.GetName(), err)
	}
	return out
}

func fixture(t *testing.T, path string) []*unstructured.Unstructured {
	t.Helper()
	objs, err := testenv.FixtureObjects(path)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// ingester creates an Ingester in zen-system from a spec, and deletes it when the test ends.
func ingester(t *testing.T, name string, spec v1alpha1.IngesterSpec) {
	t.Helper()
	ensureNamespace(t, "zen-system")
	ing := &v1alpha1.Ingester{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.SchemeGroupVersion.String(), Kind: "Ingester"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "zen-system"},
		Spec:       spec,
	}
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(ing)
	if err != nil {
		t.Fatal(err)
	}
	create(t, &unstructured.Unstructured{Object: m}, "zen-system")
	t.Cleanup(func() { deleteIngester(t, name) })
}

func deleteIngester(t *testing.T, name string) {
	err := dyn(t).Resource(v1alpha1.IngesterResource).Namespace("zen-system").Delete(context.Background(), name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Errorf("deleting Ingester %s: %v", name, err)
	}
}

func getIngester(t *testing.T, name string) *v1alpha1.Ingester {
	t.Helper()
	u, err := dyn(t).Resource(v1alpha1.IngesterResource).Namespace("zen-system").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ing := &v1alpha1.Ingester{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, ing); err != nil {
		t.Fatal(err)
	}
	return ing
}

// secret creates the Secret name in zen-system with data, deleted when the test ends.
func secret(t *testing.T, name string, data map[string][]byte) {
	t.Helper()
	ensureNamespace(t, "zen-system")
	secrets := cluster.Kube.CoreV1().Secrets("zen-system")
	if _, err := secrets.Create(context.Background(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: data},
		metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = secrets.Delete(context.Background(), name, metav1.DeleteOptions{}) })
}

func ensureNamespace(t *testing.T, name string) {
	t.Helper()
	_, err := cluster.Kube.CoreV1().Namespaces().Get(context.Background(), name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		createNamespace(t, name)
	}
}

// observations lists the Observations of a source in a namespace ("" for all).
func observations(t *testing.T, ns, source string) []v1alpha1.Observation {
	t.Helper()
	c, err := obsclient.New(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	list, err := c.ListObservations(context.Background(), ns, v1alpha1.LabelSource+"="+source)
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].Spec.Title < list.Items[j].Spec.Title })
	return list.Items
}

// waitObservations waits until a source has exactly n Observations in ns, then holds for a moment to
// catch any extra one, and returns them.
func waitObservations(t *testing.T, ns, source string, n int) []v1alpha1.Observation {
	t.Helper()
	eventually(t, 30*time.Second, func(context.Context) error {
		if got := len(observations(t, ns, source)); got != n {
			return fmt.Errorf("%d Observations of %s in %q, want %d", got, source, ns, n)
		}
		return nil
	})
	time.Sleep(time.Second)
	obs := observations(t, ns, source)
	if len(obs) != n {
		t.Fatalf("%d Observations of %s in %q after settling, want %d", len(obs), source, ns, n)
	}
	return obs
}

func fixtureBytes(t *testing.T, path string) []byte {
	t.Helper()
	b, err := testenv.Fixture(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
