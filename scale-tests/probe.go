package main

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/obsclient"
)

// probeRate is how many findings a second the probe walks: enough for a steady P10 over a quick
// scenario, few enough to add a tenth at most to the API server's load.
const probeRate = 20

// probe walks an informer finding's path with a plain client alongside the load: a ConfigMap
// created, its Added event seen by a watch, an Observation created for it, that Observation's
// Added event seen. Nothing of zen-watcher is on the way, but the probe shares the seconds, the
// cores and the API server with the scenario, so its latency is what the scenario's would be if
// zen-watcher added nothing. A slow state of the machine slows both; a slower zen-watcher only
// the scenario, and that is what the scenario's bounds on the excess over the probe catch.
//
// ConfigMaps, because no Ingester of a scenario reads them: the probe adds no findings.
type probe struct {
	ns     string
	oc     *obsclient.Client
	cancel context.CancelFunc
	done   sync.WaitGroup

	mu      sync.Mutex
	sentAt  map[string]time.Time
	latency []time.Duration
	errs    int
}

// startProbe starts the watches and the sender; stop ends them and returns what was measured.
func startProbe(ctx context.Context, e *env, tok string) (*probe, error) {
	p := &probe{ns: tok + "-probe", sentAt: map[string]time.Time{}}
	if err := ensureNamespace(ctx, e, p.ns); err != nil {
		return nil, err
	}
	var err error
	if p.oc, err = obsclient.New(restConfig(e.cluster)); err != nil {
		return nil, err
	}
	ctx, p.cancel = context.WithCancel(ctx)
	cms, err := e.cluster.Kube.CoreV1().ConfigMaps(p.ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		p.cancel()
		return nil, fmt.Errorf("watching the probe's ConfigMaps: %w", err)
	}
	obs, err := e.dyn.Resource(v1alpha1.ObservationResource).Namespace(p.ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		cms.Stop()
		p.cancel()
		return nil, fmt.Errorf("watching the probe's Observations: %w", err)
	}
	p.done.Go(func() { p.relay(ctx, cms) })
	p.done.Go(func() { p.arrive(obs) })
	p.done.Go(func() { p.send(ctx, e) })
	go func() { <-ctx.Done(); cms.Stop(); obs.Stop() }()
	return p, nil
}

// send creates a ConfigMap every 1/probeRate seconds until the probe stops, each from its own
// goroutine so that a slow create does not delay the next.
func (p *probe) send(ctx context.Context, e *env) {
	tick := time.NewTicker(time.Second / probeRate)
	defer tick.Stop()
	var creates sync.WaitGroup
	defer creates.Wait()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		name := "probe-" + strconv.Itoa(i)
		p.mu.Lock()
		p.sentAt[name] = time.Now()
		p.mu.Unlock()
		creates.Go(func() {
			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: p.ns}, Data: map[string]string{"n": name}}
			if _, err := e.cluster.Kube.CoreV1().ConfigMaps(p.ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
				p.failed(ctx, name)
			}
		})
	}
}

// relay creates an Observation for each ConfigMap the watch brings, as an Ingester would.
func (p *probe) relay(ctx context.Context, w watch.Interface) {
	var creates sync.WaitGroup
	defer creates.Wait()
	for ev := range w.ResultChan() {
		cm, ok := ev.Object.(*corev1.ConfigMap)
		if !ok || ev.Type != watch.Added {
			continue
		}
		creates.Go(func() {
			err := p.oc.Create(ctx, &v1alpha1.Observation{
				ObjectMeta: metav1.ObjectMeta{Namespace: p.ns, Name: cm.Name},
				Spec: v1alpha1.ObservationSpec{Source: "probe", Category: "operations", Severity: "medium",
					EventType: "probe", Title: "probe " + cm.Name, Resource: v1alpha1.ResourceRef{Kind: "ConfigMap", Name: cm.Name}},
			})
			if err != nil {
				p.failed(ctx, cm.Name)
			}
		})
	}
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
			delete(p.sentAt, m.GetName())
		}
		p.mu.Unlock()
	}
}

// failed counts a create that failed for any reason but the probe's end.
func (p *probe) failed(ctx context.Context, name string) {
	if ctx.Err() != nil {
		return
	}
	p.mu.Lock()
	p.errs++
	delete(p.sentAt, name)
	p.mu.Unlock()
}

// stop waits a moment for what is under way, ends the probe and puts its figures in res.
func (p *probe) stop(res *Result) error {
	time.Sleep(time.Second)
	p.cancel()
	p.done.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.errs > 0 {
		return fmt.Errorf("the latency probe: %d creates failed", p.errs)
	}
	lat := p.latency
	if len(lat) < probeRate {
		return fmt.Errorf("the latency probe saw %d Observations, too few to measure", len(lat))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	res.ProbeSamples = len(lat)
	res.ProbeP10Ms, res.ProbeP50Ms, res.ProbeP99Ms = pct(lat, .10), pct(lat, .50), pct(lat, .99)
	return nil
}
