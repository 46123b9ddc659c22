package pipeline

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/metrics"
)

// Dedup defaults, from the performance guide.
const (
	DefaultDedupWindow        = 60 * time.Second
	DefaultMaxEventsPerWindow = 10
)

// DedupConfig is a source's resolved dedup configuration.
type DedupConfig struct {
	Strategy v1alpha1.DedupStrategy
	// Window is how long a key is remembered; zero follows the pipeline-wide window, which HA
	// optimization may change while running.
	Window time.Duration
	// MaxEventsPerWindow applies to event-stream.
	MaxEventsPerWindow int64
	// Fields make the key of the key strategy.
	Fields []string
}

// Dedup is the stage that recognizes findings already recorded.
type Dedup struct {
	strategy v1alpha1.DedupStrategy
	window   *atomic.Int64 // nanoseconds; shared with the pipeline when the source sets none
	limit    int64
	salt     uint64
	keyOf    func(*Event) uint64
	store    *Tiered
	create   prometheus.Counter
	drop     prometheus.Counter
}

// claim kinds recorded on the Event so a failed write can be taken back.
const (
	claimNone uint8 = iota
	claimKey
	claimCount
	claimLocal
)

// NewDedup compiles cfg for source. defaultWindow is followed when cfg.Window is zero.
func NewDedup(source string, cfg DedupConfig, defaultWindow *atomic.Int64, store *Tiered, m *metrics.Metrics) (*Dedup, error) {
	d := &Dedup{strategy: cfg.Strategy, window: defaultWindow, store: store}
	if cfg.Window > 0 {
		d.window = new(atomic.Int64)
		d.window.Store(int64(cfg.Window))
	}
	switch cfg.Strategy {
	case v1alpha1.DedupFingerprint:
		d.keyOf = func(ev *Event) uint64 { return ev.FP }
	case v1alpha1.DedupEventStream:
		d.keyOf = func(ev *Event) uint64 { return ev.FP }
		d.limit = cfg.MaxEventsPerWindow
		if d.limit <= 0 {
			d.limit = DefaultMaxEventsPerWindow
		}
	case v1alpha1.DedupKey:
		keyOf, err := fieldsKey(cfg.Fields)
		if err != nil {
			return nil, err
		}
		d.keyOf = keyOf
	default:
		return nil, fmt.Errorf("unknown dedup strategy %q (want fingerprint, event-stream or key)", cfg.Strategy)
	}
	d.salt = xxhash.Sum64String(source + "\x00" + string(cfg.Strategy))
	d.create = m.DedupDecisions.WithLabelValues(string(cfg.Strategy), "create")
	d.drop = m.DedupDecisions.WithLabelValues(string(cfg.Strategy), "drop")
	return d, nil
}

// Name implements Stage.
func (d *Dedup) Name() string { return "dedup" }

// Outcome implements Stage.
func (d *Dedup) Outcome() Outcome { return OutcomeDeduplicated }

// Process implements Stage. A finding passes when its key is new in the window (fingerprint, key)
// or its count is within the limit (event-stream).
func (d *Dedup) Process(ctx context.Context, ev *Event) (bool, error) {
	if ev.Redelivered && ev.Instance != "" {
		d.create.Inc()
		return true, nil
	}
	key := mix(d.keyOf(ev) ^ d.salt)
	window := time.Duration(d.window.Load())
	now := ev.received.UnixNano()
	if ev.received.IsZero() {
		now = time.Now().UnixNano()
	}
	var keep bool
	if d.strategy == v1alpha1.DedupEventStream {
		var token uint64
		keep, token = d.store.Admit(ctx, key, now, window, d.limit)
		if keep {
			ev.claim, ev.claimKey, ev.claimToken, ev.claimStore = claimCount, key, token, d.store
		}
	} else if ev.Stateful {
		// A state's Observation name derives from its fingerprint: the API server itself refuses a
		// second one, across replicas. A shared claim would add nothing but a hazard: taken by a
		// replica that died before writing, it would hide the state from its next owner for good
		// (a source hands on each state once). So states claim in this replica's tier only.
		keep = d.store.ClaimLocal(key, now, window)
		if keep {
			ev.claim, ev.claimKey, ev.claimStore = claimLocal, key, d.store
		}
	} else {
		var token uint64
		keep, token = d.store.Claim(ctx, key, now, window)
		if keep {
			ev.claim, ev.claimKey, ev.claimToken, ev.claimStore = claimKey, key, token, d.store
		}
	}
	if keep {
		d.create.Inc()
	} else {
		d.drop.Inc()
	}
	return keep, nil
}

// releaseTimeout bounds taking back a claim. The release must outlive the request that made the
// claim: a webhook whose deadline passed while the writer's queue was full still has to give its
// claim back, or the sender's retry would be judged a duplicate of nothing.
const releaseTimeout = 2 * time.Second

// release takes back the dedup claim of a finding that was not written.
func release(ctx context.Context, ev *Event) {
	if ev.claim == claimNone || ev.claimStore == nil {
		return
	}
	if ev.claim == claimLocal {
		ev.claimStore.ReleaseLocal(ev.claimKey)
	} else {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
		ev.claimStore.Release(rctx, ev.claimKey, ev.claim == claimCount, ev.claimToken)
		cancel()
	}
	ev.claim = claimNone
}

// mix spreads the bits of a salted key (a finalizer in the style of splitmix64), so that the top
// bits that pick a cache shard are as good as the bottom ones.
func mix(k uint64) uint64 {
	k ^= k >> 30
	k *= 0xbf58476d1ce4e5b9
	k ^= k >> 27
	k *= 0x94d049bb133111eb
	k ^= k >> 31
	return k
}

// fieldsKey compiles the key strategy's field list into a hash over those fields of the Event.
func fieldsKey(fields []string) (func(*Event) uint64, error) {
	if len(fields) == 0 {
		return nil, fmt.Errorf("dedup strategy key needs fields")
	}
	getters := make([]func(*Event) string, 0, len(fields))
	for _, f := range fields {
		g, err := fieldGetter(f)
		if err != nil {
			return nil, fmt.Errorf("dedup key: %w", err)
		}
		getters = append(getters, g)
	}
	return func(ev *Event) uint64 {
		var d xxhash.Digest
		d.Reset()
		for _, g := range getters {
			_, _ = d.WriteString(g(ev))
			_, _ = d.Write(sep[:])
		}
		return d.Sum64()
	}, nil
}

// fieldGetter returns an accessor for one of the finding's fields by the name users write in an
// Ingester: source, category, severity, eventType, apiVersion, kind, namespace, name, rule,
// identity, title, or details.<key>.
func fieldGetter(name string) (func(*Event) string, error) {
	if k, ok := strings.CutPrefix(name, "details."); ok && k != "" {
		return func(ev *Event) string { return ev.Details[k] }, nil
	}
	switch name {
	case "source":
		return func(ev *Event) string { return ev.Source }, nil
	case "category":
		return func(ev *Event) string { return string(ev.Category) }, nil
	case "severity":
		return func(ev *Event) string { return string(ev.Severity) }, nil
	case "eventType":
		return func(ev *Event) string { return ev.EventType }, nil
	case "apiVersion":
		return func(ev *Event) string { return ev.Resource.APIVersion }, nil
	case "kind":
		return func(ev *Event) string { return ev.Resource.Kind }, nil
	case "namespace":
		return func(ev *Event) string { return ev.Resource.Namespace }, nil
	case "name":
		return func(ev *Event) string { return ev.Resource.Name }, nil
	case "rule":
		return func(ev *Event) string { return ev.Rule }, nil
	case "identity":
		return func(ev *Event) string { return ev.Identity }, nil
	case "title":
		return func(ev *Event) string { return ev.Title }, nil
	}
	return nil, fmt.Errorf("unknown field %q (want source, category, severity, eventType, apiVersion, "+
		"kind, namespace, name, rule, identity, title or details.<key>)", name)
}

var _ Stage = (*Dedup)(nil)
