// Package pipeline turns normalized findings (Events) into Observations: it filters them,
// recognizes the ones already recorded, and writes the rest through a bounded pool of workers.
//
// The pipeline sees Kubernetes and Redis only through small interfaces (Creator for the API server),
// so it can be driven in benchmarks and unit tests without either.
package pipeline

import (
	"encoding/hex"
	"sync/atomic"
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
	// Rule is the short id of what was found: a CVE id, a rule, policy or check id, an event
	// reason. Filters match it; it enters the fingerprint.
	Rule string
	// Identity is whatever else makes the finding distinct for its source, resource and rule (a
	// warning's message, a secret's location). It enters the fingerprint.
	Identity string
	// Instance identifies one occurrence of a finding that happens again and again (an alert's time,
	// an audit ID). It enters the Observation's name, not the fingerprint: occurrences are the same
	// finding for dedup, and one occurrence delivered twice is written once.
	Instance string
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
	// Relisted marks a finding of an object an informer listed when it started, or one its bridge
	// delivered while that list was under way (not one it saw created or changed later): after a
	// restart or a rebalance its Observation may exist already.
	Relisted bool
	// FP is the fingerprint, set by the pipeline before the first stage runs.
	FP uint64
	// TTLSeconds overrides the Observation's lifetime when non-zero.
	TTLSeconds int64
	// received is when the pipeline took the event, for latency and as the dedup clock.
	received time.Time
	// queued is when the writer took it into its queue.
	queued time.Time
	// seq is the finding's number in its source, to sample the cheap outcomes' latency.
	seq uint64
	// The dedup claim this finding holds, taken back if it is not written.
	claim      uint8
	claimKey   uint64
	claimToken uint64 // names the claim in the shared tier; zero when only the local tier has it
	claimStore *Tiered
	// written counts the source's Observations written, for the Ingester's status.
	written *atomic.Uint64
	// Redelivered marks a finding handed on again after its first delivery may have been cut short
	// (a replica died holding it): the dedup claim it took then may exist with nothing written, so
	// it skips dedup and relies on its Instance-derived name to be written at most once.
	Redelivered bool `json:"-"`
	// Withdrawn, when set, reports whether the finding is no longer this replica's to write: its
	// source's object is in a namespace handed to another replica since, whose informers list it
	// again. The writer asks it as it takes the finding and before each retry, and drops the
	// finding then (OutcomeHandedOver); what it queued before, it writes, and Writer.Settle waits
	// for that, so that a replica letting namespaces go does not race their new owner.
	Withdrawn func() bool `json:"-"`
	// Done, when set, is called once with the finding's final outcome: written, filtered,
	// deduplicated, rate limited, or failed with the error. The webhook server waits on it.
	Done func(Outcome, error) `json:"-"`
}

// FingerprintHex is the fingerprint as 16 lower-case hex digits, as Observations carry it.
func (ev *Event) FingerprintHex() string {
	var b [8]byte
	for i := range b {
		b[i] = byte(ev.FP >> (56 - 8*i))
	}
	return hex.EncodeToString(b[:])
}

// Fingerprint returns a stable hash of the finding's normalized content: source, category, severity,
// event type, resource, rule and identity. Fields are separated by a NUL byte, so ("ab","c") and
// ("a","bc") differ. Presentation (title, description, details) is left out: a repeat that only
// updates a count is the same finding.
func Fingerprint(ev *Event) uint64 {
	// One pass over a stack buffer hashes several times faster than a Write per field; a finding
	// whose fields exceed the buffer costs one allocation.
	var buf [512]byte
	b := buf[:0]
	for _, s := range [...]string{
		ev.Source, string(ev.Category), string(ev.Severity), ev.EventType,
		ev.Resource.APIVersion, ev.Resource.Kind, ev.Resource.Namespace, ev.Resource.Name,
		ev.Rule, ev.Identity,
	} {
		b = append(b, s...)
		b = append(b, 0)
	}
	return xxhash.Sum64(b)
}

var sep = [1]byte{0}
