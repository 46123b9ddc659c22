package sources

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/kube-zen/zen-watcher/pkg/pipeline"
)

// Backoff of an object whose finding could not be written: the writer has already tried for about
// 16 s by then, so the first retry comes soon, and later ones spread out while the API server
// keeps failing, each well before the resync (DefaultResync) would have tried.
const (
	firstRetry = 2 * time.Second
	maxRetry   = time.Minute
)

// retries schedules handing on again the objects whose findings the writer failed to write,
// instead of leaving them for the next resync: a create that failed for 16 s because the API
// server was overloaded or away would otherwise wait ten minutes for its Observation.
type retries struct {
	// failing counts the keys in attempts, so that the write of a finding — every one — need not
	// take the lock when no object is failing, as is the rule.
	failing  atomic.Int64
	mu       sync.Mutex
	attempts map[string]int  // by object key, until a finding of it is written or it is deleted
	waiting  map[string]bool // a retry is scheduled
}

func newRetries() *retries {
	return &retries{attempts: map[string]int{}, waiting: map[string]bool{}}
}

// retryBackoff is the wait before the retry that follows n earlier ones.
func retryBackoff(n int) time.Duration {
	return min(firstRetry<<min(n, 5), maxRetry) // 2 s << 5 is past the minute already
}

// schedule reports how long to wait before handing key's object on again, or false when a retry
// of it is already scheduled (several of its findings failed at once).
func (r *retries) schedule(key string) (time.Duration, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.waiting[key] {
		return 0, false
	}
	r.waiting[key] = true
	n, known := r.attempts[key]
	if !known {
		r.failing.Add(1)
	}
	r.attempts[key] = n + 1
	return retryBackoff(n), true
}

// fired marks key's retry as under way: a failure from now on schedules another.
func (r *retries) fired(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.waiting, key)
}

// reset forgets p's backoff: a finding of it was written, or it was deleted.
func (r *retries) reset(p *parsed) {
	if r.failing.Load() == 0 {
		return
	}
	key := objectKey(p)
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, known := r.attempts[key]; known {
		delete(r.attempts, key)
		r.failing.Add(-1)
	}
}

// retryable reports whether a failed write is worth trying again soon: not when the API server
// judged the Observation itself wrong, and not when the writer stopped (the informer that restarts
// on the new share, or the next process, hands it on again).
func retryable(err error) bool {
	return !pipeline.Permanent(err) && !errors.Is(err, pipeline.ErrStopped)
}

// retryLater hands on again, after a backoff, the findings of the object key (uid) that were not
// written, if it is still cached and still the same object then.
func (i *Informer) retryLater(ctx context.Context, h Handler, key string, uid types.UID) {
	wait, ok := i.retries.schedule(key)
	if !ok {
		return
	}
	i.metrics.FindingsRetried.WithLabelValues(i.cfg.Source).Inc()
	time.AfterFunc(wait, func() {
		i.retries.fired(key)
		store := i.store.Load()
		if ctx.Err() != nil || store == nil {
			return
		}
		obj, exists, err := (*store).GetByKey(key)
		if err != nil || !exists {
			return // deleted meanwhile, or not listed yet: its list hands it on
		}
		if p, ok := obj.(*parsed); ok && p.UID == uid {
			i.handle(ctx, h, obj, retried)
		}
	})
}

// objectKey is the key of p in the informer's cache.
func objectKey(p *parsed) string {
	if p.Namespace == "" {
		return p.Name
	}
	return p.Namespace + "/" + p.Name
}
