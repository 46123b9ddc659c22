package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kube-zen/zen-watcher/internal/testenv"
)

// TestLeaverHandsOverBeforeItStops: of three replicas, the one writing in most of the namespaces
// under load stops while warnings keep coming, and the others' lists of the Events they take from
// it are held back 6 s. Every warning created through the stop has its Observation within 1.2 s
// all the same, while those lists are still held: the stopping replica goes on writing in its
// namespaces until the others watch them. Each warning has exactly one Observation, and none
// costs a create refused as existing: what the others watched while it still wrote waits until it
// has let go and what it wrote is read.
func TestLeaverHandsOverBeforeItStops(t *testing.T) {
	redisSrv, err := testenv.StartRedis()
	if err != nil {
		t.Fatal(err)
	}
	defer redisSrv.Close()
	ensureNamespace(t, haNamespace)
	l := &load{namespaces: faultNamespaces(t, "nutmeg", "olive", "pepper", "quince", "rowan", "sage")}
	const release = "leave-watch"
	rs, proxies := startProxied(t, release, redisSrv.Addr, []string{"lw-a", "lw-b", "lw-c"})
	waitMembers(t, rs, 3)
	began := time.Now()
	l.run(t, 20*time.Millisecond)
	time.Sleep(2 * time.Second)
	leaver, owned := busiest(proxies, began, l.namespaces)
	if len(owned) == 0 {
		t.Fatal("no replica wrote in the namespaces under load")
	}

	const held = 6 * time.Second
	var mu sync.Mutex
	var listed time.Time // when the first of the others' lists began
	for id, p := range proxies {
		if id == leaver {
			continue
		}
		p.mu.Lock()
		p.hold = func(r *http.Request) time.Duration {
			// The informer's first read, as in TestJoinerWatchesBeforeTheOthersNarrow.
			q := r.URL.Query()
			first := readsOf(r.Method, r.URL.Path, q, "events", false) && q.Get("limit") != "1" ||
				readsOf(r.Method, r.URL.Path, q, "events", true) && q.Get("sendInitialEvents") == "true"
			if !first {
				return 0
			}
			mu.Lock()
			defer mu.Unlock()
			if listed.IsZero() {
				listed = time.Now()
			}
			return held
		}
		p.mu.Unlock()
	}
	stopped := time.Now()
	rs[leaver].Stop()
	t.Logf("%s, writing in %v, stopped in %s", leaver, owned, time.Since(stopped).Round(time.Millisecond))
	delete(rs, leaver)
	waitMembers(t, rs, 2)
	time.Sleep(1500 * time.Millisecond)

	checked := time.Now()
	mu.Lock()
	first := listed
	mu.Unlock()
	if first.IsZero() || checked.Sub(first) >= held {
		t.Fatalf("the others' lists of Events began at %v, %s before the check: not held through it, the test proves nothing",
			first.Format(time.TimeOnly), checked.Sub(first))
	}
	written := observedPods(t, l.namespaces)
	var late []string
	at := l.createdAt()
	for n, created := range at {
		ns := l.namespaces[n%len(l.namespaces)]
		if created.After(checked.Add(-1200*time.Millisecond)) || written[fmt.Sprintf("%s/pod-%d", ns, n)] {
			continue
		}
		late = append(late, fmt.Sprintf("%s/load-%d (%+dms from the stop)", ns, n, created.Sub(stopped).Milliseconds()))
	}
	t.Logf("%d warnings so far, %d without an Observation after 1.2 s", len(at), len(late))
	if len(late) > 0 {
		t.Errorf("warnings without an Observation 1.2 s after they were created, while the others' lists were held: %s",
			strings.Join(late, ", "))
	}
	time.Sleep(held)
	l.pause()
	exactlyOnce(t, l, "after a replica left")
	refused := 0
	for _, p := range proxies {
		refused += p.refused(stopped, "/observations")
	}
	t.Logf("%d creates of Observations refused as existing since %s stopped", refused, leaver)
	if refused > 0 {
		t.Errorf("%d creates of Observations refused as existing since %s stopped, want none: the others' bridges "+
			"hand on what they watch only once it has let go and what it wrote is read", refused, leaver)
	}
}

// busiest is the replica that created Observations since in most of namespaces, and those.
func busiest(proxies map[string]*apiProxy, since time.Time, namespaces []string) (string, []string) {
	var id string
	var most []string
	for name, p := range proxies {
		var in []string
		for _, ns := range namespaces {
			if p.count(since, http.MethodPost, "/namespaces/"+ns+"/observations") > 0 {
				in = append(in, ns)
			}
		}
		if len(in) > len(most) {
			id, most = name, in
		}
	}
	return id, most
}
