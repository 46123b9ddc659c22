package ha

import (
	"math"
	"os"
	"strconv"
	"strings"
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

// MemoryLimit is this process's memory limit: GOMEMLIMIT, else the cgroup's, else 0.
func MemoryLimit() int64 {
	if v := os.Getenv("GOMEMLIMIT"); v != "" {
		if n, err := strconv.ParseInt(strings.TrimSuffix(v, "B"), 10, 64); err == nil {
			return n
		}
	}
	for _, f := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		s := strings.TrimSpace(string(b))
		if n, err := strconv.ParseInt(s, 10, 64); err == nil && n > 0 && n < 1<<50 {
			return n
		}
	}
	return 0
}
