package ha

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/kube-zen/zen-watcher/pkg/pipeline"
)

// stubLock is a resourcelock.Interface whose writes succeed or fail as the test says, and whose
// Lease is held by holder.
type stubLock struct {
	fail    bool
	holder  string
	updates int
}

func (l *stubLock) Get(context.Context) (*resourcelock.LeaderElectionRecord, []byte, error) {
	return &resourcelock.LeaderElectionRecord{HolderIdentity: l.holder}, []byte(l.holder), nil
}
func (l *stubLock) Create(context.Context, resourcelock.LeaderElectionRecord) error { return l.err() }
func (l *stubLock) Update(context.Context, resourcelock.LeaderElectionRecord) error {
	l.updates++
	return l.err()
}
func (*stubLock) RecordEvent(string) {}
func (*stubLock) Identity() string   { return "zw-0" }
func (*stubLock) Describe() string   { return "stub" }

func (l *stubLock) err() error {
	if l.fail {
		return errors.New("the API server did not answer")
	}
	return nil
}

// TestTermHoldsOnlyAfterARenewal: a term holds from a successful write of the Lease naming this
// replica, for the renew deadline; a failed write does not extend it, a release ends it, and so
// does time without a renewal, however the process spent it.
func TestTermHoldsOnlyAfterARenewal(t *testing.T) {
	ctx := context.Background()
	stub := &stubLock{}
	lock := &fencedLock{Interface: stub}
	term := &Term{lock: lock, valid: 300 * time.Millisecond}
	mine := resourcelock.LeaderElectionRecord{HolderIdentity: "zw-0"}
	if term.Held() {
		t.Fatal("a term held before any write of the Lease")
	}
	if err := lock.Create(ctx, mine); err != nil {
		t.Fatal(err)
	}
	if !term.Held() {
		t.Fatal("the term does not hold after the Lease was created")
	}
	stub.fail = true
	time.Sleep(200 * time.Millisecond)
	if err := lock.Update(ctx, mine); err == nil {
		t.Fatal("the stub did not fail")
	}
	time.Sleep(150 * time.Millisecond) // 350 ms since the last write that succeeded
	if term.Held() {
		t.Error("a failed renewal extended the term")
	}
	stub.fail = false
	if err := lock.Update(ctx, mine); err != nil || !term.Held() {
		t.Errorf("a renewal that succeeded did not restore the term: %v", err)
	}
	if err := lock.Update(ctx, resourcelock.LeaderElectionRecord{}); err != nil || term.Held() {
		t.Errorf("the term holds after the Lease was released (%v)", err)
	}
	if err := lock.Update(ctx, mine); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if !term.watch(wctx) {
		t.Fatal("watch did not report the end of the term")
	}
	if term.Held() {
		t.Error("watch returned while the term still held")
	}
}

// TestNoReleaseOfAnotherReplicasLease: a release (a write naming no holder) goes through only while
// the Lease last read is this replica's; a Lease another replica took over is left alone.
func TestNoReleaseOfAnotherReplicasLease(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		holder string
		want   bool
	}{{"zw-0", true}, {"zw-1", false}, {"", false}}
	for _, tc := range cases {
		stub := &stubLock{holder: tc.holder}
		lock := &fencedLock{Interface: stub}
		if _, _, err := lock.Get(ctx); err != nil {
			t.Fatal(err)
		}
		err := lock.Update(ctx, resourcelock.LeaderElectionRecord{})
		if released := err == nil && stub.updates == 1; released != tc.want {
			t.Errorf("Lease held by %q: released %v (%v), want %v", tc.holder, released, err, tc.want)
		}
	}
}

// switchFence is a Fence the test turns off.
type switchFence struct{ off atomic.Bool }

func (f *switchFence) Held() bool { return !f.off.Load() }

// TestDeposedLeaderDecidesNothing: a leader whose fence no longer holds publishes nothing and
// changes no order, not even its own; a deposed leader's term is refused by the shared state
// whatever it tries, and it begins a new term only while its own fence holds.
func TestDeposedLeaderDecidesNothing(t *testing.T) {
	ctx := context.Background()
	state := &memState{stats: map[string]map[string]pipeline.OrderStats{}}
	old, pOld, _ := newReplica(t, state, "zw-0")
	next, _, _ := newReplica(t, state, "zw-1")
	feed := func(n int) {
		for range n {
			ev := &pipeline.Event{Source: "falco", Category: "security", Severity: "high", EventType: "runtime_alert", Rule: "same"}
			if err := pOld.Handle(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
	}
	round := func(c *Coordinator, past time.Duration) {
		c.SyncOnce(ctx)
		c.last = time.Now().Add(-past)
		c.LeadOnce(ctx, time.Now())
	}
	fence := &switchFence{}
	old.BeginLeading(fence)
	round(old, time.Second) // the baseline round begins term 1
	feed(200)
	before := pOld.Order("falco")
	fence.off.Store(true) // paused past its renew deadline
	round(old, 10*time.Second)
	if state.writes != 0 || pOld.Order("falco") != before {
		t.Fatalf("a leader without its fence wrote %d times; its order went from %s to %s", state.writes, before, pOld.Order("falco"))
	}
	if state.term != 1 {
		t.Fatalf("term %d, want the old leader's 1", state.term)
	}

	next.BeginLeading(Unfenced)
	round(next, time.Second) // term 2
	round(next, 10*time.Second)
	landed := state.writes
	if landed == 0 {
		t.Fatal("the new leader published nothing")
	}
	// The old leader's fence holds again (its process thinks so, say, for a moment after a pause):
	// its writes under term 1 are refused, and it begins a new term only at its next round.
	fence.off.Store(false)
	window, cache := state.window, state.cache
	round(old, 10*time.Second)
	if state.writes != landed || state.window != window || state.cache != cache {
		t.Errorf("the deposed leader's writes landed: %d writes, tuning %v/%d", state.writes-landed, state.window, state.cache)
	}
	if old.term != 0 {
		t.Errorf("the refused leader kept its term %d", old.term)
	}
}

// TestTuningMovesGently: the leader's tuning follows a smoothed rate; the cache grows at once but
// shrinks by at most an eighth a round, and a new term goes on from the size in force.
func TestTuningMovesGently(t *testing.T) {
	o := DefaultOptimization()
	cases := []struct {
		name  string
		start int
		rates []float64
	}{
		{"idle after a flood", 50000, []float64{0, 0, 0, 0, 0, 0}},
		{"one burst", 0, []float64{5, 5, 5000, 5, 5}},
		{"a flapping rate", 0, []float64{1000, 1, 1000, 1, 1000, 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tn := tuning{size: tc.start}
			prev := tc.start
			var sizes []int
			for _, r := range tc.rates {
				_, size := tn.next(o, r, 3)
				if prev > 0 && size < prev-(prev+7)/8 {
					t.Errorf("the cache shrank from %d to %d in one round", prev, size)
				}
				sizes = append(sizes, size)
				prev = size
			}
			if tc.start > 0 && sizes[0] < tc.start*7/8 {
				t.Errorf("the first round of a term dropped the size in force %d to %d", tc.start, sizes[0])
			}
			t.Logf("sizes %v", sizes)
		})
	}
	raw := o.CacheSize(5000, 3, o.Window(5000))
	tn := tuning{}
	tn.next(o, 5, 3)
	if _, size := tn.next(o, 5000, 3); size >= raw {
		t.Errorf("one round's burst took the cache to %d, the unsmoothed %d", size, raw)
	}
}

// fixedFence holds or not, as set.
type fixedFence bool

func (f fixedFence) Held() bool { return bool(f) }

// TestFenceTransport: a request goes out unless its context carries a fence that no longer holds;
// a refused one never reaches the server, and its body is closed.
func TestFenceTransport(t *testing.T) {
	var got atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { got.Add(1) }))
	defer srv.Close()
	client := &http.Client{Transport: FenceTransport(srv.Client().Transport)}
	for _, tc := range []struct {
		name    string
		ctx     context.Context
		refused bool
	}{
		{"no fence", context.Background(), false},
		{"held", WithFence(context.Background(), fixedFence(true)), false},
		{"unfenced", WithFence(context.Background(), Unfenced), false},
		{"fallen", WithFence(context.Background(), fixedFence(false)), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := got.Load()
			body := &closeRecorder{Reader: strings.NewReader("{}")}
			req, err := http.NewRequestWithContext(tc.ctx, http.MethodDelete, srv.URL, body)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := client.Do(req)
			if err == nil {
				resp.Body.Close()
			}
			sent := got.Load() - before
			switch {
			case tc.refused && (!errors.Is(err, ErrDeposed) || sent != 0):
				t.Errorf("a fallen fence: error %v, %d requests reached the server; want ErrDeposed and none", err, sent)
			case !tc.refused && (err != nil || sent != 1):
				t.Errorf("error %v, %d requests reached the server; want it sent", err, sent)
			}
			if !body.closed.Load() {
				t.Error("the request's body was not closed")
			}
		})
	}
}

type closeRecorder struct {
	io.Reader
	closed atomic.Bool
}

func (c *closeRecorder) Close() error { c.closed.Store(true); return nil }
