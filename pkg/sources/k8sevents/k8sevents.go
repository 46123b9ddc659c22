// Package k8sevents turns Kubernetes Warning Events into findings, one per distinct warning: the
// same warning repeated (its count going up) is the same finding.
package k8sevents

import (
	"fmt"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/pipeline"
)

// Resource is the core Events resource; FieldSelector keeps the watch to warnings.
func Resource() schema.GroupVersionResource {
	return schema.GroupVersionResource{Version: "v1", Resource: "events"}
}

// FieldSelector selects Warning Events on the API server.
const FieldSelector = "type=Warning"

// Parser turns a Warning Event into its finding; other events yield none.
type Parser struct{}

// ParseObject implements sources.ObjectParser.
func (Parser) ParseObject(obj *unstructured.Unstructured) ([]*pipeline.Event, error) {
	var e corev1.Event
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, &e); err != nil {
		return nil, fmt.Errorf("event %s/%s: %w", obj.GetNamespace(), obj.GetName(), err)
	}
	if e.Type != corev1.EventTypeWarning {
		return nil, nil
	}
	return []*pipeline.Event{Finding(&e)}, nil
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
