package shard

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
)

// listerWatcher lists and watches through the wrapped ListerWatcher and keeps only the objects whose
// namespace hashes into the share. It asks the API server to filter too (ShardedListAndWatch);
// servers without the feature ignore the selector, and the same predicate applied here keeps the
// result right on them.
type listerWatcher struct {
	next  cache.ListerWatcher
	share Ranges
	// piece, when set, is the share instead of share: it shrinks as the replica's share does.
	piece *piece
	// kept and dropped, when set, count what the client-side predicate kept and dropped.
	kept, dropped prometheus.Counter
	// held, when set, reports whether the share still holds; once it does not, nothing is kept.
	held func() bool
	// tally, when set, counts what is kept per namespace: the namespaces' weights.
	tally *tally
	// inForce, when set, reports whether a hash is in the share in force now, which may have moved
	// on from share before the informer is restarted on it. What left it is dropped at once: its
	// new owner lists it when its own informers restart, and an object both handed on would cost a
	// create the API server refuses.
	inForce func(hash uint64) bool
	// only, when set, narrows the share to a few namespaces (Scope): one point of the space each.
	only Ranges
}

// Wrap narrows lw to share of the FNV-1a space, with the API server's help. A share that is the
// whole space returns lw unchanged.
func Wrap(lw cache.ListerWatcher, share Ranges) cache.ListerWatcher {
	if share.Whole() {
		return lw
	}
	return &listerWatcher{next: lw, share: share}
}

// nothing is the narrowest selector there is: the selector language has no empty range. An empty
// share asks the API server for it and keeps none of what it matches.
var nothing = Ranges{{Start: 0, End: 1}}

// ranges is the share the ListerWatcher reads now.
func (l *listerWatcher) ranges() Ranges {
	if l.piece != nil {
		return l.piece.get()
	}
	return l.share
}

// MaxScoped is how many namespaces Scope asks the API server for by name: a selector of one range
// each costs the server about a microsecond per object and watch at 64 ranges (three and a half at
// 256), and grows the request by ~90 bytes a namespace. An informer over more lists its whole share
// and keeps only its namespaces itself.
const MaxScoped = 64

// Scope narrows what the ListerWatcher asks for and keeps to namespaces, within the share
// (sources.Scoping): an informer over a few namespaces then reads only theirs, where it would list
// every namespace of its share and drop the rest. More than MaxScoped namespaces, or none, change
// nothing. Call it before the ListerWatcher is used.
func (l *listerWatcher) Scope(namespaces []string) {
	if len(namespaces) == 0 || len(namespaces) > MaxScoped {
		return
	}
	l.only = points(namespaces)
}

// points is the ranges that hold exactly the namespaces' hashes: one point [h, h+1) each.
func points(namespaces []string) Ranges {
	hashes := make([]uint64, 0, len(namespaces))
	for _, ns := range namespaces {
		hashes = append(hashes, Hash(ns))
	}
	return pointsOf(hashes)
}

func pointsOf(hashes []uint64) Ranges {
	slices.Sort(hashes)
	var rs Ranges
	for i, h := range hashes {
		if i > 0 && h == hashes[i-1] {
			continue
		}
		rs = rs.add(Range{Start: h, End: h + 1}) // h+1 wraps to 0, which stands for 2^64
	}
	return rs
}

// holds reports whether the namespace hash h is kept now: in the share (and its scope), and in the
// share in force.
func (l *listerWatcher) holds(h uint64) bool {
	return l.ranges().Contains(h) && (l.only == nil || l.only.Contains(h)) && (l.inForce == nil || l.inForce(h))
}

func (l *listerWatcher) options(o metav1.ListOptions) metav1.ListOptions {
	share := l.ranges()
	if l.only != nil {
		share = share.Intersect(l.only)
	}
	if len(share) == 0 {
		// A replica that owns nothing (it sees no members, or none but others) fails closed: it
		// asks for next to nothing rather than for everything.
		o.ShardSelector = nothing.Selector()
		return o
	}
	o.ShardSelector = share.Selector()
	return o
}

// List implements cache.Lister.
func (l *listerWatcher) List(o metav1.ListOptions) (runtime.Object, error) {
	return l.ListWithContext(context.Background(), o)
}

// ListWithContext implements cache.ListerWithContext.
func (l *listerWatcher) ListWithContext(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
	list, err := cache.ToListerWithContext(l.next).ListWithContext(ctx, l.options(o))
	if err != nil {
		return nil, err
	}
	items, err := meta.ExtractList(list)
	if err != nil {
		return nil, fmt.Errorf("filtering list by shard: %w", err)
	}
	kept := items[:0]
	var namespaces []string
	for _, it := range items {
		if ns, keep := l.keeps(it); keep {
			kept = append(kept, it)
			namespaces = append(namespaces, ns)
		}
	}
	if l.tally != nil {
		l.tally.listed(namespaces)
	}
	if len(kept) == len(items) {
		return list, nil
	}
	if err := meta.SetList(list, kept); err != nil {
		return nil, fmt.Errorf("filtering list by shard: %w", err)
	}
	return list, nil
}

// Watch implements cache.Watcher.
func (l *listerWatcher) Watch(o metav1.ListOptions) (watch.Interface, error) {
	return l.WatchWithContext(context.Background(), o)
}

// WatchWithContext implements cache.WatcherWithContext.
func (l *listerWatcher) WatchWithContext(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
	w, err := cache.ToWatcherWithContext(l.next).WatchWithContext(ctx, l.options(o))
	if err != nil {
		return nil, err
	}
	if l.tally != nil && o.SendInitialEvents != nil && *o.SendInitialEvents {
		l.tally.listed(nil) // the initial events deliver what is held, as a list does
	}
	var renewed *renewing
	if l.piece != nil {
		renewed = renewOnNarrow(w, l.piece.changes())
		w = renewed
	}
	return watch.Filter(w, func(e watch.Event) (watch.Event, bool) {
		switch e.Type {
		case watch.Added, watch.Modified, watch.Deleted:
			ns, keep := l.keeps(e.Object)
			if keep && l.tally != nil {
				l.tally.event(e.Type, ns)
			}
			return e, keep
		case watch.Error:
			return e, renewed == nil || !renewed.ended.Load()
		case watch.Bookmark:
			if renewed != nil && initialEventsEnd(e.Object) {
				renewed.restart()
			}
		}
		return e, true
	}), nil
}

// initialEventsEnd reports whether obj is the bookmark that ends a watch's initial events.
func initialEventsEnd(obj runtime.Object) bool {
	m, err := meta.Accessor(obj)
	return err == nil && m.GetAnnotations()[metav1.InitialEventsAnnotationKey] == "true"
}

// ListedAfter returns what the objects listed wait for before they are handed on (sources.Holding):
// the read of the Observations written in the piece; nil when nothing is waited for.
func (l *listerWatcher) ListedAfter() <-chan struct{} {
	if l.piece == nil {
		return nil
	}
	return l.piece.read
}

// Reads reports whether the objects of a namespace are kept now (sources.Narrowing).
func (l *listerWatcher) Reads(namespace string) bool {
	if l.held != nil && !l.held() {
		return false
	}
	return l.holds(Hash(namespace))
}

// shortWatch is how long a watch must have run for the informer to take its end for a normal one
// and watch on from where it was: a shorter one that delivered nothing counts as failed, and is
// followed by a list.
const shortWatch = 1100 * time.Millisecond

// renewOnNarrow ends w once narrowed is closed (and w has run shortWatch), so that the informer
// watches on, from the resource version it reached, through a selector that asks only for the
// ranges left: the API server stops sending what the replica no longer keeps, without a list.
func renewOnNarrow(w watch.Interface, narrowed <-chan struct{}) *renewing {
	r := &renewing{Interface: w, done: make(chan struct{})}
	r.restart()
	go func() {
		select {
		case <-r.done:
			return
		case <-narrowed:
		}
		for {
			wait := shortWatch - time.Since(*r.began.Load())
			if wait <= 0 {
				break
			}
			select {
			case <-r.done:
				return
			case <-time.After(wait):
			}
		}
		r.ended.Store(true)
		w.Stop()
	}()
	return r
}

// renewing is a watch renewOnNarrow may end.
type renewing struct {
	watch.Interface
	once sync.Once
	done chan struct{}
	// ended is set before renewOnNarrow stops the watch. A stream stopped from this side may still
	// report its closed body as an error event (the stream's reader races the stop), which the
	// informer would take for a failed watch: it would back off for a second or more and list
	// again, where the end was meant to renew the watch at once. Such an error is dropped.
	ended atomic.Bool
	// began is when the watch began as the informer counts it: a watch that
	// streams the initial events begins again at their end, where the informer starts to time
	// what follows, and the end of one that delivered nothing less than a second after that is a
	// failure to it — a back-off and a list, a second or more when nothing reaches it.
	began atomic.Pointer[time.Time]
}

// restart counts the watch's time from now.
func (r *renewing) restart() {
	now := time.Now()
	r.began.Store(&now)
}

// Stop implements watch.Interface.
func (r *renewing) Stop() {
	r.once.Do(func() { close(r.done) })
	r.Interface.Stop()
}

// keeps reports whether obj is in the share, and its namespace.
func (l *listerWatcher) keeps(obj runtime.Object) (string, bool) {
	if l.held != nil && !l.held() {
		return "", false
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return "", true // not an object with metadata: let the informer decide
	}
	ns := m.GetNamespace()
	keep := l.holds(Hash(ns))
	c := l.dropped
	if keep {
		c = l.kept
	}
	if c != nil {
		c.Inc()
	}
	return ns, keep
}

// Bridge returns a ListerWatcher over the same namespaces that lists none of their objects and
// watches from the resource version the API server holds now (sources.Bridging). An informer run on
// it beside one that lists hands on what changes from now on, while the list of what exists (seconds
// for thousands of objects) is still under way: a namespace gained in a rebalance has its new
// findings written at once, not after that list. It weighs nothing, as the informer that lists
// counts the same changes.
func (l *listerWatcher) Bridge() cache.ListerWatcher {
	b := *l
	b.tally = nil
	return &fromNow{listerWatcher: &b}
}

// fromNow is a Bridge: it lists once, for the current resource version only, and never again.
type fromNow struct {
	*listerWatcher
	listed atomic.Bool
}

// BridgedAfter returns what the bridge's findings wait for before they are handed on
// (sources.BridgeHolding); nil when nothing is waited for.
func (f *fromNow) BridgedAfter() <-chan struct{} {
	if f.piece == nil {
		return nil
	}
	return f.piece.bridged
}

// List implements cache.Lister.
func (f *fromNow) List(o metav1.ListOptions) (runtime.Object, error) {
	return f.ListWithContext(context.Background(), o)
}

// ListWithContext implements cache.ListerWithContext. The first list asks for one object, at the
// latest resource version (a consistent read the API server serves from its cache), and returns
// none. A later one — the bridge's watch failed — waits for the bridge to be stopped: listing what
// exists is the other informer's part, and an empty list here would read as every object deleted.
func (f *fromNow) ListWithContext(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
	if f.listed.Swap(true) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	list, err := cache.ToListerWithContext(f.next).ListWithContext(ctx, f.options(metav1.ListOptions{Limit: 1}))
	if err != nil {
		return nil, err
	}
	if err := meta.SetList(list, nil); err != nil {
		return nil, fmt.Errorf("emptying the bridge's list: %w", err)
	}
	lm, err := meta.ListAccessor(list)
	if err != nil {
		return nil, fmt.Errorf("emptying the bridge's list: %w", err)
	}
	lm.SetContinue("")
	lm.SetRemainingItemCount(nil)
	return list, nil
}

// Watch implements cache.Watcher.
func (f *fromNow) Watch(o metav1.ListOptions) (watch.Interface, error) {
	return f.WatchWithContext(context.Background(), o)
}

// WatchWithContext implements cache.WatcherWithContext. A bridge is often stopped between its list
// and its watch (the list it bridges was quick): it then watches nothing rather than having the
// reflector report the cancelled request as an error.
func (f *fromNow) WatchWithContext(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
	w, err := f.listerWatcher.WatchWithContext(ctx, o)
	if err != nil && ctx.Err() != nil {
		return watch.NewEmptyWatch(), nil
	}
	return w, err
}

// IsWatchListSemanticsUnSupported tells client-go's reflector to list rather than stream the
// initial objects: the bridge wants none of them.
func (f *fromNow) IsWatchListSemanticsUnSupported() bool { return true }
