package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"

	"github.com/kube-zen/zen-watcher/internal/testenv"
	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
)

// env is what every scenario of a run shares: the binary, the control plane, Redis.
type env struct {
	binary, work string
	logLevel     string // the replicas' -log-level
	cluster      *testenv.Cluster
	redis        *testenv.Redis
	dyn          dynamic.Interface
	http         *http.Client
}

// run is one scenario being run.
type run struct {
	env        *env
	sc         Scenario
	tok        string // prefixes every name and key of the run
	release    string
	namespaces []string
	replicas   []*replica
	res        *Result
	// sampler reads the replicas' CPU and memory once the load begins; nil before.
	sampler *sampler

	mu      sync.Mutex
	pending map[string]time.Time // key → when its finding was sent, until its Observation appears
	seen    map[string]bool
	latency []time.Duration
	latAt   []time.Time
	// latBySource is latency again, by the Observations' source label.
	latBySource map[string][]time.Duration
	outAt       []time.Time
	want        int // findings that must become Observations
	inAt        []time.Time
	twice       int

	// scaled is how many of the scenario's scale steps were taken; relistedGone what the replicas
	// stopped by them had re-listed; stops the stops under way.
	scaled       int
	relistedGone float64
	stops        sync.WaitGroup
}

func (r *run) setUp(ctx context.Context) error {
	// The probe's namespace too, before the replicas start: a namespace created under the load
	// would change the namespace set their leader cuts, and the scenario would measure that
	// hand-over instead of the path (scale-3-5-2 measures hand-overs).
	for _, ns := range []string{r.release, r.tok + "-probe"} {
		if err := ensureNamespace(ctx, r.env, ns); err != nil {
			return err
		}
	}
	for _, word := range namespaceWords {
		// Names as clusters have them, differing from their first letters. (A numbered series,
		// app-01, app-02, ..., would spread as well: the shard table is cut where the names'
		// FNV-1a hashes are; see docs/ARCHITECTURE.md.)
		ns := word + "-" + r.tok
		if err := ensureNamespace(ctx, r.env, ns); err != nil {
			return err
		}
		r.namespaces = append(r.namespaces, ns)
	}
	for _, src := range r.sc.Sources {
		if err := r.createIngester(ctx, src); err != nil {
			return err
		}
	}
	return nil
}

func ensureNamespace(ctx context.Context, e *env, name string) error {
	_, err := e.cluster.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}},
		metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s: %w", name, err)
	}
	return nil
}

func (r *run) createIngester(ctx context.Context, src string) error {
	spec := drivers[src].spec()
	if spec.Informer != nil {
		// Only the scenario's own namespaces: the objects earlier scenarios left must not be read
		// again (they would crowd this scenario's findings at the writer).
		spec.Informer.Namespaces = r.namespaces
	}
	if r.sc.NoDedup {
		off := false
		spec.Processing.Dedup = &v1alpha1.DedupSpec{Enabled: &off}
	}
	ing := &v1alpha1.Ingester{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.SchemeGroupVersion.String(), Kind: "Ingester"},
		ObjectMeta: metav1.ObjectMeta{Name: src, Namespace: r.release},
		Spec:       spec,
	}
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(ing)
	if err != nil {
		return err
	}
	_, err = r.env.dyn.Resource(v1alpha1.IngesterResource).Namespace(r.release).Create(ctx, &unstructured.Unstructured{Object: u}, metav1.CreateOptions{})
	return err
}

var namespaceWords = []string{"payments", "checkout", "frontend", "search", "catalog", "identity", "billing",
	"shipping", "inventory", "analytics", "notifications", "reporting", "recommendations", "media", "gateway",
	"orders", "reviews", "ledger", "support", "pricing"}

// tearDown stops the replicas and removes the run's Ingesters, so that the next scenario starts
// from nothing of this one's.
func (r *run) tearDown(ctx context.Context) {
	for _, rep := range r.replicas {
		rep.stop()
	}
	_ = r.env.dyn.Resource(v1alpha1.IngesterResource).Namespace(r.release).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
}

func (r *run) startReplicas(ctx context.Context) error {
	var before counters
	if r.sc.SyncObjects > 0 {
		before = r.env.counters(ctx)
	}
	start := time.Now()
	for i := range r.sc.Replicas {
		rep, err := r.startReplica(ctx, i)
		if err != nil {
			return err
		}
		r.replicas = append(r.replicas, rep)
	}
	for _, rep := range r.replicas {
		if err := rep.waitReady(3 * time.Minute); err != nil {
			return err
		}
	}
	r.res.ReadySeconds = time.Since(start).Seconds()
	if r.sc.SyncObjects > 0 {
		r.syncCost(ctx, before)
	}
	// Webhook routes come from the Ingesters, a moment after readiness.
	for _, src := range r.sc.Sources {
		if drivers[src].spec().Webhook == nil {
			continue
		}
		for _, rep := range r.replicas {
			if err := waitRoute(rep, "/"+src, 30*time.Second); err != nil {
				return err
			}
		}
	}
	if len(r.sc.Sources) > 0 && r.sc.CleanupObservations == 0 {
		r.settle(time.Minute)
	}
	return nil
}

// syncCost records the CPU the sync took, by process, as extras: where the seconds to
// readiness go is a question of who was busy (the API server encoding the objects, the
// replicas decoding them) on a machine that the control plane and the replicas share.
func (r *run) syncCost(ctx context.Context, before counters) {
	after := r.env.counters(ctx)
	var replicas time.Duration
	for _, rep := range r.replicas {
		if u, err := rep.usage(); err == nil {
			replicas += u.cpu
		}
	}
	r.res.Extra["syncReplicasCPUSeconds"] = replicas.Seconds()
	if after.apiCPU > 0 {
		r.res.Extra["syncAPIServerCPUSeconds"] = after.apiCPU - before.apiCPU
	}
	if after.etcdCPU > 0 {
		r.res.Extra["syncEtcdCPUSeconds"] = after.etcdCPU - before.etcdCPU
	}
}

// settle waits, up to timeout, for the leader's first cleanup run: a new leader lists every
// Observation in the cluster at once, and after the scenarios before it those are tens of
// thousands, which holds the API server for a second or two. A load started during that list
// measures the list, not the path (seen as P99s of 0.5–1.1 s in a quick run's first seconds,
// 15–30 ms after them). The wait is recorded as the result's extra settleSeconds.
func (r *run) settle(timeout time.Duration) {
	start := time.Now()
	defer func() { r.res.Extra["settleSeconds"] = time.Since(start).Seconds() }()
	for time.Since(start) < timeout {
		for _, rep := range r.replicas {
			if m, err := rep.metrics(); err == nil && m["zen_watcher_cleanup_runs_total"] >= 1 {
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func waitRoute(rep *replica, path string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if resp, err := http.Get("http://" + rep.webhookAddr + path); err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s not served by %s", path, rep.id)
}

// watch follows the Observations of the run's sources and matches them to the findings sent.
func (r *run) watch(ctx context.Context) (stop func(), err error) {
	var srcs []string
	bySource := map[string]driver{}
	for _, s := range r.sc.Sources {
		d := drivers[s]
		srcs = append(srcs, d.source)
		bySource[d.source] = d
	}
	sel := v1alpha1.LabelSource + " in (" + strings.Join(srcs, ",") + ")"
	ri := r.env.dyn.Resource(v1alpha1.ObservationResource)
	list, err := ri.List(ctx, metav1.ListOptions{LabelSelector: sel, Limit: 1})
	if err != nil {
		return nil, err
	}
	// A retrying watch: a connection the API server closes is reopened where it left off, so that
	// no Added event is missed over a long run.
	w, err := watchtools.NewRetryWatcherWithContext(ctx, list.GetResourceVersion(), &cache.ListWatch{
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector = sel
			return ri.Watch(ctx, o)
		},
	})
	if err != nil {
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for e := range w.ResultChan() {
			u, ok := e.Object.(*unstructured.Unstructured)
			if !ok || e.Type != watch.Added {
				continue
			}
			src, _, _ := unstructured.NestedString(u.Object, "spec", "source")
			r.observed(src, bySource[src].key(u))
		}
	}()
	return func() { w.Stop(); <-done }, nil
}

func (r *run) observed(source, key string) {
	if !strings.HasPrefix(key, r.tok+"-") {
		return
	}
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen[key] {
		r.twice++
		return
	}
	r.seen[key] = true
	r.outAt = append(r.outAt, now)
	if t, ok := r.pending[key]; ok {
		r.latency = append(r.latency, now.Sub(t))
		r.latAt = append(r.latAt, now)
		if r.latBySource == nil {
			r.latBySource = map[string][]time.Duration{}
		}
		r.latBySource[source] = append(r.latBySource[source], now.Sub(t))
		delete(r.pending, key)
	}
}

// plan is the findings of the run in order, with which repeat which and their severities.
func (r *run) plan(total int) []finding {
	rng := rand.New(rand.NewPCG(uint64(len(r.sc.Name)), 42)) // the same plan every run
	sevs, weights := severityMix(r.sc.SeverityMix)
	out := make([]finding, total)
	for n := range out {
		f := finding{n: n, dupOf: -1, sev: pick(rng, sevs, weights)}
		if n > 0 && rng.Float64() < r.sc.DuplicateRate {
			f.dupOf = out[rng.IntN(n)].n
			if o := out[f.dupOf]; o.dupOf >= 0 {
				f.dupOf = o.dupOf
			}
			f.sev = out[f.dupOf].sev
		}
		out[n] = f
	}
	return out
}

func severityMix(mix map[string]float64) ([]string, []float64) {
	if len(mix) == 0 {
		return []string{"medium"}, []float64{1}
	}
	var sevs []string
	for s := range mix {
		sevs = append(sevs, s)
	}
	sort.Strings(sevs)
	w := make([]float64, len(sevs))
	for i, s := range sevs {
		w[i] = mix[s]
	}
	return sevs, w
}

func pick(rng *rand.Rand, vals []string, weights []float64) string {
	total := 0.0
	for _, w := range weights {
		total += w
	}
	x := rng.Float64() * total
	for i, w := range weights {
		if x < w {
			return vals[i]
		}
		x -= w
	}
	return vals[len(vals)-1]
}

// expected is whether finding f must become an Observation of its own.
func (r *run) expected(src string, f finding) bool {
	if f.dupOf >= 0 {
		return false // it has its original's key: the original's Observation is the one awaited
	}
	if r.sc.MinSeverity == "" || !drivers[src].carriesSeverity {
		return true
	}
	return v1alpha1.Severity(f.sev).Rank() >= v1alpha1.Severity(r.sc.MinSeverity).Rank()
}

// senders is how many findings the load's generator sends at once.
const senders = 16

// drive sends the plan at the scenario's rates with its senders, recording each send time.
func (r *run) drive(ctx context.Context) error {
	phases := []Phase{{Rate: r.sc.Rate, Duration: r.sc.Duration}}
	if r.sc.Burst != nil {
		phases = append(phases, *r.sc.Burst)
	}
	total := 0
	ends := make([]int, len(phases)) // plan index where each phase ends
	for i, p := range phases {
		total += int(p.Rate * time.Duration(p.Duration).Seconds())
		ends[i] = total
	}
	lastSent := make([]time.Time, len(phases)) // when each phase's last finding went to a sender
	plan := r.plan(total)
	jobs := make(chan finding, 1024)
	var errs atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for range senders {
		wg.Go(func() {
			for f := range jobs {
				src := r.sc.Sources[f.n%len(r.sc.Sources)]
				if f.dupOf >= 0 {
					src = r.sc.Sources[f.dupOf%len(r.sc.Sources)]
				}
				key := f.key(r.tok)
				now := time.Now()
				r.mu.Lock()
				if r.expected(src, f) {
					r.pending[key] = now
					r.want++
				}
				r.inAt = append(r.inAt, now)
				if pi := phaseOf(ends, f.n); now.After(lastSent[pi]) {
					lastSent[pi] = now
				}
				r.mu.Unlock()
				if err := drivers[src].send(ctx, r, f); err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Errorf("%s finding %d: %w", src, f.n, err))
					r.mu.Lock()
					delete(r.pending, key)
					r.mu.Unlock()
				}
			}
		})
	}
	start := time.Now()
	starts := make([]time.Time, len(phases))
	n := 0
	for pi, p := range phases {
		interval := time.Duration(float64(time.Second) / p.Rate)
		phaseStart, count := time.Now(), int(p.Rate*time.Duration(p.Duration).Seconds())
		starts[pi] = phaseStart
		for i := range count {
			time.Sleep(time.Until(phaseStart.Add(time.Duration(i) * interval)))
			r.chaos(time.Since(start))
			jobs <- plan[n]
			n++
		}
	}
	close(jobs)
	wg.Wait()
	for i, p := range phases {
		// A phase lasts until its last finding went to a sender, plus one interval: a generator
		// that keeps up takes the phase's duration, one that falls behind takes longer.
		took := lastSent[i].Sub(starts[i]) + time.Duration(float64(time.Second)/p.Rate)
		name := "steady"
		if i > 0 {
			name = "burst"
		}
		count := ends[i]
		if i > 0 {
			count -= ends[i-1]
		}
		r.res.Phases = append(r.res.Phases, PhaseResult{Name: name, Rate: p.Rate, SentPerSec: float64(count) / took.Seconds(),
			Seconds: took.Seconds()})
	}
	r.res.LoadSeconds = time.Since(start).Seconds()
	r.res.FindingsIn = n
	r.res.SendErrors = int(errs.Load())
	if e, ok := firstErr.Load().(error); ok {
		r.res.FirstSendError = e.Error()
	}
	for _, f := range plan {
		if f.dupOf >= 0 {
			r.res.Duplicates++
		}
	}
	return nil
}

// phaseOf is the phase of plan index n, given the index where each phase ends.
func phaseOf(ends []int, n int) int {
	for i, e := range ends {
		if n < e {
			return i
		}
	}
	return len(ends) - 1
}

// chaos kills the leader or a member once, and scales, at the scenario's moments.
func (r *run) chaos(elapsed time.Duration) {
	r.scale(Duration(elapsed))
	kill := func(leader bool) {
		holder := r.leader()
		if holder == "" {
			return
		}
		for _, rep := range r.replicas {
			if rep.alive() && (rep.id == holder) == leader {
				t := time.Now()
				rep.kill()
				r.res.Killed = append(r.res.Killed, Kill{Replica: rep.id, Leader: leader, AtSeconds: elapsed.Seconds()})
				go r.timeTakeover(rep.id, t, leader)
				return
			}
		}
	}
	if d := time.Duration(r.sc.KillLeaderAfter); d > 0 && elapsed >= d && len(r.res.Killed) == 0 {
		kill(true)
	}
	if d := time.Duration(r.sc.KillMemberAfter); d > 0 && elapsed >= d && len(r.res.Killed) == 0 {
		kill(false)
	}
}

// timeTakeover records how long until another replica leads (after a leader's kill) or until the
// survivors count one member fewer (after a member's).
func (r *run) timeTakeover(dead string, at time.Time, leader bool) {
	for time.Since(at) < time.Minute {
		if leader {
			l, err := r.env.cluster.Kube.CoordinationV1().Leases(r.release).Get(context.Background(), r.release+"-leader", metav1.GetOptions{})
			if err == nil && l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != dead {
				r.mu.Lock()
				r.res.TakeoverSeconds = time.Since(at).Seconds()
				r.mu.Unlock()
				return
			}
		} else {
			ok := true
			for _, rep := range r.replicas {
				if rep.alive() {
					m, err := rep.metrics()
					ok = ok && err == nil && int(m["zen_watcher_shard_members"]) == r.sc.Replicas-1
				}
			}
			if ok {
				r.mu.Lock()
				r.res.TakeoverSeconds = time.Since(at).Seconds()
				r.mu.Unlock()
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// drain waits until every expected Observation appeared or nothing new came for 60 s.
func (r *run) drain() {
	last, lastCount := time.Now(), -1
	for {
		r.mu.Lock()
		left, count := len(r.pending), len(r.outAt)
		r.mu.Unlock()
		if left == 0 {
			break
		}
		if count != lastCount {
			last, lastCount = time.Now(), count
		}
		if time.Since(last) > 60*time.Second {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // a late duplicate would show now
}
