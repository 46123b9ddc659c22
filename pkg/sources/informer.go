package sources

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/cache"

	"github.com/kube-zen/zen-watcher/pkg/metrics"
	"github.com/kube-zen/zen-watcher/pkg/pipeline"
)

// Timed is implemented by parsers whose findings change with time alone (a certificate nearing its
// expiry): the informer keeps their objects and parses them again every ResyncPeriod.
type Timed interface {
	ResyncPeriod() time.Duration
}

// InformerConfig names the objects an Informer reads.
type InformerConfig struct {
	// Source is the name the findings carry.
	Source string
	// GVR is the resource to watch.
	GVR schema.GroupVersionResource
	// Namespaces limits the watch; empty means all namespaces.
	Namespaces []string
	// LabelSelector and FieldSelector are passed to the API server.
	LabelSelector, FieldSelector string
	// Resync is how often every object is looked at again (zero: DefaultResync).
	Resync time.Duration
	// Owns, when set, reports whether this replica owns a namespace in its share now: a finding
	// of an object in a namespace it no longer owns is withdrawn (pipeline.Event.Withdrawn).
	Owns func(namespace string) bool
}

// WrapListerWatcher decorates the ListerWatcher of every informer; sharding uses it to narrow what a
// replica reads, and nothing else in a source needs to know.
type WrapListerWatcher func(cache.ListerWatcher) cache.ListerWatcher

// Narrowing is implemented by a decorated ListerWatcher whose namespaces shrink while its informer
// runs: the informer forgets the objects of those it no longer reads, and hands on nothing of them
// at a resync. (Another informer, over the namespaces gained, may read them again.)
type Narrowing interface {
	Reads(namespace string) bool
}

// Bridging is implemented by a decorated ListerWatcher that can also watch from now without
// listing (shard's gained and restarted shares): the informer runs a second, short-lived informer on
// Bridge while its own lists, so that what changes meanwhile is handed on at once instead of after
// the list. Its findings may have been written by the replica that read the namespaces before, and
// are decided against the Observations known written, as re-listed ones are.
type Bridging interface {
	Bridge() cache.ListerWatcher
}

// BridgeHolding is implemented by a Bridge whose findings wait before they are handed on: a
// replica joining others holds them until those have let go of its namespaces and it has read what
// they wrote there (for a short while at most), so that what both read is decided against what was
// written instead of being sent to the API server twice.
type BridgeHolding interface {
	BridgedAfter() <-chan struct{}
}

// Holding is implemented by a decorated ListerWatcher whose listed objects must wait before they
// are handed on: for what was written before them to be read (shard's gained ranges), while the
// list itself already runs. The informer's bridge (Bridging) runs until the wait is over.
type Holding interface {
	ListedAfter() <-chan struct{}
}

// Scoping is implemented by a decorated ListerWatcher that can ask the API server for the objects of
// a few namespaces alone (shard's selector, a point of the hash space for each): an informer over
// several namespaces (InformerConfig.Namespaces) lists and watches all of them otherwise, and drops
// what lies outside them itself.
type Scoping interface {
	Scope(namespaces []string)
}

// Informer reads a tool's objects and hands on their findings. Objects are parsed as they arrive and
// only their findings are cached, so memory grows with the findings, not with the size of the
// tools' objects. An object whose findings did not change yields nothing; of one that changed, only
// the new findings are handed on.
type Informer struct {
	cfg       InformerConfig
	client    dynamic.Interface
	discovery discovery.DiscoveryInterface
	parser    ObjectParser
	wrap      WrapListerWatcher
	metrics   *metrics.Metrics
	log       *slog.Logger

	synced atomic.Bool
	// watching is set once the bridge's watch is open (Bridging): what changes from then on
	// reaches the informer, though its list may still run.
	watching atomic.Bool
	waiting  atomic.Value // string: why the informer is not running yet, or ""
	seen     atomic.Int64 // findings handed on
	lastErr  atomic.Value // string

	resync time.Duration

	handed *handedOn
	// retries schedules the objects whose findings could not be written to be handed on again.
	retries *retries
	// inherited is the objects handed came with from the informers this one replaces: those the
	// first list does not return are pruned once synced. Nil when nothing was inherited.
	inherited map[types.UID]bool

	// store is the running informer's cache, for Narrow; nil until Run starts it.
	store atomic.Pointer[cache.Indexer]
	// lw is what the informer lists and watches through; narrowing is lw if it narrows as the
	// informer runs, nil otherwise.
	lw        cache.ListerWatcher
	narrowing Narrowing
	// listedAfter, when set, is closed once what the informer lists may be handed on (Holding);
	// letThrough is set once it was seen closed.
	listedAfter <-chan struct{}
	letThrough  atomic.Bool
}

// DefaultResync is how often an informer looks at every object again, to hand on findings that
// could not be written before.
const DefaultResync = 10 * time.Minute

// NewInformer returns an informer; wrap may be nil.
func NewInformer(cfg InformerConfig, client dynamic.Interface, disc discovery.DiscoveryInterface,
	parser ObjectParser, wrap WrapListerWatcher, m *metrics.Metrics, log *slog.Logger) *Informer {
	i := &Informer{
		cfg: cfg, client: client, discovery: disc, parser: parser, wrap: wrap, metrics: m,
		log:     log.With("source", cfg.Source, "resource", cfg.GVR.String()),
		handed:  newHandedOn(),
		retries: newRetries(),
		resync:  DefaultResync,
	}
	if cfg.Resync > 0 {
		i.resync = cfg.Resync
	}
	i.lw = i.listerWatcher()
	if s, ok := i.lw.(Scoping); ok && len(cfg.Namespaces) > 1 {
		s.Scope(cfg.Namespaces)
	}
	i.narrowing, _ = i.lw.(Narrowing)
	if h, ok := i.lw.(Holding); ok {
		i.listedAfter = h.ListedAfter()
	}
	i.waiting.Store("")
	i.lastErr.Store("")
	return i
}

// Inherit takes over what from handed on for the objects of the namespaces owns accepts: an
// informer restarted on a new share hands on only what it did not hand on before. Findings from
// hand on that fail later are forgotten here too, to be handed on again. Call it before Run.
func (i *Informer) Inherit(from *Informer, owns func(namespace string) bool) {
	i.handed = from.handed
	i.handed.keep(owns)
	i.inherited = i.handed.uids()
}

// Join has the informer record what it hands on where with does: an informer added over the ranges
// a share gained, beside the one reading the rest (with), so that one restarted later on the whole
// share inherits from both. Their namespaces do not overlap, so neither sees the other's objects.
// Call it before Run.
func (i *Informer) Join(with *Informer) { i.handed = with.handed }

// Narrow forgets the objects of the namespaces Owns rejects now, from the cache and from what was
// handed on: the replica's share shrank and the informer runs on, its ListerWatcher dropping their
// events. Without it their objects would stay cached until the next restart, which a replica whose
// share only ever shrinks (a scale-up) never has. It returns how many objects it forgot.
func (i *Informer) Narrow() int {
	store := i.store.Load()
	if i.cfg.Owns == nil {
		return 0
	}
	// What was handed on is shared with the informers joined to this one (Join): it is kept for
	// the replica's share, the cache for what this informer reads.
	i.handed.keep(i.cfg.Owns)
	if store == nil {
		return 0
	}
	n := 0
	for _, obj := range (*store).List() {
		// The informer is this Informer's alone, and its events for these namespaces are dropped
		// before they reach the cache, so removing them here races with nothing.
		if p, ok := obj.(*parsed); ok && !i.reads(p.Namespace) && (*store).Delete(p) == nil {
			n++
		}
	}
	return n
}

// reads reports whether this informer reads a namespace's objects now: the replica owns it, and
// the informer's ListerWatcher still reads it.
func (i *Informer) reads(namespace string) bool {
	if i.cfg.Owns != nil && !i.cfg.Owns(namespace) {
		return false
	}
	return i.narrowing == nil || i.narrowing.Reads(namespace)
}

// pruneGone forgets the inherited objects the first list did not return: they were deleted while
// no informer watched. What informers that joined this one (Join) recorded since is theirs.
func (i *Informer) pruneGone(store cache.Store) {
	for _, obj := range store.List() {
		if p, ok := obj.(*parsed); ok {
			delete(i.inherited, p.UID)
		}
	}
	i.handed.drop(i.inherited)
	i.inherited = nil
}

// Name is the source name.
func (i *Informer) Name() string { return i.cfg.Source }

// HasSynced reports whether the objects that existed at start have been read.
func (i *Informer) HasSynced() bool { return i.synced.Load() }

// Watching reports whether what changes in the informer's namespaces from now on reaches it: its
// bridge's watch is open, or it has synced, or its resource is not served (there is nothing to
// watch yet).
func (i *Informer) Watching() bool { return i.watching.Load() || i.HasSynced() || i.Waiting() != "" }

// Waiting says why the informer is not running yet (its resource is not served), or "".
func (i *Informer) Waiting() string { return i.waiting.Load().(string) }

// FindingsSeen is the number of findings handed on.
func (i *Informer) FindingsSeen() int64 { return i.seen.Load() }

// LastError is the last malformed object's error, or "".
func (i *Informer) LastError() string { return i.lastErr.Load().(string) }

// Run waits until the resource is served, then reads it until ctx ends.
func (i *Informer) Run(ctx context.Context, h Handler) error {
	if err := i.waitServed(ctx); err != nil {
		return err
	}
	// The resync hands on again what could not be written (its fingerprint was forgotten); Timed
	// parsers also need it to see time pass.
	resync := i.resync
	if t, ok := i.parser.(Timed); ok {
		resync = min(resync, t.ResyncPeriod())
	}
	inf := cache.NewSharedIndexInformerWithOptions(i.lw, &unstructured.Unstructured{},
		cache.SharedIndexInformerOptions{ResyncPeriod: resync, ObjectDescription: i.cfg.GVR.String()})
	if err := inf.SetTransform(i.transform); err != nil {
		return fmt.Errorf("setting transform: %w", err)
	}
	if _, err := inf.AddEventHandlerWithOptions(cache.ResourceEventHandlerDetailedFuncs{
		AddFunc: func(obj any, listed bool) {
			how := watched
			if listed {
				how = relisted
				if !i.waitListed(ctx) {
					return
				}
			} else {
				i.delivered(obj)
				how = i.watchedHow(obj)
			}
			i.handle(ctx, h, obj, how)
		},
		UpdateFunc: func(_, obj any) { i.handle(ctx, h, obj, i.watchedHow(obj)) },
		DeleteFunc: i.forget,
	}, cache.HandlerOptions{ResyncPeriod: &resync}); err != nil {
		return fmt.Errorf("adding handler: %w", err)
	}
	store := inf.GetIndexer()
	i.store.Store(&store)
	if i.listedAfter != nil {
		go func() {
			if i.waitListed(ctx) {
				i.letThrough.Store(true)
			}
		}()
	}
	bctx, endBridge := context.WithCancel(ctx)
	defer endBridge()
	if b, ok := i.lw.(Bridging); ok {
		lw := b.Bridge()
		var after <-chan struct{}
		if held, ok := lw.(BridgeHolding); ok {
			after = held.BridgedAfter()
		}
		go i.bridge(bctx, h, &signalWatch{ListerWatcher: lw, opened: func() { i.watching.Store(true) }}, after)
	} else {
		endBridge()
	}
	go func() {
		if cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) && i.waitListed(ctx) {
			endBridge()
			if i.inherited != nil {
				i.pruneGone(inf.GetStore())
			}
			i.synced.Store(true)
			i.log.Info("informer synced")
		}
	}()
	inf.RunWithContext(ctx)
	return nil
}

// watchedHow is how a change the informer's own watch delivered counts: as bridged, decided
// against the Observations known written, if it arrived while what the informer lists was held
// (Holding). Until then the member that read its namespace before may have written it too: the
// watch's events wait behind the held list, and a finding the bridge held as well is handed on
// by whichever comes first. (One that arrived a moment after the list was let through may count
// as held too: it is only looked up among the Observations known written.)
func (i *Informer) watchedHow(obj any) arrival {
	if p, ok := obj.(*parsed); ok && p.arrivedHeld {
		return bridged
	}
	return watched
}

// waitListed waits until the listed objects may be handed on (Holding); false if ctx ended first.
func (i *Informer) waitListed(ctx context.Context) bool { return waitFor(ctx, i.listedAfter) }

// waitFor waits until c is closed (nil: not at all); false if ctx ended first.
func waitFor(ctx context.Context, c <-chan struct{}) bool {
	if c == nil {
		return true
	}
	select {
	case <-c:
		return true
	case <-ctx.Done():
		return false
	}
}

// bridge hands on what changes in the informer's namespaces from now until ctx ends (the informer
// has synced), once after is closed (BridgeHolding; nil: at once): see Bridging. Objects both
// deliver are handed on once, as both record in handed; what the bridge still holds when it ends
// reaches the informer through its own list or watch.
func (i *Informer) bridge(ctx context.Context, h Handler, lw cache.ListerWatcher, after <-chan struct{}) {
	inf := cache.NewSharedIndexInformerWithOptions(lw, &unstructured.Unstructured{},
		cache.SharedIndexInformerOptions{ObjectDescription: i.cfg.GVR.String() + " (bridge)"})
	if err := inf.SetTransform(i.transform); err != nil {
		i.log.Warn("not bridging the list", "error", err)
		return
	}
	var changes atomic.Int64
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			changes.Add(1)
			i.delivered(obj)
			if waitFor(ctx, after) {
				i.handle(ctx, h, obj, bridged)
			}
		},
		UpdateFunc: func(_, obj any) {
			changes.Add(1)
			if waitFor(ctx, after) {
				i.handle(ctx, h, obj, bridged)
			}
		},
		DeleteFunc: i.forget,
	}); err != nil {
		i.log.Warn("not bridging the list", "error", err)
		return
	}
	began := time.Now()
	inf.RunWithContext(ctx)
	i.log.Info("list bridged", "changes", changes.Load(), "seconds", time.Since(began).Seconds())
}

// signalWatch is a ListerWatcher that calls opened each time a watch through it opens.
type signalWatch struct {
	cache.ListerWatcher
	opened func()
}

// ListWithContext implements cache.ListerWithContext.
func (s *signalWatch) ListWithContext(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
	return cache.ToListerWithContext(s.ListerWatcher).ListWithContext(ctx, o)
}

// Watch implements cache.Watcher.
func (s *signalWatch) Watch(o metav1.ListOptions) (watch.Interface, error) {
	return s.WatchWithContext(context.Background(), o)
}

// WatchWithContext implements cache.WatcherWithContext. The API server has registered the watch
// once it answers the request.
func (s *signalWatch) WatchWithContext(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
	w, err := cache.ToWatcherWithContext(s.ListerWatcher).WatchWithContext(ctx, o)
	if err == nil && ctx.Err() == nil {
		s.opened()
	}
	return w, err
}

// IsWatchListSemanticsUnSupported passes on the wrapped ListerWatcher's answer: a bridge wants no
// initial events.
func (s *signalWatch) IsWatchListSemanticsUnSupported() bool {
	u, ok := s.ListerWatcher.(interface{ IsWatchListSemanticsUnSupported() bool })
	return ok && u.IsWatchListSemanticsUnSupported()
}

// waitServed polls discovery until the API server serves the resource: a tool that is not installed
// yet (its CRD missing) is waited for and reported, not treated as a crash.
func (i *Informer) waitServed(ctx context.Context) error {
	gv := i.cfg.GVR.GroupVersion().String()
	delay := time.Second
	for {
		err := i.served(gv)
		if err == nil {
			if i.Waiting() != "" {
				i.log.Info("resource is served now; starting")
			}
			i.waiting.Store("")
			return nil
		}
		msg := fmt.Sprintf("waiting for %s to be served (is the tool's CRD installed?): %v", i.cfg.GVR.String(), err)
		if i.Waiting() != msg {
			i.log.Warn(msg)
		}
		i.waiting.Store(msg)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
		delay = min(2*delay, 30*time.Second)
	}
}

func (i *Informer) served(gv string) error {
	list, err := i.discovery.ServerResourcesForGroupVersion(gv)
	if err != nil {
		return err
	}
	for _, r := range list.APIResources {
		if r.Name == i.cfg.GVR.Resource {
			return nil
		}
	}
	return fmt.Errorf("%s does not serve %s", gv, i.cfg.GVR.Resource)
}

func (i *Informer) listerWatcher() cache.ListerWatcher {
	ns := metav1.NamespaceAll
	if len(i.cfg.Namespaces) == 1 {
		ns = i.cfg.Namespaces[0]
	}
	ri := i.client.Resource(i.cfg.GVR).Namespace(ns)
	opts := func(o *metav1.ListOptions) {
		if i.cfg.LabelSelector != "" {
			o.LabelSelector = i.cfg.LabelSelector
		}
		if i.cfg.FieldSelector != "" {
			o.FieldSelector = i.cfg.FieldSelector
		}
	}
	var lw cache.ListerWatcher = &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			opts(&o)
			return ri.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			opts(&o)
			return ri.Watch(ctx, o)
		},
	}
	if i.wrap != nil {
		lw = i.wrap(lw)
	}
	return lw
}

// parsed is what the cache holds of an object: its identity and its findings.
type parsed struct {
	metav1.TypeMeta
	metav1.ObjectMeta
	findings []*pipeline.Event
	// arrivedHeld is set when the object reached the informer while what it lists was held
	// (watchedHow).
	arrivedHeld bool
	// raw is kept for Timed parsers only, to parse again at resync.
	raw *unstructured.Unstructured
}

// DeepCopyObject implements runtime.Object. A parsed object is never modified once cached, so
// copies share its findings.
func (p *parsed) DeepCopyObject() runtime.Object {
	c := *p
	return &c
}

// transform parses an object on its way into the cache.
func (i *Informer) transform(obj any) (any, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return obj, nil
	}
	p := &parsed{ObjectMeta: metav1.ObjectMeta{
		Name: u.GetName(), Namespace: u.GetNamespace(), UID: u.GetUID(), ResourceVersion: u.GetResourceVersion(),
		CreationTimestamp: u.GetCreationTimestamp(),
	}, arrivedHeld: i.listedAfter != nil && !i.letThrough.Load()}
	if len(i.cfg.Namespaces) > 1 && !slices.Contains(i.cfg.Namespaces, u.GetNamespace()) {
		return p, nil
	}
	if _, ok := i.parser.(Timed); ok {
		u.SetManagedFields(nil)
		p.raw = u
	}
	p.findings = i.parse(u)
	return p, nil
}

// parse runs the parser, turning a panic or an error into a counted, logged malformed object.
func (i *Informer) parse(u *unstructured.Unstructured) (out []*pipeline.Event) {
	defer func() {
		if r := recover(); r != nil {
			i.malformed(u, fmt.Errorf("parser panicked: %v", r))
			out = nil
		}
	}()
	findings, err := i.parser.ParseObject(u)
	if err != nil {
		i.malformed(u, err)
		return nil
	}
	for _, f := range findings {
		f.Source = i.cfg.Source
		f.FP = pipeline.Fingerprint(f)
	}
	return findings
}

func (i *Informer) malformed(u *unstructured.Unstructured, err error) {
	i.metrics.SourceEventsIgnored.WithLabelValues(i.cfg.Source, "malformed").Inc()
	msg := fmt.Sprintf("%s %s/%s: %v", u.GetKind(), u.GetNamespace(), u.GetName(), err)
	i.lastErr.Store(msg)
	i.log.Warn("malformed object", "error", msg)
}

// delivered records how long after its creation the watch brought obj. The creation time has
// whole seconds, so the figure runs up to a second long: it shows a watch that lags, not
// milliseconds.
func (i *Informer) delivered(obj any) {
	p, ok := obj.(*parsed)
	if !ok || p.CreationTimestamp.IsZero() {
		return
	}
	i.metrics.WatchDelivery.WithLabelValues(i.cfg.Source).Observe(max(0, time.Since(p.CreationTimestamp.Time).Seconds()))
}

// arrival is how an object reached the informer.
type arrival int

const (
	// watched: its watch delivered a change.
	watched arrival = iota
	// relisted: it came with the informer's first list.
	relisted
	// bridged: the bridge's watch delivered a change while the first list was under way.
	bridged
	// retried: a finding of it could not be written, and the informer hands it on again.
	retried
)

// handle hands on the findings of obj that were not handed on for it before.
func (i *Informer) handle(ctx context.Context, h Handler, obj any, how arrival) {
	p, ok := obj.(*parsed)
	if !ok {
		return
	}
	if !i.reads(p.Namespace) {
		return // left the share (a resync before Narrow): its new owner reads it, or another informer
	}
	findings := p.findings
	if p.raw != nil {
		findings = i.parse(p.raw) // a Timed parser: the findings depend on now
	}
	fps := make([]uint64, len(findings))
	for k, f := range findings {
		fps[k] = f.FP
	}
	slices.Sort(fps)
	prev := i.handed.swap(p.UID, p.Namespace, fps)
	var withdrawn func() bool
	if owns, ns := i.cfg.Owns, p.Namespace; owns != nil {
		withdrawn = func() bool { return !owns(ns) }
	}
	for _, f := range findings {
		if _, found := slices.BinarySearch(prev, f.FP); found {
			continue
		}
		ev := *f // the cached finding stays as it is; the pipeline works on a copy
		ev.Relisted = how != watched
		if ev.Stateful {
			// Only a state's claim is this replica's alone: a finding that claimed in the shared
			// tier would hold the new owner's copy back as a duplicate until the claim is given
			// back, and be lost if it was dropped here first.
			ev.Withdrawn = withdrawn
		}
		if how == relisted {
			i.metrics.FindingsRelisted.WithLabelValues(i.cfg.Source).Inc()
		}
		uid, fp := p.UID, f.FP
		ev.Done = func(o pipeline.Outcome, err error) {
			// Not written, failed, held back by the source's rate limit or handed over: the next
			// resync (or list, should the namespace come back) hands it on again, and a failed
			// write is tried again sooner. (Filtered and deduplicated findings are decided;
			// written ones are done.)
			switch o {
			case pipeline.OutcomeFailed, pipeline.OutcomeRateLimited, pipeline.OutcomeHandedOver:
				i.forgetFinding(uid, fp)
			case pipeline.OutcomeWritten:
				i.retries.reset(p)
			}
			if o == pipeline.OutcomeFailed && retryable(err) && ctx.Err() == nil {
				i.retryLater(ctx, h, objectKey(p), uid)
			}
		}
		if err := h.Handle(ctx, &ev); err != nil {
			i.forgetFinding(uid, fp)
			if ctx.Err() != nil {
				return
			}
			i.log.Error("handing on finding", "object", p.Namespace+"/"+p.Name, "error", err)
			continue
		}
		i.seen.Add(1)
	}
}

// forgetFinding removes one fingerprint from what was handed on for an object.
func (i *Informer) forgetFinding(uid types.UID, fp uint64) { i.handed.forgetFinding(uid, fp) }

func (i *Informer) forget(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	if p, ok := obj.(*parsed); ok {
		i.handed.forget(p.UID)
		i.retries.reset(p)
	}
}
