package pipeline

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/metrics"
)

// Sink takes findings that passed every stage; the Writer is the production sink. A sink must call
// Event.finish exactly once for every finding it accepts.
type Sink interface {
	Put(ctx context.Context, ev *Event) error
}

// Config is the pipeline-wide configuration.
type Config struct {
	// Defaults apply to every source that has not been configured on its own.
	Defaults SourceConfig
	// DedupWindow is the window of sources that set none (DEDUP_WINDOW); HA optimization changes
	// it while running.
	DedupWindow time.Duration
}

// Pipeline runs each source's findings through that source's stages and hands the survivors to a
// sink. Sources are configured and reconfigured while findings flow: a finding is processed
// entirely by the configuration that was in force when it arrived.
type Pipeline struct {
	chains        atomic.Pointer[map[string]*chain]
	mu            sync.Mutex // serializes changes to chains
	defaults      SourceConfig
	defaultWindow atomic.Int64
	store         *Tiered
	sink          Sink
	metrics       *metrics.Metrics
}

// New returns a pipeline. store holds the dedup state; sink receives what survives.
func New(cfg Config, store *Tiered, sink Sink, m *metrics.Metrics) (*Pipeline, error) {
	p := &Pipeline{defaults: cfg.Defaults, store: store, sink: sink, metrics: m}
	window := cfg.DedupWindow
	if window <= 0 {
		window = DefaultDedupWindow
	}
	p.defaultWindow.Store(int64(window))
	m.DedupWindowSeconds.Set(window.Seconds())
	empty := map[string]*chain{}
	p.chains.Store(&empty)
	// Compile the defaults once now, so a bad default is an error at start, not on the first finding.
	if _, err := newChain("defaults", cfg.Defaults, &p.defaultWindow, store, m); err != nil {
		return nil, fmt.Errorf("default processing configuration: %w", err)
	}
	return p, nil
}

// Configure compiles cfg for source and puts it in force. On error the previous configuration of the
// source stays in force.
func (p *Pipeline) Configure(source string, cfg SourceConfig) error {
	c, err := newChain(source, cfg, &p.defaultWindow, p.store, p.metrics)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	old := *p.chains.Load()
	if prev, ok := old[source]; ok {
		c.written = prev.written
	}
	if prev, ok := old[source]; ok && c.auto && prev.auto {
		// Keep the order the tuner chose; a configuration change is not evidence against it.
		c.order.Store(prev.order.Load())
		c.lastChange.Store(prev.lastChange.Load())
	}
	next := maps.Clone(old)
	next[source] = c
	p.chains.Store(&next)
	p.setOrderGauge(source, c.Order())
	return nil
}

// Remove forgets a source's configuration; its findings, if any still come, use the defaults.
func (p *Pipeline) Remove(source string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	next := maps.Clone(*p.chains.Load())
	delete(next, source)
	p.chains.Store(&next)
}

// chainFor returns the source's chain, compiling the defaults for a source seen the first time.
func (p *Pipeline) chainFor(source string) (*chain, error) {
	if c, ok := (*p.chains.Load())[source]; ok {
		return c, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := (*p.chains.Load())[source]; ok {
		return c, nil
	}
	c, err := newChain(source, p.defaults, &p.defaultWindow, p.store, p.metrics)
	if err != nil {
		return nil, err
	}
	next := maps.Clone(*p.chains.Load())
	next[source] = c
	p.chains.Store(&next)
	p.setOrderGauge(source, c.Order())
	return c, nil
}

// Handle processes one finding. It returns an error only when the finding could not be handed on
// (the sink refused it before ctx ended, or a stage failed): the caller still owns it then, and no
// dedup state was kept for it.
func (p *Pipeline) Handle(ctx context.Context, ev *Event) error {
	ev.received = time.Now()
	if err := p.normalize(ev); err != nil {
		return err
	}
	if ev.FP == 0 {
		ev.FP = Fingerprint(ev)
	}
	c, err := p.chainFor(ev.Source)
	if err != nil {
		return err
	}
	if ev.TTLSeconds == 0 {
		ev.TTLSeconds = c.ttl
	}
	c.processed.Inc()
	ev.written = c.written
	stopped, err := c.run(ctx, ev)
	if err != nil {
		release(ctx, ev)
		p.metrics.PipelineErrors.WithLabelValues(ev.Source, stopped.Name()).Inc()
		return fmt.Errorf("stage %s on finding of %s: %w", stopped.Name(), ev.Source, err)
	}
	if stopped != nil {
		p.drop(ctx, c, ev, stopped.Outcome())
		return nil
	}
	if err := p.sink.Put(ctx, ev); err != nil {
		release(ctx, ev)
		p.metrics.PipelineErrors.WithLabelValues(ev.Source, "sink").Inc()
		return err
	}
	return nil
}

// normalize makes a finding from any source fit the Observation schema: an unknown severity
// becomes info and an unknown category operations (both counted), the event type is put in lower
// snake case. A finding without a valid source name cannot be attributed and is refused.
func (p *Pipeline) normalize(ev *Event) error {
	if !validSource(ev.Source) {
		p.metrics.PipelineErrors.WithLabelValues("invalid", "normalize").Inc()
		return fmt.Errorf("finding with invalid source name %q (want lower-case letters, digits and '-', at most 63)", ev.Source)
	}
	if ev.Severity.Rank() < 0 {
		p.metrics.SeverityUnknown.WithLabelValues(ev.Source).Inc()
		ev.Severity = v1alpha1.SeverityInfo
	}
	switch ev.Category {
	case v1alpha1.CategorySecurity, v1alpha1.CategoryCompliance, v1alpha1.CategoryOperations,
		v1alpha1.CategoryPerformance, v1alpha1.CategoryCost:
	default:
		p.metrics.PipelineErrors.WithLabelValues(ev.Source, "unknown_category").Inc()
		ev.Category = v1alpha1.CategoryOperations
	}
	ev.EventType = NormalizeEventType(ev.EventType)
	return nil
}

// validSource matches the Observation schema's pattern for source without a regular expression.
func validSource(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// drop records a finding that stopped at a stage.
func (p *Pipeline) drop(ctx context.Context, c *chain, ev *Event, o Outcome) {
	if o != OutcomeDeduplicated {
		// It was never written: a later report of it must not be taken for a duplicate. This is
		// what keeps dedup_first and filter_first giving the same Observations — a finding the
		// filter drops after dedup claimed it gives its claim back.
		release(ctx, ev)
	}
	switch o {
	case OutcomeFiltered:
		c.filtered.Inc()
	case OutcomeDeduplicated:
		c.duped.Inc()
	case OutcomeRateLimited:
		c.rateLimited.Inc()
	}
	// A finding that stops at a stage takes well under a microsecond, and reading the clock costs
	// a good share of that: one in 16 is enough to keep the histogram true.
	if ev.seq&15 == 0 {
		c.latency.Observe(time.Since(ev.received).Seconds())
	}
	if ev.Done != nil {
		ev.Done(o, nil)
	}
}

// SetOrder puts an order in force for a source in auto mode (the tuner's decision, or the leader's
// published one). It reports whether the order changed.
func (p *Pipeline) SetOrder(source string, o v1alpha1.Order) bool {
	c, err := p.chainFor(source)
	if err != nil || !c.auto {
		return false
	}
	if !c.setOrder(o) {
		return false
	}
	p.metrics.StrategyChanges.WithLabelValues(source).Inc()
	p.setOrderGauge(source, o)
	return true
}

// Order returns the order in force for a source.
func (p *Pipeline) Order(source string) v1alpha1.Order {
	c, err := p.chainFor(source)
	if err != nil {
		return v1alpha1.OrderFilterFirst
	}
	return c.Order()
}

// Written is the number of Observations written for a source since its chain was configured.
func (p *Pipeline) Written(source string) uint64 {
	if c, ok := (*p.chains.Load())[source]; ok {
		return c.written.Load()
	}
	return 0
}

// SetDedupWindow changes the window of every source that does not set its own.
func (p *Pipeline) SetDedupWindow(d time.Duration) {
	if d <= 0 {
		return
	}
	p.defaultWindow.Store(int64(d))
	p.metrics.DedupWindowSeconds.Set(d.Seconds())
}

// SourceStats is one source's cumulative statistics and whether its order is automatic.
type SourceStats struct {
	Source     string
	Auto       bool
	Order      v1alpha1.Order
	LastChange time.Time
	Stats      OrderStats
	Strategy   v1alpha1.DedupStrategy
}

// Stats returns the statistics of every configured or seen source.
func (p *Pipeline) Stats() []SourceStats {
	chains := *p.chains.Load()
	out := make([]SourceStats, 0, len(chains))
	for name, c := range chains {
		s := SourceStats{
			Source: name, Auto: c.auto, Order: c.Order(), Stats: c.stats(),
			LastChange: time.Unix(0, c.lastChange.Load()),
		}
		if c.dedup != nil {
			s.Strategy = c.dedup.strategy
		}
		out = append(out, s)
	}
	return out
}

func (p *Pipeline) setOrderGauge(source string, o v1alpha1.Order) {
	for _, v := range []v1alpha1.Order{v1alpha1.OrderFilterFirst, v1alpha1.OrderDedupFirst} {
		val := 0.0
		if v == o {
			val = 1
		}
		p.metrics.OrderInForce.WithLabelValues(source, string(v)).Set(val)
	}
}
