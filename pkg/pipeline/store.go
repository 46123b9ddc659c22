package pipeline

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/kube-zen/zen-watcher/pkg/metrics"
)

// Store is dedup state shared by every replica (Redis in production). Keys are the dedup stage's
// 64-bit keys; the Store decides how to spell them.
type Store interface {
	// Claim records key for ttl under token unless it is already recorded; first means this caller
	// was first. The Hold says how long the key stays recorded: ttl when first, else what is left
	// of the holder's claim.
	Claim(ctx context.Context, key uint64, ttl time.Duration, token uint64) (first bool, h Hold, err error)
	// Incr counts one occurrence of key in a window that starts at the first one (which names the
	// window with token), and returns the count. The Hold names the window and its time left.
	Incr(ctx context.Context, key uint64, window time.Duration, token uint64) (int64, Hold, error)
	// Release takes back a Claim (counted=false) or an Incr (counted=true) whose finding could not
	// be written, so that the next report of it is not mistaken for a duplicate. It takes back only
	// what token names: a claim or window that expired and was taken again by another is left alone.
	Release(ctx context.Context, key uint64, counted bool, token uint64) error
}

// Pinger is a shared Store that can be asked whether it answers, so that a replica with no dedup
// traffic still knows, and says, whether its shared tier is there.
type Pinger interface {
	Ping(ctx context.Context) error
}

// Hold is what the shared Store keeps for a key after a Claim or an Incr.
type Hold struct {
	// Token names the claim or the count's window, for Release.
	Token uint64
	// Left is how long the Store keeps the key; the local tier keeps it no longer, or it would
	// call a finding a duplicate after the shared window has ended.
	Left time.Duration
}

// Tiered is the dedup state the pipeline uses: a LocalCache in front of an optional shared Store.
// A key the local tier holds is answered without a round trip. When the shared Store fails, the
// local tier decides alone, a metric says so, and the shared Store is tried again after a backoff.
type Tiered struct {
	local   *LocalCache
	shared  Store
	metrics *metrics.Metrics
	log     *slog.Logger

	downUntil atomic.Int64 // unix nanoseconds before which the shared store is not asked
	backoff   atomic.Int64 // current backoff in nanoseconds
	down      atomic.Bool
	answered  atomic.Bool // the shared store has answered once: a later answer means it is back
}

// Backoff bounds of the shared store after a failure.
const (
	minStoreBackoff = 250 * time.Millisecond
	maxStoreBackoff = 5 * time.Second
)

// NewTiered returns the two tiers; shared may be nil for a single replica without Redis.
func NewTiered(local *LocalCache, shared Store, m *metrics.Metrics, log *slog.Logger) *Tiered {
	t := &Tiered{local: local, shared: shared, metrics: m, log: log}
	t.backoff.Store(int64(minStoreBackoff))
	// Unavailable until the shared store first answers: a Redis that is not there at start must
	// not be reported as up.
	t.down.Store(true)
	m.SharedStoreAvailable.Set(0)
	return t
}

// Watch pings the shared store every interval until ctx ends, so that its availability (the
// gauge, and whether dedup asks it) follows the store itself, not only the dedup traffic that
// happens to fail: an idle replica reports Redis down, and back, within an interval.
func (t *Tiered) Watch(ctx context.Context, every time.Duration) {
	p, ok := t.shared.(Pinger)
	if !ok {
		return
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, every)
		err := p.Ping(pctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err == nil:
			t.up()
			t.downUntil.Store(0)
		default:
			t.markDown(time.Now().UnixNano(), err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// Local is the in-process tier, for resizing by HA optimization.
func (t *Tiered) Local() *LocalCache { return t.local }

// Claim reports whether key is new at now (unix nanoseconds), recording it for ttl. The token it
// returns names the claim in the shared tier for Release (zero when only the local tier has it).
func (t *Tiered) Claim(ctx context.Context, key uint64, now int64, ttl time.Duration) (bool, uint64) {
	if _, held := t.local.Peek(key, now); held {
		return false, 0
	}
	if t.useShared(now) {
		token := newToken()
		first, h, err := t.shared.Claim(ctx, key, ttl, token)
		if err == nil {
			t.up()
			t.local.Put(key, now+int64(h.Left), 1)
			if !first {
				token = 0
			}
			return first, token
		}
		t.fail(ctx, now, err)
	}
	return t.local.Claim(key, now, now+int64(ttl)), 0
}

// ClaimLocal claims key in this replica's tier alone, for findings whose Observation name keeps
// them single across replicas.
func (t *Tiered) ClaimLocal(key uint64, now int64, ttl time.Duration) bool {
	return t.local.Claim(key, now, now+int64(ttl))
}

// ReleaseLocal takes back a ClaimLocal.
func (t *Tiered) ReleaseLocal(key uint64) { t.local.Delete(key) }

// Admit counts one occurrence of key at now in window and reports whether it is within limit,
// with the token of the shared window it was counted in (zero when counted locally only).
func (t *Tiered) Admit(ctx context.Context, key uint64, now int64, window time.Duration, limit int64) (bool, uint64) {
	// The shared count is at least the local one: past the limit locally means past it globally.
	if n, held := t.local.Peek(key, now); held && n >= limit {
		t.local.Incr(key, now, now+int64(window))
		return false, 0
	}
	if t.useShared(now) {
		n, h, err := t.shared.Incr(ctx, key, window, newToken())
		if err == nil {
			t.up()
			t.local.Put(key, now+int64(h.Left), n)
			return n <= limit, h.Token
		}
		t.fail(ctx, now, err)
	}
	return t.local.Incr(key, now, now+int64(window)) <= limit, 0
}

// Release takes back a Claim or an Admit in both tiers; token is what they returned.
func (t *Tiered) Release(ctx context.Context, key uint64, counted bool, token uint64) {
	if counted {
		t.local.Decr(key)
	} else {
		t.local.Delete(key)
	}
	if t.shared == nil || token == 0 {
		return
	}
	if err := t.shared.Release(ctx, key, counted, token); err != nil {
		t.fail(ctx, time.Now().UnixNano(), err)
	}
}

// newToken is a random, non-zero name for one claim or window.
func newToken() uint64 { return rand.Uint64() | 1 }

func (t *Tiered) useShared(now int64) bool {
	return t.shared != nil && now >= t.downUntil.Load()
}

func (t *Tiered) up() {
	if t.down.CompareAndSwap(true, false) {
		t.backoff.Store(int64(minStoreBackoff))
		t.metrics.SharedStoreAvailable.Set(1)
		if t.answered.Swap(true) {
			t.log.Info("shared dedup store is back")
		}
	}
}

// fail switches to the local tier for a backoff that doubles while failures go on. A cancelled
// caller says nothing about the store.
func (t *Tiered) fail(ctx context.Context, now int64, err error) {
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return
	}
	t.metrics.DedupFallbacks.Inc()
	t.markDown(now, err)
}

// markDown stops asking the shared store for a backoff that doubles while failures go on.
func (t *Tiered) markDown(now int64, err error) {
	b := t.backoff.Load()
	t.downUntil.Store(now + b)
	if t.down.CompareAndSwap(false, true) {
		t.metrics.SharedStoreAvailable.Set(0)
		t.log.Warn("shared dedup store unavailable; deduplicating locally", "error", err, "retryIn", time.Duration(b))
	}
	t.backoff.Store(min(2*b, int64(maxStoreBackoff)))
}
