package redisstate

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// BenchmarkClaimPipelined measures dedup decisions per second against the real local Redis, from
// many goroutines of one process, as the sources and webhook handlers of a replica make them.
func BenchmarkClaimPipelined(b *testing.B) {
	c := redis.NewClient(&redis.Options{Addr: srv.Addr, PoolSize: 16})
	defer c.Close()
	s := NewDedupStore(c, Options{Release: "bench"})
	defer s.Close()
	var next atomic.Uint64
	ctx := context.Background()
	b.SetParallelism(32)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, _, err := s.Claim(ctx, next.Add(1), time.Minute, 1); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
	b.StopTimer()
	_ = c.FlushAll(ctx).Err()
}
