package shard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
)

// LabelMember marks a replica's member Lease; its value is the release.
const LabelMember = "zen.kube-zen.io/member"

// AnnotationHolding on a member Lease is the share its replica may still write in (Ranges.Encode):
// one that gains namespaces waits until no other member holds them (AwaitReleased). A Lease
// without it holds nothing: its replica has not started writing.
const AnnotationHolding = "zen.kube-zen.io/holding"

// AnnotationWatching on a member Lease says its replica's sources watch their first share
// (MembersConfig.JoinAfter closed). A replica that starts beside members that do not watch yet —
// replicas started together, as by an install — joins at once: they hand nothing over that its
// own list would not read, and each of them lists only its share of the final set.
const AnnotationWatching = "zen.kube-zen.io/watching"

// AnnotationLeaving on a member Lease says its replica is stopping and hands its namespaces over
// (Members.Depart): the others count it no more and take its namespaces, while it goes on writing
// there until they watch them, and waits for its holding as they wait for any member's.
const AnnotationLeaving = "zen.kube-zen.io/leaving"

// Leaving reports whether a member Lease says its replica is leaving (AnnotationLeaving).
func Leaving(l *coordinationv1.Lease) bool { return l.Annotations[AnnotationLeaving] == "true" }

// MembersConfig tunes membership.
type MembersConfig struct {
	Client    kubernetes.Interface
	Namespace string
	Release   string
	// ID names this replica (the pod name in a cluster).
	ID string
	// LeaseDuration is how long a member counts without renewing (default 15s); RenewInterval how
	// often it renews (default 5s).
	LeaseDuration, RenewInterval time.Duration
	Log                          *slog.Logger
	// LeaveAfter, when set, is closed once what this replica took on has been written: on a stop
	// the Lease is deleted only then (or a lease duration after the stop at the latest), so that
	// the replicas taking its namespaces over read back what it wrote last instead of writing it
	// again.
	LeaveAfter <-chan struct{}
	// Owners, when set, own the member Lease: deleting them (the release's Deployment) deletes it,
	// even when the replica could not (its RBAC went first).
	Owners []metav1.OwnerReference
	// JoinAfter, when set, is closed once this replica watches the share it computes; its Lease
	// says so from then on (AnnotationWatching). A replica joining members that already watch
	// counts itself among them from the start, and creates its Lease — from which the others
	// count it, and let go of what it takes — only then, or a lease duration after it started at
	// the latest: what is created in its namespaces meanwhile reaches one of them, never none.
	JoinAfter <-chan struct{}
}

// Members keeps this replica's member Lease renewed and follows the others'. The member set is the
// replicas whose Leases are unexpired; a replica that stops gracefully deletes its Lease, so the
// others rebalance at once, and one that dies drops out when its Lease expires.
//
// A replica that has not renewed its Lease for a lease duration (paused, or cut off from the API
// server) may have been dropped by the others, who own its namespaces now: its tenure lapses. The
// informers it wrapped for the tenure that lapsed keep nothing more, and the member set it
// publishes is empty until it has renewed and read the set again.
type Members struct {
	cfg       MembersConfig
	lister    func() ([]*coordinationv1.Lease, error)
	lastRenew atomic.Int64
	renewed   atomic.Pointer[time.Time] // when the last successful renewal was sent (monotonic)
	attempted atomic.Pointer[time.Time] // when the last renewal, successful or not, returned
	tenure    atomic.Uint64             // counts the lapses

	// renewing serializes the Lease's writes: the renewal loop's and Report's.
	renewing sync.Mutex
	holding  *string               // the AnnotationHolding written with each renewal; nil: none yet
	written  *string               // the holding the last renewal wrote
	lease    *coordinationv1.Lease // the Lease as the last renewal wrote it; nil: read it first
	// joining is set while this replica counts itself a member before its Lease exists (see
	// MembersConfig.JoinAfter); it changes with renewing held.
	joining atomic.Bool
	// joinEnded is closed once a join ends (JoinEnded), or at once for a replica that did not join.
	joinEnded chan struct{}
	endJoin   sync.Once
	// watching is set once JoinAfter is closed; each renewal from then on writes AnnotationWatching.
	watching atomic.Bool
	// leaving is set by Depart; each renewal from then on writes AnnotationLeaving.
	leaving atomic.Bool

	mu      sync.Mutex
	current []string
	lapsed  bool // a lapse was seen and no renewal has succeeded since
	changes chan []string
}

// NewMembers returns the membership of one replica; call Run.
func NewMembers(cfg MembersConfig) *Members {
	if cfg.LeaseDuration <= 0 {
		cfg.LeaseDuration = 15 * time.Second
	}
	if cfg.RenewInterval <= 0 {
		cfg.RenewInterval = 5 * time.Second
	}
	m := &Members{cfg: cfg, changes: make(chan []string, 1), joinEnded: make(chan struct{})}
	now := time.Now()
	m.attempted.Store(&now)
	return m
}

// Changes delivers the member set, sorted, each time it changes (only the latest is kept).
func (m *Members) Changes() <-chan []string { return m.changes }

// Current is the member set last computed.
func (m *Members) Current() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.current...)
}

// Healthy fails when this replica could not renew its Lease for a lease duration: the others no
// longer count it, so it must not go on as if they did. It is a readiness check: the API server
// being away makes every replica fail it at once, and restarting them all would not bring the
// API server back.
func (m *Members) Healthy() error {
	if m.joining.Load() {
		return errors.New("joining: the member Lease is created once the sources watch")
	}
	last := time.Unix(0, m.lastRenew.Load())
	if since := time.Since(last); since > m.cfg.LeaseDuration {
		return fmt.Errorf("member lease not renewed for %s", since.Round(time.Second))
	}
	return nil
}

// Alive fails when the renewal loop itself has stopped turning: no renewal has returned, either
// way, for twice the time one round may take (a renew interval plus a lease duration, the most a
// renewal waits for the API server). Unlike Healthy it does not depend on the API server, so it
// is the liveness check: only a replica that is stuck is restarted.
func (m *Members) Alive() error {
	bound := 2 * (m.cfg.RenewInterval + m.cfg.LeaseDuration)
	if since := time.Since(*m.attempted.Load()); since > bound {
		return fmt.Errorf("member lease renewal stalled for %s", since.Round(time.Second))
	}
	return nil
}

// Tenure implements Membership.
func (m *Members) Tenure() uint64 { return m.tenure.Load() }

// Joining reports whether this replica counts itself a member before its Lease exists: it joined
// members that run, and its sources do not all watch yet (MembersConfig.JoinAfter).
func (m *Members) Joining() bool { return m.joining.Load() }

// JoinEnded is closed once this replica's Lease exists, or its join was abandoned: from then on the
// others count it, or it owns nothing. Closed when Run starts for a replica that does not join.
func (m *Members) JoinEnded() <-chan struct{} { return m.joinEnded }

// Holds implements Membership: the tenure is the one in force and the Lease was renewed less than
// a lease duration ago, by this process's monotonic clock, so that a pause counts; or the replica
// is joining, and has no Lease yet.
//
// A stale Lease found here ends the tenure at once (checkLapse), whatever the renewal under way
// may still do: the informers drop what they receive while it does not hold, and only a new
// tenure lists their namespaces again. Without the lapse, a renewal that returned a moment late
// would make the tenure hold again with what was dropped meanwhile lost.
func (m *Members) Holds(tenure uint64) bool {
	if m.tenure.Load() != tenure {
		return false
	}
	if m.joining.Load() || m.fresh() {
		return true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.checkLapse()
	// Asked again under the lock: a renewal that succeeded meanwhile keeps the tenure, and then
	// nothing may be dropped under it.
	return m.tenure.Load() == tenure && (m.joining.Load() || m.fresh())
}

func (m *Members) fresh() bool {
	sent := m.renewed.Load()
	return sent != nil && time.Since(*sent) < m.cfg.LeaseDuration
}

// checkLapse ends the tenure in force if the Lease has gone unrenewed for a lease duration: the
// informers of that tenure keep nothing more, and the empty member set is published, so that the
// share is read again once the Lease is renewed. Called with mu held.
func (m *Members) checkLapse() {
	if m.lapsed || m.renewed.Load() == nil || m.fresh() {
		return
	}
	m.lapsed = true
	m.tenure.Add(1)
	m.cfg.Log.Warn("member lease not renewed for a lease duration; owning nothing until it is",
		"leaseDuration", m.cfg.LeaseDuration)
	m.publish(nil)
}

func (m *Members) leaseName() string { return m.cfg.Release + "-member-" + m.cfg.ID }

// Run renews the Lease and follows the member set until ctx ends, then deletes the Lease.
func (m *Members) Run(ctx context.Context) error {
	joining, err := m.othersRun(ctx)
	if err == nil && !joining {
		m.endJoin.Do(func() { close(m.joinEnded) })
		err = m.renew(ctx)
	}
	if err != nil {
		return fmt.Errorf("joining as member %s: %w", m.cfg.ID, err)
	}
	factory := informers.NewSharedInformerFactoryWithOptions(m.cfg.Client, 0,
		informers.WithNamespace(m.cfg.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.LabelSelector = labels.Set{LabelMember: m.cfg.Release}.String()
		}))
	leases := factory.Coordination().V1().Leases()
	inf := leases.Informer()
	sel := labels.Everything()
	m.mu.Lock()
	m.lister = func() ([]*coordinationv1.Lease, error) { return leases.Lister().Leases(m.cfg.Namespace).List(sel) }
	m.mu.Unlock()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { m.recompute() }, UpdateFunc: func(any, any) { m.recompute() }, DeleteFunc: func(any) { m.recompute() },
	}); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	m.recompute()
	tick := time.NewTicker(m.cfg.RenewInterval)
	defer tick.Stop()
	expiry := time.NewTicker(time.Second) // Leases expire without an event
	defer expiry.Stop()
	watching := m.cfg.JoinAfter
	var joinBy <-chan time.Time
	if joining {
		joinBy = time.After(m.cfg.LeaseDuration)
	}
	for {
		select {
		case <-ctx.Done():
			m.waitToLeave()
			m.leave()
			factory.Shutdown()
			return nil
		case <-watching:
			// Renewed at once, so that a replica starting now sees this one watch.
			watching, joinBy = nil, nil
			m.watching.Store(true)
			m.renewOrJoin(ctx)
		case <-joinBy:
			m.cfg.Log.Warn("joining before the sources watch", "waited", m.cfg.LeaseDuration)
			joinBy = nil
			m.renewOrJoin(ctx)
		case <-tick.C:
			if !m.joining.Load() {
				m.renewOrJoin(ctx)
			}
		case <-expiry.C:
			m.recompute()
		}
	}
}

// othersRun reports whether other members watch already, and starts this replica's join if so:
// it counts itself a member until its Lease is created (JoinAfter). Members that do not watch yet
// started a moment before this one; it joins them at once.
func (m *Members) othersRun(ctx context.Context) (bool, error) {
	if m.cfg.JoinAfter == nil {
		return false, nil
	}
	list, err := m.cfg.Client.CoordinationV1().Leases(m.cfg.Namespace).List(ctx, metav1.ListOptions{
		LabelSelector: labels.Set{LabelMember: m.cfg.Release}.String()})
	if err != nil {
		return false, fmt.Errorf("reading member leases: %w", err)
	}
	var watching, starting []*coordinationv1.Lease
	for k := range list.Items {
		l := &list.Items[k]
		if l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity == m.cfg.ID {
			continue
		}
		if l.Annotations[AnnotationWatching] == "true" {
			watching = append(watching, l)
		} else {
			starting = append(starting, l)
		}
	}
	now := time.Now()
	others := LiveMembers(watching, now)
	if len(others) == 0 {
		if s := LiveMembers(starting, now); len(s) > 0 {
			m.cfg.Log.Info("joining members that do not watch yet at once", "members", s)
		}
		return false, nil
	}
	m.joining.Store(true)
	m.cfg.Log.Info("joining running members once the sources watch", "members", others)
	return true, nil
}

// renewOrJoin renews the Lease, creating it if this replica is joining, and warns when it
// cannot: the next tick tries again. A join that cannot create the Lease ends as a lapse would:
// a replica the others do not count must not go on writing.
func (m *Members) renewOrJoin(ctx context.Context) {
	joining := m.joining.Load()
	err := m.renew(ctx)
	switch {
	case err == nil && joining:
		err = m.joined(ctx)
	case err != nil && joining && ctx.Err() == nil:
		m.abandonJoin()
	}
	if err != nil && ctx.Err() == nil {
		m.cfg.Log.Warn("renewing member lease", "error", err)
	}
}

// abandonJoin ends a join whose Lease could not be created: this replica owns nothing until it is.
func (m *Members) abandonJoin() {
	m.renewing.Lock()
	defer m.renewing.Unlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.joining.Store(false)
	m.endJoin.Do(func() { close(m.joinEnded) })
	m.lapsed = true
	m.tenure.Add(1)
	m.cfg.Log.Warn("could not create the member lease; owning nothing until it is")
	m.publish(nil)
}

// joined ends the join once the Lease exists: from now on a lapse counts. A share reported
// after the renewal that created the Lease is written now.
func (m *Members) joined(ctx context.Context) error {
	m.renewing.Lock()
	m.joining.Store(false)
	m.endJoin.Do(func() { close(m.joinEnded) })
	stale := m.holding != nil && (m.written == nil || *m.written != *m.holding)
	m.renewing.Unlock()
	m.cfg.Log.Info("joined the members")
	if stale {
		return m.renew(ctx)
	}
	return nil
}

// renew creates or renews this replica's Lease, waiting for the API server at most a lease
// duration: a renewal later than that is too late to count, and the loop must go on turning.
func (m *Members) renew(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.LeaseDuration)
	defer func() {
		cancel()
		now := time.Now()
		m.attempted.Store(&now)
	}()
	m.mu.Lock()
	m.checkLapse() // before the renewal can make the old tenure look fresh again
	m.mu.Unlock()
	m.renewing.Lock()
	defer m.renewing.Unlock()
	sent := time.Now()
	l, err := m.writeLease(ctx, metav1.NewMicroTime(sent))
	if err != nil {
		m.lease = nil // the Lease may have been written anyway: read it next time
		return err
	}
	m.lease = l
	m.written = m.holding
	m.lastRenew.Store(time.Now().UnixNano())
	m.renewed.Store(&sent)
	m.mu.Lock()
	m.lapsed = false
	m.mu.Unlock()
	return nil
}

// writeLease writes this replica's Lease renewed at now and returns it as written. It renews the
// copy the last renewal wrote, one request, and reads the Lease first only when it has none or
// the copy is stale (the Lease was changed or deleted since): an API server slow enough to delay
// renewals is one where a second round trip makes a lease lapse. Called with renewing held.
func (m *Members) writeLease(ctx context.Context, now metav1.MicroTime) (*coordinationv1.Lease, error) {
	leases := m.cfg.Client.CoordinationV1().Leases(m.cfg.Namespace)
	if m.lease != nil {
		l, err := leases.Update(ctx, m.stamp(m.lease.DeepCopy(), now), metav1.UpdateOptions{})
		if !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
			return l, err
		}
	}
	l, err := leases.Get(ctx, m.leaseName(), metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return leases.Create(ctx, m.stamp(&coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: m.leaseName(), Namespace: m.cfg.Namespace,
				Labels: map[string]string{LabelMember: m.cfg.Release}},
			Spec: coordinationv1.LeaseSpec{AcquireTime: &now},
		}, now), metav1.CreateOptions{})
	case err != nil:
		return nil, err
	}
	return leases.Update(ctx, m.stamp(l, now), metav1.UpdateOptions{})
}

// stamp sets l's holder, renewal time, duration, owners and annotations to this replica's.
// Called with renewing held.
func (m *Members) stamp(l *coordinationv1.Lease, now metav1.MicroTime) *coordinationv1.Lease {
	l.Spec.RenewTime = &now
	l.Spec.HolderIdentity = ptr.To(m.cfg.ID)
	l.Spec.LeaseDurationSeconds = ptr.To(int32(m.cfg.LeaseDuration / time.Second))
	if len(l.OwnerReferences) == 0 {
		l.OwnerReferences = m.cfg.Owners
	}
	l.Annotations = m.annotations(l.Annotations)
	return l
}

// annotations returns a with this replica's holding, watching and leaving set. Called with renewing held.
func (m *Members) annotations(a map[string]string) map[string]string {
	watching, leaving := m.watching.Load(), m.leaving.Load()
	// Either may be left by an earlier process of the same name.
	if !watching {
		delete(a, AnnotationWatching)
	}
	if !leaving {
		delete(a, AnnotationLeaving)
	}
	if m.holding == nil && !watching && !leaving {
		return a
	}
	if a == nil {
		a = map[string]string{}
	}
	if m.holding != nil {
		a[AnnotationHolding] = *m.holding
	}
	if watching {
		a[AnnotationWatching] = "true"
	}
	if leaving {
		a[AnnotationLeaving] = "true"
	}
	return a
}

// Report writes share to this replica's Lease as what it may still write in, unless the Lease
// says so already. Call it with the share in force once nothing is being written outside it, and
// before informers start on namespaces new to it.
func (m *Members) Report(ctx context.Context, share Ranges) error {
	enc := share.Encode()
	m.renewing.Lock()
	same := m.holding != nil && *m.holding == enc
	m.holding = &enc
	joining := m.joining.Load() // the Lease is created with it
	m.renewing.Unlock()
	if same || joining {
		return nil
	}
	if err := m.renew(ctx); err != nil {
		return fmt.Errorf("reporting the share held: %w", err)
	}
	return nil
}

// releasePoll is how often AwaitReleased reads the Leases again; they are in the informer's cache.
const releasePoll = 10 * time.Millisecond

// AwaitReleased returns once no other live member's Lease holds any of hashes (namespaces this
// replica gains) that wanted (checked at each read; nil: all) still reports this replica gains, or
// with ctx's error: a member that stops renewing drops out of the set, so the wait ends at the
// latest a lease duration after the member stopped. A namespace the share moved on from meanwhile
// is not waited for: it may be back with the member holding it, which then never lets it go.
func (m *Members) AwaitReleased(ctx context.Context, hashes []uint64, wanted func(hash uint64) bool) error {
	t := time.NewTicker(releasePoll)
	defer t.Stop()
	for {
		if wanted != nil {
			hashes = slices.DeleteFunc(hashes, func(h uint64) bool { return !wanted(h) })
		}
		if len(hashes) == 0 {
			return nil
		}
		holder, err := m.holder(hashes)
		if err != nil {
			return err
		}
		if holder == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("member %s still holds namespaces this replica gains: %w", holder, ctx.Err())
		case <-t.C:
		}
	}
}

// holder names a live member other than this one whose Lease holds one of hashes, or "".
func (m *Members) holder(hashes []uint64) (string, error) {
	others, err := m.holdings()
	if err != nil {
		return "", err
	}
	for _, o := range others {
		if o.holdsAny(hashes) {
			return o.id, nil
		}
	}
	return "", nil
}

// Depart begins this replica's leave, before it stops: its Lease says so from the renewal made
// now (AnnotationLeaving), and the others, counting it no more, take its namespaces over while it
// goes on writing there (AwaitTakenOver tells when they watch them). It keeps its share meanwhile
// and takes nothing from other members leaving. Their lists of its namespaces wait for it to let
// go as for any member; it does, and deletes its Lease, once Run's context ends.
func (m *Members) Depart(ctx context.Context) error {
	if m.leaving.Swap(true) || m.joining.Load() {
		return nil // said already, or no Lease yet: the others do not count this replica
	}
	if err := m.renew(ctx); err != nil {
		return fmt.Errorf("saying this replica leaves: %w", err)
	}
	return nil
}

// AwaitTakenOver returns once each of hashes (namespaces this replica leaves) is held by another
// live member that is not leaving — whose sources watch it, since a member reports a gain once
// they do — or at once when no such member is left to take them; otherwise with ctx's error.
func (m *Members) AwaitTakenOver(ctx context.Context, hashes []uint64) error {
	t := time.NewTicker(releasePoll)
	defer t.Stop()
	for {
		left, err := m.untaken(hashes)
		if err != nil {
			return err
		}
		if left == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d namespaces of this replica not taken over yet: %w", left, ctx.Err())
		case <-t.C:
		}
	}
}

// untaken counts hashes held by no other live member that stays; 0 when none stays.
func (m *Members) untaken(hashes []uint64) (int, error) {
	others, err := m.holdings()
	if err != nil {
		return 0, err
	}
	others = slices.DeleteFunc(others, func(o memberHolding) bool { return o.leaving })
	if len(others) == 0 {
		return 0, nil
	}
	left := 0
	for _, h := range hashes {
		if !slices.ContainsFunc(others, func(o memberHolding) bool { return o.holds(h) }) {
			left++
		}
	}
	return left, nil
}

// HeldByLeaving reports whether a member that is leaving (Depart) still holds one of hashes: the
// replica gaining them hands on what its bridges watch there only once it has let go.
func (m *Members) HeldByLeaving(hashes []uint64) bool {
	others, err := m.holdings()
	if err != nil {
		return false
	}
	return slices.ContainsFunc(others, func(o memberHolding) bool { return o.leaving && o.holdsAny(hashes) })
}

// memberHolding is what another live member's Lease says.
type memberHolding struct {
	id string
	// held is the share it reported (AnnotationHolding); reported is false before it did.
	held     Ranges
	reported bool
	leaving  bool
}

func (o memberHolding) holdsAny(hashes []uint64) bool {
	return slices.ContainsFunc(hashes, o.holds)
}

func (o memberHolding) holds(h uint64) bool { return o.reported && o.held.Contains(h) }

// holdings reads the Leases of the live members other than this one from the informer's cache;
// none before Run has started it.
func (m *Members) holdings() ([]memberHolding, error) {
	m.mu.Lock()
	lister := m.lister
	m.mu.Unlock()
	if lister == nil {
		return nil, nil
	}
	list, err := lister()
	if err != nil {
		return nil, fmt.Errorf("reading member leases: %w", err)
	}
	now := time.Now()
	var out []memberHolding
	for _, l := range list {
		id := l.Spec.HolderIdentity
		if id == nil || *id == m.cfg.ID || len(LiveMembers([]*coordinationv1.Lease{l}, now)) == 0 {
			continue
		}
		o := memberHolding{id: *id, leaving: Leaving(l)}
		if enc, ok := l.Annotations[AnnotationHolding]; ok {
			held, err := ParseRanges(enc)
			if err != nil {
				m.cfg.Log.Warn("ignoring a member's holding", "member", *id, "error", err)
			} else {
				o.held, o.reported = held, true
			}
		}
		out = append(out, o)
	}
	return out, nil
}

// waitToLeave waits for LeaveAfter, at most a lease duration: by then the Lease has expired.
func (m *Members) waitToLeave() {
	if m.cfg.LeaveAfter == nil {
		return
	}
	t := time.NewTimer(m.cfg.LeaseDuration)
	defer t.Stop()
	select {
	case <-m.cfg.LeaveAfter:
	case <-t.C:
		m.cfg.Log.Warn("leaving before what this replica took on was written", "waited", m.cfg.LeaseDuration)
	}
}

// leave deletes the Lease so that the others rebalance without waiting for it to expire.
func (m *Members) leave() {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	err := m.cfg.Client.CoordinationV1().Leases(m.cfg.Namespace).Delete(ctx, m.leaseName(), metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		m.cfg.Log.Warn("deleting member lease", "error", err)
	}
}

// recompute derives the member set from the unexpired Leases and publishes it when it changed.
// It runs from the Lease informer's handlers and from a ticker at once; reading the Leases,
// comparing and publishing all happen under one lock, so that the set published last is always
// the newest one read — an older set can never arrive after a newer one and stay, leaving a dead
// member's namespaces unowned. Publishing does not block: the one stale set a slow reader has
// not taken yet is replaced.
func (m *Members) recompute() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.lister == nil {
		return
	}
	if m.checkLapse(); m.lapsed {
		return
	}
	list, err := m.lister()
	if err != nil {
		return
	}
	live := LiveMembers(m.staying(list), time.Now())
	if m.joining.Load() && !slices.Contains(live, m.cfg.ID) {
		live = append(live, m.cfg.ID)
		sort.Strings(live)
	}
	if slices.Equal(live, m.current) {
		return
	}
	m.publish(live)
}

// staying is list less the Leases of the other members leaving (Depart), whose namespaces are
// taken over now. A replica leaving itself counts every member: its share no longer follows the
// member set (Sharder.Freeze), so what it counts serves only Current — the replica count by which
// a leader sizes each local cache — and, while it still leads, the tables it publishes, which the
// others adapt to the members they count (InForce).
func (m *Members) staying(list []*coordinationv1.Lease) []*coordinationv1.Lease {
	if m.leaving.Load() {
		return list
	}
	return slices.DeleteFunc(slices.Clone(list), func(l *coordinationv1.Lease) bool {
		self := l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity == m.cfg.ID
		return !self && Leaving(l)
	})
}

// publish makes set the current member set and hands it on. Called with mu held.
func (m *Members) publish(set []string) {
	m.current = set
	select {
	case <-m.changes:
	default:
	}
	m.changes <- set
}

// LiveMembers is the sorted member set of a release's member Leases at now: the holders of those
// renewed within their duration.
func LiveMembers(leases []*coordinationv1.Lease, now time.Time) []string {
	var live []string
	for _, l := range leases {
		if l.Spec.HolderIdentity == nil || l.Spec.RenewTime == nil || l.Spec.LeaseDurationSeconds == nil {
			continue
		}
		if l.Spec.RenewTime.Add(time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second).After(now) {
			live = append(live, *l.Spec.HolderIdentity)
		}
	}
	sort.Strings(live)
	return live
}
