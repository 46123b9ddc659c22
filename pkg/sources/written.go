package sources

import (
	"context"
	"fmt"
	"hash/maphash"
	"log/slog"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/pager"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
)

// WrittenObservations knows the Observations of the namespaces this replica was about to list
// anew (its whole share at start, what it gained at a rebalance) as they were when it last loaded
// them: the findings its informers list there mostly have their Observation already (written
// before a restart, or by the replica that owned the namespace), and the writer asks here instead
// of sending a create the API server would refuse.
//
// It holds the names' hashes only, and for a while: each load is for the re-list that follows it,
// and is forgotten after Keep. Loads add up rather than replace each other: a share that gains
// twice in quick succession restarts its informers again before their list of the first gain is
// done, and the second list needs the names of both.
type WrittenObservations struct {
	// Client reads the Observations' metadata.
	Client metadata.Interface
	// Keep is how long a load is asked (default 5 minutes).
	Keep time.Duration
	Log  *slog.Logger

	seed  maphash.Seed
	once  sync.Once
	mu    sync.RWMutex
	loads []load
}

// load is the names one Load read, known until until.
type load struct {
	names map[uint64]struct{}
	until time.Time
}

func (w *WrittenObservations) key(namespace, name string) uint64 {
	w.once.Do(func() { w.seed = maphash.MakeSeed() })
	var h maphash.Hash
	h.SetSeed(w.seed)
	_, _ = h.WriteString(namespace)
	_ = h.WriteByte('/')
	_, _ = h.WriteString(name)
	return h.Sum64()
}

// Load lists the Observations within narrows to (where the informers are about to list anew; nil:
// all), a page at a time, and makes them the ones known. It returns how many it read.
func (w *WrittenObservations) Load(ctx context.Context, within WrapListerWatcher) (int, error) {
	start := time.Now()
	var lw cache.ListerWatcher = &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return w.Client.Resource(v1alpha1.SchemeGroupVersion.WithResource("observations")).List(ctx, o)
		},
		WatchFuncWithContext: func(context.Context, metav1.ListOptions) (watch.Interface, error) {
			return nil, fmt.Errorf("the written Observations are listed, not watched")
		},
	}
	if within != nil {
		lw = within(lw)
	}
	p := pager.New(func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
		return cache.ToListerWithContext(lw).ListWithContext(ctx, o)
	})
	p.PageSize = 1000
	names := map[uint64]struct{}{}
	err := p.EachListItemWithAlloc(ctx, metav1.ListOptions{}, func(obj runtime.Object) error {
		m, ok := obj.(*metav1.PartialObjectMetadata)
		if !ok {
			return fmt.Errorf("listing Observations: unexpected %T", obj)
		}
		names[w.key(m.Namespace, m.Name)] = struct{}{}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("listing the Observations written: %w", err)
	}
	keep := w.Keep
	if keep <= 0 {
		keep = 5 * time.Minute
	}
	now := time.Now()
	w.mu.Lock()
	w.loads = append(w.current(now), load{names: names, until: now.Add(keep)})
	w.mu.Unlock()
	if w.Log != nil {
		w.Log.Info("read the Observations written", "observations", len(names), "took", time.Since(start).Round(time.Millisecond))
	}
	return len(names), nil
}

// current is a new slice of the loads still known at now: Written reads the one it replaces
// without the lock. Called with mu held.
func (w *WrittenObservations) current(now time.Time) []load {
	kept := make([]load, 0, len(w.loads)+1)
	for _, l := range w.loads {
		if now.Before(l.until) { // else the re-list it was loaded for is long done
			kept = append(kept, l)
		}
	}
	return kept
}

// Written implements pipeline.WrittenIndex.
func (w *WrittenObservations) Written(namespace, name string) bool {
	now := time.Now()
	w.mu.RLock()
	loads := w.loads
	w.mu.RUnlock()
	expired := false
	for _, l := range loads {
		if !now.Before(l.until) {
			expired = true
			continue
		}
		if _, ok := l.names[w.key(namespace, name)]; ok {
			return true
		}
	}
	if expired {
		w.mu.Lock()
		w.loads = w.current(now)
		w.mu.Unlock()
	}
	return false
}
