package e2e

import (
	"testing"
	"time"

	"github.com/kube-zen/zen-watcher/internal/testenv"
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

	reads := &firstReads{held: 6 * time.Second}
	p := startAPIProxy(t)
	reads.holdOn(p)
	proxies["jw-c"] = p
	started := time.Now()
	rs["jw-c"] = startBehind(t, p, release, redisSrv.Addr, "jw-c")
	waitMembers(t, rs, 3)
	joined := time.Now()
	time.Sleep(1500 * time.Millisecond)

	checked := time.Now()
	began := reads.heldAt(t, checked)
	t.Logf("the others counted jw-c %s after its list of Events began", joined.Sub(began).Round(time.Millisecond))
	noLateWarnings(t, l, checked, "join", joined)
	time.Sleep(reads.held)
	l.pause()
	exactlyOnce(t, l, "after a replica joined")
	noneRefused(t, proxies, started, "jw-c started")
}
