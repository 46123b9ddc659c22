// Package k8sevents turns Kubernetes Warning Events into findings, one per distinct warning: the
// same warning repeated (its count going up) is the same finding.
package k8sevents

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/pipeline"
	"github.com/kube-zen/zen-watcher/pkg/sources"
)

// Name is the source name of Kubernetes Warning Events.
const Name = "k8sevents"

// Source watches Warning Events in every namespace.
type Source struct {
	client kubernetes.Interface
	log    *slog.Logger
	synced atomic.Bool
}

// New returns a source reading Events through client.
func New(client kubernetes.Interface, log *slog.Logger) *Source {
	return &Source{client: client, log: log.With("source", Name)}
}

// Name implements sources.Source.
func (s *Source) Name() string { return Name }

// HasSynced implements sources.Source.
func (s *Source) HasSynced() bool { return s.synced.Load() }

// Run implements sources.Source.
func (s *Source) Run(ctx context.Context, h sources.Handler) error {
	warnings := fields.OneTermEqualSelector("type", corev1.EventTypeWarning).String()
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = warnings
			return s.client.CoreV1().Events(metav1.NamespaceAll).List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = warnings
			return s.client.CoreV1().Events(metav1.NamespaceAll).Watch(ctx, o)
		},
	}
	inf := cache.NewSharedIndexInformerWithOptions(lw, &corev1.Event{}, cache.SharedIndexInformerOptions{})
	if err := inf.SetTransform(stripEvent); err != nil {
		return fmt.Errorf("setting event transform: %w", err)
	}
	handle := func(obj any) {
		e, ok := obj.(*corev1.Event)
		if !ok {
			return
		}
		if err := h.Handle(ctx, Finding(e)); err != nil && ctx.Err() == nil {
			s.log.Error("handling warning event", "namespace", e.Namespace, "name", e.Name, "error", err)
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    handle,
		UpdateFunc: func(_, obj any) { handle(obj) },
	}); err != nil {
		return fmt.Errorf("adding event handler: %w", err)
	}
	go func() {
		if cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
			s.synced.Store(true)
		}
	}()
	inf.RunWithContext(ctx)
	return nil
}

// Finding is the finding for one Warning Event. Its rule is the reason and its identity the message: the count
// and timestamps that change as the warning repeats are left out, so a repeat is the same finding.
func Finding(e *corev1.Event) *pipeline.Event {
	obj := e.InvolvedObject
	ns := obj.Namespace
	if ns == "" {
		ns = e.Namespace
	}
	return &pipeline.Event{
		Source:    Name,
		Category:  v1alpha1.CategoryOperations,
		Severity:  v1alpha1.SeverityMedium,
		EventType: pipeline.NormalizeEventType(e.Reason),
		Resource: v1alpha1.ResourceRef{
			APIVersion: obj.APIVersion, Kind: obj.Kind, Namespace: ns, Name: obj.Name,
		},
		Rule:        e.Reason,
		Identity:    e.Message,
		Title:       e.Reason + " on " + obj.Kind + " " + obj.Name,
		Description: e.Message,
		Details: map[string]string{
			"reason":     e.Reason,
			"count":      strconv.Itoa(int(max(e.Count, 1))),
			"reporter":   reporter(e),
			"event":      e.Name,
			"firstSeen":  detectedAt(e).Format(time.RFC3339),
			"objectUID":  string(obj.UID),
			"objectPath": obj.FieldPath,
		},
		DetectedAt: detectedAt(e),
		Stateful:   true,
	}
}

func reporter(e *corev1.Event) string {
	if e.ReportingController != "" {
		return e.ReportingController
	}
	return e.Source.Component
}

func detectedAt(e *corev1.Event) time.Time {
	switch {
	case !e.FirstTimestamp.IsZero():
		return e.FirstTimestamp.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	}
	return e.CreationTimestamp.Time
}

// stripEvent keeps only what Finding reads, so the cache grows with warnings, not with their
// managed fields and annotations.
func stripEvent(obj any) (any, error) {
	e, ok := obj.(*corev1.Event)
	if !ok {
		return obj, nil
	}
	e.ManagedFields = nil
	e.Annotations = nil
	e.Labels = nil
	e.Related = nil
	e.Series = nil
	return e, nil
}
