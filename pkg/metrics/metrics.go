// Package metrics defines every Prometheus metric zen-watcher exports, once, in one struct.
//
// The struct is built by New with an explicit Registerer, so tests get a fresh registry and the
// binary registers exactly one set; nothing in the hot path looks a metric up by name.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

const namespace = "zen_watcher"

// Metrics holds zen-watcher's metrics. Labels are low cardinality by design: source, strategy,
// decision, reason and stage, never a namespace or a resource name.
type Metrics struct {
	// ObservationsCreated counts Observations written, by source.
	ObservationsCreated *prometheus.CounterVec
	// ObservationsFiltered counts findings dropped by the filter, by source.
	ObservationsFiltered *prometheus.CounterVec
	// ObservationsDeduplicated counts findings recognized as already recorded, by source.
	ObservationsDeduplicated *prometheus.CounterVec
	// ObservationsFailed counts findings that could not be written, by source and reason.
	ObservationsFailed *prometheus.CounterVec
	// EventsProcessed counts findings that entered the pipeline, by source.
	EventsProcessed *prometheus.CounterVec
	// ProcessingLatency is the time from a finding entering the pipeline to its outcome, by source.
	ProcessingLatency *prometheus.HistogramVec
	// PipelineErrors counts errors in the pipeline, by source and stage.
	PipelineErrors *prometheus.CounterVec
	// WriterQueueDepth is the number of findings waiting for a writer worker.
	WriterQueueDepth prometheus.Gauge
	// SourceEventsIgnored counts objects a source read but could not or would not turn into a
	// finding, by source and reason.
	SourceEventsIgnored *prometheus.CounterVec
}

// New creates zen-watcher's metrics and registers them with reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		ObservationsCreated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "observations_created_total",
			Help: "Observations written to the API server, by source.",
		}, []string{"source"}),
		ObservationsFiltered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "observations_filtered_total",
			Help: "Findings dropped by the filter, by source.",
		}, []string{"source"}),
		ObservationsDeduplicated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "observations_deduplicated_total",
			Help: "Findings recognized as already recorded, by source.",
		}, []string{"source"}),
		ObservationsFailed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "observations_failed_total",
			Help: "Findings that could not be written as Observations, by source and reason.",
		}, []string{"source", "reason"}),
		EventsProcessed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "optimization_source_events_processed_total",
			Help: "Findings that entered the pipeline, by source.",
		}, []string{"source"}),
		ProcessingLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "optimization_source_processing_latency_seconds",
			Help:    "Time from a finding entering the pipeline to its outcome, by source.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"source"}),
		PipelineErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "pipeline_errors_total",
			Help: "Errors in the pipeline, by source and stage.",
		}, []string{"source", "stage"}),
		WriterQueueDepth: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "writer_queue_depth",
			Help: "Findings waiting for a writer worker.",
		}),
		SourceEventsIgnored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "source_objects_ignored_total",
			Help: "Objects a source read but did not turn into findings, by source and reason.",
		}, []string{"source", "reason"}),
	}
	reg.MustRegister(
		m.ObservationsCreated, m.ObservationsFiltered, m.ObservationsDeduplicated,
		m.ObservationsFailed, m.EventsProcessed, m.ProcessingLatency, m.PipelineErrors,
		m.WriterQueueDepth, m.SourceEventsIgnored,
	)
	return m
}
