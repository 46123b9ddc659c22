package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kube-zen/zen-watcher/internal/testenv"
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
		if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/observations") && r.URL.Query().Get("watch") != "true" {
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
			if c.method == http.MethodGet && strings.HasSuffix(c.path, "/observations") && c.query.Get("watch") != "true" {
				readBegan = c.at
				return nil
			}
		}
		return fmt.Errorf("sr-b has not begun reading the Observations written")
	})

	// sr-c joins while sr-b's read is held: both others let go of what it takes.
	c := startBehind(t, startAPIProxy(t), release, redisSrv.Addr, "sr-c")
	c.WaitReady(t, 60*time.Second)
	if since := time.Since(readBegan); since >= held {
		t.Fatalf("sr-c was ready %s after sr-b's read began, after the read was let go: the test proves nothing", since)
	}
	waits, waited := c.metric(handOverWaits), c.metric(handOverWaitSum)
	t.Logf("sr-c waited %.3f s in %v hand-overs", waited, waits)
	if waits < 1 {
		t.Fatalf("sr-c's hand-over waits: %v, want at least its first", waits)
	}
	if waited >= 3 {
		t.Errorf("sr-c waited %.1f s for the others to let go (the lease is 4 s): sr-b held its namespaces while reading", waited)
	}
	for _, line := range strings.Split(c.Out.String(), "\n") {
		if strings.Contains(line, "before their last writer let go") {
			t.Errorf("sr-c: %s", line)
		}
	}
	b.WaitReady(t, 60*time.Second)
}
