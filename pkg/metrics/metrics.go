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
	// StageSeconds decomposes the time of a finding that reached the writer, by stage: the
	// pipeline's own (normalize, filter, dedup with Redis), the wait in the writer's queue, and
	// the create call to the API server.
	StageSeconds *prometheus.HistogramVec
	// PipelineErrors counts errors in the pipeline, by source and stage.
	PipelineErrors *prometheus.CounterVec
	// WriterQueueDepth is the number of findings waiting for a writer worker.
	WriterQueueDepth prometheus.Gauge
	// SourceEventsIgnored counts objects a source read but could not or would not turn into a
	// finding, by source and reason.
	SourceEventsIgnored *prometheus.CounterVec
	// SeverityUnknown counts findings whose tool severity no mapping knew (they become info).
	SeverityUnknown *prometheus.CounterVec
	// ObservationsRateLimited counts findings stopped by a source's rate limit.
	ObservationsRateLimited *prometheus.CounterVec
	// DedupDecisions counts dedup decisions by strategy and decision (create or drop).
	DedupDecisions *prometheus.CounterVec
	// DedupEffectiveness is the share of findings reaching dedup that were duplicates, over the
	// last tuning interval, by source and strategy.
	DedupEffectiveness *prometheus.GaugeVec
	// LowSeverityPercent is the share of low and info findings over the last tuning interval, in
	// percent, by source.
	LowSeverityPercent *prometheus.GaugeVec
	// DedupRateRatio is the share of duplicates over the last tuning interval, by source.
	DedupRateRatio *prometheus.GaugeVec
	// StrategyChanges counts changes of a source's filter/dedup order.
	StrategyChanges *prometheus.CounterVec
	// OrderInForce is 1 for the filter/dedup order in force for a source, 0 for the other.
	OrderInForce *prometheus.GaugeVec
	// SharedStoreAvailable is 1 while Redis answers, 0 while dedup runs on the local tier alone.
	SharedStoreAvailable prometheus.Gauge
	// DedupFallbacks counts dedup operations that Redis failed and the local tier answered.
	DedupFallbacks prometheus.Counter
	// DedupWindowSeconds is the dedup window in force for sources that set none.
	DedupWindowSeconds prometheus.Gauge
	// DedupCacheSize is the capacity of the local dedup tier.
	DedupCacheSize prometheus.Gauge
	// WebhookRequests counts webhook requests by source and HTTP status code.
	WebhookRequests *prometheus.CounterVec
	// WebhookEvents counts the events read from webhook bodies, by source, for the sources that
	// count them (audit: to hold against the API server's apiserver_audit_event_total); those that
	// are no findings are in SourceEventsIgnored by reason.
	WebhookEvents *prometheus.CounterVec
	// WebhookRequestsWithoutFindings counts webhook requests whose body held no finding, by source:
	// answered at once, nothing queued.
	WebhookRequestsWithoutFindings *prometheus.CounterVec
	// WebhookEventsCut counts webhook events that lost members to the bound of one event's size
	// (an audit event's request and response objects, say) and were judged on the rest, by source.
	WebhookEventsCut *prometheus.CounterVec
	// WebhookBytes counts the bytes of webhook request bodies read, by source.
	WebhookBytes *prometheus.CounterVec
	// WebhookRejected counts webhook requests refused, by source and reason.
	WebhookRejected *prometheus.CounterVec
	// WebhookAuthFailures counts webhook requests that failed authentication, by source and reason.
	WebhookAuthFailures *prometheus.CounterVec
	// WebhookRateLimited counts webhook requests refused by the source's rate limit.
	WebhookRateLimited *prometheus.CounterVec
	// WebhookFindings counts findings accepted from webhooks (each event of a batch body), by source.
	WebhookFindings *prometheus.CounterVec
	// WebhookAccepted counts accepted webhook requests by source and mode: queued (in the durable
	// queue) or written (written before the answer, while the queue was unavailable).
	WebhookAccepted *prometheus.CounterVec
	// WebhookQueueFallbacks counts requests the durable queue could not take, by source and reason.
	WebhookQueueFallbacks *prometheus.CounterVec
	// WebhookReplayUnchecked counts signed requests the shared replay memory could not judge, by
	// decision (accepted, refused_strict, refused_age).
	WebhookReplayUnchecked *prometheus.CounterVec
	// WebhookQueueDepth is the entries of a source's queue not yet processed (undelivered or pending).
	WebhookQueueDepth *prometheus.GaugeVec
	// WebhookStreamLag is the entries of a source's queue not yet delivered to any replica.
	WebhookStreamLag *prometheus.GaugeVec
	// WebhookQueueClaimed counts queue entries this replica took over from a replica that stopped
	// processing them.
	WebhookQueueClaimed *prometheus.CounterVec
	// WebhookQueueLost counts queue entries removed unprocessed because they outlived the queue's age
	// bound.
	WebhookQueueLost *prometheus.CounterVec
	// WebhookQueueProcessed counts queue entries processed and acknowledged, by source and result.
	WebhookQueueProcessed *prometheus.CounterVec
	// WebhookConnections is the webhook listener's open connections.
	WebhookConnections prometheus.Gauge
	// WebhookConnectionsRefused counts connections closed unread because the listener or their
	// client had as many open as allowed, by reason (listener_full, client_full).
	WebhookConnectionsRefused *prometheus.CounterVec
	// SourceReady is 1 while a source runs with its objects synced or its webhook served, by source.
	SourceReady *prometheus.GaugeVec
	// Members is the number of live replicas this replica sees.
	Members prometheus.Gauge
	// ChunksOwned is the number of chunks of the shard table this replica owns.
	ChunksOwned prometheus.Gauge
	// TableGeneration is the generation of the shard table in force (0: cut locally).
	TableGeneration prometheus.Gauge
	// Rebalances counts changes of this replica's share.
	Rebalances prometheus.Counter
	// ObservationsHandedOver counts findings the writer dropped unwritten because their namespace
	// went to another replica, which lists them again.
	ObservationsHandedOver *prometheus.CounterVec
	// HandOverWait is how long a replica gaining namespaces waited for the members that held them
	// to report that they send nothing more there.
	HandOverWait prometheus.Histogram
	// ObservationsKnownWritten counts re-listed findings whose Observation was known to exist, so
	// that no create was sent for them.
	ObservationsKnownWritten *prometheus.CounterVec
	// FindingsRelisted counts the findings informers handed on from their first list after a start
	// or a rebalance: what a hand-over costs the pipeline.
	FindingsRelisted *prometheus.CounterVec
	// FindingsRetried counts the objects an informer scheduled to hand on again because a finding
	// of theirs could not be written.
	FindingsRetried *prometheus.CounterVec
	// ShardObjects counts the objects the sharded watches delivered, by whether they were in the
	// share (kept) or not (dropped by the client-side predicate).
	ShardObjects *prometheus.CounterVec
	// WatchDelivery is the time from an object's creation to its informer's Added event, for
	// objects created while the informer watched: how far behind the watch runs.
	WatchDelivery *prometheus.HistogramVec
	// IsLeader is 1 on the leader.
	IsLeader prometheus.Gauge
	// LeaderTransitions counts this replica gaining or losing leadership.
	LeaderTransitions prometheus.Counter
	// FailoverSeconds is, when this replica took over, the time since the previous leader last
	// renewed the Lease.
	FailoverSeconds prometheus.Histogram
	// NamespacesOwned is the number of namespaces in this replica's share.
	NamespacesOwned prometheus.Gauge
	// CleanupDeleted counts Observations deleted by cleanup, by reason.
	CleanupDeleted *prometheus.CounterVec
	// CleanupRuns counts cleanup runs by result (complete, interrupted, error).
	CleanupRuns *prometheus.CounterVec
	// CleanupDuration is the time of a cleanup run.
	CleanupDuration prometheus.Histogram
	// CleanupErrors counts deletes that failed.
	CleanupErrors prometheus.Counter
	// CleanupBacklog is the number of expired Observations the last run left.
	CleanupBacklog prometheus.Gauge
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
		StageSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "finding_stage_seconds",
			Help:    "Time of a finding that reached the writer, by stage: pipeline (normalize, filter, dedup), queue (waiting for a writer worker), create (the API call).",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"stage"}),
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
		SeverityUnknown: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "severity_unknown_total",
			Help: "Findings whose tool severity was not recognized and became info, by source.",
		}, []string{"source"}),
		ObservationsRateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "observations_rate_limited_total",
			Help: "Findings stopped by a source's rate limit, by source.",
		}, []string{"source"}),
		DedupDecisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "dedup_decisions_total",
			Help: "Dedup decisions by strategy and decision (create or drop).",
		}, []string{"strategy", "decision"}),
		DedupEffectiveness: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "dedup_effectiveness_per_strategy",
			Help: "Share of findings reaching dedup that were duplicates, last tuning interval, by source and strategy.",
		}, []string{"source", "strategy"}),
		LowSeverityPercent: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "low_severity_percent",
			Help: "Percent of low and info findings over the last tuning interval, by source.",
		}, []string{"source"}),
		DedupRateRatio: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "optimization_deduplication_rate_ratio",
			Help: "Share of duplicates over the last tuning interval, by source.",
		}, []string{"source"}),
		StrategyChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "optimization_strategy_changes_total",
			Help: "Changes of a source's filter/dedup order, by source.",
		}, []string{"source"}),
		OrderInForce: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "optimization_order",
			Help: "1 for the filter/dedup order in force for a source, 0 for the other.",
		}, []string{"source", "order"}),
		SharedStoreAvailable: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "redis_available",
			Help: "1 while Redis answers dedup requests, 0 while dedup runs on the local tier alone.",
		}),
		DedupFallbacks: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "dedup_local_fallback_total",
			Help: "Dedup operations that Redis failed and the local tier answered.",
		}),
		DedupWindowSeconds: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "dedup_window_seconds",
			Help: "Dedup window in force for sources that set none.",
		}),
		DedupCacheSize: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "dedup_cache_size",
			Help: "Capacity of the local dedup tier, in keys.",
		}),
		WebhookRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "webhook_requests_total",
			Help: "Webhook requests by source and HTTP status code.",
		}, []string{"source", "code"}),
		WebhookEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "webhook_events_total",
			Help: "Events read from webhook bodies, by source, for sources that count them (audit); those that are no findings are in source_objects_ignored_total.",
		}, []string{"source"}),
		WebhookRequestsWithoutFindings: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "webhook_requests_without_findings_total",
			Help: "Webhook requests whose body held no finding (an audit batch of reads, say): answered at once, nothing queued.",
		}, []string{"source"}),
		WebhookEventsCut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "webhook_events_cut_total",
			Help: "Webhook events over the bound of one event's size, whose largest members were left out and which were judged on the rest, by source.",
		}, []string{"source"}),
		WebhookBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "webhook_request_bytes_total",
			Help: "Bytes of webhook request bodies read, by source.",
		}, []string{"source"}),
		WebhookRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "webhook_rejected_total",
			Help: "Webhook requests refused, by source and reason.",
		}, []string{"source", "reason"}),
		WebhookAuthFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "webhook_auth_failures_total",
			Help: "Webhook requests that failed authentication, by source and reason.",
		}, []string{"source", "reason"}),
		WebhookRateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "webhook_rate_limited_total",
			Help: "Webhook requests refused by the source's rate limit.",
		}, []string{"source"}),
		WebhookFindings: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "webhook_findings_total",
			Help: "Findings accepted from webhooks, each event of a batch body counted, by source.",
		}, []string{"source"}),
		WebhookAccepted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "webhook_accepted_total",
			Help: "Accepted webhook requests by source and mode (queued, or written while the queue was unavailable).",
		}, []string{"source", "mode"}),
		WebhookQueueFallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "webhook_queue_fallbacks_total",
			Help: "Webhook requests the durable queue could not take, by source and reason.",
		}, []string{"source", "reason"}),
		WebhookReplayUnchecked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "webhook_replay_unchecked_total",
			Help: "Signed webhook requests the shared replay memory could not judge (Redis away or restarted empty), by decision.",
		}, []string{"decision"}),
		WebhookQueueDepth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "webhook_queue_depth",
			Help: "Entries of a source's durable queue not yet processed (undelivered or pending).",
		}, []string{"source"}),
		WebhookStreamLag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "webhook_stream_lag",
			Help: "Entries of a source's durable queue not yet delivered to any replica.",
		}, []string{"source"}),
		WebhookQueueClaimed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "webhook_queue_claimed_total",
			Help: "Durable queue entries taken over from a replica that stopped processing them.",
		}, []string{"source"}),
		WebhookQueueLost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "webhook_queue_lost_total",
			Help: "Durable queue entries removed unprocessed because they outlived the queue's age bound.",
		}, []string{"source"}),
		WebhookQueueProcessed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "webhook_queue_processed_total",
			Help: "Durable queue entries processed and acknowledged, by source and result (done, undecodable, rejected).",
		}, []string{"source", "result"}),
		WebhookConnections: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "webhook_connections",
			Help: "Open connections of the webhook listener.",
		}),
		WebhookConnectionsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "webhook_connections_refused_total",
			Help: "Webhook connections closed unread because the listener or their client had as many open as allowed, by reason.",
		}, []string{"reason"}),
		SourceReady: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "source_ready",
			Help: "1 while a source runs with its objects synced or its webhook served, by source.",
		}, []string{"source"}),
		Members: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "shard_members",
			Help: "Live replicas this replica sees.",
		}),
		TableGeneration: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "shard_table_generation",
			Help: "Generation of the shard table in force (0: no table published yet, cut by this replica).",
		}),
		ChunksOwned: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "shard_chunks_owned",
			Help: "Chunks of the shard table this replica owns.",
		}),
		ObservationsHandedOver: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "observations_handed_over_total",
			Help: "Findings not written because their namespace went to another replica before the create; the new owner lists them again.",
		}, []string{"source"}),
		HandOverWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "shard_handover_wait_seconds",
			Help:    "How long a replica gaining namespaces waited for the members that held them to report that they write nothing more there.",
			Buckets: []float64{0.001, 0.005, 0.025, 0.1, 0.25, 1, 2.5, 5, 15},
		}),
		ObservationsKnownWritten: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "observations_known_written_total",
			Help: "Findings re-listed after a start or a rebalance whose Observation was known to exist: no create was sent for them (they count as deduplicated too).",
		}, []string{"source"}),
		FindingsRelisted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "findings_relisted_total",
			Help: "Findings handed on from an informer's first list after a start or a rebalance (those of namespaces new to the replica).",
		}, []string{"source"}),
		FindingsRetried: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "findings_retried_total",
			Help: "Objects an informer hands on again after a backoff (2 s, doubling to 1 min) because a finding of theirs could not be written, instead of at the next resync.",
		}, []string{"source"}),
		WatchDelivery: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "watch_delivery_seconds",
			Help: "Time from an object's creationTimestamp to its informer's Added event, for objects created while the informer watched, by source. " +
				"creationTimestamp has whole seconds: a delivery within the second of the creation falls in the first bucket.",
			Buckets: []float64{1, 2, 5, 10, 30, 60, 300},
		}, []string{"source"}),
		ShardObjects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "shard_objects_total",
			Help: "Objects the sharded lists and watches delivered, by whether the share holds them (kept) or the client dropped them (dropped); with the API server filtering, dropped stays 0.",
		}, []string{"outcome"}),
		Rebalances: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "shard_rebalances_total",
			Help: "Changes of this replica's share of the namespaces.",
		}),
		IsLeader: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "leader",
			Help: "1 on the replica that leads, 0 on the others.",
		}),
		LeaderTransitions: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "leader_transitions_total",
			Help: "Times this replica gained or lost leadership.",
		}),
		FailoverSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "leader_failover_seconds",
			Help:    "At a takeover, the time since the previous leader last renewed the Lease.",
			Buckets: []float64{.1, .25, .5, 1, 2, 5, 10, 20, 30, 60},
		}),
		NamespacesOwned: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "shard_namespaces_owned",
			Help: "Namespaces in this replica's share.",
		}),
		CleanupDeleted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "cleanup_deleted_total",
			Help: "Observations deleted by cleanup, by reason.",
		}, []string{"reason"}),
		CleanupRuns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "cleanup_runs_total",
			Help: "Cleanup runs by result (complete, interrupted, error).",
		}, []string{"result"}),
		CleanupDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "cleanup_duration_seconds",
			Help:    "Time of a cleanup run.",
			Buckets: []float64{.1, .5, 1, 5, 15, 30, 60, 120, 300, 600},
		}),
		CleanupErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "cleanup_errors_total",
			Help: "Deletes of expired Observations that failed.",
		}),
		CleanupBacklog: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "cleanup_backlog",
			Help: "Expired Observations the last cleanup run left.",
		}),
	}
	reg.MustRegister(
		m.ObservationsCreated, m.ObservationsFiltered, m.ObservationsDeduplicated,
		m.ObservationsFailed, m.EventsProcessed, m.ProcessingLatency, m.StageSeconds, m.PipelineErrors,
		m.WriterQueueDepth, m.SourceEventsIgnored, m.SeverityUnknown, m.ObservationsRateLimited,
		m.DedupDecisions, m.DedupEffectiveness, m.LowSeverityPercent, m.DedupRateRatio,
		m.StrategyChanges, m.OrderInForce, m.SharedStoreAvailable, m.DedupFallbacks,
		m.DedupWindowSeconds, m.DedupCacheSize, m.WebhookRequests, m.WebhookEvents, m.WebhookRequestsWithoutFindings, m.WebhookEventsCut, m.WebhookBytes, m.WebhookRejected,
		m.WebhookAuthFailures, m.WebhookRateLimited, m.WebhookFindings, m.WebhookAccepted, m.WebhookQueueFallbacks, m.WebhookReplayUnchecked,
		m.WebhookQueueDepth, m.WebhookStreamLag, m.WebhookQueueClaimed, m.WebhookQueueLost, m.WebhookQueueProcessed,
		m.WebhookConnections, m.WebhookConnectionsRefused, m.SourceReady, m.Members, m.ChunksOwned, m.TableGeneration, m.ShardObjects, m.WatchDelivery, m.ObservationsKnownWritten, m.ObservationsHandedOver, m.HandOverWait, m.FindingsRelisted, m.FindingsRetried, m.Rebalances, m.IsLeader, m.LeaderTransitions,
		m.FailoverSeconds, m.NamespacesOwned, m.CleanupDeleted, m.CleanupRuns, m.CleanupDuration, m.CleanupErrors, m.CleanupBacklog,
	)
	for _, r := range []string{"complete", "interrupted", "error"} {
		m.CleanupRuns.WithLabelValues(r)
	}
	for _, r := range []string{"listener_full", "client_full"} {
		m.WebhookConnectionsRefused.WithLabelValues(r)
	}
	m.CleanupDeleted.WithLabelValues("expired")
	for _, s := range []string{"fingerprint", "event-stream", "key"} {
		for _, d := range []string{"create", "drop"} {
			m.DedupDecisions.WithLabelValues(s, d)
		}
	}
	return m
}

// WriteFailureReasons are the reason label values of ObservationsFailed.
var WriteFailureReasons = []string{
	"invalid", "forbidden", "not_found", "throttled", "canceled", "transport", "server_error", "unknown",
}

// InitSource creates a source's write series at zero, so that rates and alerts over them work
// from the source's first moment rather than from its first write or failure.
func (m *Metrics) InitSource(source string) {
	m.ObservationsCreated.WithLabelValues(source)
	m.ObservationsHandedOver.WithLabelValues(source)
	for _, r := range WriteFailureReasons {
		m.ObservationsFailed.WithLabelValues(source, r)
	}
}

// InitWebhookSource creates a webhook source's series at zero (queue, acceptance, limits).
func (m *Metrics) InitWebhookSource(source string) {
	m.WebhookFindings.WithLabelValues(source)
	m.WebhookRateLimited.WithLabelValues(source)
	m.WebhookQueueDepth.WithLabelValues(source)
	m.WebhookStreamLag.WithLabelValues(source)
	m.WebhookQueueClaimed.WithLabelValues(source)
	m.WebhookQueueLost.WithLabelValues(source)
	for _, mode := range []string{"queued", "written"} {
		m.WebhookAccepted.WithLabelValues(source, mode)
	}
	for _, r := range []string{"done", "rejected", "undecodable"} {
		m.WebhookQueueProcessed.WithLabelValues(source, r)
	}
}
