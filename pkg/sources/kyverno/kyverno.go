// Package kyverno reads policy reports (wgpolicyk8s.io PolicyReport and ClusterPolicyReport), as
// Kyverno and other policy engines write them. Each result that failed, warned or errored is one
// finding per resource it names; passing and skipped results are not findings.
package kyverno

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/pipeline"
	"github.com/kube-zen/zen-watcher/pkg/sources"
)

// Resources are the report kinds read by default.
func Resources() []schema.GroupVersionResource {
	return []schema.GroupVersionResource{
		{Group: "wgpolicyk8s.io", Version: "v1alpha2", Resource: "policyreports"},
		{Group: "wgpolicyk8s.io", Version: "v1alpha2", Resource: "clusterpolicyreports"},
	}
}

type ref struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace"`
	Name       string `json:"name"`
}

type result struct {
	Policy     string         `json:"policy"`
	Rule       string         `json:"rule"`
	Message    string         `json:"message"`
	Result     string         `json:"result"`
	Severity   string         `json:"severity"`
	Category   string         `json:"category"`
	Source     string         `json:"source"`
	Scored     bool           `json:"scored"`
	Resources  []ref          `json:"resources"`
	Properties map[string]any `json:"properties"`
}

type report struct {
	Scope   *ref     `json:"scope"`
	Source  string   `json:"source"`
	Results []result `json:"results"`
}

// Parser parses policy reports.
type Parser struct{}

// ParseObject implements sources.ObjectParser.
func (Parser) ParseObject(obj *unstructured.Unstructured) ([]*pipeline.Event, error) {
	var r report
	part := map[string]any{"scope": obj.Object["scope"], "source": obj.Object["source"], "results": obj.Object["results"]}
	if err := sources.FromObject(&unstructured.Unstructured{Object: part}, &r); err != nil {
		return nil, fmt.Errorf("%s %s/%s: %w", obj.GetKind(), obj.GetNamespace(), obj.GetName(), err)
	}
	var out []*pipeline.Event
	for _, res := range r.Results {
		eventType, ok := eventType(res.Result)
		if !ok {
			continue // pass, skip
		}
		for _, target := range targets(obj, &r, &res) {
			out = append(out, finding(obj, &r, &res, target, eventType))
		}
	}
	return out, nil
}

// eventType names a result's finding; passing and skipped results are none.
func eventType(result string) (string, bool) {
	switch strings.ToLower(result) {
	case "fail":
		return "policy_violation", true
	case "warn":
		return "policy_warning", true
	case "error":
		return "policy_error", true
	}
	return "", false
}

// targets are the resources a result is about: its own, else the report's scope, else the
// report's namespace.
func targets(obj *unstructured.Unstructured, r *report, res *result) []v1alpha1.ResourceRef {
	var out []v1alpha1.ResourceRef
	for _, x := range res.Resources {
		out = append(out, toRef(x, obj.GetNamespace()))
	}
	if len(out) > 0 {
		return out
	}
	if r.Scope != nil && r.Scope.Name != "" {
		return []v1alpha1.ResourceRef{toRef(*r.Scope, obj.GetNamespace())}
	}
	if ns := obj.GetNamespace(); ns != "" {
		return []v1alpha1.ResourceRef{{APIVersion: "v1", Kind: "Namespace", Namespace: ns, Name: ns}}
	}
	return []v1alpha1.ResourceRef{{}}
}

func toRef(x ref, reportNS string) v1alpha1.ResourceRef {
	ns := x.Namespace
	if ns == "" && x.Kind != "Namespace" {
		ns = reportNS
	}
	if x.Kind == "Namespace" {
		ns = x.Name
	}
	return v1alpha1.ResourceRef{APIVersion: x.APIVersion, Kind: x.Kind, Namespace: ns, Name: x.Name}
}

func finding(obj *unstructured.Unstructured, r *report, res *result, target v1alpha1.ResourceRef, eventType string) *pipeline.Event {
	engine := res.Source
	if engine == "" {
		engine = r.Source
	}
	if engine == "" {
		engine = obj.GetLabels()["policy.kubernetes.io/engine"]
	}
	rule := res.Policy
	if res.Rule != "" {
		rule += "/" + res.Rule
	}
	d := map[string]string{
		"policy": res.Policy, "rule": res.Rule, "result": strings.ToLower(res.Result), "message": res.Message,
		"engine": engine, "policyCategory": res.Category, "report": obj.GetNamespace() + "/" + obj.GetName(),
	}
	if res.Scored {
		d["scored"] = "true"
	}
	for k, v := range res.Properties {
		if _, taken := d[k]; !taken && len(d) < 48 {
			d[k] = fmt.Sprint(v)
		}
	}
	title := fmt.Sprintf("%s: %s", rule, target.Name)
	if target.Name == "" {
		title = rule
	}
	return &pipeline.Event{
		Category: category(res), Severity: severity(res), EventType: eventType,
		Resource: target, Rule: rule, Identity: res.Message,
		Title: title, Description: res.Message, Details: d, Stateful: true,
	}
}

// severity is the result's own, else what its properties say, else from the result: an error in
// the policy engine is high, a failure medium, a warning low.
func severity(res *result) v1alpha1.Severity {
	propSev, _ := res.Properties["severity"].(string)
	for _, s := range []string{res.Severity, propSev} {
		if s == "" {
			continue
		}
		if sev, ok := pipeline.NormalizeSeverity(s); ok {
			return sev
		}
		return v1alpha1.Severity(strings.ToLower(s)) // counted and made info by the pipeline
	}
	switch strings.ToLower(res.Result) {
	case "error":
		return v1alpha1.SeverityHigh
	case "fail":
		return v1alpha1.SeverityMedium
	}
	return v1alpha1.SeverityLow
}

// category: policy results are compliance findings, unless the policy's category says security.
func category(res *result) v1alpha1.Category {
	c := strings.ToLower(res.Category)
	if strings.Contains(c, "security") || strings.Contains(c, "vulnerab") {
		return v1alpha1.CategorySecurity
	}
	return v1alpha1.CategoryCompliance
}
