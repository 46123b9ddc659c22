package e2e

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kube-zen/zen-watcher/internal/testenv"
)

// TestLateRenewalLosesNothing: a replica's member Lease renewal is held back on its way to the API
// server until it returns just after the Lease would have run out, while warnings keep arriving in
// the replica's namespaces. While its Lease is stale the replica keeps nothing its watches deliver
// (others may own its namespaces by then); what it dropped it must list again once the renewal is
// through, so every warning has exactly one Observation. The replica is alone: no other member's
// renewal makes it look at its own Lease meanwhile, and it finds its Lease stale only through what
// its watches deliver.
func TestLateRenewalLosesNothing(t *testing.T) {
	redisSrv, err := testenv.StartRedis()
	if err != nil {
		t.Fatal(err)
	}
	defer redisSrv.Close()
	ensureNamespace(t, haNamespace)
	l := &load{namespaces: faultNamespaces(t, "yarrow")}
	const (
		release = "late-renew"
		id      = "late-a"
		// The Lease lasts 4 s and is renewed every second: the renewal held this long returns
		// about 0.7 s after the Lease, renewed a second before it began, would have run out.
		held = 3700 * time.Millisecond
	)
	rs, proxies := startProxied(t, release, redisSrv.Addr, []string{id})
	waitMembers(t, rs, 1)
	l.run(t, 20*time.Millisecond)
	time.Sleep(2 * time.Second)

	p := proxies[id]
	var once sync.Once
	heldAt := make(chan time.Time, 1)
	p.mu.Lock()
	p.hold = func(r *http.Request) time.Duration {
		if r.Method != http.MethodPut || !strings.HasSuffix(r.URL.Path, "/leases/"+release+"-member-"+id) {
			return 0
		}
		d := time.Duration(0)
		once.Do(func() { d = held; heldAt <- time.Now() })
		return d
	}
	p.mu.Unlock()
	var began time.Time
	select {
	case began = <-heldAt:
	case <-time.After(10 * time.Second):
		t.Fatal("no renewal of the member Lease reached the proxy in 10 s: the test proves nothing")
	}
	time.Sleep(time.Until(began.Add(held + 3*time.Second)))
	l.pause()
	t.Logf("the renewal that began at %s was held %s; %d warnings", began.Format("15:04:05.000"), held, l.created.Load())
	exactlyOnce(t, l, "after a late renewal")
	if !strings.Contains(rs[id].Out.String(), "member lease not renewed for a lease duration") {
		t.Error("the replica never found its Lease stale: the renewal was not late enough, and the test proves nothing")
	}
}
