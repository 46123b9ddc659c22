package testenv

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
)

// CreateIngester creates an Ingester named name in namespace with spec, through a dynamic client
// on cfg: the way kubectl apply sends it, without the project's typed client.
func CreateIngester(ctx context.Context, cfg *rest.Config, namespace, name string, spec v1alpha1.IngesterSpec) error {
	ing := &v1alpha1.Ingester{TypeMeta: metav1.TypeMeta{APIVersion: v1alpha1.SchemeGroupVersion.String(), Kind: "Ingester"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace}, Spec: spec}
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(ing)
	if err != nil {
		return fmt.Errorf("converting Ingester %s/%s: %w", namespace, name, err)
	}
	d, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("building dynamic client: %w", err)
	}
	if _, err := d.Resource(v1alpha1.IngesterResource).Namespace(namespace).Create(ctx,
		&unstructured.Unstructured{Object: m}, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating Ingester %s/%s: %w", namespace, name, err)
	}
	return nil
}
