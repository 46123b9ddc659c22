package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/obsclient"
)

// firstReads holds back the informers' first read of Events behind the proxies it is set on, so
// that a test of a hand-over can tell a share watched from a share listed: what reaches a replica
// meanwhile can only come through its bridges, or from the replica letting go.
type firstReads struct {
	held time.Duration

	mu    sync.Mutex
	began time.Time // when the first of those reads began; zero before
}

// holdOn makes p hold each first read of Events for f.held.
func (f *firstReads) holdOn(p *apiProxy) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hold = f.hold
}

func (f *firstReads) hold(r *http.Request) time.Duration {
	// An informer's first read is a list or a watch that sends the initial events; a bridge's
	// list of one object and its watch are not held.
	q := r.URL.Query()
	first := readsOf(r.Method, r.URL.Path, q, "events", false) && q.Get("limit") != "1" ||
		readsOf(r.Method, r.URL.Path, q, "events", true) && q.Get("sendInitialEvents") == "true"
	if !first {
		return 0
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.began.IsZero() {
		f.began = time.Now()
	}
	return f.held
}

// heldAt returns when the first held read began, and fails the test unless that read is still
// held at checked: a check made after it proves nothing about the bridges.
func (f *firstReads) heldAt(t *testing.T, checked time.Time) time.Time {
	t.Helper()
	f.mu.Lock()
	began := f.began
	f.mu.Unlock()
	if began.IsZero() || checked.Sub(began) >= f.held {
		t.Fatalf("the held list of Events began at %v, %s before the check: not held through it, the test proves nothing",
			began.Format(time.TimeOnly), checked.Sub(began))
	}
	return began
}

// noLateWarnings fails the test for each warning of l created 1.2 s or more before checked that
// has no Observation yet; event names the moment (at) the delays are reported from.
func noLateWarnings(t *testing.T, l *load, checked time.Time, event string, at time.Time) {
	t.Helper()
	written := observedPods(t, l.namespaces)
	var late []string
	created := l.createdAt()
	for n, c := range created {
		ns := l.namespaces[n%len(l.namespaces)]
		if c.After(checked.Add(-1200*time.Millisecond)) || written[fmt.Sprintf("%s/pod-%d", ns, n)] {
			continue
		}
		late = append(late, fmt.Sprintf("%s/load-%d (%+dms from the %s)", ns, n, c.Sub(at).Milliseconds(), event))
	}
	t.Logf("%d warnings so far, %d without an Observation after 1.2 s", len(created), len(late))
	if len(late) > 0 {
		t.Errorf("warnings without an Observation 1.2 s after they were created, while the list was held: %s",
			strings.Join(late, ", "))
	}
}

// noneRefused fails the test if a create of an Observation through proxies was refused as
// existing since since: the bridges of a replica gaining namespaces hand on what they watch only
// once the replica that held them has let go and what it wrote is read.
func noneRefused(t *testing.T, proxies map[string]*apiProxy, since time.Time, event string) {
	t.Helper()
	refused := 0
	for _, p := range proxies {
		refused += p.refused(since, "/observations")
	}
	t.Logf("%d creates of Observations refused as existing since %s", refused, event)
	if refused > 0 {
		t.Errorf("%d creates of Observations refused as existing since %s, want none", refused, event)
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
