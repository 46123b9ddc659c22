package pipeline

import (
	"strings"
	"testing"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
)

func baseEvent() Event {
	return Event{
		Source: "trivy", Category: v1alpha1.CategorySecurity, Severity: v1alpha1.SeverityHigh,
		EventType: "vulnerability",
		Resource:  v1alpha1.ResourceRef{APIVersion: "apps/v1", Kind: "ReplicaSet", Namespace: "kube-system", Name: "coredns"},
		Rule:      "CVE-2021-3121",
		Identity:  "gogo/protobuf",
		Title:     "a title", Description: "a description",
	}
}

func TestFingerprint(t *testing.T) {
	base := baseEvent()
	fp := Fingerprint(&base)
	base.FP = fp
	if h := base.FingerprintHex(); len(h) != 16 || strings.Trim(h, "0123456789abcdef") != "" {
		t.Fatalf("fingerprint %q: want 16 hex digits", h)
	}
	same := []func(*Event){
		func(e *Event) { e.Title = "another title" },
		func(e *Event) { e.Description = "changed" },
		func(e *Event) { e.Details = map[string]string{"count": "7"} },
	}
	for i, mut := range same {
		e := baseEvent()
		mut(&e)
		if got := Fingerprint(&e); got != fp {
			t.Errorf("mutation %d of presentation changed the fingerprint", i)
		}
	}
	differ := map[string]func(*Event){
		"source":    func(e *Event) { e.Source = "kyverno" },
		"severity":  func(e *Event) { e.Severity = v1alpha1.SeverityLow },
		"category":  func(e *Event) { e.Category = v1alpha1.CategoryCompliance },
		"eventType": func(e *Event) { e.EventType = "misconfiguration" },
		"kind":      func(e *Event) { e.Resource.Kind = "Deployment" },
		"namespace": func(e *Event) { e.Resource.Namespace = "default" },
		"name":      func(e *Event) { e.Resource.Name = "coredns2" },
		"rule":      func(e *Event) { e.Rule = "CVE-2021-3122" },
		"identity":  func(e *Event) { e.Identity = "other/package" },
		// The separator keeps field boundaries: moving a character across them changes the hash.
		"boundary": func(e *Event) { e.Resource.Namespace, e.Resource.Name = "kube-systemc", "oredns" },
	}
	for name, mut := range differ {
		e := baseEvent()
		mut(&e)
		if Fingerprint(&e) == fp {
			t.Errorf("changing %s kept the fingerprint", name)
		}
	}
}
