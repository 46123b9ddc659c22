package pipeline

import (
	"context"
	"fmt"
	"time"

	"github.com/kube-zen/zen-watcher/pkg/metrics"
)

// Sink takes findings that passed every stage; the Writer is the production sink.
type Sink interface {
	Put(ctx context.Context, ev *Event) error
}

// Pipeline runs findings through their stages and hands the survivors to a sink.
type Pipeline struct {
	stages  Stages
	sink    Sink
	metrics *metrics.Metrics
}

// New returns a pipeline that runs stages in order, then sink.
func New(stages Stages, sink Sink, m *metrics.Metrics) *Pipeline {
	return &Pipeline{stages: stages, sink: sink, metrics: m}
}

// Handle processes one finding. It returns an error only when the finding could not be handed on
// (the sink refused it before ctx ended, or a stage failed); the caller still owns it then.
func (p *Pipeline) Handle(ctx context.Context, ev *Event) error {
	ev.received = time.Now()
	if ev.Fingerprint == "" {
		ev.Fingerprint = Fingerprint(ev)
	}
	p.metrics.EventsProcessed.WithLabelValues(ev.Source).Inc()
	stopped, err := p.stages.Run(ctx, ev)
	if err != nil {
		p.metrics.PipelineErrors.WithLabelValues(ev.Source, stopped.Name()).Inc()
		return fmt.Errorf("stage %s on finding of %s: %w", stopped.Name(), ev.Source, err)
	}
	if stopped != nil {
		p.count(ev, stopped.Outcome())
		return nil
	}
	if err := p.sink.Put(ctx, ev); err != nil {
		p.metrics.PipelineErrors.WithLabelValues(ev.Source, "sink").Inc()
		return err
	}
	return nil
}

func (p *Pipeline) count(ev *Event, o Outcome) {
	switch o {
	case OutcomeFiltered:
		p.metrics.ObservationsFiltered.WithLabelValues(ev.Source).Inc()
	case OutcomeDeduplicated:
		p.metrics.ObservationsDeduplicated.WithLabelValues(ev.Source).Inc()
	}
	p.metrics.ProcessingLatency.WithLabelValues(ev.Source).Observe(time.Since(ev.received).Seconds())
}
