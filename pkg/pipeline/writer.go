package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/metrics"
)

// Creator writes one Observation to the API server. It is the only thing the pipeline knows of
// Kubernetes; errors are those of k8s.io/apimachinery/pkg/api/errors.
type Creator interface {
	Create(ctx context.Context, obs *v1alpha1.Observation) error
}

// WrittenIndex knows Observations that exist, so that a re-listed finding whose Observation is
// known is not sent to the API server only to be refused as existing.
type WrittenIndex interface {
	// Written reports whether the Observation namespace/name is known to exist.
	Written(namespace, name string) bool
}

// WriterConfig tunes the writer.
type WriterConfig struct {
	// Workers is the number of concurrent creates (default DefaultWorkers).
	Workers int
	// QueueSize bounds the findings waiting for a worker (default 4096); when it is full, Put blocks,
	// which is the backpressure that slows the sources down.
	QueueSize int
	// Namespace receives the Observations of cluster-scoped findings.
	Namespace string
	// MaxAttempts bounds retries of one create on retriable errors (default 10).
	MaxAttempts int
	// InitialBackoff is the first retry delay, doubled up to MaxBackoff (defaults 50 ms and 5 s).
	InitialBackoff, MaxBackoff time.Duration
	// Written, when set, is asked about re-listed stateful findings before they are created.
	Written WrittenIndex
	// FinishTimeout bounds how long a create under way when the writer stops may still take
	// (default 5s): one cut off mid-request may be stored all the same, and the replica that
	// takes the namespace over would then send it again, to be refused.
	FinishTimeout time.Duration
}

// DefaultWorkers is the writer's default concurrency. A create is answered in 5–10 ms by an API
// server at rest, but in 50–500 ms by one that is also serving lists or a busy etcd, and the
// findings arriving meanwhile wait for a worker: at 150 findings/s and 100 ms per create, 15 are
// under way at any time, and a pool of 16 queued them for seconds. An idle worker costs a few KiB
// of stack; the API server's priority and fairness bounds what many replicas' workers can take.
const DefaultWorkers = 64

func (c *WriterConfig) setDefaults() {
	if c.Workers <= 0 {
		c.Workers = DefaultWorkers
	}
	if c.QueueSize <= 0 {
		c.QueueSize = 4096
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 10
	}
	if c.InitialBackoff <= 0 {
		c.InitialBackoff = 50 * time.Millisecond
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 5 * time.Second
	}
	if c.FinishTimeout <= 0 {
		c.FinishTimeout = 5 * time.Second
	}
}

// Writer creates Observations from findings with a bounded pool of workers.
type Writer struct {
	cfg     WriterConfig
	creator Creator
	metrics *metrics.Metrics
	log     *slog.Logger
	queue   chan *Event
	stopped chan struct{} // closed when Run has returned

	// pending holds the findings taken and not finished (queued or being written), for Settle.
	mu      sync.Mutex
	pending map[*Event]struct{}
}

// ErrStopped is the outcome error of a finding the writer took but did not write because it
// stopped: its dedup claim is released, so that whoever sends it again has it written.
var ErrStopped = errors.New("writer stopped")

// NewWriter returns a writer that creates through c. Call Run to start its workers.
func NewWriter(cfg WriterConfig, c Creator, m *metrics.Metrics, log *slog.Logger) *Writer {
	cfg.setDefaults()
	return &Writer{
		cfg:     cfg,
		creator: c,
		metrics: m,
		log:     log,
		queue:   make(chan *Event, cfg.QueueSize),
		stopped: make(chan struct{}),
		pending: make(map[*Event]struct{}, cfg.QueueSize),
	}
}

// Put hands ev to the workers. It blocks while the queue is full; if ctx ends first it returns an
// error wrapping ErrQueueFull, and ev was not taken. Once Run has returned it refuses with ErrStopped.
// A withdrawn finding (Event.Withdrawn) is taken and handed over at once, unwritten.
func (w *Writer) Put(ctx context.Context, ev *Event) error {
	select {
	case <-w.stopped:
		return fmt.Errorf("queueing finding of %s: %w", ev.Source, ErrStopped)
	default:
	}
	// Counted before asking Withdrawn: a Settle that begins once this finding's namespace was
	// handed over either sees it pending or knows it was dropped.
	w.begin(ev)
	if withdrawn(ev) {
		w.end(ev)
		w.handOver(ctx, ev)
		return nil
	}
	ev.queued = time.Now()
	select {
	case w.queue <- ev:
		w.metrics.WriterQueueDepth.Set(float64(len(w.queue)))
		return nil
	default:
	}
	select {
	case <-w.stopped:
		w.end(ev)
		return fmt.Errorf("queueing finding of %s: %w", ev.Source, ErrStopped)
	case w.queue <- ev:
		w.metrics.WriterQueueDepth.Set(float64(len(w.queue)))
		return nil
	case <-ctx.Done():
		w.end(ev)
		return fmt.Errorf("queueing finding of %s: %w (%w)", ev.Source, ErrQueueFull, ctx.Err())
	}
}

// Run creates Observations until ctx ends. Findings still queued then are not written: each is
// reported failed with ErrStopped and its dedup claim released. Informer sources read theirs
// again after a restart, which the deterministic names make harmless; a webhook's entry stays in
// the queue for another replica, a webhook request answered directly is refused, and the
// sender's retry is judged afresh rather than as a duplicate of a claim nobody will write.
func (w *Writer) Run(ctx context.Context) {
	defer w.refuseQueued(ctx)
	var wg sync.WaitGroup
	for range w.cfg.Workers {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case ev := <-w.queue:
					if ctx.Err() != nil { // both were ready: a stopped writer begins nothing
						w.fail(ctx, ev, ErrStopped)
						return
					}
					w.metrics.WriterQueueDepth.Set(float64(len(w.queue)))
					w.write(ctx, ev)
				}
			}
		})
	}
	wg.Wait()
}

// stopGrace is how long after the stop the writer keeps refusing what arrives in its queue: a Put
// racing the stop can still land there.
const stopGrace = 100 * time.Millisecond

// refuseQueued fails every finding left in the queue once the workers have stopped.
func (w *Writer) refuseQueued(ctx context.Context) {
	close(w.stopped)
	for {
		select {
		case ev := <-w.queue:
			w.fail(ctx, ev, ErrStopped)
		case <-time.After(stopGrace):
			w.metrics.WriterQueueDepth.Set(0)
			return
		}
	}
}

// fail reports a finding taken and not written, after taking its dedup claim back.
func (w *Writer) fail(ctx context.Context, ev *Event, err error) {
	w.end(ev)
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	release(rctx, ev)
	cancel()
	if ev.Done != nil {
		ev.Done(OutcomeFailed, err)
	}
}

func (w *Writer) write(ctx context.Context, ev *Event) {
	defer w.end(ev)
	w.observeStages(ev)
	obs := BuildObservation(ev, w.cfg.Namespace)
	if w.knownWritten(ev, obs) {
		w.metrics.ObservationsKnownWritten.WithLabelValues(ev.Source).Inc()
		w.metrics.ObservationsDeduplicated.WithLabelValues(ev.Source).Inc()
		if ev.Done != nil {
			ev.Done(OutcomeDeduplicated, nil)
		}
		return
	}
	began := time.Now()
	o, err := w.create(ctx, ev, obs)
	w.metrics.StageSeconds.WithLabelValues("create").Observe(time.Since(began).Seconds())
	if o == OutcomeFailed && apierrors.IsNotFound(err) && obs.Namespace != w.cfg.Namespace {
		// The finding's namespace does not exist (any more): keep the finding, in the release's.
		obs.Namespace = w.cfg.Namespace
		o, err = w.create(ctx, ev, obs)
	}
	if o == OutcomeHandedOver {
		w.handOver(ctx, ev)
		return
	}
	switch o {
	case OutcomeWritten:
		w.metrics.ObservationsCreated.WithLabelValues(ev.Source).Inc()
		if ev.written != nil {
			ev.written.Add(1)
		}
	case OutcomeDeduplicated:
		w.metrics.ObservationsDeduplicated.WithLabelValues(ev.Source).Inc()
	default:
		w.metrics.ObservationsFailed.WithLabelValues(ev.Source, failureReason(err)).Inc()
		w.log.Error("writing observation", "source", ev.Source, "namespace", obs.Namespace,
			"resource", ev.Resource.Name, "error", err)
	}
	if !ev.received.IsZero() {
		w.metrics.ProcessingLatency.WithLabelValues(ev.Source).Observe(time.Since(ev.received).Seconds())
	}
	if o == OutcomeFailed {
		// Not written: take the dedup claim back so that the next report of it is written. The
		// write's context may be the one that ended, so the release gets its own short one.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		release(rctx, ev)
		cancel()
	}
	if ev.Done != nil {
		ev.Done(o, err)
	}
}

// withdrawn reports whether ev's namespace went to another replica since it was taken.
func withdrawn(ev *Event) bool { return ev.Withdrawn != nil && ev.Withdrawn() }

// handOver drops a withdrawn finding unwritten: its new owner lists it again. The dedup claim is
// given back, so that this replica writes it should the namespace come back to it.
func (w *Writer) handOver(ctx context.Context, ev *Event) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	release(rctx, ev)
	cancel()
	w.metrics.ObservationsHandedOver.WithLabelValues(ev.Source).Inc()
	if ev.Done != nil {
		ev.Done(OutcomeHandedOver, nil)
	}
}

func (w *Writer) begin(ev *Event) {
	w.mu.Lock()
	w.pending[ev] = struct{}{}
	w.mu.Unlock()
}

func (w *Writer) end(ev *Event) {
	w.mu.Lock()
	delete(w.pending, ev)
	w.mu.Unlock()
}

// settlePoll is how often Settle looks at the findings pending; the queue drains in milliseconds
// to seconds, and each look walks it.
const settlePoll = 20 * time.Millisecond

// Settle returns once no withdrawn finding (Event.Withdrawn) is queued or being written, or with
// ctx's error. Findings already queued when their namespace went to another replica are written
// here, at once, rather than left to wait for their new owner's list; those that arrive after are
// handed over unwritten (Put), and a create that fails is not retried once withdrawn. From then on
// this replica sends nothing more in the namespaces it let go of, and can tell their new owners so.
func (w *Writer) Settle(ctx context.Context) error {
	t := time.NewTicker(settlePoll)
	defer t.Stop()
	for w.withdrawnPending() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the creates in namespaces handed over: %w", ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

func (w *Writer) withdrawnPending() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for ev := range w.pending {
		if withdrawn(ev) {
			return true
		}
	}
	return false
}

// observeStages records how long ev took in the pipeline before the writer and in its queue. A
// finding that blocked in Put on a full queue counts that wait as the queue's: it was the writer's
// backlog that held it.
func (w *Writer) observeStages(ev *Event) {
	if ev.queued.IsZero() {
		return
	}
	if !ev.received.IsZero() {
		w.metrics.StageSeconds.WithLabelValues("pipeline").Observe(ev.queued.Sub(ev.received).Seconds())
	}
	w.metrics.StageSeconds.WithLabelValues("queue").Observe(time.Since(ev.queued).Seconds())
}

// knownWritten reports whether obs is a re-listed stateful finding's Observation known to exist:
// creating it would only be refused as AlreadyExists. Only a re-listed finding is asked about, so
// a finding seen anew is created even if an Observation of its name was known once (and has been
// deleted since).
func (w *Writer) knownWritten(ev *Event, obs *v1alpha1.Observation) bool {
	return w.cfg.Written != nil && ev.Relisted && ev.Stateful && obs.Name != "" &&
		w.cfg.Written.Written(obs.Namespace, obs.Name)
}

// create retries retriable failures with exponential backoff until ctx ends or ev is withdrawn;
// an attempt under way then finishes (within FinishTimeout). AlreadyExists means an earlier read
// of the same state already wrote this finding: a duplicate, not an error.
func (w *Writer) create(ctx context.Context, ev *Event, obs *v1alpha1.Observation) (Outcome, error) {
	delay := w.cfg.InitialBackoff
	var err error
	for attempt := 1; ; attempt++ {
		err = w.attempt(ctx, obs)
		switch {
		case err == nil:
			return OutcomeWritten, nil
		case apierrors.IsAlreadyExists(err):
			return OutcomeDeduplicated, nil
		case !retriable(err) || attempt >= w.cfg.MaxAttempts:
			return OutcomeFailed, err
		}
		if d, ok := apierrors.SuggestsClientDelay(err); ok && time.Duration(d)*time.Second > delay {
			delay = time.Duration(d) * time.Second
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return OutcomeFailed, errors.Join(err, ctx.Err())
		case <-t.C:
		}
		if withdrawn(ev) {
			return OutcomeHandedOver, nil
		}
		delay = min(2*delay, w.cfg.MaxBackoff)
	}
}

// attempt sends one create. It is not cut off when ctx ends, only FinishTimeout later.
func (w *Writer) attempt(ctx context.Context, obs *v1alpha1.Observation) error {
	actx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(w.cfg.FinishTimeout, cancel)
		context.AfterFunc(actx, func() { t.Stop() })
	})
	defer stop()
	return w.creator.Create(actx, obs)
}

func retriable(err error) bool {
	return apierrors.IsTooManyRequests(err) || apierrors.IsConflict(err) ||
		apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err) ||
		apierrors.IsInternalError(err) || apierrors.IsServiceUnavailable(err) ||
		apierrors.IsUnexpectedServerError(err) || isTransport(err)
}

// isTransport is true for errors that never reached the API server (connection refused or reset):
// they carry no API status.
func isTransport(err error) bool {
	var st apierrors.APIStatus
	return !errors.As(err, &st) && !errors.Is(err, context.Canceled)
}

func failureReason(err error) string {
	switch {
	case err == nil:
		return "unknown"
	case apierrors.IsInvalid(err):
		return "invalid"
	case apierrors.IsForbidden(err):
		return "forbidden"
	case apierrors.IsNotFound(err):
		return "not_found"
	case apierrors.IsTooManyRequests(err):
		return "throttled"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return "canceled"
	case isTransport(err):
		return "transport"
	}
	return "server_error"
}

// Permanent reports whether a failed write can never succeed as it is (the API server judged the
// Observation itself wrong), so that trying it again is pointless.
func Permanent(err error) bool {
	return apierrors.IsInvalid(err) || apierrors.IsBadRequest(err) || apierrors.IsRequestEntityTooLargeError(err)
}
