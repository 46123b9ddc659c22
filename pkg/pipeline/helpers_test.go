package pipeline

import (
	"context"
	"io"
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kube-zen/zen-watcher/pkg/metrics"
)

func discardLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newMetrics() *metrics.Metrics { return metrics.New(prometheus.NewRegistry()) }

// collectSink keeps what reaches it and completes it as written; err makes it refuse instead.
type collectSink struct {
	mu  sync.Mutex
	got []*Event
	err error
}

func (s *collectSink) Put(_ context.Context, ev *Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	s.got = append(s.got, ev)
	if ev.Done != nil {
		ev.Done(OutcomeWritten, nil)
	}
	return nil
}

func (s *collectSink) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.got)
}

// discardSink accepts everything, for benchmarks.
type discardSink struct{}

func (discardSink) Put(context.Context, *Event) error { return nil }
