package main

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kube-zen/zen-watcher/pkg/shard"
)

func TestAwaitGainWatched(t *testing.T) {
	first := appliedShare{share: shard.Ranges{{Start: 0, End: 100}}, gained: true}
	newer := appliedShare{share: shard.Ranges{{Start: 0, End: 200}}}
	for _, tc := range []struct {
		name string
		// watchAfter is when the informers watch (0: never); newerAfter when a newer share is
		// applied (0: none).
		watchAfter, newerAfter time.Duration
		want                   appliedShare
	}{
		{"watching at once", time.Nanosecond, 0, first},
		{"watching in time", 200 * time.Millisecond, 0, first},
		{"never watching", 0, 0, first},
		{"superseded, then watching", 400 * time.Millisecond, 100 * time.Millisecond,
			appliedShare{share: newer.share, gained: true}},
		// The newer share waits within the first one's gainWatchWait, not a second of its own.
		{"superseded late, never watching", 0, 900 * time.Millisecond, appliedShare{share: newer.share, gained: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &replicas{releasing: make(chan appliedShare, 1)}
			start := time.Now()
			var watching atomic.Bool
			if tc.watchAfter > 0 {
				time.AfterFunc(tc.watchAfter, func() { watching.Store(true) })
			}
			if tc.newerAfter > 0 {
				time.AfterFunc(tc.newerAfter, func() { r.releasing <- newer })
			}
			got := r.awaitGainWatched(context.Background(), first, watching.Load)
			took := time.Since(start)
			if got.gained != tc.want.gained || !slices.Equal(got.share, tc.want.share) {
				t.Errorf("reported %+v, want %+v", got, tc.want)
			}
			// A wait restarted for the newer share would end 1.9 s after the start at the soonest.
			if limit := gainWatchWait + 600*time.Millisecond; took > limit {
				t.Errorf("took %s, more than %s", took, limit)
			}
			if tc.watchAfter > 0 && took < tc.watchAfter {
				t.Errorf("returned after %s, before the informers watched (%s)", took, tc.watchAfter)
			}
		})
	}
}
