package shard

import (
	"context"
	"errors"
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
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/kube-zen/zen-watcher/internal/testenv"
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

// TestADropEndsTheTenure: an informer that drops what it receives because the Lease went stale ends
// the tenure there and then, before any recompute, so that its namespaces are listed again on the
// next tenure. A renewal returning a moment late must not make the same tenure hold again over what
// was dropped meanwhile: nothing would ever list it again.
func TestADropEndsTheTenure(t *testing.T) {
	ctx := context.Background()
	m := NewMembers(MembersConfig{Client: fake.NewClientset(), Namespace: "ns", Release: "r", ID: "a",
		LeaseDuration: 300 * time.Millisecond, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	m.lister = func() ([]*coordinationv1.Lease, error) { return []*coordinationv1.Lease{memberLease("a")}, nil }
	if err := m.renew(ctx); err != nil {
		t.Fatal(err)
	}
	m.recompute()
	<-m.Changes()
	l, pod := soleMemberInformer(t, m)
	old := m.Tenure()
	time.Sleep(400 * time.Millisecond) // the renewal under way has not returned yet
	if _, keep := l.keeps(pod); keep {
		t.Fatal("an object kept a lease duration after the last renewal")
	}
	if m.Tenure() == old {
		t.Fatal("an object was dropped under a tenure that goes on")
	}
	select {
	case set := <-m.Changes():
		if len(set) != 0 {
			t.Errorf("published %v once the drop ended the tenure, want the empty set", set)
		}
	default:
		t.Error("nothing published once the drop ended the tenure")
	}
	if err := m.renew(ctx); err != nil {
		t.Fatal(err)
	}
	if _, keep := l.keeps(pod); keep {
		t.Error("the informer of the ended tenure keeps objects again after the renewal")
	}
	if !m.Holds(m.Tenure()) {
		t.Error("the new tenure does not hold after the renewal")
	}
}

// TestWrappedInformersKeepNothingOnceTheTenureEnds: an informer wrapped in one tenure keeps the
// objects of its share while the tenure holds, and nothing after.
func TestWrappedInformersKeepNothingOnceTheTenureEnds(t *testing.T) {
	tenure := &stubTenure{}
	l, pod := soleMemberInformer(t, tenure)
	tenure.n.Add(1)
	if _, keep := l.keeps(pod); keep {
		t.Error("an object kept after the tenure ended")
	}
}

// soleMemberInformer wraps an informer for the only member, "a", in the tenure of m in force now,
// and returns it with an object of its share, which it keeps.
func soleMemberInformer(t *testing.T, m Membership) (*listerWatcher, *corev1.Pod) {
	t.Helper()
	s := newTestSharder("a")
	s.UseTenure(m)
	s.SetMembers([]string{"a"})
	l, ok := s.Wrap(&cache.ListWatch{}).(*listerWatcher)
	if !ok {
		t.Fatal("the informer was not wrapped")
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "payments-prod", Name: "p"}}
	if _, keep := l.keeps(pod); !keep {
		t.Fatal("the only member does not keep an object of its share while its tenure holds")
	}
	return l, pod
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

// TestMembersHandOver: against a real API server, a member gaining namespaces waits while another
// live member's Lease holds them (Report), and stops waiting when that member reports letting go
// or leaves; its own holding, and a Lease that reports none, never hold it up.
func TestMembersHandOver(t *testing.T) {
	c := servers["gate-on"]
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const ns = "handover"
	if _, err := c.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	low, high := Ranges{{Start: 0, End: 1 << 63}}, Ranges{{Start: 1 << 63, End: 0}}
	hLow, hHigh := uint64(42), uint64(1<<63+42)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	start := func(id string) (*Members, context.CancelFunc, <-chan error) {
		mctx, mcancel := context.WithCancel(ctx)
		m := NewMembers(MembersConfig{Client: c.Kube, Namespace: ns, Release: "r", ID: id, Log: log})
		done := make(chan error, 1)
		go func() { done <- m.Run(mctx) }()
		for set := range m.Changes() { // joined and following
			if slices.Contains(set, id) {
				break
			}
		}
		return m, mcancel, done
	}
	a, _, _ := start("a")
	b, stopB, bDone := start("b")
	gainer, _, _ := start("gainer")
	start("old") // a replica that reports nothing holds nothing
	if err := a.Report(ctx, low); err != nil {
		t.Fatal(err)
	}
	if err := b.Report(ctx, high); err != nil {
		t.Fatal(err)
	}
	await := func(m *Members, h uint64, within time.Duration) error {
		wctx, wcancel := context.WithTimeout(ctx, within)
		defer wcancel()
		return m.AwaitReleased(wctx, []uint64{h}, nil)
	}
	// Reported is not yet seen: the gainer's Lease informer brings it within moments.
	deadline := time.Now().Add(10 * time.Second)
	for await(gainer, hLow, 50*time.Millisecond) == nil {
		if time.Now().After(deadline) {
			t.Fatal("a's holding of the low half never held the gainer up")
		}
	}
	if err := await(a, hLow, 5*time.Second); err != nil {
		t.Errorf("a member waited for its own holding: %v", err)
	}
	released := make(chan error, 1)
	go func() { released <- await(gainer, hLow, 10*time.Second) }()
	if err := a.Report(ctx, Ranges{}); err != nil {
		t.Fatal(err)
	}
	if err := <-released; err != nil {
		t.Errorf("after a let go of the low half: %v", err)
	}
	if err := await(gainer, hHigh, 200*time.Millisecond); err == nil {
		t.Error("the gainer did not wait for b's holding of the high half")
	}
	// A namespace the gainer no longer gains, from the third read on, is no longer waited for.
	polls := 0
	wanted := func(uint64) bool { polls++; return polls < 3 }
	actx, acancel := context.WithTimeout(ctx, 10*time.Second)
	err := gainer.AwaitReleased(actx, []uint64{hHigh}, wanted)
	acancel()
	if err != nil || polls != 3 {
		t.Errorf("a wait for a namespace no longer gained from the third read on ended with %v after %d reads", err, polls)
	}
	stopB()
	if err := <-bDone; err != nil {
		t.Fatal(err)
	}
	if err := await(gainer, hHigh, 10*time.Second); err != nil {
		t.Errorf("after b left: %v", err)
	}
	l, err := c.Kube.CoordinationV1().Leases(ns).Get(ctx, "r-member-a", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := l.Annotations[AnnotationHolding]; got != "" {
		t.Errorf("a's Lease holds %q, want the empty share", got)
	}
	if _, ok := l.Annotations[AnnotationHolding]; !ok {
		t.Error("a's Lease has no holding after reporting the empty share")
	}
}

// joinTest starts members in a namespace of their own on the real API server.
type joinTest struct {
	t   *testing.T
	ctx context.Context
	c   *testenv.Cluster
	ns  string
}

func newJoinTest(t *testing.T, ns string) *joinTest {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	c := servers["gate-on"]
	if _, err := c.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return &joinTest{t: t, ctx: ctx, c: c, ns: ns}
}

// start runs a member whose sources watch once joinAfter is closed, and returns once it counts
// itself a member.
func (j *joinTest) start(id string, joinAfter <-chan struct{}) *Members {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	m := NewMembers(MembersConfig{Client: j.c.Kube, Namespace: j.ns, Release: "r", ID: id, Log: log, JoinAfter: joinAfter})
	go func() { _ = m.Run(j.ctx) }()
	for set := range m.Changes() {
		if slices.Contains(set, id) {
			break
		}
	}
	return m
}

func (j *joinTest) leaseOf(id string) (*coordinationv1.Lease, error) {
	return j.c.Kube.CoordinationV1().Leases(j.ns).Get(j.ctx, "r-member-"+id, metav1.GetOptions{})
}

// awaitWatching waits for id's Lease to say that its sources watch, which its renewal on
// JoinAfter writes at once, well before the next renewal is due.
func (j *joinTest) awaitWatching(id string) {
	j.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		l, err := j.leaseOf(id)
		if err == nil && l.Annotations[AnnotationWatching] == "true" {
			return
		}
		if time.Now().After(deadline) {
			j.t.Fatalf("%s's Lease does not say it watches: %v", id, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// awaitMembers waits for m to count want.
func awaitMembers(t *testing.T, m *Members, want ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !slices.Equal(m.Current(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("%s counts %v, want %v", m.cfg.ID, m.Current(), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestMemberJoinsOnceItWatches: against a real API server, a replica starting while another member
// watches counts itself a member at once, and holds its tenure, but creates its Lease — with the
// share it reported meanwhile — only once its sources watch (JoinAfter); the member running counts
// it from then on. One starting alone creates its Lease at once.
func TestMemberJoinsOnceItWatches(t *testing.T) {
	j := newJoinTest(t, "joining")
	ctx, leaseOf := j.ctx, j.leaseOf
	firstWatching := make(chan struct{})
	first := j.start("first", firstWatching)
	if _, err := leaseOf("first"); err != nil {
		t.Fatalf("a member starting alone has no Lease: %v", err)
	}
	close(firstWatching)
	j.awaitWatching("first")
	watching := make(chan struct{})
	joiner := j.start("joiner", watching)
	if got := joiner.Current(); !slices.Equal(got, []string{"first", "joiner"}) {
		t.Errorf("the joiner counts %v, want itself and the member running", got)
	}
	if !joiner.Holds(joiner.Tenure()) {
		t.Error("the joiner does not hold its tenure before its Lease exists")
	}
	reported := Ranges{{Start: 0, End: 1 << 63}}
	if err := joiner.Report(ctx, reported); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if _, err := leaseOf("joiner"); !apierrors.IsNotFound(err) {
		t.Fatalf("the joiner's Lease before its sources watch: %v, want none", err)
	}
	if got := first.Current(); !slices.Equal(got, []string{"first"}) {
		t.Errorf("the member running counts %v before the joiner's Lease exists", got)
	}
	if joiner.Healthy() == nil {
		t.Error("the joiner is ready before it joined")
	}
	if !joiner.Joining() {
		t.Error("the joiner does not say it is joining")
	}
	select {
	case <-joiner.JoinEnded():
		t.Error("the join ended before the joiner's sources watch")
	default:
	}
	select {
	case <-first.JoinEnded():
	default:
		t.Error("the member that started alone has a join under way")
	}
	close(watching)
	select {
	case <-joiner.JoinEnded():
	case <-time.After(10 * time.Second):
		t.Fatal("the join did not end once the joiner's sources watch")
	}
	if _, err := leaseOf("joiner"); err != nil || joiner.Joining() {
		t.Fatalf("the join ended with the joiner's Lease %v, joining %v", err, joiner.Joining())
	}
	awaitMembers(t, first, "first", "joiner")
	l, err := leaseOf("joiner")
	if err != nil {
		t.Fatal(err)
	}
	if got := l.Annotations[AnnotationHolding]; got != reported.Encode() {
		t.Errorf("the joiner's Lease holds %q, want the share it reported while joining, %q", got, reported.Encode())
	}
	if err := joiner.Healthy(); err != nil {
		t.Errorf("the joiner is not ready once joined: %v", err)
	}
	if !joiner.Holds(joiner.Tenure()) {
		t.Error("the joiner does not hold its tenure once joined")
	}
}

// TestMembersStartingTogetherJoinAtOnce: against a real API server, a replica that starts while
// the only other member does not watch yet (replicas started together) creates its Lease at once,
// so that both count each other before either lists its share; the other's Lease says it watches
// as soon as its sources do. What an earlier process of the same name left in its Lease (an
// expired one that said it watched) says nothing of the new one.
func TestMembersStartingTogetherJoinAtOnce(t *testing.T) {
	j := newJoinTest(t, "together")
	long := metav1.NewMicroTime(time.Now().Add(-time.Hour))
	if _, err := j.c.Kube.CoordinationV1().Leases(j.ns).Create(j.ctx, &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: "r-member-late", Labels: map[string]string{LabelMember: "r"},
			Annotations: map[string]string{AnnotationWatching: "true"}},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("late"), LeaseDurationSeconds: ptr.To(int32(15)), RenewTime: &long},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	earlyWatching := make(chan struct{})
	early := j.start("early", earlyWatching)
	late := j.start("late", make(chan struct{}))
	if late.Joining() {
		t.Error("the replica starting beside a member that does not watch yet waits to join")
	}
	select {
	case <-late.JoinEnded():
	default:
		t.Error("the replica starting beside a member that does not watch yet has a join under way")
	}
	if _, err := j.leaseOf("late"); err != nil {
		t.Fatalf("the late replica has no Lease: %v", err)
	}
	if err := late.Healthy(); err != nil {
		t.Errorf("the late replica is not ready: %v", err)
	}
	awaitMembers(t, early, "early", "late")
	awaitMembers(t, late, "early", "late")
	j.notWatching("early")
	close(earlyWatching)
	j.awaitWatching("early")
	j.notWatching("late")
}

// notWatching fails unless id's Lease exists and does not say that its sources watch.
func (j *joinTest) notWatching(id string) {
	j.t.Helper()
	l, err := j.leaseOf(id)
	if err != nil {
		j.t.Fatalf("%s has no Lease: %v", id, err)
	}
	if w, ok := l.Annotations[AnnotationWatching]; ok {
		j.t.Errorf("%s's Lease says it watches (%q) before its sources do", id, w)
	}
}

// TestMemberDepartsOnceTakenOver: against a real API server, a member that departs says so on its
// Lease; the others count it no more at once, while it keeps counting every member (its share
// stays until it stops). Its wait for the others to take its namespaces over ends only once members
// that stay report holding each of them — one leaving too takes nothing over — and at once when no
// member stays. What an earlier process of the same name left (a Lease that said it left) says
// nothing of the new one.
func TestMemberDepartsOnceTakenOver(t *testing.T) {
	j := newJoinTest(t, "departing")
	long := metav1.NewMicroTime(time.Now().Add(-time.Hour))
	if _, err := j.c.Kube.CoordinationV1().Leases(j.ns).Create(j.ctx, &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: "r-member-b", Labels: map[string]string{LabelMember: "r"},
			Annotations: map[string]string{AnnotationLeaving: "true"}},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("b"), LeaseDurationSeconds: ptr.To(int32(15)), RenewTime: &long},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	a, b, c := j.start("a", nil), j.start("b", nil), j.start("c", nil)
	for _, m := range []*Members{a, b, c} {
		awaitMembers(t, m, "a", "b", "c") // b counts: its Lease no longer says it leaves
	}
	low, high := Ranges{{Start: 0, End: 1 << 63}}, Ranges{{Start: 1 << 63, End: 0}}
	hLow, hHigh := uint64(42), uint64(1<<63+42)
	if err := a.Report(j.ctx, Ranges{{}}); err != nil {
		t.Fatal(err)
	}
	if err := a.Depart(j.ctx); err != nil {
		t.Fatal(err)
	}
	if l, err := j.leaseOf("a"); err != nil || l.Annotations[AnnotationLeaving] != "true" {
		t.Fatalf("a's Lease does not say it leaves: %v", err)
	}
	awaitMembers(t, b, "b", "c")
	awaitMembers(t, c, "b", "c")
	time.Sleep(1200 * time.Millisecond) // a recomputes every second
	if got := a.Current(); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Errorf("a, leaving, counts %v, want every member", got)
	}
	if !b.HeldByLeaving([]uint64{hLow}) {
		t.Error("b does not see that a, leaving, holds the low half")
	}
	taken := func(hashes []uint64, within time.Duration) error {
		ctx, cancel := context.WithTimeout(j.ctx, within)
		defer cancel()
		return a.AwaitTakenOver(ctx, hashes)
	}
	if err := taken([]uint64{hLow, hHigh}, 300*time.Millisecond); err == nil {
		t.Error("a's namespaces counted as taken over before anyone reported them")
	}
	done := make(chan error, 1)
	go func() { done <- taken([]uint64{hLow, hHigh}, 10*time.Second) }()
	if err := b.Report(j.ctx, low); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		t.Fatalf("a's wait ended with the high half held by no one: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	if err := c.Report(j.ctx, high); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Errorf("a's namespaces not taken over once b and c hold them: %v", err)
	}
	// c leaves too: what it holds counts for nothing, b alone stays and holds only the low half.
	if err := c.Depart(j.ctx); err != nil {
		t.Fatal(err)
	}
	awaitMembers(t, b, "b")
	if err := taken([]uint64{hHigh}, 300*time.Millisecond); err == nil {
		t.Error("a counts the high half taken over by c, which leaves too")
	}
	time.Sleep(time.Second)
	if got := a.Current(); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Errorf("a, leaving, counts %v once c leaves too, want every member: it takes nothing from c", got)
	}
	if err := b.Depart(j.ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for taken([]uint64{hHigh}, 100*time.Millisecond) != nil {
		if time.Now().After(deadline) {
			t.Fatal("a waits for its namespaces to be taken over with every other member leaving")
		}
	}
}

// TestRenewalIsOneRequest: a renewal writes the Lease as the last one left it, one request; it
// reads the Lease first only when that copy is stale — the Lease was changed (a conflict) or
// deleted since — and still renews then.
func TestRenewalIsOneRequest(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	m := NewMembers(MembersConfig{Client: client, Namespace: "ns", Release: "r", ID: "a",
		LeaseDuration: time.Minute, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	leases := client.CoordinationV1().Leases("ns")
	conflictOnce := func() {
		var done atomic.Bool
		client.PrependReactor("update", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
			if done.Swap(true) {
				return false, nil, nil
			}
			return true, nil, apierrors.NewConflict(coordinationv1.Resource("leases"), "r-member-a", errors.New("changed"))
		})
	}
	steps := []struct {
		name   string
		before func()
		want   []string
	}{
		{name: "first", want: []string{"get", "create"}},
		{name: "renewal", want: []string{"update"}},
		{name: "another renewal", want: []string{"update"}},
		{name: "after a conflict", before: conflictOnce, want: []string{"update", "get", "update"}},
		{name: "after the conflict", want: []string{"update"}},
		{name: "deleted meanwhile", before: func() {
			if err := leases.Delete(ctx, "r-member-a", metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}, want: []string{"update", "get", "create"}},
	}
	for _, s := range steps {
		if s.before != nil {
			s.before()
		}
		client.ClearActions()
		began := time.Now()
		if err := m.renew(ctx); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		var verbs []string
		for _, a := range client.Actions() {
			verbs = append(verbs, a.GetVerb())
		}
		if !slices.Equal(verbs, s.want) {
			t.Errorf("%s: requests %v, want %v", s.name, verbs, s.want)
		}
		l, err := leases.Get(ctx, "r-member-a", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if l.Spec.RenewTime.Time.Before(began.Truncate(time.Microsecond)) || ptr.Deref(l.Spec.HolderIdentity, "") != "a" {
			t.Errorf("%s: Lease renewed at %v by %q, want after %v by a", s.name, l.Spec.RenewTime, ptr.Deref(l.Spec.HolderIdentity, ""), began)
		}
	}
}
