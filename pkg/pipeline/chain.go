package pipeline

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/metrics"
)

// SourceConfig is one source's processing configuration, resolved from its Ingester and the
// daemon's defaults.
type SourceConfig struct {
	// Filter is nil for a source that keeps everything.
	Filter *FilterConfig
	// Dedup is nil for a source without dedup.
	Dedup *DedupConfig
	// Order is filter_first, dedup_first, or auto (also when empty).
	Order v1alpha1.Order
	// RateLimit caps the findings per second that go on to the writer; nil is no cap.
	RateLimit *RateLimitConfig
	// TTL is the lifetime of the source's Observations; zero leaves it to the global default.
	TTL time.Duration
}

// RateLimitConfig is a token bucket.
type RateLimitConfig struct {
	PerSecond float64
	Burst     int
}

// RateLimit is the stage that caps a source's rate. It is explicit and counted apart: a finding it
// stops is rate limited, never called a duplicate.
type RateLimit struct {
	limiter *rate.Limiter
}

// Name implements Stage.
func (r *RateLimit) Name() string { return "rate_limit" }

// Outcome implements Stage.
func (r *RateLimit) Outcome() Outcome { return OutcomeRateLimited }

// Process implements Stage.
func (r *RateLimit) Process(context.Context, *Event) (bool, error) { return r.limiter.Allow(), nil }

// orderIndex values of chain.order.
const (
	filterFirst int32 = iota
	dedupFirst
)

// chain is one source's compiled stages, in both orders, with the counters the order tuner reads.
type chain struct {
	source string
	auto   bool
	order  atomic.Int32
	orders [2]Stages
	filter *Filter
	dedup  *Dedup
	ttl    int64 // seconds

	// statistics for the order tuner
	events, low                atomic.Uint64
	filterSeen, filterDropped  atomic.Uint64
	dedupSeen, dedupDropped    atomic.Uint64
	filterNanos, filterSamples atomic.Uint64
	dedupNanos, dedupSamples   atomic.Uint64
	lastChange                 atomic.Int64 // unix nanoseconds
	// written is shared by every configuration of the source: a finding in flight while its
	// source is configured anew counts where the new configuration reads.
	written                    *atomic.Uint64
	processed, filtered, duped prometheus.Counter
	rateLimited                prometheus.Counter
	latency                    prometheus.Observer
}

// newChain compiles cfg for source.
func newChain(source string, cfg SourceConfig, defaultWindow *atomic.Int64, store *Tiered, m *metrics.Metrics) (*chain, error) {
	c := &chain{
		written:     new(atomic.Uint64),
		source:      source,
		processed:   m.EventsProcessed.WithLabelValues(source),
		filtered:    m.ObservationsFiltered.WithLabelValues(source),
		duped:       m.ObservationsDeduplicated.WithLabelValues(source),
		rateLimited: m.ObservationsRateLimited.WithLabelValues(source),
		latency:     m.ProcessingLatency.WithLabelValues(source),
		ttl:         int64(cfg.TTL / time.Second),
	}
	m.InitSource(source)
	var err error
	if cfg.Filter != nil {
		if c.filter, err = NewFilter(source, *cfg.Filter, m); err != nil {
			return nil, fmt.Errorf("source %s: %w", source, err)
		}
	}
	if cfg.Dedup != nil {
		if c.dedup, err = NewDedup(source, *cfg.Dedup, defaultWindow, store, m); err != nil {
			return nil, fmt.Errorf("source %s: %w", source, err)
		}
	}
	var tail Stages
	if cfg.RateLimit != nil {
		if cfg.RateLimit.PerSecond <= 0 {
			return nil, fmt.Errorf("source %s: rate limit must be positive", source)
		}
		burst := cfg.RateLimit.Burst
		if burst <= 0 {
			burst = max(int(cfg.RateLimit.PerSecond), 1)
		}
		tail = Stages{&RateLimit{limiter: rate.NewLimiter(rate.Limit(cfg.RateLimit.PerSecond), burst)}}
	}
	c.orders[filterFirst] = c.assemble(c.filter, c.dedup, tail)
	c.orders[dedupFirst] = c.assemble(c.dedup, c.filter, tail)
	switch cfg.Order {
	case v1alpha1.OrderFilterFirst:
		c.order.Store(filterFirst)
	case v1alpha1.OrderDedupFirst:
		c.order.Store(dedupFirst)
	case v1alpha1.OrderAuto, "":
		c.auto = true
	default:
		return nil, fmt.Errorf("source %s: unknown order %q (want filter_first, dedup_first or auto)", source, cfg.Order)
	}
	c.lastChange.Store(time.Now().UnixNano())
	return c, nil
}

// assemble orders the stages that exist, skipping typed nils.
func (c *chain) assemble(first, second Stage, tail Stages) Stages {
	var s Stages
	for _, st := range []Stage{first, second} {
		switch v := st.(type) {
		case *Filter:
			if v != nil {
				s = append(s, v)
			}
		case *Dedup:
			if v != nil {
				s = append(s, v)
			}
		}
	}
	return append(s, tail...)
}

// Order is the order in force.
func (c *chain) Order() v1alpha1.Order {
	if c.order.Load() == dedupFirst {
		return v1alpha1.OrderDedupFirst
	}
	return v1alpha1.OrderFilterFirst
}

// setOrder switches the order; an event already running keeps the stages it started with, so no
// finding is lost or passes a stage twice.
func (c *chain) setOrder(o v1alpha1.Order) bool {
	want := filterFirst
	if o == v1alpha1.OrderDedupFirst {
		want = dedupFirst
	}
	if c.order.Swap(want) == want {
		return false
	}
	c.lastChange.Store(time.Now().UnixNano())
	return true
}

// run passes ev through the stages of the order in force, sampling each stage's cost for the
// tuner on one finding in 64.
func (c *chain) run(ctx context.Context, ev *Event) (Stage, error) {
	n := c.events.Add(1)
	ev.seq = n
	if ev.Severity.Rank() <= v1alpha1.SeverityLow.Rank() {
		c.low.Add(1)
	}
	sample := n&63 == 0
	for _, st := range c.orders[c.order.Load()] {
		var start time.Time
		if sample {
			start = time.Now()
		}
		keep, err := st.Process(ctx, ev)
		if err != nil {
			return st, err
		}
		c.count(st, keep, sample, start)
		if !keep {
			return st, nil
		}
	}
	return nil, nil
}

func (c *chain) count(st Stage, keep, sample bool, start time.Time) {
	switch st.(type) {
	case *Filter:
		c.filterSeen.Add(1)
		if !keep {
			c.filterDropped.Add(1)
		}
		if sample {
			c.filterNanos.Add(uint64(time.Since(start)))
			c.filterSamples.Add(1)
		}
	case *Dedup:
		c.dedupSeen.Add(1)
		if !keep {
			c.dedupDropped.Add(1)
		}
		if sample {
			c.dedupNanos.Add(uint64(time.Since(start)))
			c.dedupSamples.Add(1)
		}
	}
}

// stats reads the tuner's counters.
func (c *chain) stats() OrderStats {
	return OrderStats{
		Events: c.events.Load(), LowSeverity: c.low.Load(),
		FilterSeen: c.filterSeen.Load(), FilterDropped: c.filterDropped.Load(),
		DedupSeen: c.dedupSeen.Load(), DedupDropped: c.dedupDropped.Load(),
		FilterNanos: c.filterNanos.Load(), FilterSamples: c.filterSamples.Load(),
		DedupNanos: c.dedupNanos.Load(), DedupSamples: c.dedupSamples.Load(),
		Written: c.written.Load(),
	}
}
