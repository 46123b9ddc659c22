package ha

import (
	"math"
	"time"
)

// Optimization bounds HA optimization. The window shrinks from LowTrafficWindow to
// HighTrafficWindow as the global rate grows from LowRate to HighRate (on a log scale); the local
// cache holds about a window of findings, between MinCache and MaxCache, and never more than
// MemoryShare of the memory limit.
type Optimization struct {
	LowTrafficWindow, HighTrafficWindow time.Duration
	LowRate, HighRate                   float64 // findings per second, all replicas together
	MinCache, MaxCache                  int
	MemoryShare                         float64
	BytesPerEntry                       int64
	// MemoryLimit is the container's memory limit in bytes, 0 when none is known; the local cache
	// never takes more than MemoryShare of it.
	MemoryLimit int64
}

// DefaultOptimization has the performance guide's bounds: 300 s at low traffic, 60 s at high.
func DefaultOptimization() Optimization {
	return Optimization{
		LowTrafficWindow: 300 * time.Second, HighTrafficWindow: 60 * time.Second,
		LowRate: 1, HighRate: 500,
		MinCache: 5000, MaxCache: 50000,
		MemoryShare: 0.10, BytesPerEntry: 48,
	}
}

// Window is the dedup window for a global rate of findings per second.
func (o Optimization) Window(rate float64) time.Duration {
	switch {
	case rate <= o.LowRate:
		return o.LowTrafficWindow
	case rate >= o.HighRate:
		return o.HighTrafficWindow
	}
	f := math.Log(rate/o.LowRate) / math.Log(o.HighRate/o.LowRate)
	w := float64(o.LowTrafficWindow) - f*float64(o.LowTrafficWindow-o.HighTrafficWindow)
	return time.Duration(w).Round(time.Second)
}

// CacheSize is the local cache size for a global rate spread over members replicas and a window.
func (o Optimization) CacheSize(rate float64, members int, window time.Duration) int {
	if members < 1 {
		members = 1
	}
	n := int(1.5 * rate / float64(members) * window.Seconds())
	return min(max(n, o.MinCache), o.MaxCache)
}

// Bound caps a cache size to the share of a memory limit (bytes; 0 means unknown, no cap).
func (o Optimization) Bound(size int, memoryLimit int64) int {
	if memoryLimit <= 0 {
		return size
	}
	return min(size, int(float64(memoryLimit)*o.MemoryShare)/int(o.BytesPerEntry))
}

// How gently the leader's tuning moves: the rate it decides from follows the measured one by this
// share a round, and the cache shrinks by at most this share a round. Growing is never held
// back: a larger cache loses nothing.
const (
	rateSmoothing = 0.3
	maxShrink     = 0.125
)

// tuning is the leader's last published cache size and the smoothed rate behind its decisions.
// One round's burst or lull, or a leader change, must not swing the cache: shrinking it throws
// dedup keys away.
type tuning struct {
	rate   float64
	seeded bool
	size   int // 0 until known
}

// next is the window and cache size for a round that measured rate findings per second over all
// members.
func (t *tuning) next(o Optimization, rate float64, members int) (time.Duration, int) {
	if t.seeded {
		t.rate += rateSmoothing * (rate - t.rate)
	} else {
		t.rate, t.seeded = rate, true
	}
	window := o.Window(t.rate)
	size := o.CacheSize(t.rate, members, window)
	if t.size > 0 && size < t.size {
		size = max(size, t.size-int(math.Ceil(float64(t.size)*maxShrink)))
	}
	t.size = size
	return window, size
}
