package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kube-zen/zen-watcher/internal/testenv"
	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/obsclient"
)

const haNamespace = "zen-ha"

// fleet is the replicas of one release, started and stopped by the test.
type fleet struct {
	t        *testing.T
	redis    string
	replicas map[string]*replica
	// stopped sums the fleetSeries of the replicas stopped.
	stopped map[string]float64
}

func (f *fleet) start(id string) *replica {
	r := startReplica(f.t, id, "-namespace", haNamespace, "-member-id", id, "-redis-addr", f.redis,
		"-member-lease-duration", "4s", "-member-renew-interval", "1s",
		"-leader-lease-duration", "4s", "-leader-renew-deadline", "3s", "-leader-retry-period", "500ms",
		"-coordination-interval", "1s", "-ha-optimization")
	f.replicas[id] = r
	return r
}

func (f *fleet) stop(id string) {
	if f.stopped == nil {
		f.stopped = map[string]float64{}
	}
	for _, s := range fleetSeries {
		f.stopped[s] += max(f.replicas[id].metric(s), 0)
	}
	f.replicas[id].Stop()
	delete(f.replicas, id)
}

// relistedWarnings counts the warnings a replica's informer handed on from a first list.
const relistedWarnings = `zen_watcher_findings_relisted_total{source="k8sevents"}`

// The series summed over every replica a fleet ran: re-listed warnings, findings the writer
// dropped because their namespace went to another replica, and the waits of replicas gaining
// namespaces for the others to let go of them.
const (
	handedOver      = `zen_watcher_observations_handed_over_total{source="k8sevents"}`
	handOverWaits   = `zen_watcher_shard_handover_wait_seconds_count`
	handOverWaitSum = `zen_watcher_shard_handover_wait_seconds_sum`
)

var fleetSeries = []string{relistedWarnings, handedOver, handOverWaits, handOverWaitSum}

// sum is series summed over every replica the fleet ran (those stopped counted when they stopped,
// those killed not at all).
func (f *fleet) sum(series string) float64 {
	n := f.stopped[series]
	for _, r := range f.replicas {
		n += max(r.metric(series), 0)
	}
	return n
}

// relisted is the warnings re-listed by every replica the fleet ran.
func (f *fleet) relisted() float64 { return f.sum(relistedWarnings) }

// refusedCreates is the API server's count of Observation creates it refused as conflicts (409).
func refusedCreates(t *testing.T) float64 {
	return apiServerMetric(t, cluster, "apiserver_request_total", `code="409"`, `resource="observations"`, `verb="POST"`)
}

func (f *fleet) kill(id string) {
	r := f.replicas[id]
	_ = r.Cmd.Process.Kill()
	<-r.Exited()
	delete(f.replicas, id)
}

func (f *fleet) waitReady() {
	for _, r := range f.replicas {
		r.WaitReady(f.t, 30*time.Second)
	}
}

// metric reads one sample of a replica's /metrics, or -1.
func (r *replica) metric(name string) float64 { return r.metricWith(http.DefaultClient, name) }

// metricWith is metric through client.
func (r *replica) metricWith(client *http.Client, name string) float64 {
	resp, err := client.Get("http://" + r.MetricsAddr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, name+" ") {
			var v float64
			fmt.Sscan(strings.TrimPrefix(line, name+" "), &v)
			return v
		}
	}
	return -1
}

func leaderOf(t *testing.T) string {
	l, err := cluster.Kube.CoordinationV1().Leases(haNamespace).Get(context.Background(), "zen-watcher-leader", metav1.GetOptions{})
	if err != nil || l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// load creates distinct Warning Events, round robin over the namespaces, until stopped. It works
// on the shared control plane unless given another's clients.
type load struct {
	namespaces []string
	kube       kubernetes.Interface
	cfg        *rest.Config
	created    atomic.Int64
	stop       chan struct{}
	done       sync.WaitGroup

	mu sync.Mutex
	at []time.Time // when each warning's create returned, by its number
}

// createdAt is when the create of each warning returned, by its number.
func (l *load) createdAt() []time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.at)
}

func (l *load) clients() (kubernetes.Interface, *rest.Config) {
	if l.kube == nil {
		return cluster.Kube, cluster.Config
	}
	return l.kube, l.cfg
}

// run creates events every interval until pause, or until t ends: a test that fails while the
// load runs must not leave it creating events under the tests that follow.
func (l *load) run(t *testing.T, every time.Duration) {
	stop := make(chan struct{})
	l.stop = stop
	t.Cleanup(func() { l.halt(stop) })
	l.done.Go(func() {
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			n := l.created.Load()
			ns := l.namespaces[int(n)%len(l.namespaces)]
			e := warningEvent(ns, fmt.Sprintf("load-%d", n), "Pod", fmt.Sprintf("pod-%d", n), "BackOff",
				fmt.Sprintf("Back-off restarting failed container %d", n), corev1.EventTypeWarning)
			kube, _ := l.clients()
			_, err := kube.CoreV1().Events(ns).Create(context.Background(), e, metav1.CreateOptions{})
			if err != nil && !apierrors.IsAlreadyExists(err) {
				continue // not created, not counted: the same event is tried at the next tick
			}
			l.mu.Lock()
			l.at = append(l.at, time.Now())
			l.mu.Unlock()
			l.created.Add(1)
		}
	})
}

// pause stops the load run started last and waits for its last create.
func (l *load) pause() { l.halt(l.stop) }

func (l *load) halt(stop chan struct{}) {
	select {
	case <-stop:
	default:
		close(stop)
	}
	l.done.Wait()
}

// missing names, up to ten and with when each was created, the warnings among the first n created
// that have no Observation in perPod (keyed namespace/pod, as exactlyOnce counts them).
func (l *load) missing(perPod map[string]int, n int) string {
	var out []string
	total := 0
	at := l.createdAt()
	for i := range n {
		ns := l.namespaces[i%len(l.namespaces)]
		if perPod[fmt.Sprintf("%s/pod-%d", ns, i)] > 0 {
			continue
		}
		total++
		if len(out) < 10 {
			// When it was created, to set beside the replicas' logs.
			out = append(out, fmt.Sprintf("%s/load-%d (%s)", ns, i, at[i].Format("15:04:05.000")))
		}
	}
	if total == 0 {
		return "none missing"
	}
	return fmt.Sprintf("%d without one: %s", total, strings.Join(out, ", "))
}

// exactlyOnce waits until every event created has its Observation and checks none has two.
func exactlyOnce(t *testing.T, l *load, phase string) {
	t.Helper()
	_, cfg := l.clients()
	c, err := obsclient.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	owned := map[string]bool{}
	for _, ns := range l.namespaces {
		owned[ns] = true
	}
	want := int(l.created.Load())
	var got int
	start := time.Now()
	eventually(t, 60*time.Second, func(ctx context.Context) error {
		// The load's namespaces one by one, each read bounded: a list of every Observation in the
		// cluster, which earlier tests filled, can outlast the whole wait on a busy API server.
		perPod := map[string]int{}
		got = 0
		for ns := range owned {
			lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			list, err := c.ListObservations(lctx, ns, v1alpha1.LabelSource+"=k8sevents")
			cancel()
			if err != nil {
				return err
			}
			for _, o := range list.Items {
				perPod[o.Namespace+"/"+o.Spec.Resource.Name]++
				got++
			}
		}
		for k, n := range perPod {
			if n > 1 {
				t.Fatalf("%s: %s has %d Observations", phase, k, n)
			}
		}
		if got != want {
			return fmt.Errorf("%s: %d Observations for %d warnings; %s", phase, got, want, l.missing(perPod, want))
		}
		return nil
	})
	t.Logf("%s: %d warnings, %d Observations, drained in %s", phase, want, got, time.Since(start).Round(10*time.Millisecond))
}

// TestReplicas runs a release of several replicas under a steady load of warnings in 50
// namespaces, through scaling 3 → 5 → 2, a leader kill, a rolling restart and 20 s without Redis. After
// each, every warning has exactly one Observation and there is one leader.
func TestReplicas(t *testing.T) {
	redisSrv, err := testenv.StartRedis()
	if err != nil {
		t.Fatal(err)
	}
	defer redisSrv.Close()
	ensureNamespace(t, haNamespace)
	l := &load{}
	for i := range 50 {
		ns := fmt.Sprintf("ha-%02d-team", i)
		createNamespace(t, ns)
		l.namespaces = append(l.namespaces, ns)
	}
	f := &fleet{t: t, redis: redisSrv.Addr, replicas: map[string]*replica{}}
	for i := range 3 {
		f.start(fmt.Sprintf("zw-%d", i))
	}
	f.waitReady()
	eventually(t, 20*time.Second, func(context.Context) error {
		for id, r := range f.replicas {
			if r.metric("zen_watcher_shard_members") != 3 {
				return fmt.Errorf("%s does not see 3 members yet", id)
			}
		}
		return nil
	})
	l.run(t, 40*time.Millisecond)
	time.Sleep(3 * time.Second)
	l.pause()
	exactlyOnce(t, l, "3 replicas")
	// Each replica processed only its namespaces' warnings. The table gives each about a third of
	// the cluster's namespaces by count, every namespace alike (the test's and the idle ones other
	// tests left), so the share of warnings is reported and held only to a loose bound;
	// TestTableSpreadsAlikeNames holds the spread of a cluster's own namespaces to a tight one.
	total, chunks := 0.0, 0.0
	shares := map[string]float64{}
	for id, r := range f.replicas {
		shares[id] = r.metric(`zen_watcher_optimization_source_events_processed_total{source="k8sevents"}`)
		total += shares[id]
		chunks += r.metric("zen_watcher_shard_chunks_owned")
	}
	for id, n := range shares {
		share := n / total
		t.Logf("%s processed %.0f of %.0f warnings (%.0f%%), owns %.0f chunks", id, n, total, 100*share,
			f.replicas[id].metric("zen_watcher_shard_chunks_owned"))
		if share < 0.10 || share > 0.60 {
			t.Errorf("%s processed %.0f%% of the warnings, want a share of the work (10-60%%)", id, 100*share)
		}
		if p := f.replicas[id].metric("zen_watcher_shard_chunks_owned") / chunks; p < 0.20 || p > 0.45 {
			t.Errorf("%s owns %.0f%% of the chunks, want 20-45%%", id, 100*p)
		}
	}

	// (c) scale 3 → 5 → 2, gracefully: stopped replicas delete their Leases, and the leader releases
	// its own, so the handoff does not wait for a Lease to expire.
	l.run(t, 40*time.Millisecond)
	refused0, relisted0, waits0 := refusedCreates(t), f.relisted(), f.sum(handOverWaits)
	f.start("zw-3")
	f.start("zw-4")
	f.waitReady()
	time.Sleep(2 * time.Second)
	// Down to two: two followers first, then the leader, whose handoff is timed.
	oldLeader := leaderOf(t)
	stopped := 0
	for _, id := range []string{"zw-0", "zw-1", "zw-2", "zw-3", "zw-4"} {
		if id != oldLeader && stopped < 2 {
			f.stop(id)
			stopped++
		}
	}
	handoff := time.Now()
	f.stop(oldLeader)
	eventually(t, 30*time.Second, func(context.Context) error {
		if now := leaderOf(t); now == oldLeader || now == "" {
			return fmt.Errorf("leader still %q", now)
		}
		return nil
	})
	t.Logf("graceful stop of leader %s: %s leads %s after the stop began", oldLeader, leaderOf(t),
		time.Since(handoff).Round(10*time.Millisecond))
	time.Sleep(2 * time.Second)
	l.pause()
	exactlyOnce(t, l, "after scaling 3 → 5 → 2")
	// A hand-over re-lists the namespaces that changed hands; knowing what is written, the replicas
	// send the API server next to no create for them.
	refused, relisted := refusedCreates(t)-refused0, f.relisted()-relisted0
	waits := f.sum(handOverWaits) - waits0
	t.Logf("scaling 3 → 5 → 2: %.0f warnings re-listed, %.0f creates refused (409); %.0f findings handed over unwritten "+
		"(since the start); %.0f hand-over waits (each replica gaining namespaces), %.0f ms each on average (since the start)",
		relisted, refused, f.sum(handedOver), waits, 1000*f.sum(handOverWaitSum)/max(f.sum(handOverWaits), 1))
	if waits < 2 {
		t.Errorf("%.0f hand-over waits through 3 → 5 → 2; the two replicas joining wait at least once each", waits)
	}
	if relisted < 100 || refused > 0.01*relisted {
		t.Errorf("%.0f creates refused of %.0f warnings re-listed, want under 1%% (of at least 100)", refused, relisted)
	}
	f.start("zw-5")
	f.waitReady()

	// (b) kill -9 the leader under load.
	leader := leaderOf(t)
	if leader == "" {
		t.Fatal("no leader")
	}
	l.run(t, 40*time.Millisecond)
	killed := time.Now()
	f.kill(leader)
	eventually(t, 30*time.Second, func(context.Context) error {
		if now := leaderOf(t); now == leader || now == "" {
			return fmt.Errorf("leader still %q", now)
		}
		return nil
	})
	failover := time.Since(killed)
	eventually(t, 30*time.Second, func(context.Context) error {
		for id, r := range f.replicas {
			if r.metric("zen_watcher_shard_members") != 2 {
				return fmt.Errorf("%s still counts the dead replica", id)
			}
		}
		return nil
	})
	rebalance := time.Since(killed)
	t.Logf("leader %s killed: new leader %s after %s, members rebalanced after %s (lease 4s)", leader, leaderOf(t),
		failover.Round(10*time.Millisecond), rebalance.Round(10*time.Millisecond))
	time.Sleep(2 * time.Second)
	l.pause()
	exactlyOnce(t, l, "after the leader's kill")

	// (a) a rolling restart of the remaining replicas, one at a time.
	l.run(t, 40*time.Millisecond)
	var ids []string
	for id := range f.replicas {
		ids = append(ids, id)
	}
	for _, id := range ids {
		f.stop(id)
		f.start(id + "r")
		f.waitReady()
	}
	l.pause()
	exactlyOnce(t, l, "after a rolling restart")

	// (d) Redis away for a while under load.
	l.run(t, 40*time.Millisecond)
	if err := redisSrv.Stop(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Second)
	if err := redisSrv.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	l.pause()
	exactlyOnce(t, l, "after a Redis outage")

	// One leader, and idle means idle.
	leaders := 0
	for _, r := range f.replicas {
		if r.metric("zen_watcher_leader") == 1 {
			leaders++
		}
	}
	if leaders != 1 {
		t.Errorf("%d replicas say they lead", leaders)
	}
	before := int(l.created.Load())
	time.Sleep(3 * time.Second)
	exactlyOnce(t, l, "idle")
	if int(l.created.Load()) != before {
		t.Error("the load did not stop")
	}
}
