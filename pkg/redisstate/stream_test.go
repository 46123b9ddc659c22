package redisstate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kube-zen/zen-watcher/internal/testenv"
	"github.com/kube-zen/zen-watcher/pkg/metrics"
	"github.com/kube-zen/zen-watcher/pkg/pipeline"
)

// recorder stands in for the pipeline: it keeps every finding handed to it and reports the
// outcome that outcome returns (none when hold is set, as a replica that died holding them).
type recorder struct {
	mu      sync.Mutex
	seen    map[string]int
	redeliv map[string]bool
	hold    bool
	outcome func(ev *pipeline.Event) (pipeline.Outcome, error)
}

func newRecorder() *recorder {
	return &recorder{seen: map[string]int{}, redeliv: map[string]bool{}}
}

func (r *recorder) Handle(_ context.Context, ev *pipeline.Event) error {
	r.mu.Lock()
	r.seen[ev.Instance]++
	if ev.Redelivered {
		r.redeliv[ev.Instance] = true
	}
	r.mu.Unlock()
	if r.hold {
		return nil
	}
	o, err := pipeline.OutcomeWritten, error(nil)
	if r.outcome != nil {
		o, err = r.outcome(ev)
	}
	go ev.Done(o, err)
	return nil
}

func (r *recorder) count(instance string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seen[instance]
}

func (r *recorder) redelivered(instance string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.redeliv[instance]
}

func (r *recorder) distinct() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seen)
}

type streamEnv struct {
	client *redis.Client
	m      *metrics.Metrics
	log    io.Writer // the streams' log lines; discarded when nil
}

func newStreamEnv(t *testing.T) streamEnv {
	c := redis.NewClient(&redis.Options{Addr: srv.Addr, DialTimeout: 200 * time.Millisecond,
		ReadTimeout: 500 * time.Millisecond, WriteTimeout: 500 * time.Millisecond})
	t.Cleanup(func() { _ = c.Close() })
	return streamEnv{client: c, m: metrics.New(prometheus.NewRegistry())}
}

// served is a list of webhook sources that never changes.
type served []string

func (s served) Sources() []string             { return s }
func (served) SourcesChanged() <-chan struct{} { return nil }

// start runs a Stream for consumer, reading source falco's stream, until the test ends or the
// returned stop is called.
func (e streamEnv) start(t *testing.T, release, consumer string, h Handler, opts StreamOptions) (*Stream, func()) {
	t.Helper()
	return e.startReading(t, release, consumer, h, opts, served{"falco"})
}

// startReading is start with the sources whose streams the Stream reads.
func (e streamEnv) startReading(t *testing.T, release, consumer string, h Handler, opts StreamOptions, sources Sources) (*Stream, func()) {
	t.Helper()
	opts.Release, opts.Consumer = release, consumer
	out := e.log
	if out == nil {
		out = io.Discard
	}
	s, err := NewStream(e.client, opts, e.m, slog.New(slog.NewTextHandler(out, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx, h, sources); close(done) }()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return s, stop
}

// lead runs the leader's maintenance of s until the test ends.
func lead(t *testing.T, s *Stream) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Maintain(ctx, served{"falco"}); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func findings(prefix string, n int) []*pipeline.Event {
	out := make([]*pipeline.Event, n)
	for i := range out {
		out[i] = &pipeline.Event{Source: "falco", Rule: "r", Instance: fmt.Sprintf("%s-%d", prefix, i), Severity: "high"}
	}
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestStreamDeliversEachEntryOnceAcrossConsumers(t *testing.T) {
	e := newStreamEnv(t)
	ctx := context.Background()
	a, b := newRecorder(), newRecorder()
	sa, _ := e.start(t, "once", "a", a, StreamOptions{StatsInterval: 100 * time.Millisecond})
	lead(t, sa) // the leader's part: trimming what both consumers finished
	e.start(t, "once", "b", b, StreamOptions{StatsInterval: 100 * time.Millisecond})
	const requests = 400
	var wg sync.WaitGroup
	for i := range requests {
		wg.Go(func() {
			if err := sa.Append(ctx, "falco", findings(fmt.Sprint(i), 3)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	waitFor(t, "every finding handled", func() bool { return a.distinct()+b.distinct() >= 3*requests })
	for i := range requests {
		for j := range 3 {
			id := fmt.Sprintf("%d-%d", i, j)
			if n := a.count(id) + b.count(id); n != 1 {
				t.Fatalf("finding %s handled %d times", id, n)
			}
		}
	}
	if a.distinct() == 0 || b.distinct() == 0 {
		t.Errorf("one consumer did all the work: a %d, b %d", a.distinct(), b.distinct())
	}
	key := sa.Key("falco")
	waitFor(t, "processed entries acknowledged and trimmed", func() bool {
		n, _ := e.client.XLen(ctx, key).Result()
		return n <= 1 && testutil.ToFloat64(e.m.WebhookQueueDepth.WithLabelValues("falco")) == 0
	})
	if got := testutil.ToFloat64(e.m.WebhookQueueProcessed.WithLabelValues("falco", "done")); got != requests {
		t.Errorf("processed %v entries, want %d", got, requests)
	}
}

// TestStreamClaimsWhatADeadConsumerHeld: consumer a takes entries and never finishes them (it
// died); after ClaimIdle, b processes them, marked redelivered so that dedup lets them through.
func TestStreamClaimsWhatADeadConsumerHeld(t *testing.T) {
	e := newStreamEnv(t)
	ctx := context.Background()
	dead := newRecorder()
	dead.hold = true
	sa, stopA := e.start(t, "claim", "a", dead, StreamOptions{ClaimIdle: time.Hour})
	if err := sa.Append(ctx, "falco", findings("held", 5)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a to take the entry", func() bool { return dead.count("held-4") == 1 })
	stopA()

	live := newRecorder()
	e.start(t, "claim", "b", live, StreamOptions{ClaimIdle: 300 * time.Millisecond, StatsInterval: 100 * time.Millisecond})
	waitFor(t, "b to claim and finish the entry", func() bool {
		return testutil.ToFloat64(e.m.WebhookQueueProcessed.WithLabelValues("falco", "done")) == 1
	})
	for i := range 5 {
		id := fmt.Sprintf("held-%d", i)
		if live.count(id) != 1 || !live.redelivered(id) {
			t.Errorf("%s: handled %d times by b, redelivered %v", id, live.count(id), live.redelivered(id))
		}
	}
	if testutil.ToFloat64(e.m.WebhookQueueClaimed.WithLabelValues("falco")) != 1 {
		t.Error("claim not counted")
	}
}

// TestStreamRetriesFailedWritesAndDropsRejected: a finding whose write failed for a passing
// reason is handed on again; one the API server judged invalid is acknowledged, counted.
func TestStreamRetriesFailedWritesAndDropsRejected(t *testing.T) {
	e := newStreamEnv(t)
	ctx := context.Background()
	var mu sync.Mutex
	attempts := map[string]int{}
	r := newRecorder()
	r.outcome = func(ev *pipeline.Event) (pipeline.Outcome, error) {
		mu.Lock()
		defer mu.Unlock()
		attempts[ev.Instance]++
		switch {
		case ev.Instance == "bad-0":
			return pipeline.OutcomeFailed, apierrors.NewInvalid(schema.GroupKind{Kind: "Observation"}, "x", nil)
		case attempts[ev.Instance] == 1:
			return pipeline.OutcomeFailed, apierrors.NewServiceUnavailable("etcd away")
		}
		return pipeline.OutcomeWritten, nil
	}
	s, _ := e.start(t, "retry", "a", r, StreamOptions{ClaimIdle: 200 * time.Millisecond})
	if err := s.Append(ctx, "falco", findings("flaky", 1)); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(ctx, "falco", findings("bad", 1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the flaky entry done on its second try", func() bool {
		return testutil.ToFloat64(e.m.WebhookQueueProcessed.WithLabelValues("falco", "done")) == 1
	})
	waitFor(t, "the invalid entry acknowledged as rejected", func() bool {
		return testutil.ToFloat64(e.m.WebhookQueueProcessed.WithLabelValues("falco", "rejected")) == 1
	})
	mu.Lock()
	defer mu.Unlock()
	if attempts["flaky-0"] != 2 || attempts["bad-0"] != 1 || !r.redelivered("flaky-0") {
		t.Errorf("attempts %v, flaky redelivered %v", attempts, r.redelivered("flaky-0"))
	}
}

func TestStreamBoundsAndOutage(t *testing.T) {
	e := newStreamEnv(t)
	ctx := context.Background()
	held := newRecorder()
	held.hold = true
	// No consumer reads "other": its entries stay, and the fourth is refused.
	s, _ := e.start(t, "bounds", "a", held, StreamOptions{MaxLen: 3})
	for i := range 4 {
		err := s.Append(ctx, "other", findings(fmt.Sprint(i), 1))
		var full interface{ Full() bool }
		switch {
		case i < 3 && err != nil:
			t.Fatalf("append %d: %v", i, err)
		case i == 3 && !(errors.As(err, &full) && full.Full()):
			t.Fatalf("append past the bound: %v", err)
		}
	}

	// Entries older than MaxAge that nobody processed are removed and counted as lost.
	old, _ := e.start(t, "bounds", "b", held, StreamOptions{MaxAge: time.Millisecond, StatsInterval: time.Hour})
	key := old.Key("other")
	if err := old.ensureGroups(ctx, []string{key}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	if err := old.maintain(ctx, key); err != nil {
		t.Fatal(err)
	}
	if lost := testutil.ToFloat64(e.m.WebhookQueueLost.WithLabelValues("other")); lost != 3 {
		t.Errorf("lost %v, want 3", lost)
	}
	if n, _ := e.client.XLen(ctx, key).Result(); n != 0 {
		t.Errorf("%d entries left after expiry", n)
	}

	// Redis away: the append fails, and the next ones fail at once rather than each waiting.
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
	}()
	if err := s.Append(ctx, "falco", findings("x", 1)); err == nil {
		t.Fatal("append with Redis stopped succeeded")
	}
	if err := s.Append(ctx, "falco", findings("y", 1)); !errors.Is(err, errUnavailable) {
		t.Fatalf("second append while down: %v", err)
	}
}

// TestQueueExpiryIsTheLeadersAndCountedOnce: two replicas hold entries they never finish; past
// MaxAge the leader removes them and counts each once, while the other replica, which only
// measures, counts nothing — however many rounds go by.
func TestQueueExpiryIsTheLeadersAndCountedOnce(t *testing.T) {
	e := newStreamEnv(t)
	follower := streamEnv{client: e.client, m: metrics.New(prometheus.NewRegistry())}
	ctx := context.Background()
	held := newRecorder()
	held.hold = true
	opts := StreamOptions{MaxAge: 300 * time.Millisecond, StatsInterval: 50 * time.Millisecond, ClaimIdle: time.Hour}
	a, _ := e.start(t, "expiry", "a", held, opts)
	follower.start(t, "expiry", "b", held, opts)
	lead(t, a)
	for i := range 5 {
		if err := a.Append(ctx, "falco", findings(fmt.Sprint("exp-", i), 1)); err != nil {
			t.Fatal(err)
		}
	}
	lost := func(env streamEnv) float64 {
		return testutil.ToFloat64(env.m.WebhookQueueLost.WithLabelValues("falco"))
	}
	waitFor(t, "the expired entries counted", func() bool { return lost(e) >= 5 })
	time.Sleep(300 * time.Millisecond) // six more rounds of both
	if got := lost(e); got != 5 {
		t.Errorf("the leader counted %v lost entries, want 5", got)
	}
	if got := lost(follower); got != 0 {
		t.Errorf("the follower counted %v lost entries, want 0", got)
	}
	if n, _ := e.client.XLen(ctx, a.Key("falco")).Result(); n != 0 {
		t.Errorf("%d entries left after expiry", n)
	}
}

// TestStreamHandsBackOnStop: consumer a takes an entry and stops before finishing it, as a replica
// in a rolling restart does; b takes it over at its next claim, not after ClaimIdle.
func TestStreamHandsBackOnStop(t *testing.T) {
	e := newStreamEnv(t)
	ctx := context.Background()
	busy := newRecorder()
	busy.hold = true
	const idle = time.Minute
	sa, stopA := e.start(t, "handback", "a", busy, StreamOptions{ClaimIdle: idle})
	if err := sa.Append(ctx, "falco", findings("stopping", 5)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a to take the entry", func() bool { return busy.count("stopping-4") == 1 })
	stopA()

	live := newRecorder()
	start := time.Now()
	e.start(t, "handback", "b", live, StreamOptions{ClaimIdle: idle})
	waitFor(t, "b to take over what a handed back", func() bool {
		return testutil.ToFloat64(e.m.WebhookQueueProcessed.WithLabelValues("falco", "done")) == 1
	})
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("taken over after %v: a did not hand it back", took)
	}
	for i := range 5 {
		if id := fmt.Sprintf("stopping-%d", i); live.count(id) != 1 || !live.redelivered(id) {
			t.Errorf("%s: handled %d times by b, redelivered %v", id, live.count(id), live.redelivered(id))
		}
	}
}

// TestAppendRunLateIsRefused: an append sent to a paused Redis fails for the replica (which then
// processes the findings itself); when Redis resumes and runs the append it waited with, past its
// deadline, nothing is queued. Without the deadline the findings would be queued and processed a
// second time.
func TestAppendRunLateIsRefused(t *testing.T) {
	e := newStreamEnv(t)
	ctx := context.Background()
	s, _ := e.start(t, "late", "a", newRecorder(), StreamOptions{Timeout: 400 * time.Millisecond})
	key := s.Key("unread")
	if err := s.Append(ctx, "unread", findings("before", 1)); err != nil {
		t.Fatal(err)
	}
	if err := srv.Pause(); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			if err := srv.Resume(); err != nil {
				t.Fatal(err)
			}
		}
	}
	defer resume()
	start := time.Now()
	if err := s.Append(ctx, "unread", findings("paused", 1)); err == nil {
		t.Fatal("an append to a paused Redis succeeded")
	}
	if waited := time.Since(start); waited > 2*time.Second {
		t.Errorf("the append waited %s for a paused Redis", waited)
	}
	time.Sleep(500 * time.Millisecond) // the append's deadline has long passed on any clock
	resume()
	waitFor(t, "Redis to answer again", func() bool { return e.client.Ping(ctx).Err() == nil })
	if n, err := e.client.XLen(ctx, key).Result(); err != nil || n != 1 {
		t.Errorf("%d entries after Redis resumed (%v), want only the one appended before the pause", n, err)
	}
	// The clock learnt from the answers keeps appends working once Redis is back.
	time.Sleep(time.Second) // past the refusal after the outage
	if err := s.Append(ctx, "unread", findings("after", 1)); err != nil {
		t.Fatalf("append after Redis resumed: %v", err)
	}
	if n, _ := e.client.XLen(ctx, key).Result(); n != 2 {
		t.Errorf("%d entries, want 2", n)
	}
}

// TestRedisOutageIsLoggedOnceEachWay: a consumer whose reads of the queue fail for seconds, Redis
// being stopped, logs one WARN when they begin to fail and one INFO when they work again, instead
// of one line a second at a level nobody sees.
func TestRedisOutageIsLoggedOnceEachWay(t *testing.T) {
	e := newStreamEnv(t)
	var out testenv.Buffer
	e.log = &out
	e.start(t, "outage-log", "a", newRecorder(), StreamOptions{Block: 200 * time.Millisecond})
	ctx := context.Background()
	waitFor(t, "the consumer group", func() bool {
		g, err := e.client.XInfoGroups(ctx, "zw:{outage-log}:wh:falco").Result()
		return err == nil && len(g) == 1
	})
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second) // several failed reads, one a second
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(15 * time.Second); !strings.Contains(out.String(), `msg="reading the webhook queue works again"`); {
		if time.Now().After(deadline) {
			t.Fatalf("no recovery logged within 15s of Redis resuming:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	log := out.String()
	if n := strings.Count(log, `level=WARN msg="reading the webhook queue failing; retrying"`); n != 1 {
		t.Errorf("%d warnings for one outage, want 1:\n%s", n, log)
	}
	if n := strings.Count(log, `level=INFO msg="reading the webhook queue works again"`); n != 1 {
		t.Errorf("%d recoveries for one outage, want 1:\n%s", n, log)
	}
}

// TestStreamRefusesAppendsOnceStopping: a stopped queue refuses appends at once with an error
// that says it is stopping, so that the webhook server answers 503 instead of processing the
// findings on a replica that is going away.
func TestStreamRefusesAppendsOnceStopping(t *testing.T) {
	e := newStreamEnv(t)
	s, stop := e.start(t, "stopping", "a", newRecorder(), StreamOptions{})
	if err := s.Append(context.Background(), "unread", findings("before", 1)); err != nil {
		t.Fatal(err)
	}
	stop()
	done := make(chan error, 1)
	go func() { done <- s.Append(context.Background(), "unread", findings("after", 1)) }()
	select {
	case err := <-done:
		var st interface{ Stopping() bool }
		if !errors.As(err, &st) || !st.Stopping() {
			t.Errorf("append after the stop: %v, want a stopping refusal", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("an append after the stop hung")
	}
}

// watchedSources is a list of webhook sources a test changes; it counts how often it is listed.
type watchedSources struct {
	mu      sync.Mutex
	list    []string
	changed chan struct{}
	lists   atomic.Int64
}

func (w *watchedSources) Sources() []string {
	w.lists.Add(1)
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.list)
}

func (w *watchedSources) SourcesChanged() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.changed == nil {
		w.changed = make(chan struct{})
	}
	return w.changed
}

func (w *watchedSources) set(list ...string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.list = list
	if w.changed != nil {
		close(w.changed)
		w.changed = nil
	}
}

// holder takes each finding and leaves it unfinished until the test finishes it.
type holder chan *pipeline.Event

func (h holder) Handle(_ context.Context, ev *pipeline.Event) error {
	h <- ev
	return nil
}

func (h holder) next(t *testing.T) *pipeline.Event {
	t.Helper()
	select {
	case ev := <-h:
		return ev
	case <-time.After(15 * time.Second):
		t.Fatal("timed out waiting for a finding")
		return nil
	}
}

// An idle replica has nothing to read while it serves no webhook, or while each of its slots holds
// an entry: its reader waits for that to change instead of asking again every few milliseconds,
// and reads at once when it does.
func TestStreamReaderWaitsForWorkWithoutPolling(t *testing.T) {
	// Besides the reader, the claim loop lists the sources once a second.
	const quiet, maxLists = time.Second, 3
	e := newStreamEnv(t)
	ctx := context.Background()
	quietLists := func(src *watchedSources) int64 {
		before := src.lists.Load()
		time.Sleep(quiet)
		return src.lists.Load() - before
	}

	t.Run("no webhook served", func(t *testing.T) {
		rec, src := newRecorder(), &watchedSources{}
		s, _ := e.startReading(t, "unserved", "a", rec, StreamOptions{}, src)
		if err := s.Append(ctx, "falco", findings("unserved", 1)); err != nil {
			t.Fatal(err)
		}
		if n := quietLists(src); n > maxLists {
			t.Errorf("the sources were listed %d times in %v with none served; want at most %d", n, quiet, maxLists)
		}
		if rec.distinct() != 0 {
			t.Fatal("an entry of a source not served was read")
		}
		src.set("falco")
		waitFor(t, "the entry read once its source is served", func() bool { return rec.count("unserved-0") == 1 })
	})

	t.Run("every slot taken", func(t *testing.T) {
		h, src := make(holder, 4), &watchedSources{list: []string{"falco"}}
		s, _ := e.startReading(t, "full", "a", h, StreamOptions{MaxInFlight: 1}, src)
		for i := range 2 {
			if err := s.Append(ctx, "falco", findings(fmt.Sprint("full-", i), 1)); err != nil {
				t.Fatal(err)
			}
		}
		first := h.next(t)
		if n := quietLists(src); n > maxLists {
			t.Errorf("the sources were listed %d times in %v with the one slot taken; want at most %d", n, quiet, maxLists)
		}
		select {
		case ev := <-h:
			t.Fatalf("%s was read while the one slot held %s", ev.Instance, first.Instance)
		default:
		}
		first.Done(pipeline.OutcomeWritten, nil)
		if second := h.next(t); second.Instance == first.Instance {
			t.Fatalf("%s was read again", first.Instance)
		}
	})
}
