package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kube-zen/zen-watcher/internal/testenv"
	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/obsclient"
)

// TestJoinerWatchesBeforeTheOthersNarrow: a third replica joins two that run while warnings keep
// coming, and its list of the Events it takes over is held back 6 s. Every warning created during
// the join has its Observation within 1.2 s all the same, while that list is still held: the
// others count the joiner, and stop reading what it takes, only once it watches. Each warning has
// exactly one Observation, and none costs a create refused as existing: what the joiner watched
// while the others still wrote waits until they have let go (with it handed on at once, 3 were).
func TestJoinerWatchesBeforeTheOthersNarrow(t *testing.T) {
	redisSrv, err := testenv.StartRedis()
	if err != nil {
		t.Fatal(err)
	}
	defer redisSrv.Close()
	ensureNamespace(t, haNamespace)
	l := &load{namespaces: faultNamespaces(t, "hazel", "iris", "juniper", "kestrel", "larch", "maple")}
	const release = "join-watch"
	rs, proxies := startProxied(t, release, redisSrv.Addr, []string{"jw-a", "jw-b"})
	waitMembers(t, rs, 2)
	l.run(t, 20*time.Millisecond)
	time.Sleep(time.Second)

	const held = 6 * time.Second
	p := startAPIProxy(t)
	var listed time.Time
	p.mu.Lock()
	p.hold = func(r *http.Request) time.Duration {
		// The informer's first read: a list, or a watch that sends the initial events; not the
		// bridge's list of one object, nor its watch.
		q := r.URL.Query()
		first := readsOf(r.Method, r.URL.Path, q, "events", false) && q.Get("limit") != "1" ||
			readsOf(r.Method, r.URL.Path, q, "events", true) && q.Get("sendInitialEvents") == "true"
		if !first {
			return 0
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		if listed.IsZero() {
			listed = time.Now()
		}
		return held
	}
	p.mu.Unlock()
	proxies["jw-c"] = p
	started := time.Now()
	rs["jw-c"] = startBehind(t, p, release, redisSrv.Addr, "jw-c")
	waitMembers(t, rs, 3)
	joined := time.Now()
	time.Sleep(1500 * time.Millisecond)

	checked := time.Now()
	p.mu.Lock()
	began := listed
	p.mu.Unlock()
	if began.IsZero() || checked.Sub(began) >= held {
		t.Fatalf("jw-c's list of Events began at %v, %s before the check: not held through it, the test proves nothing",
			began.Format(time.TimeOnly), checked.Sub(began))
	}
	written := observedPods(t, l.namespaces)
	var late []string
	at := l.createdAt()
	for n, created := range at {
		ns := l.namespaces[n%len(l.namespaces)]
		if created.After(checked.Add(-1200*time.Millisecond)) || written[fmt.Sprintf("%s/pod-%d", ns, n)] {
			continue
		}
		late = append(late, fmt.Sprintf("%s/load-%d (%+dms from the join)", ns, n, created.Sub(joined).Milliseconds()))
	}
	t.Logf("the others counted jw-c %s after its list of Events began; %d warnings so far, %d without an Observation after 1.2 s",
		joined.Sub(began).Round(time.Millisecond), len(at), len(late))
	if len(late) > 0 {
		t.Errorf("warnings without an Observation 1.2 s after they were created, while jw-c's list was held: %s",
			strings.Join(late, ", "))
	}
	time.Sleep(held)
	l.pause()
	exactlyOnce(t, l, "after a replica joined")
	refused := 0
	for _, p := range proxies {
		refused += p.refused(started, "/observations")
	}
	t.Logf("%d creates of Observations refused as existing since jw-c started", refused)
	if refused > 0 {
		t.Errorf("%d creates of Observations refused as existing since jw-c started, want none: the joiner's bridges "+
			"hand on what they watch only once the others have let go and what they wrote is read", refused)
	}
}

// observedPods is the warnings of the namespaces that have an Observation, by namespace/pod.
func observedPods(t *testing.T, namespaces []string) map[string]bool {
	t.Helper()
	c, err := obsclient.New(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, ns := range namespaces {
		list, err := c.ListObservations(context.Background(), ns, v1alpha1.LabelSource+"=k8sevents")
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range list.Items {
			seen[o.Namespace+"/"+o.Spec.Resource.Name] = true
		}
	}
	return seen
}
