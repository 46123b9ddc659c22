package generic

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kube-zen/zen-watcher/internal/testenv"
	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
)

// A Falco alert through the generic adapter instead of the Falco one: what a user would write for a
// tool zen-watcher does not know.
func falcoMapping() *v1alpha1.Mapping {
	return &v1alpha1.Mapping{
		Fields: []v1alpha1.FieldMapping{
			{From: ".priority", To: "severity"},
			{From: ".rule", To: "rule"},
			{From: "{.output_fields['proc\\.cmdline']}", To: "details.cmdline"},
			{From: ".hostname", To: "resource.name"},
			{From: ".tags[*]", To: "details.tags"},
		},
		SeverityMap:   map[string]v1alpha1.Severity{"Warning": "high"},
		Category:      v1alpha1.CategorySecurity,
		EventType:     "runtime_alert",
		TitleTemplate: "{{.rule}} on {{.hostname}}",
	}
}

func TestPayload(t *testing.T) {
	p, err := New(falcoMapping())
	if err != nil {
		t.Fatal(err)
	}
	body, err := testenv.Fixture("falco/single_rule_with_cat_write.json")
	if err != nil {
		t.Fatal(err)
	}
	evs, err := p.ParsePayload(body)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 8 {
		t.Fatalf("%d findings, want 8", len(evs))
	}
	e := evs[0]
	if e.Severity != v1alpha1.SeverityHigh || e.Rule != "open_from_cat" || e.Details["cmdline"] != "cat /dev/null" ||
		e.Details["tags"] != "filesystem,process,testing" || e.Resource.Name != "test-falco-hostname" ||
		e.Title != "open_from_cat on test-falco-hostname" || e.Category != v1alpha1.CategorySecurity || e.Instance == "" {
		t.Errorf("finding %+v", e)
	}
	if evs[0].Instance == evs[1].Instance {
		t.Error("two different alerts share an instance")
	}
}

func TestObject(t *testing.T) {
	p, err := New(&v1alpha1.Mapping{
		Fields:    []v1alpha1.FieldMapping{{From: ".spec.level", To: "severity"}, {From: ".spec.check", To: "rule"}},
		EventType: "custom_check", DescriptionTemplate: "{{.spec.check}} failed: {{.spec.reason}}",
	})
	if err != nil {
		t.Fatal(err)
	}
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "example.com/v1", "kind": "Finding", "metadata": map[string]any{"name": "f1", "namespace": "shop"},
		"spec": map[string]any{"level": "CRITICAL", "check": "no-root", "reason": "runs as root"},
	}}
	evs, err := p.ParseObject(obj)
	if err != nil || len(evs) != 1 {
		t.Fatalf("%v %d", err, len(evs))
	}
	e := evs[0]
	if e.Severity != v1alpha1.SeverityCritical || e.Rule != "no-root" || e.Description != "no-root failed: runs as root" ||
		e.Resource != (v1alpha1.ResourceRef{APIVersion: "example.com/v1", Kind: "Finding", Namespace: "shop", Name: "f1"}) ||
		!e.Stateful || e.Category != v1alpha1.CategoryOperations {
		t.Errorf("finding %+v", e)
	}
}

func TestBadMappings(t *testing.T) {
	cases := map[string]*v1alpha1.Mapping{
		"nil":          nil,
		"bad path":     {Fields: []v1alpha1.FieldMapping{{From: "{.spec[", To: "rule"}}},
		"bad target":   {Fields: []v1alpha1.FieldMapping{{From: ".a", To: "colour"}}},
		"bad template": {TitleTemplate: "{{.a"},
	}
	for name, m := range cases {
		if _, err := New(m); err == nil {
			t.Errorf("%s: no error", name)
		} else if name == "bad target" && !strings.Contains(err.Error(), "colour") {
			t.Errorf("error does not name the target: %v", err)
		}
	}
	p, _ := New(&v1alpha1.Mapping{Fields: []v1alpha1.FieldMapping{{From: ".a", To: "rule"}}})
	for _, body := range []string{"nope", `[1]`, `{"a":`} {
		if _, err := p.ParsePayload([]byte(body)); err == nil {
			t.Errorf("%q: no error", body)
		}
	}
}

func FuzzParsePayload(f *testing.F) {
	f.Add([]byte(`{"priority":"Warning","rule":"r","hostname":"h","tags":["a"]}`))
	f.Add([]byte(`[{"rule":{"nested":[1,2,{"x":null}]}}]`))
	p, err := New(falcoMapping())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		_, _ = p.ParsePayload(body) // must not panic or hang
	})
}
