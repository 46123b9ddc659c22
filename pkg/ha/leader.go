// Package ha makes zen-watcher's replicas act as one: leader election, the work only the leader
// does (choosing each source's processing order from everyone's statistics, HA optimization of the
// dedup window and cache size), and each replica's share of it (publishing its statistics, applying
// what the leader decided).
package ha

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/klog/v2"

	"github.com/kube-zen/zen-watcher/pkg/metrics"
)

// LeaderConfig tunes leader election.
type LeaderConfig struct {
	Client    kubernetes.Interface
	Namespace string
	// Name of the Lease (zen-watcher-leader for the default release).
	Name string
	ID   string
	// LeaseDuration, RenewDeadline and RetryPeriod are client-go's (defaults 15s, 10s, 2s).
	// RenewDeadline is also how long a Term holds after the last renewal that succeeded.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	Metrics                                   *metrics.Metrics
	Log                                       *slog.Logger
	// Owners, when set, own the Lease the first candidate creates: deleting them (the release's
	// Deployment) deletes it.
	Owners []metav1.OwnerReference
}

// Term is one tenure of leadership as this replica's own clock sees it: it holds while the last
// write of the Lease that named this replica its holder, and succeeded, was sent less than the
// renew deadline ago. It is measured on the monotonic clock from when the write was sent, so a
// pause of the process counts, and it ends before any other replica may take the Lease over
// (the lease duration, counted from when they saw that write): what is in flight then has the
// difference to land.
type Term struct {
	lock  *fencedLock
	valid time.Duration
}

// Held implements Fence.
func (t *Term) Held() bool { return t.remaining() > 0 }

func (t *Term) remaining() time.Duration {
	sent := t.lock.renewed.Load()
	if sent == nil {
		return 0
	}
	return t.valid - time.Since(*sent)
}

// watch returns when the term has ended or ctx ends, reporting which.
func (t *Term) watch(ctx context.Context) (ended bool) {
	for {
		left := t.remaining()
		if left <= 0 {
			return true
		}
		timer := time.NewTimer(left)
		select {
		case <-ctx.Done():
			timer.Stop()
			return false
		case <-timer.C:
		}
	}
}

// fencedLock is the Lease lock that remembers when its last successful write as the holder was
// sent, and that never releases a Lease another replica holds: client-go's release reads the
// Lease but judges by the record it observed before, so a leader that resumes from a pause and
// gives up at once would otherwise write the new leader's Lease free.
type fencedLock struct {
	resourcelock.Interface
	renewed atomic.Pointer[time.Time] // nil while this replica does not hold the Lease
	holder  atomic.Pointer[string]    // the holder in the Lease last read
}

// errNotHolder refuses to release a Lease another replica holds.
var errNotHolder = errors.New("not releasing the leader Lease: another replica holds it")

// Get implements resourcelock.Interface.
func (l *fencedLock) Get(ctx context.Context) (*resourcelock.LeaderElectionRecord, []byte, error) {
	r, raw, err := l.Interface.Get(ctx)
	if err == nil && r != nil {
		l.holder.Store(&r.HolderIdentity)
	}
	return r, raw, err
}

// Create implements resourcelock.Interface.
func (l *fencedLock) Create(ctx context.Context, r resourcelock.LeaderElectionRecord) error {
	sent := time.Now()
	if err := l.Interface.Create(ctx, r); err != nil {
		return err
	}
	l.wrote(r, sent)
	return nil
}

// Update implements resourcelock.Interface.
func (l *fencedLock) Update(ctx context.Context, r resourcelock.LeaderElectionRecord) error {
	if h := l.holder.Load(); r.HolderIdentity != l.Identity() && h != nil && *h != l.Identity() {
		return errNotHolder
	}
	sent := time.Now()
	if err := l.Interface.Update(ctx, r); err != nil {
		// A write that failed may still have landed; the term only ends sooner for not counting it.
		return err
	}
	l.wrote(r, sent)
	return nil
}

func (l *fencedLock) wrote(r resourcelock.LeaderElectionRecord, sent time.Time) {
	if r.HolderIdentity == l.Identity() {
		l.renewed.Store(&sent)
	} else {
		l.renewed.Store(nil) // released
	}
}

// watchLeader records when another replica last renewed the leader Lease, for the failover metric.
func watchLeader(ctx context.Context, cfg LeaderConfig, lastOther *atomic.Int64) {
	t := time.NewTicker(cfg.RetryPeriod)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		l, err := cfg.Client.CoordinationV1().Leases(cfg.Namespace).Get(ctx, cfg.Name, metav1.GetOptions{})
		if err != nil || l.Spec.HolderIdentity == nil || l.Spec.RenewTime == nil {
			continue
		}
		if h := *l.Spec.HolderIdentity; h != "" && h != cfg.ID {
			lastOther.Store(l.Spec.RenewTime.UnixNano())
		}
	}
}

// RunLeaderElection campaigns for leadership until ctx ends. While this replica leads, lead runs
// with a context that ends the moment leadership is lost and with the Term to check before each
// act. A term that runs out (the Lease not renewed for the renew deadline, say after a pause)
// ends the lead context at once, sets the leader gauge to 0 and gives the Lease up; the replica
// then campaigns again. The Lease is released on a graceful stop, so another replica takes over at
// once.
func RunLeaderElection(ctx context.Context, cfg LeaderConfig, lead func(ctx context.Context, fence Fence)) {
	if cfg.LeaseDuration <= 0 {
		cfg.LeaseDuration = 15 * time.Second
	}
	if cfg.RenewDeadline <= 0 {
		cfg.RenewDeadline = 10 * time.Second
	}
	if cfg.RetryPeriod <= 0 {
		cfg.RetryPeriod = 2 * time.Second
	}
	var lastOther atomic.Int64 // unix nanoseconds of the last renewal seen from another leader
	go watchLeader(ctx, cfg, &lastOther)
	for ctx.Err() == nil {
		if err := campaign(ctx, cfg, &lastOther, lead); err != nil {
			cfg.Log.Error("configuring leader election", "error", err)
			return
		}
		if ctx.Err() == nil {
			cfg.Metrics.LeaderTransitions.Inc()
			time.Sleep(cfg.RetryPeriod) // lost it; campaign again
		}
	}
}

// campaign runs one leader elector until it loses leadership, its term runs out, or ctx ends.
func campaign(ctx context.Context, cfg LeaderConfig, lastOther *atomic.Int64, lead func(context.Context, Fence)) error {
	lock := &fencedLock{Interface: &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Name: cfg.Name, Namespace: cfg.Namespace},
		Client:     ownedLeases{LeasesGetter: cfg.Client.CoordinationV1(), owners: cfg.Owners},
		LockConfig: resourcelock.ResourceLockConfig{Identity: cfg.ID},
	}}
	ectx, giveUp := context.WithCancel(ctx)
	defer giveUp()
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: lock, ReleaseOnCancel: true, Name: cfg.Name,
		LeaseDuration: cfg.LeaseDuration, RenewDeadline: cfg.RenewDeadline, RetryPeriod: cfg.RetryPeriod,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(lctx context.Context) {
				term := &Term{lock: lock, valid: cfg.RenewDeadline}
				tctx, end := context.WithCancel(lctx)
				defer end()
				go func() {
					if term.watch(tctx) {
						cfg.Metrics.IsLeader.Set(0)
						cfg.Log.Warn("leadership not confirmed within the renew deadline; stepping down",
							"renewDeadline", cfg.RenewDeadline)
						end()
						giveUp()
					}
				}()
				started(cfg, lastOther)
				lead(tctx, term)
			},
			OnStoppedLeading: func() {
				cfg.Metrics.IsLeader.Set(0)
				cfg.Log.Info("not leading")
			},
		},
	})
	if err != nil {
		return err
	}
	le.Run(klog.NewContext(ectx, logr.FromSlogHandler(contention{cfg.Log.Handler(), ectx})))
	return nil
}

// started records a new term in the metrics and the log.
func started(cfg LeaderConfig, lastOther *atomic.Int64) {
	cfg.Metrics.IsLeader.Set(1)
	cfg.Metrics.LeaderTransitions.Inc()
	if last := lastOther.Load(); last > 0 {
		gap := time.Since(time.Unix(0, last))
		cfg.Metrics.FailoverSeconds.Observe(gap.Seconds())
		cfg.Log.Info("leading", "sincePreviousLeaderRenewed", gap.Round(time.Millisecond))
	} else {
		cfg.Log.Info("leading")
	}
}
