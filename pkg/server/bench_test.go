package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/kube-zen/zen-watcher/internal/testenv"
	"github.com/kube-zen/zen-watcher/pkg/metrics"
	"github.com/kube-zen/zen-watcher/pkg/redisstate"
)

// BenchmarkWebhookAccept measures accepted webhook requests per second through a real listener:
// "queued" appends each request's findings to a real Redis stream (drained by the same replica's
// consumer), "in-memory" hands them to a handler that finishes at once, the server's own ceiling
// without durability. Run with `make bench`; the req/s column is the figure.
func BenchmarkWebhookAccept(b *testing.B) {
	b.Run("in-memory", func(b *testing.B) {
		benchAccept(b, Direct{Handler: &countingHandler{}})
	})
	b.Run("queued", func(b *testing.B) {
		rs, err := testenv.StartRedis()
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = rs.Close() })
		client := redis.NewClient(&redis.Options{Addr: rs.Addr, PoolSize: 32})
		b.Cleanup(func() { _ = client.Close() })
		m := metrics.New(prometheus.NewRegistry())
		log := slog.New(slog.NewTextHandler(io.Discard, nil))
		q, err := redisstate.NewStream(client, redisstate.StreamOptions{Release: "bench", Consumer: "a"}, m, log)
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { q.Run(ctx, &countingHandler{}, falcoOnly{}); close(done) }()
		b.Cleanup(func() { cancel(); <-done })
		direct := Direct{Handler: &countingHandler{}}
		benchAccept(b, Durable{Queue: q, Fallback: direct, Metrics: m})
	})
}

// falcoOnly is the one webhook source of the benchmark's queue.
type falcoOnly struct{}

func (falcoOnly) Sources() []string               { return []string{"falco"} }
func (falcoOnly) SourcesChanged() <-chan struct{} { return nil }

func benchAccept(b *testing.B, acc Acceptor) {
	w, _ := newHooksWith(b, WebhookConfig{Acceptor: acc, RatePerSource: 1e9, BurstPerSource: 1e9})
	srv := httptest.NewServer(w)
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64}}
	var seq atomic.Int64
	b.SetParallelism(16)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n := seq.Add(1)
			body := fmt.Appendf(nil, `{"output":"bench %d","priority":"Warning","rule":"r","time":"2026-11-26T00:00:00.%09dZ","hostname":"h"}`, n, n)
			resp, err := client.Post(srv.URL+"/falco", "application/json", bytes.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusAccepted {
				b.Errorf("HTTP %d", resp.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
}
