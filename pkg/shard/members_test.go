package shard

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
)

func memberLease(id string) *coordinationv1.Lease {
	now := metav1.NewMicroTime(time.Now())
	return &coordinationv1.Lease{Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(id),
		RenewTime: &now, LeaseDurationSeconds: ptr.To(int32(15))}}
}

// TestMembersPublishTheNewestSet: recompute runs from the informer's handlers and a ticker at
// once while the Leases change under it. Whatever the interleaving, the set last published is the
// set last read — a stale set never arrives last, which would leave a dead member's share unowned.
func TestMembersPublishTheNewestSet(t *testing.T) {
	for round := range 200 {
		m := NewMembers(MembersConfig{ID: "a"})
		var state atomic.Int64
		sets := [][]*coordinationv1.Lease{
			{memberLease("a"), memberLease("b"), memberLease("c")},
			{memberLease("a"), memberLease("c")},
			{memberLease("a")},
		}
		m.lister = func() ([]*coordinationv1.Lease, error) { return sets[state.Load()], nil }
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Go(func() {
				for i := range 50 {
					if g == 0 && i%10 == 9 && state.Load() < 2 {
						state.Add(1)
					}
					m.recompute()
				}
			})
		}
		wg.Wait()
		var last []string
		select {
		case last = <-m.Changes():
		default:
			t.Fatalf("round %d: nothing published", round)
		}
		if want := m.Current(); !slices.Equal(last, want) || len(want) != 1 {
			t.Fatalf("round %d: last published %v, current %v, want [a]", round, last, want)
		}
	}
}

// TestTenureLapses: a member whose Lease went unrenewed for a lease duration — however it spent
// the time — no longer holds its tenure, publishes the empty set, and after renewing holds a new
// tenure while the old one stays ended; its next recompute publishes the live set again.
func TestTenureLapses(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	m := NewMembers(MembersConfig{Client: client, Namespace: "ns", Release: "r", ID: "a",
		LeaseDuration: 300 * time.Millisecond, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	m.lister = func() ([]*coordinationv1.Lease, error) { return []*coordinationv1.Lease{memberLease("a")}, nil }
	if m.Holds(m.Tenure()) {
		t.Fatal("a tenure held before the first renewal")
	}
	if err := m.renew(ctx); err != nil {
		t.Fatal(err)
	}
	old := m.Tenure()
	m.recompute()
	if set := <-m.Changes(); !slices.Equal(set, []string{"a"}) || !m.Holds(old) {
		t.Fatalf("after joining: set %v, holds %v", set, m.Holds(old))
	}
	time.Sleep(400 * time.Millisecond) // a pause
	if m.Holds(old) {
		t.Error("the tenure holds a lease duration after the last renewal")
	}
	m.recompute()
	select {
	case set := <-m.Changes():
		if len(set) != 0 {
			t.Errorf("published %v after the lapse, want the empty set", set)
		}
	default:
		t.Fatal("nothing published after the lapse")
	}
	if err := m.renew(ctx); err != nil {
		t.Fatal(err)
	}
	if m.Holds(old) || !m.Holds(m.Tenure()) || m.Tenure() == old {
		t.Errorf("after renewing: old tenure holds %v, new %d holds %v", m.Holds(old), m.Tenure(), m.Holds(m.Tenure()))
	}
	m.recompute()
	select {
	case set := <-m.Changes():
		if !slices.Equal(set, []string{"a"}) {
			t.Errorf("published %v after renewing, want [a]", set)
		}
	default:
		t.Fatal("the live set was not published again after renewing")
	}
}

// TestWrappedInformersKeepNothingOnceTheTenureEnds: an informer wrapped in one tenure keeps the
// objects of its share while the tenure holds, and nothing after.
func TestWrappedInformersKeepNothingOnceTheTenureEnds(t *testing.T) {
	tenure := &stubTenure{}
	s := newTestSharder("a")
	s.UseTenure(tenure)
	s.SetMembers([]string{"a"})
	l, ok := s.Wrap(&cache.ListWatch{}).(*listerWatcher)
	if !ok {
		t.Fatal("the informer was not wrapped")
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "payments-prod", Name: "p"}}
	if _, keep := l.keeps(pod); !keep {
		t.Fatal("the only member does not keep an object while its tenure holds")
	}
	tenure.n.Add(1)
	if _, keep := l.keeps(pod); keep {
		t.Error("an object kept after the tenure ended")
	}
}

type stubTenure struct{ n atomic.Uint64 }

func (s *stubTenure) Tenure() uint64      { return s.n.Load() }
func (s *stubTenure) Holds(t uint64) bool { return s.n.Load() == t }

// TestAPIServerAwayFailsReadinessOnly: with the API server not answering at all, a renewal gives
// up after a lease duration, so the loop goes on turning and the replica stays alive while its
// Lease, unrenewed, makes it unready. Only a loop that stops returning fails liveness.
func TestAPIServerAwayFailsReadinessOnly(t *testing.T) {
	hung := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select { // an API server that accepts the connection and never answers
		case <-r.Context().Done():
		case <-hung:
		}
	}))
	defer srv.Close()
	defer close(hung)
	client, err := kubernetes.NewForConfig(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	m := NewMembers(MembersConfig{Client: client, Namespace: "ns", Release: "r", ID: "a",
		LeaseDuration: 300 * time.Millisecond, RenewInterval: 100 * time.Millisecond,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	done := make(chan error, 1)
	go func() { done <- m.renew(context.Background()) }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a renewal succeeded against an API server that never answers")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a renewal waited for an API server that never answers far beyond its lease duration")
	}
	if err := m.Alive(); err != nil {
		t.Errorf("not alive right after a renewal returned: %v", err)
	}
	if err := m.Healthy(); err == nil {
		t.Error("ready without ever renewing the Lease")
	}
	stalled := time.Now().Add(-time.Second) // more than 2 × (100ms + 300ms) ago
	m.attempted.Store(&stalled)
	if err := m.Alive(); err == nil {
		t.Error("alive although no renewal has returned for more than twice a round")
	}
}
