package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kube-zen/zen-watcher/internal/testenv"
	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
)

// TestTrivyReports runs the default trivy source on the real reports: one Observation per
// vulnerability and failed check with the report's facts, only new findings when a report changes.
func TestTrivyReports(t *testing.T) {
	ns := "trivy-e2e"
	createNamespace(t, ns)
	r := startReplica(t, "zw-trivy", "-namespace", "default")
	r.WaitReady(t, 60*time.Second)

	vr := create(t, testenv.CurrentVulnerabilityReport(testenv.RetargetTrivyReport(fixture(t, "trivy-operator/vulnerability-ttl.yaml")[0], ns)), ns)
	create(t, testenv.RetargetTrivyReport(fixture(t, "trivy-operator/config-audit-ttl.yaml")[0], ns), ns)
	obs := waitObservations(t, ns, "trivy", 2)
	byType := map[string]v1alpha1.Observation{}
	for _, o := range obs {
		byType[o.Spec.EventType] = o
	}
	v := byType["vulnerability"]
	want := v1alpha1.ResourceRef{APIVersion: "apps/v1", Kind: "ReplicaSet", Namespace: ns, Name: "coredns-558bd4d5db"}
	if v.Spec.Severity != "high" || v.Spec.Category != "security" || v.Spec.Resource != want ||
		v.Spec.Details["vulnerabilityID"] != "CVE-2021-3121" || v.Spec.Details["fixedVersion"] != "1.3.2" ||
		v.Spec.Details["installedVersion"] != "v1.3.1" || v.Spec.Details["score"] != "8.6" || v.Namespace != ns {
		t.Errorf("vulnerability Observation %s: %+v", v.Name, v.Spec)
	}
	c := byType["misconfiguration"]
	if c.Spec.Severity != "low" || c.Spec.Details["checkID"] != "KSV110" || c.Spec.Resource.Kind != "ReplicaSet" {
		t.Errorf("misconfiguration Observation: %+v", c.Spec)
	}

	// A new vulnerability in the report: one more Observation. A change that leaves the findings as
	// they were (an annotation): none.
	vulns, _, _ := unstructured.NestedSlice(vr.Object, "report", "vulnerabilities")
	extra := map[string]any{"vulnerabilityID": "CVE-2024-0001", "resource": "stdlib", "installedVersion": "1.20",
		"fixedVersion": "1.21", "severity": "CRITICAL", "title": "a new one", "primaryLink": "", "links": []any{}, "target": "", "score": 9.8,
		"lastModifiedDate": "2024-01-01T00:00:00Z", "publishedDate": "2024-01-01T00:00:00Z"}
	if err := unstructured.SetNestedSlice(vr.Object, append(vulns, extra), "report", "vulnerabilities"); err != nil {
		t.Fatal(err)
	}
	vr = update(t, vr)
	obs = waitObservations(t, ns, "trivy", 3)
	vr.SetAnnotations(map[string]string{"touched": "yes"})
	update(t, vr)
	time.Sleep(2 * time.Second)
	if n := len(observations(t, ns, "trivy")); n != 3 {
		t.Errorf("%d Observations after a change without new findings, want 3", n)
	}
	critical := 0
	for _, o := range obs {
		if o.Spec.Severity == "critical" {
			critical++
		}
	}
	if critical != 1 {
		t.Errorf("%d critical Observations, want 1", critical)
	}

	// A real report list: 398 vulnerabilities in two reports.
	big := "trivy-list"
	createNamespace(t, big)
	for _, u := range fixture(t, "trivy-operator/vulnerabilityReportList.json") {
		u = testenv.CurrentVulnerabilityReport(testenv.RetargetTrivyReport(u, big))
		u.SetName(u.GetName() + "-copy")
		create(t, u, big)
	}
	waitObservations(t, big, "trivy", 398)
}

func update(t *testing.T, u *unstructured.Unstructured) *unstructured.Unstructured {
	t.Helper()
	out, err := dyn(t).Resource(resourceOf(u)).Namespace(u.GetNamespace()).Update(context.Background(), u, metav1.UpdateOptions{})
	if err != nil {
		t.Fatalf("updating %s %s: %v", u.GetKind(), u.GetName(), err)
	}
	return out
}

// TestPolicyReports runs the default kyverno source on real policy reports, namespaced and cluster
// scoped: failing and warning results become Observations, passing ones do not.
func TestPolicyReports(t *testing.T) {
	ns := "policy-e2e"
	createNamespace(t, ns)
	ensureNamespace(t, "zen-system")
	ensureNamespace(t, "good-ns-1")
	r := startReplica(t, "zw-policy", "-namespace", "zen-system")
	r.WaitReady(t, 60*time.Second)

	for _, u := range fixture(t, "policyreport/sample-falco-policy.yaml") {
		if u.GetKind() == "PolicyReport" {
			create(t, u, ns)
		} else {
			create(t, u, "")
		}
	}
	for _, u := range fixture(t, "policyreport/kyverno_two-rules-with-different-modes_reports-assert.yaml") {
		create(t, u, "")
	}
	create(t, fixture(t, "policyreport/sample-v1beta1-kyverno.yaml")[0], ns)
	create(t, fixture(t, "policyreport/sample-rhacm-policy.yaml")[0], ns)

	// Each Observation lives in the namespace of the resource its result names: the sample's Pod is
	// in my-namespace, which does not exist here, so it lands in the release namespace, as does the
	// cluster-scoped audit result and the RHACM result about openshift-cluster-version.
	nsObs := waitObservations(t, "good-ns-1", "kyverno", 1)
	if s := nsObs[0].Spec; s.Resource.Kind != "Namespace" || s.Details["rule"] != "require-ns-env-label" ||
		s.Severity != "medium" || s.EventType != "policy_violation" {
		t.Errorf("namespace Observation %+v", s)
	}
	rest := waitObservations(t, "zen-system", "kyverno", 3)
	byPolicy := map[string]v1alpha1.ObservationSpec{}
	for _, o := range rest {
		byPolicy[string(o.Spec.Details["policy"])] = o.Spec
	}
	if s := byPolicy["Change thread namespace"]; s.Resource != (v1alpha1.ResourceRef{APIVersion: "v1", Kind: "Pod", Namespace: "my-namespace", Name: "a-pod"}) ||
		s.Severity != "low" || s.Details["container.id"] != "0f8d7e2a3296" {
		t.Errorf("pod Observation %+v", s)
	}
	if s := byPolicy["audit"]; s.Severity != "medium" || s.Details["user"] != "username" {
		t.Errorf("cluster audit Observation %+v", s)
	}
	if s := byPolicy["mustnothaveimagevuln"]; s.Severity != "high" || s.Resource.Kind != "ImageManifestVuln" {
		t.Errorf("RHACM Observation %+v", s)
	}
	if n := len(observations(t, ns, "kyverno")); n != 0 {
		t.Errorf("%d Observations in the reports' own namespace, want 0 (the passing v1beta1 result is not one)", n)
	}
}

// TestConfigMapSources reads kube-bench and Checkov results from labelled ConfigMaps through
// Ingesters.
func TestConfigMapSources(t *testing.T) {
	ns := "bench-e2e"
	createNamespace(t, ns)
	ingester(t, "kube-bench", v1alpha1.IngesterSpec{Source: "kube-bench", Adapter: v1alpha1.AdapterKubeBench,
		Informer: &v1alpha1.InformerSource{Version: "v1", Resource: "configmaps", LabelSelector: "app=kube-bench"}})
	ingester(t, "checkov", v1alpha1.IngesterSpec{Source: "checkov", Adapter: v1alpha1.AdapterCheckov,
		Informer:       &v1alpha1.InformerSource{Version: "v1", Resource: "configmaps", LabelSelector: "app=checkov"},
		AdapterOptions: map[string]string{"resultsKey": "report.json"}})
	r := startReplica(t, "zw-bench", "-namespace", "default")
	r.WaitReady(t, 60*time.Second)

	for _, c := range []struct{ name, app, key, path string }{
		{"kube-bench-master", "kube-bench", "results.json", "kube-bench/result.json"},
		{"checkov-terraform", "checkov", "report.json", "checkov/defectdojo_checkov-report-severity.json"},
	} {
		data := string(fixtureBytes(t, c.path))
		create(t, &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "v1", "kind": "ConfigMap",
			"metadata": map[string]any{"name": c.name, "labels": map[string]any{"app": c.app}},
			"data":     map[string]any{c.key: data},
		}}, ns)
	}
	bench := waitObservations(t, ns, "kube-bench", 1) // the fixture has one WARN and no FAIL
	for _, o := range bench {
		if o.Spec.EventType != "cis_benchmark_warning" || o.Spec.Severity != "low" || o.Spec.Category != "compliance" {
			t.Errorf("kube-bench Observation %+v", o.Spec)
		}
	}
	ck := waitObservations(t, ns, "checkov", 4)
	if ck[0].Spec.Details["checkID"] == "" || ck[0].Spec.EventType != "iac_misconfiguration" {
		t.Errorf("checkov Observation %+v", ck[0].Spec)
	}
	// Malformed results: no finding, and the Ingester says what is wrong.
	create(t, &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": "kube-bench-broken", "labels": map[string]any{"app": "kube-bench"}},
		"data":     map[string]any{"results.json": `{"Controls": "truncated`},
	}}, ns)
	eventually(t, 20*time.Second, func(context.Context) error {
		if st := getIngester(t, "kube-bench").Status; !strings.Contains(st.LastError, "kube-bench-broken") {
			return fmt.Errorf("kube-bench status %+v", st)
		}
		return nil
	})
	eventually(t, 20*time.Second, func(context.Context) error {
		st := getIngester(t, "checkov").Status
		if st.ObservationsWritten != 4 || st.EventsSeen != 4 || len(st.Conditions) == 0 || st.Conditions[0].Status != "True" {
			return fmt.Errorf("checkov status %+v", st)
		}
		return nil
	})
}
