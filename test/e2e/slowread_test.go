package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kube-zen/zen-watcher/internal/testenv"
	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/obsclient"
)

// TestSlowReadHoldsNoHandOver: a replica whose read of the Observations written in its new share
// is slow (its first list of them held back 15 s) still lets go at once of what a member joining
// meanwhile takes from it: the joining member waits for nobody's lease to run out.
func TestSlowReadHoldsNoHandOver(t *testing.T) {
	redisSrv, err := testenv.StartRedis()
	if err != nil {
		t.Fatal(err)
	}
	defer redisSrv.Close()
	ensureNamespace(t, haNamespace)
	faultNamespaces(t, "lumen", "quartz", "zephyr", "nimbus", "prism", "orbit")
	const release = "slow-read"
	startProxied(t, release, redisSrv.Addr, []string{"sr-a"})

	const held = 15 * time.Second
	slow := startAPIProxy(t)
	var once sync.Once
	slow.mu.Lock()
	slow.hold = func(r *http.Request) time.Duration {
		d := time.Duration(0)
		if readsOf(r.Method, r.URL.Path, r.URL.Query(), "observations", false) {
			once.Do(func() { d = held })
		}
		return d
	}
	slow.mu.Unlock()
	b := startBehind(t, slow, release, redisSrv.Addr, "sr-b")
	var readBegan time.Time
	eventually(t, 30*time.Second, func(context.Context) error {
		slow.mu.Lock()
		defer slow.mu.Unlock()
		for _, c := range slow.calls {
			if readsOf(c.method, c.path, c.query, "observations", false) {
				readBegan = c.at
				return nil
			}
		}
		return fmt.Errorf("sr-b has not begun reading the Observations written")
	})

	// sr-c joins while sr-b's read is held: both others let go of what it takes.
	c := startBehind(t, startAPIProxy(t), release, redisSrv.Addr, "sr-c")
	c.WaitReady(t, 60*time.Second)
	// Had sr-b held its namespaces while reading, sr-c's wait, begun before it was ready, would
	// have lasted until the read was let go: over maxWait from now on.
	const maxWait = 5 * time.Second
	if since := time.Since(readBegan); since >= held-maxWait {
		t.Fatalf("sr-c was ready %s after sr-b's read began, too near its end: the test proves nothing", since)
	}
	// The wait runs beside the informers, which start at once: it may end after sr-c is ready.
	eventually(t, 10*time.Second, func(context.Context) error {
		if waits := c.metric(handOverWaits); waits < 1 {
			return fmt.Errorf("sr-c's hand-over waits: %v, want at least its first", waits)
		}
		return nil
	})
	// Each wait on its own: two hand-overs in a row wait side by side, and their sum counts the
	// same seconds twice.
	waits, waited := c.metric(handOverWaits), c.metric(handOverWaitSum)
	within := c.metric(fmt.Sprintf(`zen_watcher_shard_handover_wait_seconds_bucket{le="%g"}`, maxWait.Seconds()))
	t.Logf("sr-c waited %.3f s in %v hand-overs, %v of them under %s", waited, waits, within, maxWait)
	if within < waits {
		t.Errorf("sr-c waited over %s for the others to let go in %v of %v hand-overs: sr-b held its namespaces while reading",
			maxWait, waits-within, waits)
	}
	for _, line := range strings.Split(c.Out.String(), "\n") {
		if strings.Contains(line, "before their last writer let go") {
			t.Errorf("sr-c: %s", line)
		}
	}
	b.WaitReady(t, 60*time.Second)
}

// TestGainerWatchesBeforeTheLoserLetsGo: a member joins while the two others are slow to let go
// of what it takes (each write of their member Leases held back 3 s). Warnings created once the
// joiner watches, and the others watch what the join moved between them, before any has let go,
// in every namespace, all have their Observations within 1.5 s: a replica watches its new
// namespaces before the others have let go, and only what it lists waits for them. Each warning
// has exactly one Observation.
func TestGainerWatchesBeforeTheLoserLetsGo(t *testing.T) {
	redisSrv, err := testenv.StartRedis()
	if err != nil {
		t.Fatal(err)
	}
	defer redisSrv.Close()
	ensureNamespace(t, haNamespace)
	namespaces := faultNamespaces(t, "aster", "briar", "cedar", "dune", "fjord", "grove")
	const release = "make-before"
	// Leases of 8 s: a renewal held 3 s leaves the slow members in the member set.
	lease := []string{"-member-lease-duration", "8s"}
	rs, proxies := startProxied(t, release, redisSrv.Addr, []string{"mb-a", "mb-b"}, lease...)
	eventually(t, 20*time.Second, func(context.Context) error {
		for id, r := range rs {
			if r.metric("zen_watcher_shard_members") != 2 {
				return fmt.Errorf("%s does not see two members yet", id)
			}
		}
		return nil
	})
	const held = 3 * time.Second
	for _, p := range proxies {
		p.mu.Lock()
		p.hold = func(r *http.Request) time.Duration {
			if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/leases/"+release+"-member-") {
				return held
			}
			return 0
		}
		p.mu.Unlock()
	}
	joined := time.Now()
	proxies["mb-c"] = startAPIProxy(t)
	c := startBehind(t, proxies["mb-c"], release, redisSrv.Addr, "mb-c", lease...)
	var took time.Time
	eventually(t, 30*time.Second, func(context.Context) error {
		took, err = shareTaken(c.Out.String(), joined, 3)
		return err
	})
	// The warnings come once mb-c watches Events: its bridge (a watch without the initial events
	// of a first read), while the others still hold on.
	eventually(t, 20*time.Second, func(context.Context) error {
		proxies["mb-c"].mu.Lock()
		defer proxies["mb-c"].mu.Unlock()
		for _, c := range proxies["mb-c"].calls {
			if readsOf(c.method, c.path, c.query, "events", true) && c.query.Get("sendInitialEvents") != "true" {
				return nil
			}
		}
		return fmt.Errorf("mb-c does not watch Events yet")
	})
	// The join can move ranges between the two others too; what they gain they watch at once,
	// and the warnings come once they do. (Created in the tenths of a second before a gainer's
	// bridge watches, a warning comes with its list, after the hand-over.)
	for _, id := range []string{"mb-a", "mb-b"} {
		eventually(t, 20*time.Second, func(context.Context) error { return bridgesGains(rs[id], proxies[id], joined, 3) })
	}
	if waits := c.metric(handOverWaits); waits != 0 {
		t.Fatalf("mb-c began to watch Events only once the others had let go (%v hand-over waits ended)", waits)
	}
	began := time.Now()
	created := map[string]time.Time{} // when each warning's create was sent
	for k, ns := range namespaces {
		created[ns] = time.Now()
		e := warningEvent(ns, fmt.Sprintf("early-%d", k), "Pod", fmt.Sprintf("early-%d", k), "BackOff",
			fmt.Sprintf("Back-off restarting failed container early-%d", k), corev1.EventTypeWarning)
		if _, err := cluster.Kube.CoreV1().Events(ns).Create(context.Background(), e, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	oc, err := obsclient.New(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func(ctx context.Context) error {
		for _, ns := range namespaces {
			list, err := oc.ListObservations(ctx, ns, v1alpha1.LabelSource+"=k8sevents")
			if err != nil {
				return err
			}
			if len(list.Items) != 1 {
				return fmt.Errorf("%d Observations in %s, want one", len(list.Items), ns)
			}
		}
		return nil
	})
	// When each was written: the first create in its namespace, by any replica, through the proxies.
	var late []string
	wrote := map[string]int{}
	for _, ns := range namespaces {
		var first time.Time
		for id, p := range proxies {
			at := p.first(created[ns], http.MethodPost, "/namespaces/"+ns+"/observations")
			if !at.IsZero() && (first.IsZero() || at.Before(first)) {
				first = at
			}
			if !at.IsZero() {
				wrote[id]++
			}
		}
		if d := first.Sub(created[ns]); first.IsZero() || d > 1500*time.Millisecond {
			late = append(late, fmt.Sprintf("%s after %s", ns, d.Round(time.Millisecond)))
		}
	}
	eventually(t, 10*time.Second, func(context.Context) error { // the wait is observed once it ends
		if waits := c.metric(handOverWaits); waits < 1 {
			return fmt.Errorf("mb-c's hand-over waits: %v, want at least its first", waits)
		}
		return nil
	})
	waited := c.metric(handOverWaitSum)
	t.Logf("mb-c took its share %s after it started and waited %.3f s for the others to let go; namespaces written in by each: %v",
		took.Sub(joined).Round(time.Millisecond), waited, wrote)
	rs["mb-c"] = c
	for id, r := range rs {
		var changes []string
		for _, sc := range shareChanges(r.Out.String()) {
			if !sc.Time.Before(joined) {
				changes = append(changes, fmt.Sprintf("%+dms gen %d members %d ranges %d",
					sc.Time.Sub(began).Milliseconds(), sc.Generation, sc.Members, sc.Ranges))
			}
		}
		t.Logf("%s's share changes, from the warnings' creation: %s", id, strings.Join(changes, "; "))
	}
	if let := took.Add(time.Duration(waited * float64(time.Second))); !began.Before(let) {
		t.Fatalf("the warnings were created %s after the others let go (mb-c waited %.3f s): the test proves nothing",
			began.Sub(let).Round(time.Millisecond), waited)
	}
	if wrote["mb-c"] == 0 {
		t.Fatal("mb-c wrote none of the warnings: the test proves nothing")
	}
	if len(late) > 0 {
		t.Errorf("created while the others were letting go, written later than 1.5 s: %s", strings.Join(late, ", "))
	}
}

// bridgesGains returns nil once r has applied a share of members members since since and, if it
// gained Events with it (an informer's first read of them began), watches them through a bridge.
func bridgesGains(r *replica, p *apiProxy, since time.Time, members int) error {
	took, err := shareTaken(r.Out.String(), since, members)
	if err != nil {
		return err
	}
	var gained, bridged bool
	for _, c := range p.matching(took, http.MethodGet, "/events") {
		if !readsOf(c.method, c.path, c.query, "events", true) {
			continue
		}
		if c.query.Get("sendInitialEvents") == "true" {
			gained = true
		} else {
			bridged = true
		}
	}
	if gained && !bridged {
		return fmt.Errorf("%s gained Events at %s and has no bridge watching them yet", r.Name, took.Format(time.StampMilli))
	}
	return nil
}

// shareTaken finds, in a replica's log, the first share change since to a share of members that
// holds anything.
func shareTaken(out string, since time.Time, members int) (time.Time, error) {
	for _, c := range shareChanges(out) {
		if !c.Time.Before(since) && c.Members == members && c.Ranges > 0 {
			return c.Time, nil
		}
	}
	return time.Time{}, fmt.Errorf("no share of %d members logged since %s", members, since.Format(time.TimeOnly))
}

// readsOf reports whether a request lists resource (watch false) or watches it (watch true).
func readsOf(method, path string, query url.Values, resource string, watch bool) bool {
	return method == http.MethodGet && strings.HasSuffix(path, "/"+resource) && (query.Get("watch") == "true") == watch
}
