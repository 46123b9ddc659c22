package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/metrics"
)

// scriptedCreator answers each Create with the next error of its script, then nil.
type scriptedCreator struct {
	mu     sync.Mutex
	script []error
	calls  int
}

func (c *scriptedCreator) Create(context.Context, *v1alpha1.Observation) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	if len(c.script) == 0 {
		return nil
	}
	err := c.script[0]
	c.script = c.script[1:]
	return err
}

var gr = schema.GroupResource{Group: v1alpha1.GroupName, Resource: "observations"}

func TestWriterOutcomes(t *testing.T) {
	cases := []struct {
		name      string
		script    []error
		want      Outcome
		wantCalls int
	}{
		{"created", nil, OutcomeWritten, 1},
		{"already exists is a duplicate", []error{apierrors.NewAlreadyExists(gr, "x")}, OutcomeDeduplicated, 1},
		{"429 then success", []error{apierrors.NewTooManyRequests("slow down", 0)}, OutcomeWritten, 2},
		{"5xx twice then success", []error{apierrors.NewInternalError(errors.New("boom")),
			apierrors.NewServiceUnavailable("later")}, OutcomeWritten, 3},
		{"conflict then success", []error{apierrors.NewConflict(gr, "x", errors.New("c"))}, OutcomeWritten, 2},
		{"invalid is final", []error{apierrors.NewInvalid(schema.GroupKind{Kind: "Observation"}, "x", nil)}, OutcomeFailed, 1},
		{"forbidden is final", []error{apierrors.NewForbidden(gr, "x", errors.New("no"))}, OutcomeFailed, 1},
		{"gives up after max attempts", []error{
			apierrors.NewInternalError(errors.New("1")), apierrors.NewInternalError(errors.New("2")),
			apierrors.NewInternalError(errors.New("3")), apierrors.NewInternalError(errors.New("4")),
		}, OutcomeFailed, 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := &scriptedCreator{script: tc.script}
			m := metrics.New(prometheus.NewRegistry())
			w := NewWriter(WriterConfig{Workers: 1, MaxAttempts: 3, InitialBackoff: time.Millisecond},
				c, m, slog.New(slog.NewTextHandler(io.Discard, nil)))
			done := make(chan Outcome, 1)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go w.Run(ctx)
			ev := baseEvent()
			ev.Done = func(o Outcome, _ error) { done <- o }
			if err := w.Put(ctx, &ev); err != nil {
				t.Fatal(err)
			}
			select {
			case got := <-done:
				if got != tc.want {
					t.Errorf("outcome %v, want %v", got, tc.want)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("no outcome")
			}
			if c.calls != tc.wantCalls {
				t.Errorf("%d creates, want %d", c.calls, tc.wantCalls)
			}
			counters := map[Outcome]prometheus.Collector{
				OutcomeWritten:      m.ObservationsCreated,
				OutcomeDeduplicated: m.ObservationsDeduplicated,
				OutcomeFailed:       m.ObservationsFailed,
			}
			if n := testutil.ToFloat64(counters[tc.want]); n != 1 {
				t.Errorf("counter for outcome %v is %v, want 1", tc.want, n)
			}
		})
	}
}

// TestWriterBackpressure shows that a full queue blocks Put until the caller's deadline, and that the
// finding stays with the caller (an error), never dropped silently.
func TestWriterBackpressure(t *testing.T) {
	m := metrics.New(prometheus.NewRegistry())
	w := NewWriter(WriterConfig{Workers: 1, QueueSize: 1}, &scriptedCreator{}, m,
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	ev := baseEvent()
	if err := w.Put(context.Background(), &ev); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := w.Put(ctx, &ev); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("Put on a full queue: %v, want ErrQueueFull", err)
	}
}

// TestWriterFallsBackToReleaseNamespace: a finding about a namespace that does not exist is written
// in the release's namespace rather than lost.
func TestWriterFallsBackToReleaseNamespace(t *testing.T) {
	c := &recordingCreator{fail: map[string]error{"kube-system": apierrors.NewNotFound(schema.GroupResource{Resource: "namespaces"}, "kube-system")}}
	m := metrics.New(prometheus.NewRegistry())
	w := NewWriter(WriterConfig{Workers: 1, Namespace: "zen-system"}, c, m, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.Run(ctx)
	done := make(chan Outcome, 1)
	ev := baseEvent()
	ev.Done = func(o Outcome, _ error) { done <- o }
	if err := w.Put(ctx, &ev); err != nil {
		t.Fatal(err)
	}
	if o := <-done; o != OutcomeWritten || c.last != "zen-system" {
		t.Errorf("outcome %v in namespace %q", o, c.last)
	}
}

type recordingCreator struct {
	fail map[string]error
	last string
}

func (c *recordingCreator) Create(_ context.Context, obs *v1alpha1.Observation) error {
	c.last = obs.Namespace
	return c.fail[obs.Namespace]
}

// TestFailureReasonsAreInitialized: every reason a failed write is counted under is one whose
// series InitSource creates, so that no alert waits for a first failure to have data.
func TestFailureReasonsAreInitialized(t *testing.T) {
	errs := []error{
		nil,
		apierrors.NewInvalid(schema.GroupKind{Kind: "Observation"}, "x", nil),
		apierrors.NewForbidden(schema.GroupResource{Resource: "observations"}, "x", errors.New("no")),
		apierrors.NewNotFound(schema.GroupResource{Resource: "namespaces"}, "x"),
		apierrors.NewTooManyRequests("slow down", 1),
		context.Canceled,
		errors.New("connection refused"),
		apierrors.NewInternalError(errors.New("etcd")),
	}
	for _, err := range errs {
		if r := failureReason(err); !slices.Contains(metrics.WriteFailureReasons, r) {
			t.Errorf("reason %q of %v is not in metrics.WriteFailureReasons", r, err)
		}
	}
}

// gatedCreator blocks each Create until the gate opens, then fails it with the context's error.
type gatedCreator struct {
	entered chan struct{}
	gate    chan struct{}
}

func (c *gatedCreator) Create(ctx context.Context, _ *v1alpha1.Observation) error {
	select {
	case c.entered <- struct{}{}:
	default:
	}
	select {
	case <-c.gate:
	case <-ctx.Done():
	}
	return ctx.Err()
}

// TestWriterStop: when the writer stops, the create under way finishes — cut off, it might be
// stored all the same and sent again by the replica taking over — within FinishTimeout; findings
// it took but did not begin are each reported failed and their dedup claims released, so that a
// second delivery of them is written rather than judged a duplicate; a Put after the stop is
// refused.
func TestWriterStop(t *testing.T) {
	for _, tc := range []struct {
		name string
		open bool // whether the create under way gets its answer
		want Outcome
	}{
		{"the create under way is answered", true, OutcomeWritten},
		{"the create under way hangs", false, OutcomeFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := metrics.New(prometheus.NewRegistry())
			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			creator := &gatedCreator{entered: make(chan struct{}, 1), gate: make(chan struct{})}
			w := NewWriter(WriterConfig{Workers: 1, MaxAttempts: 1, FinishTimeout: 200 * time.Millisecond}, creator, m, log)
			cache := NewLocalCache(100)
			p, err := New(Config{DedupWindow: time.Hour}, NewTiered(cache, nil, m, log), w, m)
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Configure("trivy", SourceConfig{Dedup: &DedupConfig{Strategy: v1alpha1.DedupFingerprint}}); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			stopped := make(chan struct{})
			go func() { w.Run(ctx); close(stopped) }()
			type outcome struct {
				rule string
				o    Outcome
				err  error
			}
			outcomes := make(chan outcome, 3)
			handle := func(rule string) {
				ev := baseEvent()
				ev.Rule = rule
				ev.Done = func(o Outcome, err error) { outcomes <- outcome{rule, o, err} }
				if err := p.Handle(context.Background(), &ev); err != nil {
					t.Fatal(err)
				}
			}
			handle("CVE-1") // taken by the worker, which blocks in Create
			<-creator.entered
			handle("CVE-2") // queued
			handle("CVE-3")
			if n := cache.Len(); n != 3 {
				t.Fatalf("%d claims before the stop, want 3", n)
			}
			cancel()
			if tc.open {
				time.Sleep(20 * time.Millisecond) // the stop reaches the worker first
				close(creator.gate)
			}
			<-stopped
			claims := 0
			for range 3 {
				select {
				case got := <-outcomes:
					want := OutcomeFailed
					if got.rule == "CVE-1" {
						want = tc.want
					}
					if got.o != want {
						t.Errorf("%s: outcome %v (%v), want %v", got.rule, got.o, got.err, want)
					}
					if got.o == OutcomeFailed && got.err == nil {
						t.Errorf("%s reported failed without an error", got.rule)
					}
					if got.o == OutcomeWritten {
						claims++
					}
				case <-time.After(5 * time.Second):
					t.Fatal("a finding the writer held was never reported")
				}
			}
			if n := cache.Len(); n != claims {
				t.Errorf("%d dedup claims left after the stop, want %d (those written)", n, claims)
			}
			ev := baseEvent()
			if err := w.Put(context.Background(), &ev); !errors.Is(err, ErrStopped) {
				t.Errorf("Put after the stop: %v, want ErrStopped", err)
			}
		})
	}
}

// knownNames is a WrittenIndex of fixed names.
type knownNames map[string]bool

func (k knownNames) Written(namespace, name string) bool { return k[namespace+"/"+name] }

// TestWriterSkipsKnownWritten: a re-listed stateful finding whose Observation is known to exist
// sends no create; a finding seen anew, one without a deterministic name, or one not known is
// created as ever.
func TestWriterSkipsKnownWritten(t *testing.T) {
	stateful := baseEvent()
	stateful.Stateful = true
	stateful.FP = Fingerprint(&stateful)
	name := BuildObservation(&stateful, "zen-system").Name
	known := knownNames{"kube-system/" + name: true}
	cases := []struct {
		name              string
		relisted, isState bool
		index             WrittenIndex
		want              Outcome
		wantCalls         int
	}{
		{"re-listed and known", true, true, known, OutcomeDeduplicated, 0},
		{"seen anew", false, true, known, OutcomeWritten, 1},
		{"no deterministic name", true, false, known, OutcomeWritten, 1},
		{"not known", true, true, knownNames{}, OutcomeWritten, 1},
		{"no index", true, true, nil, OutcomeWritten, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := &scriptedCreator{}
			m := metrics.New(prometheus.NewRegistry())
			w := NewWriter(WriterConfig{Workers: 1, Written: tc.index}, c, m, slog.New(slog.NewTextHandler(io.Discard, nil)))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go w.Run(ctx)
			ev := stateful
			ev.Stateful, ev.Relisted = tc.isState, tc.relisted
			done := make(chan Outcome, 1)
			ev.Done = func(o Outcome, _ error) { done <- o }
			if err := w.Put(ctx, &ev); err != nil {
				t.Fatal(err)
			}
			select {
			case got := <-done:
				if got != tc.want {
					t.Errorf("outcome %v, want %v", got, tc.want)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("no outcome")
			}
			c.mu.Lock()
			calls := c.calls
			c.mu.Unlock()
			skipped := testutil.ToFloat64(m.ObservationsKnownWritten.WithLabelValues(ev.Source))
			if calls != tc.wantCalls || skipped != float64(1-tc.wantCalls) {
				t.Errorf("%d creates and %v counted known written, want %d", calls, skipped, tc.wantCalls)
			}
		})
	}
}

// slowCreator takes d for each create.
type slowCreator struct{ d time.Duration }

func (c slowCreator) Create(context.Context, *v1alpha1.Observation) error {
	time.Sleep(c.d)
	return nil
}

// TestWriterStages: a finding's time is decomposed into the pipeline's before the writer, the
// queue's and the create call's; with one worker and creates of 20 ms, the third finding waits
// for two creates.
func TestWriterStages(t *testing.T) {
	m := metrics.New(prometheus.NewRegistry())
	w := NewWriter(WriterConfig{Workers: 1}, slowCreator{20 * time.Millisecond}, m, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{}, 3)
	for i := range 3 {
		ev := baseEvent()
		ev.Rule = fmt.Sprint("CVE-", i)
		ev.received = time.Now().Add(-5 * time.Millisecond) // the pipeline took 5 ms
		ev.Done = func(Outcome, error) { done <- struct{}{} }
		if err := w.Put(ctx, &ev); err != nil {
			t.Fatal(err)
		}
	}
	go w.Run(ctx)
	for range 3 {
		<-done
	}
	for stage, least := range map[string]time.Duration{"pipeline": 15 * time.Millisecond, "queue": 60 * time.Millisecond,
		"create": 60 * time.Millisecond} {
		h := &dto.Metric{}
		if err := m.StageSeconds.WithLabelValues(stage).(prometheus.Histogram).Write(h); err != nil {
			t.Fatal(err)
		}
		n, sum := h.GetHistogram().GetSampleCount(), h.GetHistogram().GetSampleSum()
		if n != 3 || sum < least.Seconds() {
			t.Errorf("%s: %d samples summing %.3f s, want 3 summing at least %v", stage, n, sum, least)
		}
	}
}

// TestWriterHandsOverWithdrawn: a finding withdrawn before it is queued (its namespace went to
// another replica) is not sent, nor retried once withdrawn; it is reported handed over, counted,
// and its dedup claim given back. (One withdrawn while queued is written: TestWriterSettle.)
func TestWriterHandsOverWithdrawn(t *testing.T) {
	for _, tc := range []struct {
		name string
		// withdrawAfter is the number of create calls after which the finding is withdrawn; -1: never.
		withdrawAfter int
		script        []error
		want          Outcome
		wantCalls     int
	}{
		{name: "owned", withdrawAfter: -1, want: OutcomeWritten, wantCalls: 1},
		{name: "withdrawn before it was queued", withdrawAfter: 0, want: OutcomeHandedOver, wantCalls: 0},
		{name: "withdrawn between retries", withdrawAfter: 1,
			script: []error{apierrors.NewTooManyRequests("slow down", 0)}, want: OutcomeHandedOver, wantCalls: 1},
		{name: "withdrawn after it was written", withdrawAfter: 1, want: OutcomeWritten, wantCalls: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &scriptedCreator{script: tc.script}
			m := metrics.New(prometheus.NewRegistry())
			w := NewWriter(WriterConfig{Workers: 1, InitialBackoff: time.Millisecond}, c, m,
				slog.New(slog.NewTextHandler(io.Discard, nil)))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go w.Run(ctx)
			store := NewTiered(NewLocalCache(16), nil, m, discardLog())
			ev := baseEvent()
			ev.Stateful = true
			if !store.ClaimLocal(ev.FP, time.Now().UnixNano(), time.Hour) {
				t.Fatal("the claim was taken already")
			}
			ev.claim, ev.claimKey, ev.claimStore = claimLocal, ev.FP, store
			ev.Withdrawn = func() bool {
				c.mu.Lock()
				defer c.mu.Unlock()
				return tc.withdrawAfter >= 0 && c.calls >= tc.withdrawAfter
			}
			done := make(chan Outcome, 1)
			ev.Done = func(o Outcome, _ error) { done <- o }
			if err := w.Put(ctx, &ev); err != nil {
				t.Fatal(err)
			}
			if got := <-done; got != tc.want {
				t.Errorf("outcome %v, want %v", got, tc.want)
			}
			c.mu.Lock()
			calls := c.calls
			c.mu.Unlock()
			if calls != tc.wantCalls {
				t.Errorf("%d creates sent, want %d", calls, tc.wantCalls)
			}
			handed := testutil.ToFloat64(m.ObservationsHandedOver.WithLabelValues(ev.Source))
			if want := float64(btoi(tc.want == OutcomeHandedOver)); handed != want {
				t.Errorf("observations_handed_over_total %v, want %v", handed, want)
			}
			// A claim given back can be taken again; a written finding's stays taken.
			if again := store.ClaimLocal(ev.FP, time.Now().UnixNano(), time.Hour); again != (tc.want == OutcomeHandedOver) {
				t.Errorf("claim free again: %v, want %v", again, tc.want == OutcomeHandedOver)
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestWriterSettle: Settle waits for the withdrawn findings queued or being written — which are
// written, not dropped: they are at the front of the line, their new owner's list is not — and
// not for those still this replica's.
func TestWriterSettle(t *testing.T) {
	c := &gatedCreator{entered: make(chan struct{}, 2), gate: make(chan struct{})}
	m := metrics.New(prometheus.NewRegistry())
	w := NewWriter(WriterConfig{Workers: 1}, c, m, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.Run(ctx)
	var lost sync.Mutex
	withdrawn := false
	moved := func() bool { lost.Lock(); defer lost.Unlock(); return withdrawn }
	writing, queued := baseEvent(), baseEvent()
	queued.Resource.Name = "queued"
	outcomes := make(chan Outcome, 2)
	for _, ev := range []*Event{&writing, &queued} {
		ev.Withdrawn = moved
		ev.Done = func(o Outcome, _ error) { outcomes <- o }
		if err := w.Put(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	<-c.entered // the first is being written, the second queued behind it
	short := func() error {
		sctx, scancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer scancel()
		return w.Settle(sctx)
	}
	if err := short(); err != nil {
		t.Fatalf("Settle with only owned findings pending: %v", err)
	}
	lost.Lock()
	withdrawn = true
	lost.Unlock()
	if err := short(); err == nil {
		t.Fatal("Settle returned while withdrawn findings were pending")
	}
	close(c.gate)
	for range 2 {
		if o := <-outcomes; o != OutcomeWritten {
			t.Errorf("a withdrawn finding pending when its namespace moved: %v, want written", o)
		}
	}
	if err := short(); err != nil {
		t.Fatalf("Settle once both were written: %v", err)
	}
}

// gateCreator holds every create until open is closed, and records how many were held at once.
type gateCreator struct {
	open chan struct{}

	mu          sync.Mutex
	held, most  int
	reachedWant chan struct{}
	want        int
	reachedOnce sync.Once
}

func (c *gateCreator) Create(context.Context, *v1alpha1.Observation) error {
	c.mu.Lock()
	c.held++
	c.most = max(c.most, c.held)
	if c.held == c.want {
		c.reachedOnce.Do(func() { close(c.reachedWant) })
	}
	c.mu.Unlock()
	<-c.open
	c.mu.Lock()
	c.held--
	c.mu.Unlock()
	return nil
}

// TestWriterConcurrency: the writer has as many creates under way as it has workers, and no more,
// while findings wait; a slow API server is then answered by that many requests at once.
func TestWriterConcurrency(t *testing.T) {
	for _, tc := range []struct {
		name    string
		workers int
		want    int
	}{
		{"default", 0, DefaultWorkers},
		{"set", 4, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &gateCreator{open: make(chan struct{}), reachedWant: make(chan struct{}), want: tc.want}
			m := metrics.New(prometheus.NewRegistry())
			w := NewWriter(WriterConfig{Workers: tc.workers}, c, m, slog.New(slog.NewTextHandler(io.Discard, nil)))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			n := tc.want + 10
			var done sync.WaitGroup
			done.Add(n)
			for i := range n {
				ev := baseEvent()
				ev.Rule = fmt.Sprint("CVE-", i)
				ev.Done = func(Outcome, error) { done.Done() }
				if err := w.Put(ctx, &ev); err != nil {
					t.Fatal(err)
				}
			}
			go w.Run(ctx)
			select {
			case <-c.reachedWant:
			case <-time.After(10 * time.Second):
				t.Fatalf("%d creates under way at most, want %d", c.mostHeld(), tc.want)
			}
			time.Sleep(20 * time.Millisecond) // a worker too many would take a finding meanwhile
			close(c.open)
			done.Wait()
			if most := c.mostHeld(); most != tc.want {
				t.Errorf("%d creates under way at once, want %d", most, tc.want)
			}
		})
	}
}

func (c *gateCreator) mostHeld() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.most
}
