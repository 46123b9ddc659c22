package ingester

import (
	"strings"
	"sync"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/server"
	"github.com/kube-zen/zen-watcher/pkg/sources"
)

// runner is one running source: its informers or its webhook route.
type runner struct {
	plan      *plan
	cancel    func()
	done      chan struct{}
	informers []*sources.Informer
	webhooks  *server.Webhooks

	mu      sync.Mutex
	ing     *v1alpha1.Ingester
	specErr error
	runErr  error
}

// setIngester records the Ingester the runner serves, and the error of its last application.
func (r *runner) setIngester(ing *v1alpha1.Ingester, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ing, r.specErr = ing, err
}

// specError is the error of the Ingester's last application, nil when it is in force.
func (r *runner) specError() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.specErr
}

func (r *runner) ingester() *v1alpha1.Ingester {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ing
}

func (r *runner) setErr(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.runErr = err
}

// err is the spec's error (not applied) or the source's own.
func (r *runner) err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.specErr != nil {
		return r.specErr
	}
	return r.runErr
}

// ready reports whether the source runs: a webhook is served, informers have synced. When it does
// not, reason and message say why.
func (r *runner) ready() (ok bool, reason, message string) {
	if r.cancel == nil {
		return false, "NotStarted", "the source has not started"
	}
	if r.plan.webhook != nil {
		return true, "Serving", "webhook served at " + r.plan.webhook.Path
	}
	if w := r.waitingReason(); w != "" {
		return false, "WaitingForResource", w
	}
	for _, inf := range r.informers {
		if !inf.HasSynced() {
			return false, "Syncing", "reading the existing objects"
		}
	}
	return true, "Synced", "watching " + r.resources()
}

func (r *runner) resources() string {
	var names []string
	for _, p := range r.plan.informers {
		names = append(names, p.cfg.GVR.String())
	}
	return strings.Join(names, ", ")
}

func (r *runner) waitingReason() string {
	for _, inf := range r.informers {
		if w := inf.Waiting(); w != "" {
			return w
		}
	}
	return ""
}

func (r *runner) lastObjectError() string {
	for _, inf := range r.informers {
		if e := inf.LastError(); e != "" {
			return e
		}
	}
	return ""
}

// seen is the number of findings the source produced.
func (r *runner) seen() int64 {
	var n int64
	for _, inf := range r.informers {
		n += inf.FindingsSeen()
	}
	if r.webhooks != nil {
		n += r.webhooks.Accepted(r.plan.source)
	}
	return n
}

// stop ends the source and waits for its informers.
func (r *runner) stop() {
	if r.cancel == nil {
		return
	}
	r.cancel()
	if r.webhooks != nil && r.plan.webhook != nil {
		r.webhooks.Unregister(r.plan.webhook.Path, r.plan.source)
	}
	<-r.done
}
