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

// WrittenObservations knows the Observations of this replica's share as they were when it last
// loaded them: the findings its informers re-list after a start or a rebalance mostly have their
// Observation already (written before the restart, or by the replica that owned the namespace),
// and the writer asks here instead of sending a create the API server would refuse.
//
// It holds the names' hashes only, and for a while: it is for the re-list that follows a load, and
// is forgotten after Keep.
type WrittenObservations struct {
	// Client reads the Observations' metadata.
	Client metadata.Interface
	// Wrap narrows the listing to the share in force, as the informers are narrowed; nil lists all.
	Wrap WrapListerWatcher
	// Keep is how long a load is asked (default 5 minutes).
	Keep time.Duration
	Log  *slog.Logger

	seed  maphash.Seed
	once  sync.Once
	mu    sync.RWMutex
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

// Load lists the Observations of the share in force, a page at a time, and makes them the ones
// known. It returns how many it read.
func (w *WrittenObservations) Load(ctx context.Context) (int, error) {
	start := time.Now()
	var lw cache.ListerWatcher = &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return w.Client.Resource(v1alpha1.SchemeGroupVersion.WithResource("observations")).List(ctx, o)
		},
		WatchFuncWithContext: func(context.Context, metav1.ListOptions) (watch.Interface, error) {
			return nil, fmt.Errorf("the written Observations are listed, not watched")
		},
	}
	if w.Wrap != nil {
		lw = w.Wrap(lw)
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
	w.mu.Lock()
	w.names, w.until = names, time.Now().Add(keep)
	w.mu.Unlock()
	if w.Log != nil {
		w.Log.Info("read the Observations written", "observations", len(names), "took", time.Since(start).Round(time.Millisecond))
	}
	return len(names), nil
}

// Written implements pipeline.WrittenIndex.
func (w *WrittenObservations) Written(namespace, name string) bool {
	w.mu.RLock()
	names, until := w.names, w.until
	w.mu.RUnlock()
	if names == nil {
		return false
	}
	if time.Now().After(until) {
		w.mu.Lock()
		if w.until.Equal(until) {
			w.names = nil // the re-list it was loaded for is long done
		}
		w.mu.Unlock()
		return false
	}
	_, ok := names[w.key(namespace, name)]
	return ok
}
