package shard

import (
	"context"
	"maps"
	"math"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/watch"
)

// Weighing a namespace. What a replica spends on a namespace is its objects — each listed again
// on every hand-over, each held in an informer's store — and the changes to them, each a pass
// through the pipeline. A namespace weighs one (so that one nothing was measured in still counts,
// and with nothing measured anywhere the cut is by count), plus the objects the replica's watches
// hold in it, plus its changes over about the last minute and a half.
const (
	// WeighEvery is how often a replica weighs its namespaces and publishes the weights.
	WeighEvery = 10 * time.Second
	// changesHalfLife is how fast the changes counted are forgotten.
	changesHalfLife = time.Minute
)

// WeightStore is where replicas publish what their namespaces weigh and the leader reads it
// (redisstate.Coordination).
type WeightStore interface {
	// PublishWeights stores member's weights, namespace → weight, replacing what it stored before.
	PublishWeights(ctx context.Context, member string, weights map[string]float64) error
	// Weights is the weights the live members published; a namespace two members published (while
	// it changes hands) weighs the heavier.
	Weights(ctx context.Context) (map[string]float64, error)
}

// tally counts, for one wrapped ListerWatcher, the objects it holds per namespace and the changes
// it delivered since they were last taken.
type tally struct {
	mu      sync.Mutex
	held    map[string]int
	changes map[string]int
}

func newTally() *tally { return &tally{held: map[string]int{}, changes: map[string]int{}} }

// listed replaces what is held: a list, or a watch that begins with the initial events, delivers
// everything the informer holds from then on.
func (t *tally) listed(namespaces []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	clear(t.held)
	for _, ns := range namespaces {
		t.held[ns]++
	}
}

// event counts one change delivered by a watch.
func (t *tally) event(typ watch.EventType, ns string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch typ {
	case watch.Added:
		t.held[ns]++
	case watch.Deleted:
		if t.held[ns]--; t.held[ns] <= 0 {
			delete(t.held, ns)
		}
	}
	t.changes[ns]++
}

// take adds what is held to held and moves the changes counted into changes.
func (t *tally) take(held, changes map[string]float64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for ns, n := range t.held {
		held[ns] += float64(n)
	}
	for ns, n := range t.changes {
		changes[ns] += float64(n)
	}
	clear(t.changes)
}

// weigher keeps the tallies of the informers started on the share in force and the changes they
// counted, smoothed.
type weigher struct {
	mu      sync.Mutex
	tallies []*tally
	changes map[string]float64
	last    time.Time
}

// start returns a tally for an informer starting now.
func (w *weigher) start() *tally {
	t := newTally()
	w.mu.Lock()
	w.tallies = append(w.tallies, t)
	w.mu.Unlock()
	return t
}

// reset forgets the tallies: the informers that held them stop when the share changes.
func (w *weigher) reset() {
	w.mu.Lock()
	w.tallies = nil
	w.mu.Unlock()
}

// weigh is what the namespaces owns reports true for weigh now. owns is asked with the weigher's
// lock released: it takes the Sharder's, under which Apply resets the weigher.
func (w *weigher) weigh(now time.Time, owns func(string) bool) map[string]float64 {
	held, changes := w.measure(now)
	out := map[string]float64{}
	for ns, n := range held {
		if owns(ns) {
			out[ns] = 1 + n
		}
	}
	for ns, c := range changes {
		if owns(ns) {
			out[ns] = max(out[ns], 1) + math.Round(c*10)/10
		}
	}
	return out
}

// measure adds what the tallies counted since the last call to the smoothed changes, and returns
// the objects held per namespace and a copy of the changes.
func (w *weigher) measure(now time.Time) (held, changes map[string]float64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	held, fresh := map[string]float64{}, map[string]float64{}
	for _, t := range w.tallies {
		t.take(held, fresh)
	}
	if w.changes == nil {
		w.changes = map[string]float64{}
	}
	if !w.last.IsZero() {
		decay := math.Exp2(-now.Sub(w.last).Seconds() / changesHalfLife.Seconds())
		for ns, c := range w.changes {
			if w.changes[ns] = c * decay; w.changes[ns] < 0.05 {
				delete(w.changes, ns)
			}
		}
	}
	w.last = now
	for ns, c := range fresh {
		w.changes[ns] += c
	}
	return held, maps.Clone(w.changes)
}

// Weights is what the namespaces this replica owns weigh now, as measured by its informers
// (see WeighEvery). A namespace missing weighs one.
func (s *Sharder) Weights() map[string]float64 {
	return s.weigher.weigh(time.Now(), s.Owns)
}

// ReportWeights publishes this replica's weights to store every WeighEvery until ctx ends.
func (s *Sharder) ReportWeights(ctx context.Context, store WeightStore) {
	t := time.NewTicker(WeighEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !s.Joined() {
			continue
		}
		if err := store.PublishWeights(ctx, s.self, s.Weights()); err != nil && ctx.Err() == nil {
			s.log.Warn("publishing the namespaces' weights", "error", err)
		}
	}
}

// Weighed weighs names: one each, plus what was measured in them.
func Weighed(names []string, measured map[string]float64) []Namespace {
	out := CountWeighted(names)
	for i, n := range names {
		if w, ok := measured[n]; ok && w > 1 {
			out[i].Weight = w
		}
	}
	return out
}
