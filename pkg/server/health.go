// Package server serves zen-watcher over HTTP: the probes and metrics on one listener, and (in its
// webhook half) the pushed findings on another.
package server

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check reports whether one part of the replica is healthy or ready; nil means yes.
type Check func(ctx context.Context) error

// Health serves /healthz, /readyz and /metrics. Checks may be added while it serves.
type Health struct {
	mu        sync.RWMutex
	liveness  map[string]Check
	readiness map[string]Check
	gatherer  prometheus.Gatherer
}

// NewHealth returns a Health serving the metrics of g.
func NewHealth(g prometheus.Gatherer) *Health {
	return &Health{liveness: map[string]Check{}, readiness: map[string]Check{}, gatherer: g}
}

// AddLiveness adds a check to /healthz.
func (h *Health) AddLiveness(name string, c Check) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.liveness[name] = c
}

// AddReadiness adds a check to /readyz.
func (h *Health) AddReadiness(name string, c Check) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.readiness[name] = c
}

// Handler returns the HTTP handler for the probes and metrics.
func (h *Health) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", h.probe(func() map[string]Check { return h.liveness }))
	mux.HandleFunc("GET /readyz", h.probe(func() map[string]Check { return h.readiness }))
	mux.Handle("GET /metrics", promhttp.HandlerFor(h.gatherer, promhttp.HandlerOpts{}))
	return mux
}

// probe runs the checks with a short deadline and answers 200 "ok", or 503 listing what failed.
func (h *Health) probe(checks func() map[string]Check) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		h.mu.RLock()
		names := make([]string, 0, len(checks()))
		for name := range checks() {
			names = append(names, name)
		}
		sort.Strings(names)
		var failed []string
		for _, name := range names {
			if err := checks()[name](ctx); err != nil {
				failed = append(failed, fmt.Sprintf("%s: %v", name, err))
			}
		}
		h.mu.RUnlock()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if len(failed) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, strings.Join(failed, "\n"))
			return
		}
		fmt.Fprintln(w, "ok")
	}
}
