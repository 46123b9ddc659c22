package ingester

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/metrics"
	"github.com/kube-zen/zen-watcher/pkg/pipeline"
	"github.com/kube-zen/zen-watcher/pkg/server"
	"github.com/kube-zen/zen-watcher/pkg/sources"
)

// Config holds what the Manager needs.
type Config struct {
	Dynamic   dynamic.Interface
	Discovery discovery.DiscoveryInterface
	Secrets   SecretReader
	Pipeline  *pipeline.Pipeline
	Webhooks  *server.Webhooks
	// Defaults is the processing of every source, before its Ingester's processing block.
	Defaults pipeline.SourceConfig
	// Wrap decorates every informer's ListerWatcher (sharding); nil for none.
	Wrap sources.WrapListerWatcher
	// Owns reports whether this replica owns a namespace in its share now; a reshard keeps what
	// was handed on in those, and findings in the others are withdrawn before they are written.
	// Nil keeps nothing and withdraws nothing.
	Owns    func(namespace string) bool
	Metrics *metrics.Metrics
	Log     *slog.Logger
	// StatusInterval is how often Ingester status is written when it changed (default 5s).
	StatusInterval time.Duration
	// DisableDefaults keeps the default sources from running at all. Otherwise each runs unless an
	// Ingester reads the same tool (has its adapter), which then replaces it.
	DisableDefaults bool
	// SecretRefresh is how often webhook credentials are read again from their Secrets (30s).
	SecretRefresh time.Duration
	// Self is the user this replica's API requests are made as; the audit source ignores its
	// requests unless an Ingester asks for them (adapterOptions.includeOwnRequests).
	Self string
	// Shared, when replicas share the work, is where the status counts come from: one replica
	// (the leader) writes every Ingester's status with everyone's counts, and the others none.
	// Nil: this replica is alone and writes its own.
	Shared SharedCounts
}

// SharedCounts is the counts of every replica, for a status that speaks for all of them.
type SharedCounts interface {
	// Counts returns source's findings seen and Observations written summed over the live
	// replicas, and false when this replica is not the one that writes status.
	Counts(source string) (seen, written int64, ok bool)
}

// Manager runs the sources the Ingesters describe.
type Manager struct {
	cfg   Config
	log   *slog.Logger
	queue workqueue.TypedRateLimitingInterface[string]
	store cache.Store

	mu      sync.Mutex
	runners map[string]*runner // by Ingester key (namespace/name), or "defaults/..." for the default set
	synced  bool
	// defaulted is set once the default set has been reconciled.
	defaulted bool
	// firstPass holds the Ingesters that existed at start and are not reconciled yet; when it
	// empties, every webhook route they make is registered.
	firstPass map[string]bool
	statuses  map[string]v1alpha1.IngesterStatus // last written, by key
	// pieces decorate the ListerWatchers of each set of informers a source runs: one per piece of
	// the replica's share (see Reshard and Extend), Config.Wrap alone until the first Reshard.
	pieces []sources.WrapListerWatcher
}

// Queue keys that are not Ingesters: reconsider the default set; restart the informers on a new share.
const (
	defaultsKey = "\x00defaults"
	reshardKey  = "\x00reshard"
)

// NewManager returns a Manager; call Run.
func NewManager(cfg Config) *Manager {
	if cfg.StatusInterval <= 0 {
		cfg.StatusInterval = 5 * time.Second
	}
	if cfg.SecretRefresh <= 0 {
		cfg.SecretRefresh = 30 * time.Second
	}
	return &Manager{
		cfg:      cfg,
		log:      cfg.Log.With("component", "ingester"),
		queue:    workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]()),
		runners:  map[string]*runner{},
		statuses: map[string]v1alpha1.IngesterStatus{},
		pieces:   []sources.WrapListerWatcher{cfg.Wrap},
	}
}

// Run watches Ingesters and keeps the sources in step until ctx ends; then it stops every source.
func (m *Manager) Run(ctx context.Context) error {
	ri := m.cfg.Dynamic.Resource(v1alpha1.IngesterResource)
	inf := cache.NewSharedIndexInformer(&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return ri.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return ri.Watch(ctx, o)
		},
	}, &unstructured.Unstructured{}, 0, cache.Indexers{})
	m.store = inf.GetStore()
	enqueue := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			m.queue.Add(key)
		}
		m.queue.Add(defaultsKey)
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueue, UpdateFunc: func(_, obj any) { enqueue(obj) }, DeleteFunc: enqueue,
	}); err != nil {
		return fmt.Errorf("watching Ingesters: %w", err)
	}
	go inf.RunWithContext(ctx)
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return nil
	}
	m.mu.Lock()
	m.synced = true
	m.firstPass = map[string]bool{}
	for _, key := range m.store.ListKeys() {
		m.firstPass[key] = true
	}
	m.mu.Unlock()
	m.reconciled("")
	if m.cfg.DisableDefaults {
		m.log.Info("default sources turned off: only Ingesters run")
	}
	m.queue.Add(defaultsKey)
	go m.statusLoop(ctx)
	go m.refreshLoop(ctx)
	go func() {
		<-ctx.Done()
		m.queue.ShutDown()
	}()
	for m.processNext(ctx) {
	}
	m.stopAll()
	return nil
}

func (m *Manager) processNext(ctx context.Context) bool {
	key, quit := m.queue.Get()
	if quit {
		return false
	}
	defer m.queue.Done(key)
	defer m.reconciled(key)
	if err := m.reconcile(ctx, key); err != nil {
		m.log.Warn("reconciling ingester; retrying", "ingester", key, "error", err)
		m.queue.AddRateLimited(key)
		return true
	}
	m.queue.Forget(key)
	return true
}

// reconciled notes key's first reconcile (its success or its error: a route that cannot start is
// no route either way) and, once every Ingester that existed at start has had one, tells the
// webhooks that their routes are loaded.
func (m *Manager) reconciled(key string) {
	m.mu.Lock()
	if m.firstPass == nil {
		m.mu.Unlock()
		return
	}
	delete(m.firstPass, key)
	done := len(m.firstPass) == 0
	if done {
		m.firstPass = nil
	}
	m.mu.Unlock()
	if done && m.cfg.Webhooks != nil {
		m.cfg.Webhooks.RoutesLoaded()
	}
}

// reconcile brings the runner of one Ingester (or the default set) in line with the spec.
func (m *Manager) reconcile(ctx context.Context, key string) error {
	switch key {
	case defaultsKey:
		err := m.reconcileDefaults(ctx)
		m.mu.Lock()
		m.defaulted = m.defaulted || err == nil
		m.mu.Unlock()
		return err
	case reshardKey:
		m.restartInformers(ctx)
		return nil
	}
	obj, exists, err := m.store.GetByKey(key)
	if err != nil {
		return err
	}
	if !exists {
		m.stop(key)
		return nil
	}
	ing := &v1alpha1.Ingester{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.(*unstructured.Unstructured).Object, ing); err != nil {
		m.fail(key, ing, fmt.Errorf("decoding Ingester: %w", err))
		return nil
	}
	m.apply(ctx, key, ing)
	return nil
}

// apply puts an Ingester in force: processing first (a bad one leaves the old in force), then the
// source itself, restarted only if what it reads changed.
func (m *Manager) apply(ctx context.Context, key string, ing *v1alpha1.Ingester) {
	if !isDefaultKey(key) {
		m.stopReplacedDefaults(key, ing)
	}
	if other := m.processingConflict(key, ing); other != "" {
		m.fail(key, ing, fmt.Errorf("source %q is also configured by Ingester %s with a different processing or TTL; "+
			"Ingesters that share a source must agree on them", ing.Spec.Source, other))
		return
	}
	if err := m.cfg.Pipeline.Configure(ing.Spec.Source, pipeline.FromIngester(&ing.Spec, m.sourceDefaults(ing.Spec.Adapter))); err != nil {
		m.fail(key, ing, err)
		return
	}
	m.mu.Lock()
	cur := m.runners[key]
	m.mu.Unlock()
	if cur != nil && cur.plan.key == restartKey(&ing.Spec) {
		cur.setIngester(ing, m.refreshCredentials(ctx, cur, ing))
		return
	}
	p, err := planFor(ctx, ing, m.cfg.Secrets, m.cfg.Self)
	if err != nil {
		m.fail(key, ing, err)
		return
	}
	m.stopRunner(key, false)
	r, err := m.startRunner(ctx, key, p, nil)
	if err != nil {
		m.fail(key, ing, err)
		return
	}
	r.setIngester(ing, nil)
	m.log.Info("source started", "ingester", key, "source", p.source)
}

// refreshCredentials reads a running webhook's Secret again and serves the route with what it
// holds now, so that a rotated token, key or CA takes effect without a restart. An unreadable
// Secret keeps the credentials in force and is reported in the status.
func (m *Manager) refreshCredentials(ctx context.Context, r *runner, ing *v1alpha1.Ingester) error {
	if r.plan.webhook == nil || ing.Spec.Webhook == nil {
		return nil
	}
	auth, err := webhookAuth(ctx, ing, m.cfg.Secrets)
	if err != nil {
		return err
	}
	route := *r.plan.webhook
	route.Auth = auth
	return m.cfg.Webhooks.Register(route)
}

// refreshLoop queues, every SecretRefresh, the Ingesters of running webhooks, to pick up rotated
// credentials, and the Ingesters that could not be applied, so that one created before its Secret
// (or whose Secret was fixed) starts without being touched.
func (m *Manager) refreshLoop(ctx context.Context) {
	t := time.NewTicker(m.cfg.SecretRefresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		m.mu.Lock()
		for key, r := range m.runners {
			if (r.plan.webhook != nil || r.specError() != nil) && !isDefaultKey(key) {
				m.queue.Add(key)
			}
		}
		m.mu.Unlock()
	}
}

// Reshard restarts every informer source as one set of informers per resource, narrowed by wrap,
// so that each lists what the replica owns now. What each handed on in the namespaces that stay is
// kept (Config.Owns), so the re-list hands on only the findings of namespaces new to this replica;
// deterministic names and dedup make those create nothing twice. Called before Run, it only sets
// what the sources start with.
func (m *Manager) Reshard(wrap sources.WrapListerWatcher) {
	m.mu.Lock()
	m.pieces = []sources.WrapListerWatcher{wrap}
	m.mu.Unlock()
	m.queue.Add(reshardKey)
}

// Extend adds to every informer source a set of informers narrowed by wrap, to the ranges the
// replica's share gained, and has the running ones forget what it lost (Narrow): a gain lists the
// namespaces new to the replica and nothing it has read all along.
func (m *Manager) Extend(wrap sources.WrapListerWatcher) {
	m.mu.Lock()
	m.pieces = append(m.pieces, wrap)
	n := 0
	for _, r := range m.runners {
		if r.plan.webhook != nil || r.cancel == nil {
			continue
		}
		m.addPiece(r, wrap)
		n++
	}
	m.mu.Unlock()
	m.log.Info("sources extended to the ranges gained", "sources", n)
	m.Narrow()
}

// Narrow has every informer source forget the objects of the namespaces the replica no longer
// owns; for a share that only shrank, which the informers keep reading without a restart.
func (m *Manager) Narrow() {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, r := range m.runners {
		for _, inf := range r.all() {
			n += inf.Narrow()
		}
	}
	m.log.Info("sources narrowed to the new share", "forgotten", n)
}

func (m *Manager) restartInformers(ctx context.Context) {
	m.mu.Lock()
	var keys []string
	for k, r := range m.runners {
		if len(r.plan.informers) > 0 && r.cancel != nil {
			keys = append(keys, k)
		}
	}
	m.mu.Unlock()
	for _, k := range keys {
		m.mu.Lock()
		old := m.runners[k]
		m.mu.Unlock()
		if old == nil {
			continue
		}
		ing, err := old.ingester(), old.err()
		m.stopRunner(k, false)
		r, serr := m.startRunner(ctx, k, old.plan, old)
		if serr != nil {
			m.log.Warn("restarting source after a rebalance", "ingester", k, "error", serr)
			continue
		}
		r.setIngester(ing, err)
	}
	m.log.Info("sources restarted on the new share", "sources", len(keys))
}

// fail records an error for an Ingester's status; a source already running goes on as it was.
func (m *Manager) fail(key string, ing *v1alpha1.Ingester, err error) {
	m.mu.Lock()
	r := m.runners[key]
	if r == nil {
		r = &runner{plan: &plan{source: ing.Spec.Source}}
		m.runners[key] = r
	}
	m.mu.Unlock()
	// A failed Ingester is tried again every refresh: say so once per distinct error, not each time.
	if prev := r.specError(); prev == nil || prev.Error() != err.Error() {
		var wait *secretMissing
		if errors.As(err, &wait) {
			m.log.Info("ingester waits for its Secret; its webhook starts when the Secret appears", "ingester", key,
				"secret", wait.namespace+"/"+wait.name, "key", wait.key)
		} else {
			m.log.Warn("ingester not applied", "ingester", key, "error", err)
		}
	}
	r.setIngester(ing, err)
}

// processingConflict returns the key of another Ingester of the same source whose processing or
// TTL differs, or "".
func (m *Manager) processingConflict(key string, ing *v1alpha1.Ingester) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, r := range m.runners {
		other := r.ingester()
		if k == key || other == nil || other.Spec.Source != ing.Spec.Source || other.Namespace == "" {
			continue
		}
		if !reflect.DeepEqual(other.Spec.Processing, ing.Spec.Processing) ||
			!reflect.DeepEqual(other.Spec.TTLSecondsAfterCreation, ing.Spec.TTLSecondsAfterCreation) {
			return k
		}
	}
	return ""
}

// sourceDefaults adjusts the daemon's defaults per adapter: Warning Events repeat, so they get
// event-stream dedup unless configured otherwise.
func (m *Manager) sourceDefaults(a v1alpha1.Adapter) pipeline.SourceConfig {
	d := m.cfg.Defaults
	if a == v1alpha1.AdapterK8sEvents && d.Dedup != nil {
		dd := *d.Dedup
		dd.Strategy = v1alpha1.DedupEventStream
		d.Dedup = &dd
	}
	return d
}

// reconcileDefaults runs each default source unless the defaults are off or an Ingester reads
// the same tool, and says which run and why: creating an Ingester for one tool must not silently
// turn off the others.
func (m *Manager) reconcileDefaults(ctx context.Context) error {
	replaced := m.adapters()
	for _, d := range defaultIngesters() {
		key := "defaults/" + d.Name
		by, isReplaced := replaced[d.Spec.Adapter]
		m.mu.Lock()
		running := m.runners[key] != nil
		m.mu.Unlock()
		switch {
		case m.cfg.DisableDefaults:
			// Nothing ever started; said once at start.
		case !isReplaced && !running:
			m.log.Info("default source runs: no Ingester reads this tool", "source", d.Spec.Source,
				"resource", strings.TrimSuffix(d.Spec.Informer.Resource+"."+d.Spec.Informer.Group, "."))
			m.apply(ctx, key, d)
		case isReplaced && running:
			m.log.Info("default source stopped: an Ingester reads this tool", "source", d.Spec.Source, "ingester", by)
			m.stop(key)
		}
	}
	return nil
}

// adapters maps each adapter that an Ingester uses to one such Ingester's key.
func (m *Manager) adapters() map[v1alpha1.Adapter]string {
	out := map[v1alpha1.Adapter]string{}
	for _, obj := range m.store.List() {
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			continue
		}
		if a, _, _ := unstructured.NestedString(u.Object, "spec", "adapter"); a != "" {
			out[v1alpha1.Adapter(a)] = u.GetNamespace() + "/" + u.GetName()
		}
	}
	return out
}

// stopReplacedDefaults stops the default sources of an Ingester's tool before the Ingester starts,
// so that the two never read the same objects at once.
func (m *Manager) stopReplacedDefaults(key string, ing *v1alpha1.Ingester) {
	for _, d := range defaultIngesters() {
		dk := "defaults/" + d.Name
		m.mu.Lock()
		running := m.runners[dk] != nil
		m.mu.Unlock()
		if running && d.Spec.Adapter == ing.Spec.Adapter {
			m.log.Info("default source stopped: an Ingester reads this tool", "source", d.Spec.Source, "ingester", key)
			m.stop(dk)
		}
	}
}

func isDefaultKey(k string) bool { return len(k) > 9 && k[:9] == "defaults/" }

// startRunner runs a plan's informers, one set per piece of the share, or registers its webhook,
// and makes it key's runner: at once, so that a piece added meanwhile (Extend) is added to it too.
// Restarted on a new share, the informers inherit what prev's (the same plan's, stopped) handed on
// in the namespaces this replica still owns.
func (m *Manager) startRunner(ctx context.Context, key string, p *plan, prev *runner) (*runner, error) {
	r := newRunner(ctx, p)
	if p.webhook != nil {
		if err := m.cfg.Webhooks.Register(*p.webhook); err != nil {
			r.stop()
			return nil, err
		}
		r.webhooks = m.cfg.Webhooks
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, wrap := range m.pieces {
		if k == 0 {
			m.firstPiece(r, wrap, prev)
		} else {
			m.addPiece(r, wrap)
		}
	}
	m.runners[key] = r
	return r, nil
}

// firstPiece starts r's first set of informers, which inherit what prev's handed on.
func (m *Manager) firstPiece(r *runner, wrap sources.WrapListerWatcher, prev *runner) {
	var inherit []*sources.Informer
	if prev != nil && m.cfg.Owns != nil {
		inherit = prev.first()
	}
	for k, ip := range r.plan.informers {
		inf := m.newInformer(ip, wrap)
		if k < len(inherit) {
			inf.Inherit(inherit[k], m.cfg.Owns)
		}
		r.add(inf, m.cfg.Pipeline)
	}
}

// addPiece starts a set of informers beside r's first, recording what they hand on with it.
// Called with mu held.
func (m *Manager) addPiece(r *runner, wrap sources.WrapListerWatcher) {
	first := r.first()
	for k, ip := range r.plan.informers {
		inf := m.newInformer(ip, wrap)
		inf.Join(first[k])
		r.add(inf, m.cfg.Pipeline)
	}
}

func (m *Manager) newInformer(ip informerPlan, wrap sources.WrapListerWatcher) *sources.Informer {
	cfg := ip.cfg
	cfg.Owns = m.cfg.Owns
	return sources.NewInformer(cfg, m.cfg.Dynamic, m.cfg.Discovery, ip.parser, wrap, m.cfg.Metrics, m.cfg.Log)
}

// stop ends the runner of key, waits for it, and forgets its source's processing unless another
// Ingester still uses the source.
func (m *Manager) stop(key string) { m.stopRunner(key, true) }

func (m *Manager) stopRunner(key string, forget bool) {
	m.mu.Lock()
	r := m.runners[key]
	delete(m.runners, key)
	m.mu.Unlock()
	if r == nil {
		return
	}
	r.stop()
	m.cfg.Metrics.SourceReady.DeleteLabelValues(r.plan.source)
	if forget && !m.sourceInUse(r.plan.source) {
		m.cfg.Pipeline.Remove(r.plan.source)
	}
	m.log.Info("source stopped", "ingester", key, "source", r.plan.source)
}

func (m *Manager) sourceInUse(source string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range m.runners {
		if r.plan.source == source {
			return true
		}
	}
	return false
}

func (m *Manager) stopAll() {
	m.mu.Lock()
	keys := make([]string, 0, len(m.runners))
	for k := range m.runners {
		keys = append(keys, k)
	}
	m.mu.Unlock()
	for _, k := range keys {
		m.stop(k)
	}
}

// Ready reports whether the Ingesters have been read and every running source has read its objects
// (a source waiting for a tool that is not installed does not hold readiness back).
func (m *Manager) Ready() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.synced {
		return fmt.Errorf("ingesters not read yet")
	}
	var waiting []string
	for k, r := range m.runners {
		if ok, _, _ := r.ready(); !ok && r.waitingReason() == "" && r.err() == nil {
			waiting = append(waiting, k)
		}
	}
	if len(waiting) > 0 {
		sort.Strings(waiting)
		return fmt.Errorf("sources not synced: %v", waiting)
	}
	return nil
}

// Watching reports whether every informer source watches what changes in its namespaces from now
// on (sources.Informer.Watching), though their lists may still run: false until the Ingesters
// have been read and the sources they and the default set describe have started.
func (m *Manager) Watching() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.synced || m.firstPass != nil || !m.defaulted {
		return false
	}
	for _, r := range m.runners {
		for _, inf := range r.all() {
			if !inf.Watching() {
				return false
			}
		}
	}
	return true
}

// statusLoop writes each Ingester's status when it changed.
func (m *Manager) statusLoop(ctx context.Context) {
	t := time.NewTicker(m.cfg.StatusInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.writeStatuses(ctx)
		}
	}
}

func (m *Manager) writeStatuses(ctx context.Context) {
	m.mu.Lock()
	runners := make(map[string]*runner, len(m.runners))
	for k, r := range m.runners {
		runners[k] = r
	}
	m.mu.Unlock()
	for key, r := range runners {
		ready, _, _ := r.ready()
		val := 0.0
		if ready {
			val = 1
		}
		m.cfg.Metrics.SourceReady.WithLabelValues(r.plan.source).Set(val)
		ing := r.ingester()
		if ing == nil || isDefaultKey(key) {
			continue
		}
		st := m.status(r, ing)
		if m.cfg.Shared != nil {
			seen, written, ok := m.cfg.Shared.Counts(ing.Spec.Source)
			if !ok {
				// Another replica writes; when this one writes again it must not skip a status
				// it wrote long ago that another has since overwritten.
				m.mu.Lock()
				clear(m.statuses)
				m.mu.Unlock()
				continue
			}
			st.EventsSeen, st.ObservationsWritten = seen, written
		}
		m.mu.Lock()
		prev, known := m.statuses[key]
		m.mu.Unlock()
		if known && statusEqual(prev, st) {
			continue
		}
		if err := m.updateStatus(ctx, ing, st); err != nil {
			if !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
				m.log.Warn("writing ingester status", "ingester", key, "error", err)
			}
			continue
		}
		m.mu.Lock()
		m.statuses[key] = st
		m.mu.Unlock()
	}
}

// Seen returns the findings the runners of source produced on this replica, the default set's
// included.
func (m *Manager) Seen(source string) int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	var n int64
	for _, r := range m.runners {
		if r.plan.source == source {
			n += r.seen()
		}
	}
	return n
}

// status computes an Ingester's status from its runner, the pipeline and the webhooks.
func (m *Manager) status(r *runner, ing *v1alpha1.Ingester) v1alpha1.IngesterStatus {
	src := ing.Spec.Source
	st := v1alpha1.IngesterStatus{
		ObservedGeneration:  ing.Generation,
		EventsSeen:          r.seen(),
		ObservationsWritten: int64(m.cfg.Pipeline.Written(src)),
		Order:               m.cfg.Pipeline.Order(src),
		Conditions:          ing.Status.Conditions,
	}
	cond := metav1.Condition{Type: "Ready", ObservedGeneration: ing.Generation}
	ready, reason, msg := r.ready()
	var wait *secretMissing
	switch {
	case errors.As(r.err(), &wait):
		cond.Status, cond.Reason = metav1.ConditionFalse, "WaitingForSecret"
		cond.Message = wait.Error() + "; the webhook starts when it appears"
	case r.err() != nil:
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, "InvalidSpec", r.err().Error()
		st.LastError = r.err().Error()
	case ready:
		cond.Status, cond.Reason, cond.Message = metav1.ConditionTrue, reason, msg
	default:
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, reason, msg
	}
	if st.LastError == "" {
		st.LastError = r.lastObjectError()
	}
	meta.SetStatusCondition(&st.Conditions, cond)
	return st
}

// statusEqual compares statuses, ignoring condition transition times.
func statusEqual(a, b v1alpha1.IngesterStatus) bool {
	strip := func(s v1alpha1.IngesterStatus) v1alpha1.IngesterStatus {
		c := s
		c.Conditions = nil
		for _, cond := range s.Conditions {
			cond.LastTransitionTime = metav1.Time{}
			c.Conditions = append(c.Conditions, cond)
		}
		return c
	}
	return reflect.DeepEqual(strip(a), strip(b))
}

func (m *Manager) updateStatus(ctx context.Context, ing *v1alpha1.Ingester, st v1alpha1.IngesterStatus) error {
	obj, exists, err := m.store.GetByKey(ing.Namespace + "/" + ing.Name)
	if err != nil || !exists {
		return apierrors.NewNotFound(v1alpha1.IngesterResource.GroupResource(), ing.Name)
	}
	u := obj.(*unstructured.Unstructured).DeepCopy()
	stMap, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&st)
	if err != nil {
		return err
	}
	u.Object["status"] = stMap
	_, err = m.cfg.Dynamic.Resource(v1alpha1.IngesterResource).Namespace(ing.Namespace).UpdateStatus(ctx, u, metav1.UpdateOptions{})
	return err
}
