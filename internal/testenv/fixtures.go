package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kube-zen/zen-watcher/pkg/pipeline"
	"github.com/kube-zen/zen-watcher/pkg/sources"
)

// FixturesDir is where the tools' own objects and payloads are: testdata/upstream in the
// repository, one folder per tool, each with a SOURCES.md naming every file's origin and licence.
func FixturesDir() (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	d := filepath.Join(root, "testdata", "upstream")
	if _, err := os.Stat(d); err != nil {
		return "", fmt.Errorf("upstream fixtures not found at %s: %w", d, err)
	}
	return d, nil
}

// Fixture reads one fixture file, by its path below FixturesDir.
func Fixture(path string) ([]byte, error) {
	dir, err := FixturesDir()
	if err != nil {
		return nil, err
	}
	return os.ReadFile(filepath.Join(dir, path))
}

// FixtureObjects reads the Kubernetes objects of a fixture: YAML documents or JSON, with a List's
// items unpacked.
func FixtureObjects(path string) ([]*unstructured.Unstructured, error) {
	b, err := Fixture(path)
	if err != nil {
		return nil, err
	}
	objs, err := DecodeObjects(b)
	if err != nil {
		return nil, fmt.Errorf("decoding %s: %w", path, err)
	}
	return objs, nil
}

// DecodeObjects reads Kubernetes objects from YAML documents or JSON; see sources.DecodeObjects.
func DecodeObjects(b []byte) ([]*unstructured.Unstructured, error) { return sources.DecodeObjects(b) }

// ParseFixture runs parser over every object of a fixture and returns all their findings; a parse
// error fails the test.
func ParseFixture(t testing.TB, path string, parser sources.ObjectParser) []*pipeline.Event {
	t.Helper()
	objs, err := FixtureObjects(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []*pipeline.Event
	for _, o := range objs {
		evs, err := parser.ParseObject(o)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, evs...)
	}
	return out
}

// ToolCRDs are the paths of the tools' own CRDs among the fixtures (Trivy Operator's reports and
// the policy reports Kyverno writes), to install with the control plane. cert-manager's is left
// out: tests install it while zen-watcher runs, to show a source waiting for its CRD.
func ToolCRDs() ([]string, error) {
	dir, err := FixturesDir()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, f := range []string{
		"trivy-operator/aquasecurity.github.io_vulnerabilityreports.yaml",
		"trivy-operator/aquasecurity.github.io_configauditreports.yaml",
		"trivy-operator/aquasecurity.github.io_exposedsecretreports.yaml",
		"trivy-operator/aquasecurity.github.io_rbacassessmentreports.yaml",
		"trivy-operator/aquasecurity.github.io_clustervulnerabilityreports.yaml",
		"trivy-operator/aquasecurity.github.io_clusterconfigauditreports.yaml",
		"trivy-operator/aquasecurity.github.io_clusterrbacassessmentreports.yaml",
		"policyreport/wg-policy_wgpolicyk8s.io_policyreports.yaml",
		"policyreport/wg-policy_wgpolicyk8s.io_clusterpolicyreports.yaml",
	} {
		out = append(out, filepath.Join(dir, f))
	}
	return out, nil
}

// CurrentVulnerabilityReport fills in the fields that today's VulnerabilityReport CRD requires and the 2022 samples
// predate (the OS, and each vulnerability's dates), leaving everything else as the tool wrote it.
func CurrentVulnerabilityReport(u *unstructured.Unstructured) *unstructured.Unstructured {
	u = u.DeepCopy()
	if _, found, _ := unstructured.NestedMap(u.Object, "report", "os"); !found {
		_ = unstructured.SetNestedMap(u.Object, map[string]any{"family": "debian", "name": "11"}, "report", "os")
	}
	vulns, _, _ := unstructured.NestedSlice(u.Object, "report", "vulnerabilities")
	for _, v := range vulns {
		m := v.(map[string]any)
		for _, k := range []string{"lastModifiedDate", "publishedDate"} {
			if _, ok := m[k]; !ok {
				m[k] = "2022-01-01T00:00:00Z"
			}
		}
	}
	_ = unstructured.SetNestedSlice(u.Object, vulns, "report", "vulnerabilities")
	return u
}

// RetargetTrivyReport moves a Trivy report to ns, with the labels that name its workload (from
// which the Observations take their namespace).
func RetargetTrivyReport(u *unstructured.Unstructured, ns string) *unstructured.Unstructured {
	u = u.DeepCopy()
	labels := u.GetLabels()
	if _, ok := labels["trivy-operator.resource.namespace"]; ok {
		labels["trivy-operator.resource.namespace"] = ns
		u.SetLabels(labels)
	}
	return u
}
