package pipeline

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/metrics"
)

func newTestPipeline(t *testing.T, sink Sink) (*Pipeline, *metrics.Metrics) {
	t.Helper()
	m := newMetrics()
	p, err := New(Config{DedupWindow: time.Hour}, NewTiered(NewLocalCache(100000), nil, m, discardLog()), sink, m)
	if err != nil {
		t.Fatal(err)
	}
	return p, m
}

func fullConfig(order v1alpha1.Order) SourceConfig {
	return SourceConfig{
		Order:  order,
		Filter: &FilterConfig{MinSeverity: v1alpha1.SeverityMedium},
		Dedup:  &DedupConfig{Strategy: v1alpha1.DedupFingerprint},
	}
}

// TestOrderSwitchLosesNothing flips a source's order continuously while findings flow from several
// goroutines: every finding gets exactly one outcome, and the sink gets each distinct kept finding
// exactly once.
func TestOrderSwitchLosesNothing(t *testing.T) {
	sink := &collectSink{}
	p, m := newTestPipeline(t, sink)
	if err := p.Configure("trivy", fullConfig(v1alpha1.OrderAuto)); err != nil {
		t.Fatal(err)
	}
	const workers, perWorker = 4, 2000
	var outcomes [5]atomic.Int64
	stop := make(chan struct{})
	var flips sync.WaitGroup
	flips.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			c, _ := p.chainFor("trivy")
			c.setOrder([]v1alpha1.Order{v1alpha1.OrderFilterFirst, v1alpha1.OrderDedupFirst}[i%2])
		}
	})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				ev := baseEvent()
				ev.Rule = fmt.Sprintf("CVE-%d", i%500) // every worker repeats the same 500 findings
				if i%4 == 0 {
					ev.Severity = v1alpha1.SeverityLow // a quarter is filtered
				}
				ev.Done = func(o Outcome, _ error) { outcomes[o].Add(1) }
				if err := p.Handle(context.Background(), &ev); err != nil {
					t.Errorf("worker %d: %v", w, err)
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	flips.Wait()

	total := int64(0)
	for i := range outcomes {
		total += outcomes[i].Load()
	}
	if total != workers*perWorker {
		t.Errorf("%d outcomes for %d findings", total, workers*perWorker)
	}
	// Distinct findings: 500 rules, of which those with i%4==0 are low: 125 rules are always low.
	seen := map[uint64]int{}
	for _, ev := range sink.got {
		seen[ev.FP]++
	}
	for fp, n := range seen {
		if n != 1 {
			t.Errorf("finding %x written %d times", fp, n)
		}
	}
	if len(seen) != 375 {
		t.Errorf("%d distinct findings written, want 375", len(seen))
	}
	if got := testutil.ToFloat64(m.EventsProcessed.WithLabelValues("trivy")); got != workers*perWorker {
		t.Errorf("processed counter %v", got)
	}
}

func TestConfigureKeepsPreviousOnError(t *testing.T) {
	p, _ := newTestPipeline(t, &collectSink{})
	if err := p.Configure("trivy", fullConfig(v1alpha1.OrderDedupFirst)); err != nil {
		t.Fatal(err)
	}
	bad := fullConfig(v1alpha1.OrderFilterFirst)
	bad.Filter.Expression = "severity =="
	if err := p.Configure("trivy", bad); err == nil {
		t.Fatal("a bad expression was accepted")
	}
	if p.Order("trivy") != v1alpha1.OrderDedupFirst {
		t.Error("the previous configuration is no longer in force")
	}
}

// TestUnwrittenFindingsAreNotRemembered: a finding the sink refuses, or that the rate limit stops,
// leaves no dedup state behind, so the next report of it goes through.
func TestUnwrittenFindingsAreNotRemembered(t *testing.T) {
	sink := &collectSink{err: errors.New("queue full")}
	p, m := newTestPipeline(t, sink)
	cfg := fullConfig(v1alpha1.OrderFilterFirst)
	if err := p.Configure("trivy", cfg); err != nil {
		t.Fatal(err)
	}
	ev := baseEvent()
	if err := p.Handle(context.Background(), &ev); err == nil {
		t.Fatal("a refused finding returned no error")
	}
	sink.err = nil
	again := baseEvent()
	if err := p.Handle(context.Background(), &again); err != nil || sink.len() != 1 {
		t.Fatalf("the refused finding was not written when reported again (err %v, written %d)", err, sink.len())
	}
	// A bucket of one: the first new finding passes, the next is rate limited, counted as such,
	// and not remembered.
	cfg.RateLimit = &RateLimitConfig{PerSecond: 0.001, Burst: 1}
	if err := p.Configure("trivy", cfg); err != nil {
		t.Fatal(err)
	}
	first := baseEvent()
	first.Rule = "CVE-1"
	if err := p.Handle(context.Background(), &first); err != nil || sink.len() != 2 {
		t.Fatalf("first finding under the rate limit not written (err %v)", err)
	}
	other := baseEvent()
	other.Rule = "CVE-2"
	var outcome Outcome
	other.Done = func(o Outcome, _ error) { outcome = o }
	if err := p.Handle(context.Background(), &other); err != nil {
		t.Fatal(err)
	}
	if outcome != OutcomeRateLimited || testutil.ToFloat64(m.ObservationsRateLimited.WithLabelValues("trivy")) != 1 {
		t.Errorf("outcome %v", outcome)
	}
	if testutil.ToFloat64(m.ObservationsDeduplicated.WithLabelValues("trivy")) != 0 {
		t.Error("a rate-limited finding was counted as a duplicate")
	}
	c, _ := p.chainFor("trivy")
	key := mix(Fingerprint(&other) ^ c.dedup.salt)
	if _, held := p.store.Local().Peek(key, time.Now().UnixNano()); held {
		t.Error("the rate-limited finding left a dedup claim")
	}
}

func TestTunerChangesOrder(t *testing.T) {
	p, m := newTestPipeline(t, &collectSink{})
	if err := p.Configure("falco", fullConfig(v1alpha1.OrderAuto)); err != nil {
		t.Fatal(err)
	}
	tuner := NewTuner(p, DefaultOrderPolicy(), m, discardLog())
	feed := func(n int, dup bool) {
		for i := range n {
			ev := baseEvent()
			ev.Source = "falco"
			if !dup {
				ev.Rule = fmt.Sprintf("r-%d-%d", time.Now().UnixNano(), i)
			}
			_ = p.Handle(context.Background(), &ev)
		}
	}
	start := time.Now()
	feed(1000, true) // one finding, repeated: 99.9% duplicates, none low
	tuner.Tune(start.Add(6 * time.Minute))
	if p.Order("falco") != v1alpha1.OrderDedupFirst {
		t.Fatalf("order %s after a stream of duplicates", p.Order("falco"))
	}
	if got := testutil.ToFloat64(m.StrategyChanges.WithLabelValues("falco")); got != 1 {
		t.Errorf("strategy changes %v", got)
	}
	if got := testutil.ToFloat64(m.DedupRateRatio.WithLabelValues("falco")); got < 0.99 {
		t.Errorf("dedup rate ratio %v", got)
	}
	feed(1000, false) // distinct findings: no reason to change, and the cooldown holds anyway
	tuner.Tune(time.Now().Add(time.Minute))
	if p.Order("falco") != v1alpha1.OrderDedupFirst {
		t.Error("order changed within the cooldown")
	}
}

// TestNormalizeOnEntry: findings with missing or unknown fields are made to fit the schema and
// counted; a finding without a usable source is refused with a clear error.
func TestNormalizeOnEntry(t *testing.T) {
	cases := []struct {
		name    string
		mutate  func(*Event)
		check   func(*Event) bool
		wantErr bool
	}{
		{"unknown severity becomes info", func(e *Event) { e.Severity = "SEVERE" },
			func(e *Event) bool { return e.Severity == v1alpha1.SeverityInfo }, false},
		{"missing category becomes operations", func(e *Event) { e.Category = "" },
			func(e *Event) bool { return e.Category == v1alpha1.CategoryOperations }, false},
		{"event type normalized", func(e *Event) { e.EventType = "Policy Violation" },
			func(e *Event) bool { return e.EventType == "policy_violation" }, false},
		{"missing event type", func(e *Event) { e.EventType = "" },
			func(e *Event) bool { return e.EventType == "unknown" }, false},
		{"missing source", func(e *Event) { e.Source = "" }, nil, true},
		{"source with capitals", func(e *Event) { e.Source = "Trivy" }, nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sink := &collectSink{}
			p, m := newTestPipeline(t, sink)
			ev := baseEvent()
			tc.mutate(&ev)
			err := p.Handle(context.Background(), &ev)
			if tc.wantErr {
				if err == nil {
					t.Fatal("no error")
				}
				return
			}
			if err != nil || sink.len() != 1 || !tc.check(sink.got[0]) {
				t.Fatalf("err %v, got %+v", err, sink.got)
			}
			if tc.name == "unknown severity becomes info" &&
				testutil.ToFloat64(m.SeverityUnknown.WithLabelValues("trivy")) != 1 {
				t.Error("unknown severity not counted")
			}
		})
	}
}

// TestWrittenCountsAcrossConfigurations: a finding handed to the writer before its source is
// configured anew, and written after, counts where the new configuration reads (the Ingester's
// status once lost such findings: 297 of 300 written under a status update).
func TestWrittenCountsAcrossConfigurations(t *testing.T) {
	sink := &collectSink{}
	p, _ := newTestPipeline(t, sink)
	if err := p.Configure("trivy", fullConfig(v1alpha1.OrderFilterFirst)); err != nil {
		t.Fatal(err)
	}
	ev := baseEvent()
	if err := p.Handle(context.Background(), &ev); err != nil {
		t.Fatal(err)
	}
	if err := p.Configure("trivy", fullConfig(v1alpha1.OrderDedupFirst)); err != nil {
		t.Fatal(err)
	}
	if len(sink.got) != 1 || sink.got[0].written == nil {
		t.Fatalf("%d findings handed to the writer", len(sink.got))
	}
	sink.got[0].written.Add(1) // what the writer does once it has written it
	if n := p.Written("trivy"); n != 1 {
		t.Errorf("%d written counted, want 1", n)
	}
}
