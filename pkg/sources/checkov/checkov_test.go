package checkov

import (
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kube-zen/zen-watcher/internal/testenv"
	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
)

func configMap(key, data string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": "checkov-results", "namespace": "ci"},
		"data":     map[string]any{key: data},
	}}
}

func TestFixture(t *testing.T) {
	b, err := testenv.Fixture("checkov/defectdojo_checkov-report-severity.json")
	if err != nil {
		t.Fatal(err)
	}
	evs, err := Parser{Key: "report.json"}.ParseObject(configMap("report.json", string(b)))
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 4 {
		t.Fatalf("%d findings, want 4", len(evs))
	}
	bySev := map[v1alpha1.Severity]int{}
	for _, e := range evs {
		bySev[e.Severity]++
		if e.EventType != "iac_misconfiguration" || e.Rule == "" || e.Details["file"] == "" ||
			e.Resource != (v1alpha1.ResourceRef{APIVersion: "v1", Kind: "ConfigMap", Namespace: "ci", Name: "checkov-results"}) {
			t.Errorf("finding %+v", e)
		}
	}
	if e := evs[0]; e.Rule != "CKV_GCP_29" || e.Severity != v1alpha1.SeverityMedium || e.Details["iacResource"] != "google_storage_bucket.terragoat_website" {
		t.Errorf("first finding %+v", e)
	}
	if bySev[v1alpha1.SeverityLow] == 0 || bySev[v1alpha1.SeverityHigh] == 0 {
		t.Errorf("severities %v", bySev)
	}
}

func TestKubernetesResources(t *testing.T) {
	data := `[{"check_type":"kubernetes","results":{"failed_checks":[
	{"check_id":"CKV_K8S_20","check_name":"Containers should not run with allowPrivilegeEscalation","file_path":"/deploy.yaml",
	 "file_line_range":[1,30],"resource":"Deployment.shop.web","severity":null}]}},
	{"check_type":"dockerfile","results":{"failed_checks":[]}}]`
	evs, err := Parser{}.ParseObject(configMap("results.json", data))
	if err != nil || len(evs) != 1 {
		t.Fatalf("%v %d", err, len(evs))
	}
	if e := evs[0]; e.Resource != (v1alpha1.ResourceRef{APIVersion: "apps/v1", Kind: "Deployment", Namespace: "shop", Name: "web"}) ||
		e.Severity != v1alpha1.SeverityMedium || e.Details["lines"] != "1-30" {
		t.Errorf("%+v", e)
	}
	if _, err := (Parser{}).ParseObject(configMap("results.json", `{"results":{"failed_checks":{}}}`)); err == nil {
		t.Error("wrong shape: no error")
	}
}
