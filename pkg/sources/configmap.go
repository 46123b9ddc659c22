package sources

import (
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// DefaultResultsKey is the ConfigMap key that holds a tool's JSON results unless configured.
const DefaultResultsKey = "results.json"

// ConfigMapData returns the value of key in a ConfigMap, or an error naming what is missing.
func ConfigMapData(obj *unstructured.Unstructured, key string) ([]byte, error) {
	if key == "" {
		key = DefaultResultsKey
	}
	data, found, err := unstructured.NestedStringMap(obj.Object, "data")
	if err != nil {
		return nil, fmt.Errorf("ConfigMap %s/%s: %w", obj.GetNamespace(), obj.GetName(), err)
	}
	v, ok := data[key]
	if !found || !ok {
		return nil, fmt.Errorf("ConfigMap %s/%s has no key %q", obj.GetNamespace(), obj.GetName(), key)
	}
	return []byte(v), nil
}
