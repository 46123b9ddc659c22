package sources

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
)

// FromObject decodes the parts of obj that into's JSON fields name; everything else is skipped. A
// field of the wrong type is an error that names it.
func FromObject(obj *unstructured.Unstructured, into any) error {
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, into); err != nil {
		return fmt.Errorf("decoding %s %s/%s: %w", obj.GetKind(), obj.GetNamespace(), obj.GetName(), err)
	}
	return nil
}

// MaxItems bounds the JSON values one webhook body may carry, so that a body of many small items
// cannot make a request cost more than its size suggests.
const MaxItems = 10000

// DecodeItems decodes a webhook body that holds one JSON object, a JSON array of objects, or JSON
// objects one after another (JSON lines), calling each for every object in order.
func DecodeItems(body []byte, each func(raw json.RawMessage) error) error {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return errors.New("empty body")
	}
	if body[0] == '[' {
		var items []json.RawMessage
		if err := json.Unmarshal(body, &items); err != nil {
			return fmt.Errorf("decoding JSON array: %w", err)
		}
		if len(items) > MaxItems {
			return fmt.Errorf("%d items in one body, at most %d", len(items), MaxItems)
		}
		for i, it := range items {
			if err := each(it); err != nil {
				return fmt.Errorf("item %d: %w", i, err)
			}
		}
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	for i := 0; ; i++ {
		var raw json.RawMessage
		err := dec.Decode(&raw)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("decoding JSON value %d: %w", i, err)
		}
		if i >= MaxItems {
			return fmt.Errorf("more than %d items in one body", MaxItems)
		}
		if len(raw) == 0 || raw[0] != '{' {
			return fmt.Errorf("value %d is not a JSON object", i)
		}
		if err := each(raw); err != nil {
			return fmt.Errorf("item %d: %w", i, err)
		}
	}
}
