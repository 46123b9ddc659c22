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

func TestSettledMembers(t *testing.T) {
	const quiet, most = 150 * time.Millisecond, 500 * time.Millisecond
	type change struct {
		after time.Duration // from the start
		set   []string
	}
	for _, tc := range []struct {
		name    string
		first   []string
		changes []change
		want    []string
		// within is the latest the set may be returned, from the start.
		within time.Duration
	}{
		{"none newer", []string{"a", "b", "c"}, nil, []string{"a", "b", "c"}, quiet + 300*time.Millisecond},
		{"a scale-down seen set by set", []string{"a", "b", "c", "d"},
			[]change{{30 * time.Millisecond, []string{"a", "b", "c"}}, {110 * time.Millisecond, []string{"a", "b"}}},
			[]string{"a", "b"}, 110*time.Millisecond + quiet + 300*time.Millisecond},
		{"changes that never settle", []string{"a", "b"},
			[]change{{100 * time.Millisecond, []string{"a", "b", "c"}}, {200 * time.Millisecond, []string{"a", "b"}},
				{300 * time.Millisecond, []string{"a", "b", "c"}}, {400 * time.Millisecond, []string{"a", "b"}},
				{700 * time.Millisecond, []string{"a"}}},
			[]string{"a", "b"}, most + 150*time.Millisecond},
		{"a set without this replica", []string{"b", "c"},
			[]change{{50 * time.Millisecond, []string{"a", "b", "c"}}}, []string{"b", "c"}, 100 * time.Millisecond},
		{"settling on a set without this replica", []string{"a", "b"},
			[]change{{50 * time.Millisecond, []string{"b"}}, {100 * time.Millisecond, []string{"a", "b"}}},
			[]string{"b"}, quiet},
	} {
		t.Run(tc.name, func(t *testing.T) {
			changes := make(chan []string, 1)
			start := time.Now()
			for _, c := range tc.changes {
				time.AfterFunc(c.after, func() {
					select {
					case <-changes: // only the latest is kept, as Members.Changes does
					default:
					}
					changes <- c.set
				})
			}
			got := settledMembers(context.Background(), tc.first, "a", changes, quiet, most)
			if took := time.Since(start); took > tc.within {
				t.Errorf("returned after %s, later than %s", took, tc.within)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("settled on %v, want %v", got, tc.want)
			}
		})
	}
}
