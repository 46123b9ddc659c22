package kyverno

import (
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kube-zen/zen-watcher/internal/testenv"
	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/pipeline"
)

func parse(t *testing.T, path string) []*pipeline.Event {
	return testenv.ParseFixture(t, path, Parser{})
}

func TestPolicyReports(t *testing.T) {
	type want struct {
		eventType, rule string
		sev             v1alpha1.Severity
		res             v1alpha1.ResourceRef
	}
	cases := []struct {
		path string
		want []want
	}{
		{"policyreport/kyverno_two-rules-with-different-modes_reports-assert.yaml", []want{
			{"policy_violation", "check-ns-labels/require-ns-env-label", v1alpha1.SeverityMedium,
				v1alpha1.ResourceRef{APIVersion: "v1", Kind: "Namespace", Namespace: "good-ns-1", Name: "good-ns-1"}},
		}},
		{"policyreport/sample-falco-policy.yaml", []want{
			{"policy_violation", "Change thread namespace", v1alpha1.SeverityLow,
				v1alpha1.ResourceRef{APIVersion: "v1", Kind: "Pod", Namespace: "my-namespace", Name: "a-pod"}},
			{"policy_violation", "audit", v1alpha1.SeverityMedium, v1alpha1.ResourceRef{}},
		}},
		{"policyreport/sample-rhacm-policy.yaml", []want{
			{"policy_violation", "mustnothaveimagevuln", v1alpha1.SeverityHigh, v1alpha1.ResourceRef{
				APIVersion: "secscan.quay.redhat.com/v1alpha1", Kind: "ImageManifestVuln", Namespace: "openshift-cluster-version",
				Name: "sha256.8d104847fc2371a983f7cb01c7c0a3ab35b7381d6bf7ce355d9b32a08c0031f0"}},
		}},
		{"policyreport/sample-v1beta1-kyverno.yaml", nil}, // a single passing result
	}
	for _, tc := range cases {
		t.Run(tc.path, func(t *testing.T) {
			evs := parse(t, tc.path)
			if len(evs) != len(tc.want) {
				t.Fatalf("%d findings, want %d", len(evs), len(tc.want))
			}
			for i, w := range tc.want {
				e := evs[i]
				if e.EventType != w.eventType || e.Rule != w.rule || e.Severity != w.sev || e.Resource != w.res {
					t.Errorf("finding %d: %s %s %s %+v; want %+v", i, e.EventType, e.Rule, e.Severity, e.Resource, w)
				}
				if e.Details["policy"] == "" || e.Details["message"] == "" || !e.Stateful {
					t.Errorf("finding %d details %v", i, e.Details)
				}
			}
		})
	}
}

func TestPolicyReportVariants(t *testing.T) {
	evs := parse(t, "policyreport/sample-co.yaml")
	if len(evs) == 0 {
		t.Fatal("compliance-operator report: no findings")
	}
	warns := 0
	for _, e := range evs {
		if e.EventType == "policy_warning" {
			warns++
		}
		if e.Category != v1alpha1.CategoryCompliance {
			t.Errorf("category %s", e.Category)
		}
	}
	if warns == 0 {
		t.Error("no warning among the compliance-operator results")
	}
	// A result of error, with the report's scope and a security category.
	u := &unstructured.Unstructured{Object: map[string]any{
		"kind": "PolicyReport", "metadata": map[string]any{"name": "r", "namespace": "shop"},
		"scope": map[string]any{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "namespace": "shop"},
		"results": []any{
			map[string]any{"policy": "p", "rule": "r", "result": "error", "message": "engine failed", "category": "Pod Security Standards (Baseline)"},
			map[string]any{"policy": "p", "rule": "ok", "result": "skip"},
		},
	}}
	evs, err := Parser{}.ParseObject(u)
	if err != nil || len(evs) != 1 {
		t.Fatalf("%v, %d", err, len(evs))
	}
	if e := evs[0]; e.EventType != "policy_error" || e.Severity != v1alpha1.SeverityHigh ||
		e.Category != v1alpha1.CategorySecurity || e.Resource.Kind != "Deployment" {
		t.Errorf("%+v", e)
	}
	bad := &unstructured.Unstructured{Object: map[string]any{"kind": "PolicyReport", "results": "all good"}}
	if _, err := (Parser{}).ParseObject(bad); err == nil {
		t.Error("results of the wrong type: no error")
	}
}
