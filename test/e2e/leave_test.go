package e2e

import (
	"net/http"
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

	reads := &firstReads{held: 6 * time.Second}
	for id, p := range proxies {
		if id != leaver {
			reads.holdOn(p)
		}
	}
	stopped := time.Now()
	rs[leaver].Stop()
	t.Logf("%s, writing in %v, stopped in %s", leaver, owned, time.Since(stopped).Round(time.Millisecond))
	delete(rs, leaver)
	waitMembers(t, rs, 2)
	time.Sleep(1500 * time.Millisecond)

	checked := time.Now()
	reads.heldAt(t, checked)
	noLateWarnings(t, l, checked, "stop", stopped)
	time.Sleep(reads.held)
	l.pause()
	exactlyOnce(t, l, "after a replica left")
	noneRefused(t, proxies, stopped, leaver+" stopped")
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
