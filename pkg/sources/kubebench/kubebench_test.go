package kubebench

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kube-zen/zen-watcher/internal/testenv"
	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
)

func configMap(data string, labels map[string]any) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": "kube-bench-node-1", "namespace": "security", "labels": labels},
		"data":     map[string]any{"results.json": data},
	}}
}

func TestFixtures(t *testing.T) {
	for _, path := range []string{"kube-bench/result.json", "kube-bench/result_no_totals.json"} {
		t.Run(path, func(t *testing.T) {
			b, err := testenv.Fixture(path)
			if err != nil {
				t.Fatal(err)
			}
			warns := strings.Count(string(b), `"status": "WARN"`) + strings.Count(string(b), `"status":"WARN"`)
			evs, err := Parser{}.ParseObject(configMap(string(b), nil))
			if err != nil {
				t.Fatal(err)
			}
			if len(evs) != warns || warns == 0 {
				t.Fatalf("%d findings for %d WARN results", len(evs), warns)
			}
			for _, e := range evs {
				if e.Severity != v1alpha1.SeverityLow || e.EventType != "cis_benchmark_warning" ||
					e.Category != v1alpha1.CategoryCompliance || e.Rule == "" || e.Resource.Kind != "ConfigMap" {
					t.Errorf("finding %+v", e)
				}
			}
		})
	}
}

func TestFailAndNode(t *testing.T) {
	data := `{"Controls":[{"id":"4","version":"cis-1.8","text":"Worker Node Security Configuration","node_type":"node",
	"tests":[{"section":"4.2","desc":"Kubelet","results":[
	{"test_number":"4.2.1","test_desc":"Ensure that the --anonymous-auth argument is set to false","status":"FAIL","scored":true,"remediation":"Set authentication: anonymous: enabled: false"},
	{"test_number":"4.2.2","test_desc":"Ensure that the --authorization-mode argument is not set to AlwaysAllow","status":"FAIL","scored":false},
	{"test_number":"4.2.3","test_desc":"ok","status":"PASS","scored":true}]}]}],"Totals":{"total_fail":2}}`
	evs, err := Parser{}.ParseObject(configMap(data, map[string]any{"kube-bench.aquasecurity.github.io/node": "node-1"}))
	if err != nil || len(evs) != 2 {
		t.Fatalf("%v, %d findings", err, len(evs))
	}
	if e := evs[0]; e.Severity != v1alpha1.SeverityHigh || e.EventType != "cis_benchmark_failure" || e.Rule != "4.2.1" ||
		e.Resource != (v1alpha1.ResourceRef{APIVersion: "v1", Kind: "Node", Name: "node-1"}) ||
		e.Details["remediation"] == "" {
		t.Errorf("scored failure %+v", e)
	}
	if evs[1].Severity != v1alpha1.SeverityMedium {
		t.Errorf("unscored failure severity %s", evs[1].Severity)
	}
}

func TestBadInput(t *testing.T) {
	for name, obj := range map[string]*unstructured.Unstructured{
		"not JSON":    configMap("PASS 1.1.1", nil),
		"wrong shape": configMap(`{"Controls":"all"}`, nil),
		"no key":      {Object: map[string]any{"kind": "ConfigMap", "metadata": map[string]any{"name": "x"}, "data": map[string]any{"other": "{}"}}},
	} {
		if _, err := (Parser{}).ParseObject(obj); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
