package sources

import (
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// DefaultResultsKey is the ConfigMap key that holds a tool's JSON results unless configured.
const DefaultResultsKey = "results.json"

// ConfigMapResults reads a tool's JSON results from a ConfigMap's key and decodes them with decode;
// every error names the ConfigMap.
func ConfigMapResults(obj *unstructured.Unstructured, key string, decode func([]byte) error) error {
	data, err := ConfigMapData(obj, key)
	if err != nil {
		return err
	}
	if err := decode(data); err != nil {
		return fmt.Errorf("ConfigMap %s/%s: %w", obj.GetNamespace(), obj.GetName(), err)
	}
	return nil
}

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
