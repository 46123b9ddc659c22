package pipeline

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
)

func newTestDedup(t *testing.T, cfg DedupConfig, shared Store) (*Dedup, *Tiered) {
	t.Helper()
	m := newMetrics()
	store := NewTiered(NewLocalCache(1000), shared, m, discardLog())
	var window atomic.Int64
	window.Store(int64(time.Hour))
	d, err := NewDedup("trivy", cfg, &window, store, m)
	if err != nil {
		t.Fatal(err)
	}
	return d, store
}

// decide runs events through d and returns which passed.
func decide(t *testing.T, d *Dedup, evs []Event) []bool {
	t.Helper()
	out := make([]bool, len(evs))
	for i := range evs {
		ev := evs[i]
		ev.FP = Fingerprint(&ev)
		keep, err := d.Process(context.Background(), &ev)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = keep
	}
	return out
}

func TestDedupStrategies(t *testing.T) {
	a := baseEvent()
	aRetitled := baseEvent()
	aRetitled.Title = "new title"
	b := baseEvent()
	b.Rule = "CVE-2022-0001"
	otherNS := baseEvent()
	otherNS.Resource.Namespace = "default"
	cases := []struct {
		name string
		cfg  DedupConfig
		evs  []Event
		want []bool
	}{
		{"fingerprint: repeats are duplicates, presentation aside",
			DedupConfig{Strategy: v1alpha1.DedupFingerprint},
			[]Event{a, a, aRetitled, b}, []bool{true, false, false, true}},
		{"event-stream: at most N per window",
			DedupConfig{Strategy: v1alpha1.DedupEventStream, MaxEventsPerWindow: 2},
			[]Event{a, a, a, a, b}, []bool{true, true, false, false, true}},
		{"key: only the named fields count",
			DedupConfig{Strategy: v1alpha1.DedupKey, Fields: []string{"source", "kind", "name"}},
			[]Event{a, b, otherNS}, []bool{true, false, false}},
		{"key: with namespace the namespaces differ",
			DedupConfig{Strategy: v1alpha1.DedupKey, Fields: []string{"source", "namespace", "name"}},
			[]Event{a, otherNS}, []bool{true, true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, _ := newTestDedup(t, tc.cfg, nil)
			got := decide(t, d, tc.evs)
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("event %d kept=%v, want %v (all: %v)", i, got[i], tc.want[i], got)
				}
			}
		})
	}
}

func TestDedupWindowExpires(t *testing.T) {
	d, _ := newTestDedup(t, DedupConfig{Strategy: v1alpha1.DedupFingerprint, Window: 20 * time.Millisecond}, nil)
	a := baseEvent()
	if got := decide(t, d, []Event{a, a}); !got[0] || got[1] {
		t.Fatalf("within the window: %v", got)
	}
	time.Sleep(40 * time.Millisecond)
	if got := decide(t, d, []Event{a}); !got[0] {
		t.Fatal("after the window the finding was still a duplicate")
	}
}

func TestDedupRejectsBadConfiguration(t *testing.T) {
	cases := []struct {
		cfg     DedupConfig
		wantErr string
	}{
		{DedupConfig{Strategy: "bloom"}, "unknown dedup strategy"},
		{DedupConfig{Strategy: v1alpha1.DedupKey}, "needs fields"},
		{DedupConfig{Strategy: v1alpha1.DedupKey, Fields: []string{"colour"}}, `unknown field "colour"`},
	}
	for _, tc := range cases {
		var w atomic.Int64
		_, err := NewDedup("x", tc.cfg, &w, NewTiered(NewLocalCache(10), nil, newMetrics(), discardLog()), newMetrics())
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%+v: error %v, want %q", tc.cfg, err, tc.wantErr)
		}
	}
}

// failingStore fails every call while down is set, and otherwise remembers claims like Redis.
type failingStore struct {
	down   atomic.Bool
	calls  atomic.Int64
	claims map[uint64]bool
}

func (f *failingStore) Claim(_ context.Context, key uint64, ttl time.Duration, token uint64) (bool, Hold, error) {
	f.calls.Add(1)
	if f.down.Load() {
		return false, Hold{}, errors.New("connection refused")
	}
	if f.claims[key] {
		return false, Hold{Left: ttl}, nil
	}
	f.claims[key] = true
	return true, Hold{Token: token, Left: ttl}, nil
}

func (f *failingStore) Incr(context.Context, uint64, time.Duration, uint64) (int64, Hold, error) {
	f.calls.Add(1)
	return 0, Hold{}, errors.New("connection refused")
}

func (f *failingStore) Release(_ context.Context, key uint64, _ bool, _ uint64) error {
	delete(f.claims, key)
	return nil
}

// TestTieredFallsBackAndReturns: with the shared store down, dedup goes on locally (no error, a
// metric says so), stops asking the store for a backoff, and uses it again once it is back.
func TestTieredFallsBackAndReturns(t *testing.T) {
	shared := &failingStore{claims: map[uint64]bool{}}
	m := newMetrics()
	tier := NewTiered(NewLocalCache(1000), shared, m, discardLog())
	ctx := context.Background()

	shared.claims[mix(99)] = true // another replica's claim
	if first(tier.Claim(ctx, mix(99), time.Now().UnixNano(), time.Hour)) {
		t.Fatal("a key claimed by another replica was new")
	}
	shared.down.Store(true)
	if !first(tier.Claim(ctx, mix(1), time.Now().UnixNano(), time.Hour)) || first(tier.Claim(ctx, mix(1), time.Now().UnixNano(), time.Hour)) {
		t.Fatal("local fallback did not deduplicate")
	}
	if testutil.ToFloat64(m.SharedStoreAvailable) != 0 || testutil.ToFloat64(m.DedupFallbacks) < 1 {
		t.Error("fallback not reported in metrics")
	}
	calls := shared.calls.Load()
	first(tier.Claim(ctx, mix(2), time.Now().UnixNano(), time.Hour))
	if shared.calls.Load() != calls {
		t.Error("the store was asked again within its backoff")
	}
	shared.down.Store(false)
	time.Sleep(minStoreBackoff + 50*time.Millisecond)
	if !first(tier.Claim(ctx, mix(3), time.Now().UnixNano(), time.Hour)) || !shared.claims[mix(3)] {
		t.Error("the store was not used again after it came back")
	}
	if testutil.ToFloat64(m.SharedStoreAvailable) != 1 {
		t.Error("availability not restored in metrics")
	}
}

// TestRedeliveredSkipsDedup: a webhook occurrence handed on again after a replica died may find
// the claim its first delivery took; it passes, and its Instance-derived name keeps it single.
// Without an Instance there is no such name, so dedup decides as usual.
func TestRedeliveredSkipsDedup(t *testing.T) {
	d, _ := newTestDedup(t, DedupConfig{Strategy: v1alpha1.DedupFingerprint}, nil)
	first := baseEvent()
	first.Instance = "alert-1"
	again := first
	again.Redelivered = true
	noInstance := baseEvent()
	noInstance.Redelivered = true
	if got := decide(t, d, []Event{first, again, noInstance}); !got[0] || !got[1] || got[2] {
		t.Fatalf("first, redelivered, redelivered without instance: %v", got)
	}
}

// TestStatesClaimLocally: a state (a report entry, a warning) is kept even when the shared store
// holds its key (a replica that died before writing it took the claim); the shared store is not
// asked. An occurrence (an alert) is still deduplicated across replicas.
func TestStatesClaimLocally(t *testing.T) {
	shared := &failingStore{claims: map[uint64]bool{}}
	d, _ := newTestDedup(t, DedupConfig{Strategy: v1alpha1.DedupFingerprint}, shared)
	state := baseEvent()
	state.Stateful = true
	alert := baseEvent()
	alert.Instance = "a-1"
	for _, ev := range []Event{state, alert} {
		ev.FP = Fingerprint(&ev)
		shared.claims[mix(d.keyOf(&ev)^d.salt)] = true // claimed elsewhere, never written
	}
	calls := shared.calls.Load()
	if got := decide(t, d, []Event{state, state}); !got[0] || got[1] {
		t.Errorf("state: %v, want kept once", got)
	}
	if shared.calls.Load() != calls {
		t.Error("a state's claim went to the shared store")
	}
	if got := decide(t, d, []Event{alert}); got[0] {
		t.Error("an alert claimed by another replica was kept")
	}
}

func first(ok bool, _ uint64) bool { return ok }

// pingingStore is a failingStore that answers pings while it is up.
type pingingStore struct{ failingStore }

func (p *pingingStore) Ping(context.Context) error {
	if p.down.Load() {
		return errors.New("connection refused")
	}
	return nil
}

// TestTieredWatchFollowsTheStore: with no dedup traffic at all, the availability gauge follows the
// shared store through its pings — down from the start, up once it answers, down when it stops,
// up again — and pings are not counted as dedup fallbacks.
func TestTieredWatchFollowsTheStore(t *testing.T) {
	shared := &pingingStore{failingStore{claims: map[uint64]bool{}}}
	shared.down.Store(true)
	m := newMetrics()
	tier := NewTiered(NewLocalCache(10), shared, m, discardLog())
	if v := testutil.ToFloat64(m.SharedStoreAvailable); v != 0 {
		t.Fatalf("available %v before the store ever answered", v)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tier.Watch(ctx, 10*time.Millisecond); close(done) }()
	waitGauge := func(want float64, phase string) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if testutil.ToFloat64(m.SharedStoreAvailable) == want {
				return
			}
		}
		t.Fatalf("%s: redis_available is not %v", phase, want)
	}
	for _, step := range []struct {
		down bool
		want float64
		name string
	}{
		{true, 0, "not there at start"},
		{false, 1, "answering"},
		{true, 0, "stopped"},
		{false, 1, "back"},
	} {
		shared.down.Store(step.down)
		waitGauge(step.want, step.name)
	}
	cancel()
	<-done
	if n := testutil.ToFloat64(m.DedupFallbacks); n != 0 {
		t.Errorf("%v pings counted as dedup fallbacks", n)
	}
	if !tier.useShared(time.Now().UnixNano()) {
		t.Error("dedup does not ask the store that answers again")
	}
}
