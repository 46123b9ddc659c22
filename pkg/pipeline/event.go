// Package pipeline turns normalized findings (Events) into Observations: it filters them,
// recognizes the ones already recorded, and writes the rest through a bounded pool of workers.
//
// The pipeline sees Kubernetes and Redis only through small interfaces (Creator for the API server),
// so it can be driven in benchmarks and unit tests without either.
package pipeline

import (
	"encoding/hex"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
)

// Event is one normalized finding on its way to becoming an Observation.
type Event struct {
	// Source names the tool or Ingester that reported the finding.
	Source string
	// Category, Severity and EventType classify the finding on zen-watcher's scales.
	Category  v1alpha1.Category
	Severity  v1alpha1.Severity
	EventType string
	// Resource is the object the finding is about.
	Resource v1alpha1.ResourceRef
	// Identity is what makes the finding itself distinct for its source and resource: a CVE id, a
	// rule, a policy or a check id, an event reason. It enters the fingerprint.
	Identity string
	// Title and Description are for people.
	Title       string
	Description string
	// Details holds tool-specific facts; bounded when the Observation is built.
	Details map[string]string
	// DetectedAt is when the tool reported the finding.
	DetectedAt time.Time
	// Stateful marks findings that describe a state which a source re-reads (a report's entries, a
	// warning event): their Observation name derives from the fingerprint, so reading the same state
	// again after a restart or rebalance creates nothing new.
	Stateful bool
	// Fingerprint is set by the pipeline before the first stage runs.
	Fingerprint string
	// TTLSeconds overrides the Observation's lifetime when non-zero.
	TTLSeconds int64
	// received is when the pipeline took the event, for latency.
	received time.Time
}

// Fingerprint returns a stable hash of the finding's normalized content: source, category, severity,
// event type, resource and identity. Fields are separated by a byte that cannot occur in them after
// normalization, so ("ab","c") and ("a","bc") differ.
func Fingerprint(ev *Event) string {
	var d xxhash.Digest
	d.Reset()
	for _, s := range [...]string{
		ev.Source, string(ev.Category), string(ev.Severity), ev.EventType,
		ev.Resource.APIVersion, ev.Resource.Kind, ev.Resource.Namespace, ev.Resource.Name,
		ev.Identity,
	} {
		_, _ = d.WriteString(s)
		_, _ = d.Write(sep[:])
	}
	var sum [8]byte
	h := d.Sum64()
	for i := range sum {
		sum[i] = byte(h >> (56 - 8*i))
	}
	return hex.EncodeToString(sum[:])
}

var sep = [1]byte{0}
