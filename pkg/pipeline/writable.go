package pipeline

import (
	"encoding/json"
	"fmt"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Bounds of a finding that a sender is told about before it is acknowledged. The title, the
// description and detail values are shortened to fit the CRD on the way; these are what shortening
// cannot mend.
const (
	// MaxDetailKeyLength bounds a detail's key: a key is a name, and a shortened one could collide.
	MaxDetailKeyLength = 253
	// MaxObservationBytes bounds an Observation as JSON. etcd takes 1.5 MiB, but every list of
	// Observations carries each one whole: one of a megabyte made `kubectl get obs -o yaml` fail for
	// everyone while it existed.
	MaxObservationBytes = 64 << 10
)

// Writable returns why the API server would refuse, or the bounds above forbid, the Observation of
// ev — nil when it can be written. The reason names the field and quotes at most 64 bytes of it.
func Writable(ev *Event) error {
	r := ev.Resource
	if r.Namespace != "" {
		if msgs := validation.IsDNS1123Label(r.Namespace); len(msgs) > 0 {
			return fmt.Errorf("resource.namespace %s: %s", quote(r.Namespace), msgs[0])
		}
	}
	for _, f := range []struct {
		name, value string
		max         int
	}{
		{"resource.name", r.Name, 253}, {"resource.kind", r.Kind, 63}, {"resource.apiVersion", r.APIVersion, 253},
	} {
		if len(f.value) > f.max {
			return fmt.Errorf("%s %s is %d bytes, at most %d", f.name, quote(f.value), len(f.value), f.max)
		}
	}
	for k := range ev.Details {
		if len(k) > MaxDetailKeyLength {
			return fmt.Errorf("detail key %s is %d bytes, at most %d", quote(k), len(k), MaxDetailKeyLength)
		}
	}
	b, err := json.Marshal(BuildObservation(ev, "default"))
	if err != nil {
		return fmt.Errorf("encoding the Observation: %w", err)
	}
	if len(b) > MaxObservationBytes {
		return fmt.Errorf("the Observation would be %d bytes, at most %d", len(b), MaxObservationBytes)
	}
	if !validSource(ev.Source) {
		return fmt.Errorf("source %s: lower-case letters, digits and '-', at most 63", quote(ev.Source))
	}
	return nil
}

// quote is s in quotes, cut to 64 bytes with an ellipsis, for messages and logs.
func quote(s string) string {
	const max = 64
	if len(s) <= max {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprintf("%q…", s[:max])
}
