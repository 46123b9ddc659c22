package main

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/obsclient"
	"github.com/kube-zen/zen-watcher/pkg/pipeline"
)

// probeRate is how many findings a second the probe walks: enough for a steady P10 over a quick
// scenario, few enough to add a tenth at most to the API server's load.
const probeRate = 20

// writerWorkers is a replica's concurrent Observation creates (its -writer-workers default).
const writerWorkers = pipeline.DefaultWorkers

// probe walks a finding's path with a plain client: a tool object created, its Added event seen
// by a watch, an Observation created for it, that Observation's Added event seen (for a webhook
// source, the Observation created at once and seen). Nothing of zen-watcher is on the way.
//
// Alongside the load, it walks ConfigMaps (no Ingester of a scenario reads them: the probe adds
// no findings) and shares the seconds, the cores and the API server with the scenario, so its
// latency is what the scenario's would be if zen-watcher added nothing. A slow state of the
// machine slows both; a slower zen-watcher only the scenario, and that is what the scenario's
// bounds on the excess over the probe catch. As the raw path, it walks the scenario's own tool
// objects at the scenario's rate just before the load (see rawPath).
type probe struct {
	ns    string
	rate  float64
	kinds []pathKind
	// senders and writers bound the creates of tool objects and of Observations under way, as
	// the load's generator and the replicas' writers are bounded; nil for the light probe.
	senders, writers slots
	oc               *obsclient.Client
	cancel           context.CancelFunc
	quit             chan struct{} // closed by halt: the sender stops, the watches go on
	halt             func()
	done             sync.WaitGroup

	mu      sync.Mutex
	first   time.Time // the first send
	last    time.Time // the last arrival
	sentAt  map[string]time.Time
	latency []time.Duration
	// sourceOf is the source of each finding sent whose kind has one; bySource its latencies.
	sourceOf map[string]string
	bySource map[string][]time.Duration
	errs     int
	cut      []string // watches ended early
	firstErr error
}

// pathKind is a kind of tool object the probe creates, round robin; object nil is a webhook's
// path, with no object to watch. source, when set, is the Observations' source label of the
// findings the kind stands for: the walk reports the latency of each such source apart.
type pathKind struct {
	source string
	gvr    schema.GroupVersionResource
	object func(name, ns, key, sev string) *unstructured.Unstructured
}

// configMaps is the probe's kind alongside the load.
var configMaps = []pathKind{{gvr: schema.GroupVersionResource{Version: "v1", Resource: "configmaps"},
	object: func(name, ns, key, _ string) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "ConfigMap",
			"metadata": map[string]any{"name": name, "namespace": ns}, "data": map[string]any{"n": key}}}
	}}}

// startProbe starts the watches and the sender of rate findings a second in namespace ns, round
// robin over kinds, with at most senders tool objects and writers Observations being created at
// once (nil: no bound); stop ends them and returns what was measured.
func startProbe(ctx context.Context, e *env, ns string, rate float64, kinds []pathKind, senders, writers slots) (*probe, error) {
	p := &probe{ns: ns, rate: rate, kinds: kinds, senders: senders, writers: writers, sentAt: map[string]time.Time{},
		sourceOf: map[string]string{}, bySource: map[string][]time.Duration{}, quit: make(chan struct{})}
	p.halt = sync.OnceFunc(func() { close(p.quit) })
	if err := ensureNamespace(ctx, e, p.ns); err != nil {
		return nil, err
	}
	var err error
	if p.oc, err = obsclient.New(restConfig(e.cluster)); err != nil {
		return nil, err
	}
	// Cancelling ctx ends every watch below (retrying watchers stop with their context).
	ctx, p.cancel = context.WithCancel(ctx)
	follow := map[schema.GroupVersionResource]func(watch.Interface){
		v1alpha1.ObservationResource: p.arrive,
	}
	for _, k := range kinds {
		if k.object != nil {
			follow[k.gvr] = func(w watch.Interface) { p.relay(ctx, w) }
		}
	}
	for gvr, handle := range follow {
		w, err := p.watch(ctx, e, gvr)
		if err != nil {
			p.cancel()
			return nil, err
		}
		p.done.Go(func() { handle(w); p.closed(ctx, gvr.Resource) })
	}
	p.done.Go(func() { p.send(ctx, e) })
	return p, nil
}

// watch follows gvr in the probe's namespace from now on, reopening a watch the API server ends
// where it left off, as an informer would: on a saturated server, the API server ends watches
// whose reader falls behind.
func (p *probe) watch(ctx context.Context, e *env, gvr schema.GroupVersionResource) (watch.Interface, error) {
	ri := e.dyn.Resource(gvr).Namespace(p.ns)
	list, err := ri.List(ctx, metav1.ListOptions{Limit: 1})
	if err != nil {
		return nil, fmt.Errorf("listing the probe's %s: %w", gvr.Resource, err)
	}
	w, err := watchtools.NewRetryWatcherWithContext(ctx, list.GetResourceVersion(), &cache.ListWatch{
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) { return ri.Watch(ctx, o) },
	})
	if err != nil {
		return nil, fmt.Errorf("watching the probe's %s: %w", gvr.Resource, err)
	}
	return w, nil
}

// send creates an object every 1/rate seconds until the probe halts, each from its own goroutine
// so that a slow create does not delay the next.
func (p *probe) send(ctx context.Context, e *env) {
	tick := time.NewTicker(time.Duration(float64(time.Second) / p.rate))
	defer tick.Stop()
	var creates sync.WaitGroup
	defer creates.Wait()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-p.quit:
			return
		case <-tick.C:
		}
		k := p.kinds[i%len(p.kinds)]
		if k.object != nil && !p.senders.take(ctx, p.quit) {
			return
		}
		name := "probe-" + strconv.Itoa(i)
		p.mu.Lock()
		p.sentAt[name] = time.Now()
		if k.source != "" {
			p.sourceOf[name] = k.source
		}
		if i == 0 {
			p.first = p.sentAt[name]
		}
		p.mu.Unlock()
		creates.Go(func() {
			var err error
			if k.object == nil {
				err = p.observe(ctx, name, "Webhook")
			} else {
				err = e.create(ctx, k.gvr, k.object(name, p.ns, name, "medium"))
				p.senders.give()
			}
			if err != nil {
				p.failed(ctx, name, err)
			}
		})
	}
}

// slots bound how many calls are under way at once; nil bounds nothing.
type slots chan struct{}

// take waits for a free slot; false when ctx or stop ended the wait first.
func (s slots) take(ctx context.Context, stop <-chan struct{}) bool {
	if s == nil {
		return true
	}
	select {
	case s <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	case <-stop:
		return false
	}
}

func (s slots) give() {
	if s != nil {
		<-s
	}
}

// relay creates an Observation for each object the watch brings, as an Ingester would.
func (p *probe) relay(ctx context.Context, w watch.Interface) {
	var creates sync.WaitGroup
	defer creates.Wait()
	for ev := range w.ResultChan() {
		u, ok := ev.Object.(*unstructured.Unstructured)
		if !ok || ev.Type != watch.Added {
			continue
		}
		creates.Go(func() {
			if err := p.observe(ctx, u.GetName(), u.GetKind()); err != nil {
				p.failed(ctx, u.GetName(), err)
			}
		})
	}
}

// observe creates the Observation of the probe's finding name.
func (p *probe) observe(ctx context.Context, name, kind string) error {
	if !p.writers.take(ctx, nil) {
		return ctx.Err()
	}
	defer p.writers.give()
	return p.oc.Create(ctx, &v1alpha1.Observation{
		ObjectMeta: metav1.ObjectMeta{Namespace: p.ns, Name: name},
		Spec: v1alpha1.ObservationSpec{Source: "probe", Category: "operations", Severity: "medium",
			EventType: "probe", Title: "probe " + name, Resource: v1alpha1.ResourceRef{Kind: kind, Name: name}},
	})
}

// arrive records each Observation's latency from its ConfigMap's send.
func (p *probe) arrive(w watch.Interface) {
	for ev := range w.ResultChan() {
		if ev.Type != watch.Added {
			continue
		}
		m, err := meta.Accessor(ev.Object)
		if err != nil {
			continue
		}
		now := time.Now()
		p.mu.Lock()
		if t, ok := p.sentAt[m.GetName()]; ok {
			p.latency = append(p.latency, now.Sub(t))
			p.last = now
			delete(p.sentAt, m.GetName())
			if src, ok := p.sourceOf[m.GetName()]; ok {
				p.bySource[src] = append(p.bySource[src], now.Sub(t))
				delete(p.sourceOf, m.GetName())
			}
		}
		p.mu.Unlock()
	}
}

// closed records a watch the API server ended before the probe did: what it would have brought
// is missing, and the probe says why.
func (p *probe) closed(ctx context.Context, what string) {
	if ctx.Err() != nil {
		return
	}
	p.mu.Lock()
	p.cut = append(p.cut, fmt.Sprintf("the watch of %s ended at %s", what, time.Now().Format("15:04:05.000")))
	p.mu.Unlock()
}

// failed counts a create that failed for any reason but the probe's end.
func (p *probe) failed(ctx context.Context, name string, err error) {
	if ctx.Err() != nil {
		return
	}
	p.mu.Lock()
	if p.errs == 0 {
		p.firstErr = err
	}
	p.errs++
	delete(p.sentAt, name)
	delete(p.sourceOf, name)
	p.mu.Unlock()
}

// walk is what a probe measured: the Observations it saw arrive, at what rate from the first
// send to the last arrival, and their latency from the send.
type walk struct {
	Samples int     `json:"samples"`
	Missing int     `json:"missing,omitempty"`
	PerSec  float64 `json:"observationsPerSecond"`
	P10Ms   float64 `json:"p10Ms"`
	P50Ms   float64 `json:"p50Ms"`
	P99Ms   float64 `json:"p99Ms"`
	// BySource is the latency of each source's findings, when the kinds walked have sources.
	BySource map[string]spread `json:"bySource,omitempty"`
	// APIServerMillicores and EtcdMillicores are the CPU the control plane used meanwhile.
	APIServerMillicores float64 `json:"apiServerMillicores,omitempty"`
	EtcdMillicores      float64 `json:"etcdMillicores,omitempty"`
}

// stop ends the sender, waits up to drain for the Observations under way, ends the watches and
// returns the figures; a send that never arrived counts as missing.
func (p *probe) stop(drain time.Duration) (walk, error) {
	p.halt()
	for deadline := time.Now().Add(drain); time.Now().Before(deadline) && p.pending() > 0; {
		time.Sleep(100 * time.Millisecond)
	}
	p.cancel()
	p.done.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.errs > 0 || len(p.cut) > 0 {
		return walk{}, fmt.Errorf("the probe in %s: %d creates failed (the first: %v), watches ended early: %v", p.ns, p.errs, p.firstErr, p.cut)
	}
	lat := p.latency
	if len(lat) < probeRate {
		return walk{}, fmt.Errorf("the probe in %s saw %d Observations, too few to measure", p.ns, len(lat))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return walk{Samples: len(lat), Missing: len(p.sentAt), PerSec: float64(len(lat)) / p.last.Sub(p.first).Seconds(),
		P10Ms: pct(lat, .10), P50Ms: pct(lat, .50), P99Ms: pct(lat, .99), BySource: spreads(p.bySource)}, nil
}

func (p *probe) pending() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.sentAt)
}

// rawPath walks the path of the scenario's tool objects, round robin as the load sends them (a
// webhook source's path is the Observation's create alone), at the scenario's rate for its
// duration, with the probe beside it as beside the load: the ceiling the product's latency and
// rate are compared with, at the same offered rate on the same machine a minute before. It runs
// before the replicas start, and the objects it made are deleted before they do, so the replicas
// neither add to it nor see what it made.
func (r *run) rawPath(ctx context.Context) error {
	var kinds []pathKind
	for _, src := range r.sc.Sources {
		d := drivers[src]
		kinds = append(kinds, pathKind{source: d.source, gvr: d.gvr, object: d.object})
	}
	ns := r.tok + "-raw-path"
	p, err := startProbe(ctx, r.env, ns, r.sc.Rate, kinds, make(slots, senders), make(slots, writerWorkers*r.sc.Replicas))
	if err != nil {
		return fmt.Errorf("the raw path: %w", err)
	}
	// The probe walks beside the raw path as it walks beside the load, so that the API server
	// serves the same plain clients in both.
	beside, err := startProbe(ctx, r.env, r.tok+"-raw-probe", probeRate, configMaps, nil, nil)
	if err != nil {
		_, _ = p.stop(0)
		return fmt.Errorf("the raw path's probe: %w", err)
	}
	before := r.env.counters(ctx)
	time.Sleep(time.Duration(r.sc.Duration))
	w, err := p.stop(30 * time.Second)
	_, _ = beside.stop(0)
	if err != nil {
		return fmt.Errorf("the raw path: %w", err)
	}
	var used Result
	costs(before, r.env.counters(ctx), &used)
	w.APIServerMillicores, w.EtcdMillicores = used.APIServerMillicores, used.EtcdMillicores
	r.res.RawPath = &w
	return r.clearRawPath(ctx, ns, kinds)
}

// clearRawPath deletes what the raw path made in ns and waits until it is gone.
func (r *run) clearRawPath(ctx context.Context, ns string, kinds []pathKind) error {
	gvrs := []schema.GroupVersionResource{v1alpha1.ObservationResource}
	for _, k := range kinds {
		if k.object != nil && !slices.Contains(gvrs, k.gvr) {
			gvrs = append(gvrs, k.gvr)
		}
	}
	for _, gvr := range gvrs {
		ri := r.env.dyn.Resource(gvr).Namespace(ns)
		if err := ri.DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
			return fmt.Errorf("clearing the raw path's %s: %w", gvr.Resource, err)
		}
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
			l, err := ri.List(ctx, metav1.ListOptions{Limit: 1})
			if err == nil && len(l.Items) == 0 {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("the raw path's %s still there a minute after their deletion (%v)", gvr.Resource, err)
			}
		}
	}
	return nil
}
