package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kube-zen/zen-watcher/internal/outage"
	"github.com/kube-zen/zen-watcher/pkg/metrics"
	"github.com/kube-zen/zen-watcher/pkg/pipeline"
	"github.com/kube-zen/zen-watcher/pkg/sources"
)

// Acceptor takes the findings of one webhook request. A nil error means they are safe: each will
// reach an Observation (or be counted as filtered or a duplicate) even if this replica dies the
// moment after. Only then does the sender get a 2xx.
type Acceptor interface {
	Accept(ctx context.Context, source string, findings []*pipeline.Event) (Acceptance, error)
}

// Acceptance says how findings were made safe; the answer to the sender carries it.
type Acceptance string

// The ways findings are accepted.
const (
	// Queued findings are in the durable queue, to be written by whichever replica takes them.
	Queued Acceptance = "queued"
	// Written findings have their outcome already: written, filtered, or a duplicate.
	Written Acceptance = "written"
)

// Queue keeps accepted findings until some replica has processed them. An error with a Full
// method that returns true says the queue is at its bound (counted apart from an outage).
type Queue interface {
	Append(ctx context.Context, source string, findings []*pipeline.Event) error
}

// DefaultDirectTimeout bounds how long a request waits for its findings to be written.
const DefaultDirectTimeout = 10 * time.Second

// Direct accepts findings by processing them: Accept returns once every one has its outcome. It
// is the acceptor without Redis, and the durable one's fallback while Redis is away.
type Direct struct {
	Handler sources.Handler
	// Timeout bounds the wait (DefaultDirectTimeout when zero). Findings still in flight then may
	// yet be written; the sender's retry is harmless, their names derive from each occurrence.
	Timeout time.Duration
}

// Accept implements Acceptor.
func (d Direct) Accept(ctx context.Context, source string, findings []*pipeline.Event) (Acceptance, error) {
	timeout := d.Timeout
	if timeout <= 0 {
		timeout = DefaultDirectTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	results := make(chan error, len(findings))
	handed := 0
	var err error
	for _, f := range findings {
		f.Done = func(o pipeline.Outcome, werr error) {
			if o == pipeline.OutcomeFailed {
				results <- fmt.Errorf("writing a finding of %s: %w", source, werr)
				return
			}
			results <- nil
		}
		if err = d.Handler.Handle(ctx, f); err != nil {
			break
		}
		handed++
	}
	for range handed {
		select {
		case werr := <-results:
			err = errors.Join(err, werr)
		case <-ctx.Done():
			return "", errors.Join(err, fmt.Errorf("waiting for findings of %s to be written: %w", source, ctx.Err()))
		}
	}
	if err != nil {
		return "", err
	}
	return Written, nil
}

// Durable accepts findings by appending them to the queue, which outlives this replica; while the
// queue cannot take them it falls back to processing them before the answer.
type Durable struct {
	Queue    Queue
	Fallback Acceptor
	Metrics  *metrics.Metrics
	// Outages logs the queue refusing findings when it begins and when it ends (nil: not logged).
	Outages *outage.Log
}

// Accept implements Acceptor.
func (d Durable) Accept(ctx context.Context, source string, findings []*pipeline.Event) (Acceptance, error) {
	err := d.Queue.Append(ctx, source, findings)
	if err == nil {
		d.Outages.Report("queueing webhook findings", nil, "source", source)
		d.Metrics.WebhookAccepted.WithLabelValues(source, string(Queued)).Inc()
		return Queued, nil
	}
	if ctx.Err() != nil {
		return "", err
	}
	if stopping := (interface{ Stopping() bool })(nil); errors.As(err, &stopping) && stopping.Stopping() {
		// This replica is stopping: its pipeline would not write them either. The sender's retry
		// reaches another replica.
		return "", err
	}
	reason := "queue_unavailable"
	if full := (interface{ Full() bool })(nil); errors.As(err, &full) && full.Full() {
		reason = "queue_full"
	}
	if unrep := (interface{ Unreplicated() bool })(nil); errors.As(err, &unrep) && unrep.Unreplicated() {
		reason = "queue_unreplicated"
	}
	d.Metrics.WebhookQueueFallbacks.WithLabelValues(source, reason).Inc()
	d.Outages.Report("queueing webhook findings", fmt.Errorf("%w (%s: processing them before answering)", err, reason), "source", source)
	how, err := d.Fallback.Accept(ctx, source, findings)
	if err != nil {
		return "", err
	}
	d.Metrics.WebhookAccepted.WithLabelValues(source, string(how)).Inc()
	return how, nil
}
