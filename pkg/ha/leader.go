// Package ha makes zen-watcher's replicas act as one: leader election, the work only the leader
// does (choosing each source's processing order from everyone's statistics, HA optimization of the
// dedup window and cache size), and each replica's share of it (publishing its statistics, applying
// what the leader decided).
package ha

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

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
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	Metrics                                   *metrics.Metrics
	Log                                       *slog.Logger
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
// with a context that ends the moment leadership is lost; the Lease is released on a graceful stop
// so that another replica takes over at once.
func RunLeaderElection(ctx context.Context, cfg LeaderConfig, lead func(ctx context.Context)) {
	if cfg.LeaseDuration <= 0 {
		cfg.LeaseDuration = 15 * time.Second
	}
	if cfg.RenewDeadline <= 0 {
		cfg.RenewDeadline = 10 * time.Second
	}
	if cfg.RetryPeriod <= 0 {
		cfg.RetryPeriod = 2 * time.Second
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Name: cfg.Name, Namespace: cfg.Namespace},
		Client:     cfg.Client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: cfg.ID},
	}
	var lastOther atomic.Int64 // unix nanoseconds of the last renewal seen from another leader
	go watchLeader(ctx, cfg, &lastOther)
	for ctx.Err() == nil {
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock: lock, ReleaseOnCancel: true, Name: cfg.Name,
			LeaseDuration: cfg.LeaseDuration, RenewDeadline: cfg.RenewDeadline, RetryPeriod: cfg.RetryPeriod,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(lctx context.Context) {
					cfg.Metrics.IsLeader.Set(1)
					cfg.Metrics.LeaderTransitions.Inc()
					if last := lastOther.Load(); last > 0 {
						gap := time.Since(time.Unix(0, last))
						cfg.Metrics.FailoverSeconds.Observe(gap.Seconds())
						cfg.Log.Info("leading", "sincePreviousLeaderRenewed", gap.Round(time.Millisecond))
					} else {
						cfg.Log.Info("leading")
					}
					lead(lctx)
				},
				OnStoppedLeading: func() {
					cfg.Metrics.IsLeader.Set(0)
					cfg.Log.Info("not leading")
				},
			},
		})
		if err != nil {
			cfg.Log.Error("configuring leader election", "error", err)
			return
		}
		le.Run(ctx)
		if ctx.Err() == nil {
			cfg.Metrics.LeaderTransitions.Inc()
			time.Sleep(cfg.RetryPeriod) // lost it; campaign again
		}
	}
}
