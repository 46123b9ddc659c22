// Package cleanup deletes expired Observations. It runs on the leader only: continuously at a gentle
// pace, and on a cron schedule if one is set. It decides from metadata alone (paged, metadata-only
// lists), deletes with bounded parallelism under a rate ceiling, and every delete carries the UID and
// resourceVersion it decided on, so an Observation recreated under the same name is never deleted
// by a stale decision.
package cleanup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/robfig/cron/v3"
	"golang.org/x/time/rate"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/ha"
	"github.com/kube-zen/zen-watcher/pkg/metrics"
)

// TTL bounds: whatever an Observation or the configuration says is clamped to them.
const (
	MinTTL     = 60 * time.Second
	MaxTTL     = 365 * 24 * time.Hour
	DefaultTTL = 7 * 24 * time.Hour
)

// Config tunes cleanup.
type Config struct {
	// Client lists and deletes Observations' metadata; NewClient builds the one that checks the
	// leader's fence on the wire.
	Client metadata.Interface
	// TTL applies to Observations without their own (OBSERVATION_TTL_SECONDS; default 7 days).
	TTL time.Duration
	// Interval between continuous runs (default 1 minute); Schedule adds runs on a cron schedule.
	Interval time.Duration
	Schedule string
	// MaxRun bounds one run (default 10 minutes); what is left waits for the next run.
	MaxRun time.Duration
	// PageSize of the lists (default 500), Workers deleting at once (default 32), and the most
	// deletes per second (default 1000; the API server's priority and fairness guards the rest).
	PageSize      int64
	Workers       int
	DeletesPerSec float64
	// DryRun counts what would be deleted and deletes nothing.
	DryRun  bool
	Now     func() time.Time
	Metrics *metrics.Metrics
	Log     *slog.Logger
}

// NewClient builds the metadata client cleanup deletes with: its transport refuses a delete whose
// leader's fence fell while the request was being made (ha.FenceTransport).
func NewClient(rc *rest.Config) (metadata.Interface, error) {
	rc = rest.CopyConfig(rc)
	rc.Wrap(ha.FenceTransport)
	mc, err := metadata.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("building the cleanup's metadata client: %w", err)
	}
	return mc, nil
}

// Result is what one run did.
type Result struct {
	Listed, Expired, Deleted, Gone, Changed, Errors int
	Duration                                        time.Duration
	Complete                                        bool
}

// Cleaner deletes expired Observations.
type Cleaner struct {
	cfg      Config
	schedule cron.Schedule
	limiter  *rate.Limiter
}

// New checks cfg and returns a Cleaner. A schedule that does not parse is an error that says why.
func New(cfg Config) (*Cleaner, error) {
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	cfg.TTL = clamp(cfg.TTL)
	if cfg.Interval <= 0 {
		cfg.Interval = time.Minute
	}
	if cfg.MaxRun <= 0 {
		cfg.MaxRun = 10 * time.Minute
	}
	if cfg.PageSize <= 0 {
		cfg.PageSize = 500
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 32
	}
	if cfg.DeletesPerSec <= 0 {
		cfg.DeletesPerSec = 1000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	c := &Cleaner{cfg: cfg, limiter: rate.NewLimiter(rate.Limit(cfg.DeletesPerSec), cfg.Workers)}
	if cfg.Schedule != "" {
		s, err := cron.ParseStandard(cfg.Schedule)
		if err != nil {
			return nil, fmt.Errorf("cleanup schedule %q: %w", cfg.Schedule, err)
		}
		c.schedule = s
	}
	return c, nil
}

func clamp(d time.Duration) time.Duration { return min(max(d, MinTTL), MaxTTL) }

// Run cleans up until ctx ends: the leadership's context, so that a replica that loses leadership
// stops at once. Each delete first asks fence whether this replica still leads: a leader that
// was paused deletes nothing once it has resumed, whatever its goroutines see first. A new leader
// simply starts again: a run is idempotent.
func (c *Cleaner) Run(ctx context.Context, fence ha.Fence) {
	next := c.cfg.Now()
	for {
		wait := time.Until(next)
		if c.schedule != nil {
			if s := time.Until(c.schedule.Next(c.cfg.Now())); s < wait {
				wait = s
			}
		}
		select {
		case <-ctx.Done():
			// A replica that no longer leads has no backlog of its own: the new leader's first
			// run reports it. A gauge left standing would be summed with the new leader's.
			c.cfg.Metrics.CleanupBacklog.Set(0)
			return
		case <-time.After(max(wait, 0)):
		}
		res, err := c.RunOnce(ctx, fence)
		if errors.Is(err, ha.ErrDeposed) {
			c.cfg.Metrics.CleanupBacklog.Set(0)
			c.cfg.Log.Info("cleanup stopped: no longer the leader", "deleted", res.Deleted)
			return
		}
		if err != nil && ctx.Err() == nil {
			c.cfg.Log.Warn("cleanup run", "error", err, "deleted", res.Deleted)
		} else if res.Expired > 0 {
			c.cfg.Log.Info("cleanup run", "expired", res.Expired, "deleted", res.Deleted, "dryRun", c.cfg.DryRun,
				"duration", res.Duration.Round(time.Millisecond), "complete", res.Complete)
		}
		next = c.cfg.Now().Add(c.cfg.Interval)
	}
}

// item is an Observation decided expired, with what the decision was made on.
type item struct {
	namespace, name, uid, rv string
}

// RunOnce makes one bounded pass over every Observation while fence holds.
func (c *Cleaner) RunOnce(ctx context.Context, fence ha.Fence) (Result, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, c.cfg.MaxRun)
	defer cancel()
	ctx, depose := context.WithCancelCause(ctx)
	defer depose(nil)
	var res Result
	var deleted, gone, changed, failed, skipped atomic.Int64
	work := make(chan item, c.cfg.Workers*4)
	var wg sync.WaitGroup
	for range c.cfg.Workers {
		wg.Go(func() {
			for it := range work {
				switch err := c.delete(ctx, fence, it); {
				case err == nil:
					deleted.Add(1)
					// Counted as it happens: a run takes minutes, and a leader killed during one
					// must have shown what it deleted.
					c.cfg.Metrics.CleanupDeleted.WithLabelValues("expired").Inc()
				case errors.Is(err, ha.ErrDeposed):
					depose(err)
					skipped.Add(1)
				case apierrors.IsNotFound(err):
					gone.Add(1)
				case apierrors.IsConflict(err):
					changed.Add(1) // recreated or changed since the decision: not ours to delete
				case ctx.Err() != nil:
					skipped.Add(1) // the run was cut short; the next run gets it
				default:
					failed.Add(1)
					c.cfg.Metrics.CleanupErrors.Inc()
				}
			}
		})
	}
	err := c.list(ctx, func(it item) {
		res.Expired++
		if !c.cfg.DryRun {
			select {
			case work <- it:
			case <-ctx.Done():
			}
		}
	}, &res.Listed)
	close(work)
	wg.Wait()
	if cause := context.Cause(ctx); errors.Is(cause, ha.ErrDeposed) {
		err = ha.ErrDeposed
	}
	res.Deleted, res.Gone, res.Changed, res.Errors = int(deleted.Load()), int(gone.Load()), int(changed.Load()), int(failed.Load())
	res.Duration = time.Since(start)
	res.Complete = err == nil && ctx.Err() == nil && skipped.Load() == 0
	c.record(res, err)
	return res, err
}

// list pages through the Observations' metadata and hands on the expired ones.
func (c *Cleaner) list(ctx context.Context, expired func(item), listed *int) error {
	now := c.cfg.Now()
	opts := metav1.ListOptions{Limit: c.cfg.PageSize}
	ri := c.cfg.Client.Resource(v1alpha1.ObservationResource)
	for {
		page, err := ri.List(ctx, opts)
		if err != nil {
			return fmt.Errorf("listing Observations: %w", err)
		}
		for i := range page.Items {
			m := &page.Items[i]
			*listed++
			if c.expired(m, now) {
				expired(item{namespace: m.Namespace, name: m.Name, uid: string(m.UID), rv: m.ResourceVersion})
			}
		}
		if page.Continue == "" {
			return nil
		}
		opts.Continue = page.Continue
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// expired decides from metadata: the expires-at label of an Observation with its own TTL, else its
// creation time plus the global TTL.
func (c *Cleaner) expired(m *metav1.PartialObjectMetadata, now time.Time) bool {
	if v, ok := m.Labels[v1alpha1.LabelExpiresAt]; ok {
		if at, err := strconv.ParseInt(v, 10, 64); err == nil {
			// The label was computed from a TTL already clamped by the writer.
			return now.Unix() >= at
		}
	}
	return !m.CreationTimestamp.IsZero() && now.Sub(m.CreationTimestamp.Time) >= c.cfg.TTL
}

// delete deletes one Observation if it is still the one decided on and fence still holds.
func (c *Cleaner) delete(ctx context.Context, fence ha.Fence, it item) error {
	// Reserve and wait, rather than Limiter.Wait, which refuses at once a wait that would pass the
	// deadline: a run cut short must say so, not count the rest as failures.
	r := c.limiter.Reserve()
	select {
	case <-time.After(r.Delay()):
	case <-ctx.Done():
		r.Cancel()
		return ctx.Err()
	}
	// Asked after the wait: a process paused while it waited resumes with the wait over. The
	// client's transport asks again as the request goes out (NewClient); a delete that passed that
	// check before a pause can still land after it, and its preconditions keep it to the expired
	// Observation it was decided for, which the next leader deletes too.
	if !fence.Held() {
		return ha.ErrDeposed
	}
	uid := types.UID(it.uid)
	pre := metav1.Preconditions{UID: &uid, ResourceVersion: &it.rv}
	return c.cfg.Client.Resource(v1alpha1.ObservationResource).Namespace(it.namespace).
		Delete(ha.WithFence(ctx, fence), it.name, metav1.DeleteOptions{Preconditions: &pre})
}

func (c *Cleaner) record(res Result, err error) {
	m := c.cfg.Metrics
	result := "complete"
	switch {
	case err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, ha.ErrDeposed):
		result = "error"
	case !res.Complete:
		result = "interrupted"
	}
	m.CleanupRuns.WithLabelValues(result).Inc()
	m.CleanupDuration.Observe(res.Duration.Seconds())
	backlog := res.Expired - res.Deleted - res.Gone - res.Changed
	if c.cfg.DryRun {
		backlog = res.Expired
	}
	m.CleanupBacklog.Set(float64(max(backlog, 0)))
}
