package k8sevents

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/pipeline"
)

func TestFinding(t *testing.T) {
	first := metav1.NewTime(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	e := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{Name: "web.1", Namespace: "shop"},
		InvolvedObject: corev1.ObjectReference{
			APIVersion: "v1", Kind: "Pod", Name: "web-0", UID: "u1",
		},
		Reason: "BackOff", Message: "Back-off restarting failed container", Type: "Warning",
		Count: 3, FirstTimestamp: first, Source: corev1.EventSource{Component: "kubelet"},
	}
	f := Finding(e)
	if f.EventType != "back_off" || f.Severity != v1alpha1.SeverityMedium ||
		f.Category != v1alpha1.CategoryOperations || !f.Stateful {
		t.Errorf("classification: %+v", f)
	}
	// The involved object has no namespace here; the event's own namespace stands in.
	if f.Resource != (v1alpha1.ResourceRef{APIVersion: "v1", Kind: "Pod", Namespace: "shop", Name: "web-0"}) {
		t.Errorf("resource %+v", f.Resource)
	}
	if !f.DetectedAt.Equal(first.Time) || f.Details["count"] != "3" || f.Details["reporter"] != "kubelet" {
		t.Errorf("details %v detectedAt %v", f.Details, f.DetectedAt)
	}
	// A repeat of the warning (higher count, later timestamp) is the same finding.
	repeat := e.DeepCopy()
	repeat.Count = 9
	repeat.LastTimestamp = metav1.NewTime(first.Add(time.Hour))
	if pipeline.Fingerprint(Finding(repeat)) != pipeline.Fingerprint(f) {
		t.Error("a repeated warning changed the fingerprint")
	}
	other := e.DeepCopy()
	other.Message = "another message"
	if pipeline.Fingerprint(Finding(other)) == pipeline.Fingerprint(f) {
		t.Error("a different warning kept the fingerprint")
	}
}

func TestParserSkipsNormalEvents(t *testing.T) {
	for typ, want := range map[string]int{"Warning": 1, "Normal": 0} {
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "v1", "kind": "Event", "metadata": map[string]any{"name": "e", "namespace": "shop"},
			"involvedObject": map[string]any{"kind": "Pod", "name": "web-0"}, "reason": "BackOff", "type": typ,
		}}
		evs, err := Parser{}.ParseObject(u)
		if err != nil || len(evs) != want {
			t.Errorf("%s: %v, %d findings", typ, err, len(evs))
		}
	}
	bad := &unstructured.Unstructured{Object: map[string]any{"kind": "Event", "count": "many"}}
	if _, err := (Parser{}).ParseObject(bad); err == nil {
		t.Error("count of the wrong type: no error")
	}
}
