package ingester

import (
	"context"
	"slices"
	"strings"
	"sync"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/server"
	"github.com/kube-zen/zen-watcher/pkg/sources"
)

// runner is one running source: its informers or its webhook route.
type runner struct {
	plan     *plan
	ctx      context.Context // the informers'
	cancel   func()
	done     chan struct{}
	running  sync.WaitGroup // the informers, and one held until stop: see add
	webhooks *server.Webhooks

	mu sync.Mutex
	// informers read the plan's resources, one set per piece of the share: informers[p*n+k] is
	// piece p's of plan.informers[k], n the plan's count.
	informers []*sources.Informer
	ing       *v1alpha1.Ingester
	specErr   error
	runErr    error
}

// newRunner returns the runner of p, its informers to run in ctx.
func newRunner(ctx context.Context, p *plan) *runner {
	rctx, cancel := context.WithCancel(ctx)
	r := &runner{plan: p, ctx: rctx, cancel: cancel, done: make(chan struct{})}
	r.running.Add(1) // informers join the group until stop lets go of this
	go func() { r.running.Wait(); close(r.done) }()
	return r
}

// add runs inf until the runner stops; its errors become the source's.
func (r *runner) add(inf *sources.Informer, h sources.Handler) {
	r.mu.Lock()
	r.informers = append(r.informers, inf)
	r.mu.Unlock()
	r.running.Go(func() {
		if err := inf.Run(r.ctx, h); err != nil {
			r.setErr(err)
		}
	})
}

// all is the informers now.
func (r *runner) all() []*sources.Informer {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.informers)
}

// first is the first piece's informers, one per plan informer; nil for a webhook.
func (r *runner) first() []*sources.Informer { return r.all()[:len(r.plan.informers)] }

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
	for _, inf := range r.all() {
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
	for _, inf := range r.all() {
		if w := inf.Waiting(); w != "" {
			return w
		}
	}
	return ""
}

func (r *runner) lastObjectError() string {
	for _, inf := range r.all() {
		if e := inf.LastError(); e != "" {
			return e
		}
	}
	return ""
}

// seen is the number of findings the source produced.
func (r *runner) seen() int64 {
	var n int64
	for _, inf := range r.all() {
		n += inf.FindingsSeen()
	}
	if r.webhooks != nil {
		n += r.webhooks.Accepted(r.plan.source)
	}
	return n
}

// stop ends the source and waits for its informers. Nothing is added after: the manager takes a
// runner out of its set before it stops it.
func (r *runner) stop() {
	if r.cancel == nil {
		return
	}
	r.cancel()
	if r.webhooks != nil && r.plan.webhook != nil {
		r.webhooks.Unregister(r.plan.webhook.Path, r.plan.source)
	}
	r.running.Done()
	<-r.done
}
