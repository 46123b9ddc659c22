package redisstate

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/kube-zen/zen-watcher/internal/testenv"
	"github.com/kube-zen/zen-watcher/pkg/metrics"
)

// TestAppendsWaitForTheReplica: through real Sentinels, a queue with WaitReplicas 1 answers an
// append only once the replica holds it. With the replica paused (SIGSTOP) the append fails as
// unreplicated, so the finding is processed before its answer instead of being answered "queued"
// on the primary alone; and after a SENTINEL FAILOVER, every append that succeeded is in the
// promoted server's stream.
func TestAppendsWaitForTheReplica(t *testing.T) {
	sen, err := testenv.StartRedisSentinel()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sen.Close() })
	ctx := context.Background()
	c := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: testenv.SentinelMaster, SentinelAddrs: sen.Sentinels,
		DialTimeout: 200 * time.Millisecond, ReadTimeout: 500 * time.Millisecond, WriteTimeout: 500 * time.Millisecond})
	t.Cleanup(func() { _ = c.Close() })
	s, err := NewStream(c, StreamOptions{Release: "sentinel", Consumer: "a", WaitReplicas: 1, Timeout: 800 * time.Millisecond},
		metrics.New(prometheus.NewRegistry()), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	run, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { s.Run(run, newRecorder(), served{"falco"}); close(done) }()
	t.Cleanup(func() { stop(); <-done })
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute) // no append may wait forever
	defer cancel()
	appended := 0
	for i := range 20 {
		if err := s.Append(ctx, "unread", findings("before", 1)); err != nil {
			t.Fatalf("append %d with the replica up: %v", i, err)
		}
		appended++
	}

	if err := sen.Replica.Pause(); err != nil {
		t.Fatal(err)
	}
	err = s.Append(ctx, "unread", findings("paused", 1))
	if unrep := (interface{ Unreplicated() bool })(nil); !errors.As(err, &unrep) || !unrep.Unreplicated() {
		t.Errorf("append with the replica paused: %v, want an unreplicated refusal", err)
	}
	if err := sen.Replica.Resume(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // past the refusal that follows an unreplicated batch
	for i := range 20 {
		if err := s.Append(ctx, "unread", findings("after", 1)); err != nil {
			t.Fatalf("append %d after the replica resumed: %v", i, err)
		}
		appended++
	}

	promoted := sen.Replica.Addr
	if err := sen.Failover(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	direct := redis.NewClient(&redis.Options{Addr: promoted})
	defer direct.Close()
	n, err := direct.XLen(ctx, s.Key("unread")).Result()
	if err != nil {
		t.Fatal(err)
	}
	// The paused append may have landed on the primary before its WAIT failed, and so on the
	// replica once it resumed: it was answered as not queued, and its finding processed, so a
	// second processing of it writes nothing new.
	if n != int64(appended) && n != int64(appended)+1 {
		t.Errorf("the promoted server's stream holds %d entries, want the %d appended (or one more)", n, appended)
	}
	waitFor(t, "appends through the new primary", func() bool {
		return s.Append(ctx, "unread", findings("promoted", 1)) == nil
	})
}
