package trivy

import (
	"fmt"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kube-zen/zen-watcher/internal/testenv"
	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/pipeline"
)

func parseFixture(t *testing.T, path string) []*pipeline.Event {
	return testenv.ParseFixture(t, path, Parser{})
}

func TestVulnerabilityReport(t *testing.T) {
	evs := parseFixture(t, "trivy-operator/vulnerability-ttl.yaml")
	if len(evs) != 1 {
		t.Fatalf("%d findings, want 1", len(evs))
	}
	e := evs[0]
	want := v1alpha1.ResourceRef{APIVersion: "apps/v1", Kind: "ReplicaSet", Namespace: "kube-system", Name: "coredns-558bd4d5db"}
	if e.Resource != want || e.Severity != v1alpha1.SeverityHigh || e.Category != v1alpha1.CategorySecurity ||
		e.EventType != "vulnerability" || e.Rule != "CVE-2021-3121" || !e.Stateful {
		t.Errorf("finding %+v", e)
	}
	for k, v := range map[string]string{
		"vulnerabilityID": "CVE-2021-3121", "package": "github.com/gogo/protobuf", "installedVersion": "v1.3.1",
		"fixedVersion": "1.3.2", "score": "8.6", "primaryLink": "https://avd.aquasec.com/nvd/cve-2021-3121",
		"container": "coredns", "image": "k8s.gcr.io/coredns/coredns:v1.8.0",
	} {
		if e.Details[k] != v {
			t.Errorf("details[%s] = %q, want %q", k, e.Details[k], v)
		}
	}
	if !strings.HasPrefix(e.Description, "gogo/protobuf: plugin/unmarshal/unmarshal.go lacks") {
		t.Errorf("description %q", e.Description)
	}
}

// TestVulnerabilityReportList reads a real report list of 398 vulnerabilities: every one is a
// finding with a known severity, and all are distinct.
func TestVulnerabilityReportList(t *testing.T) {
	evs := parseFixture(t, "trivy-operator/vulnerabilityReportList.json")
	if len(evs) != 398 {
		t.Fatalf("%d findings, want 398", len(evs))
	}
	fps := map[uint64]bool{}
	bySev := map[v1alpha1.Severity]int{}
	for _, e := range evs {
		if e.Severity.Rank() < 0 {
			t.Errorf("unknown severity %q", e.Severity)
		}
		bySev[e.Severity]++
		fps[pipeline.Fingerprint(e)] = true
	}
	if len(fps) != len(evs) {
		t.Errorf("%d distinct fingerprints for %d findings", len(fps), len(evs))
	}
	if bySev[v1alpha1.SeverityCritical] == 0 || bySev[v1alpha1.SeverityLow] == 0 {
		t.Errorf("severities %v", bySev)
	}
}

func TestConfigAndRbacReports(t *testing.T) {
	cases := []struct {
		path      string
		n         int
		eventType string
		rule      string
		sev       v1alpha1.Severity
		kind      string
	}{
		{"trivy-operator/config-audit-ttl.yaml", 1, "misconfiguration", "KSV110", v1alpha1.SeverityLow, "ReplicaSet"},
		{"trivy-operator/role-rbacassessment-expected.yaml", 1, "rbac_misconfiguration", "KSV113", v1alpha1.SeverityMedium, "Role"},
	}
	for _, tc := range cases {
		t.Run(tc.path, func(t *testing.T) {
			evs := parseFixture(t, tc.path)
			if len(evs) != tc.n {
				t.Fatalf("%d findings, want %d", len(evs), tc.n)
			}
			e := evs[0]
			if e.EventType != tc.eventType || e.Rule != tc.rule || e.Severity != tc.sev || e.Resource.Kind != tc.kind {
				t.Errorf("finding %+v", e)
			}
		})
	}
	// The pod report has passing and failing checks: only the failing ones are findings.
	objs, err := testenv.FixtureObjects("trivy-operator/pod-configauditreport-expected.yaml")
	if err != nil {
		t.Fatal(err)
	}
	failing := 0
	for _, c := range objs[0].Object["report"].(map[string]any)["checks"].([]any) {
		if !c.(map[string]any)["success"].(bool) {
			failing++
		}
	}
	if evs := parseFixture(t, "trivy-operator/pod-configauditreport-expected.yaml"); len(evs) != failing || failing == 0 {
		t.Errorf("%d findings for %d failing checks", len(evs), failing)
	}
}

// TestExposedSecretNeverCopiesTheSecret: the secret's match text appears nowhere in the finding.
func TestExposedSecretNeverCopiesTheSecret(t *testing.T) {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "aquasecurity.github.io/v1alpha1", "kind": "ExposedSecretReport",
		"metadata": map[string]any{"name": "pod-app", "namespace": "shop", "labels": map[string]any{
			labelKind: "Pod", labelName: "app", labelNamespace: "shop", labelContainer: "web",
		}},
		"report": map[string]any{
			"artifact": map[string]any{"repository": "shop/web", "tag": "1.0"},
			"secrets": []any{map[string]any{
				"ruleID": "aws-access-key-id", "title": "AWS Access Key ID", "severity": "CRITICAL",
				"category": "AWS", "target": "/app/config.env", "match": "AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE",
			}},
		},
	}}
	evs, err := Parser{}.ParseObject(u)
	if err != nil || len(evs) != 1 {
		t.Fatalf("%v, %d findings", err, len(evs))
	}
	e := evs[0]
	if e.EventType != "exposed_secret" || e.Severity != v1alpha1.SeverityCritical || e.Rule != "aws-access-key-id" ||
		e.Resource != (v1alpha1.ResourceRef{APIVersion: "v1", Kind: "Pod", Namespace: "shop", Name: "app"}) {
		t.Errorf("finding %+v", e)
	}
	all := e.Title + e.Description + e.Identity
	for _, v := range e.Details {
		all += v
	}
	if strings.Contains(all, "AKIAIOSFODNN7EXAMPLE") {
		t.Error("the secret's text was copied into the finding")
	}
}

func TestMalformedReports(t *testing.T) {
	cases := map[string]map[string]any{
		"vulnerabilities not a list": {"vulnerabilities": "many"},
		"severity not a string":      {"vulnerabilities": []any{map[string]any{"severity": 7}}},
		"checks of wrong type":       {"checks": map[string]any{"a": 1}},
	}
	for name, rep := range cases {
		t.Run(name, func(t *testing.T) {
			u := &unstructured.Unstructured{Object: map[string]any{
				"kind": "VulnerabilityReport", "metadata": map[string]any{"name": "x"}, "report": rep,
			}}
			if _, err := (Parser{}).ParseObject(u); err == nil {
				t.Error("no error")
			}
		})
	}
	// Missing fields are not an error: a report without vulnerabilities has no findings.
	u := &unstructured.Unstructured{Object: map[string]any{"kind": "VulnerabilityReport", "metadata": map[string]any{"name": "x"}}}
	if evs, err := (Parser{}).ParseObject(u); err != nil || len(evs) != 0 {
		t.Errorf("empty report: %v, %d", err, len(evs))
	}
}

// TestHugeReport: a report of 10,000 vulnerabilities is 10,000 findings, parsed without trouble.
func TestHugeReport(t *testing.T) {
	vulns := make([]any, 10000)
	for i := range vulns {
		vulns[i] = map[string]any{"vulnerabilityID": fmt.Sprintf("CVE-2026-%05d", i), "resource": "pkg", "installedVersion": "1",
			"severity": []string{"CRITICAL", "HIGH", "MEDIUM", "LOW", "UNKNOWN"}[i%5], "score": float64(i % 10)}
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"kind": "VulnerabilityReport", "metadata": map[string]any{"name": "big", "namespace": "x"},
		"report": map[string]any{"vulnerabilities": vulns},
	}}
	evs, err := Parser{}.ParseObject(u)
	if err != nil || len(evs) != 10000 {
		t.Fatalf("%v, %d findings", err, len(evs))
	}
	if evs[4].Severity != v1alpha1.SeverityInfo {
		t.Errorf("UNKNOWN became %q", evs[4].Severity)
	}
}
