// Package chart tests the Helm chart with the helm binary the project builds, against a real
// kube-apiserver: lint and render every profile, server-side dry-run of every manifest, install,
// upgrade and uninstall, and a replica that runs on the chart's ServiceAccount alone. It is a module
// of its own so that the Prometheus rule parser it needs stays out of the product's dependencies.
package chart

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kube-zen/zen-watcher/internal/testenv"
)

var (
	cluster  *testenv.Cluster
	helm     string
	chartDir string
	binary   string
)

// prometheusOperator is the release whose CRDs the ServiceMonitor and PrometheusRule are checked
// against; the module proxy serves its source with the CRDs in example/prometheus-operator-crd.
const prometheusOperator = "github.com/prometheus-operator/prometheus-operator@v0.94.0"

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if err := setUp(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		if err := cluster.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping control plane:", err)
		}
		_ = os.RemoveAll(filepath.Dir(binary))
	}()
	return m.Run()
}

func setUp() error {
	root, err := testenv.RepoRoot()
	if err != nil {
		return err
	}
	chartDir = filepath.Join(root, "charts", "zen-watcher")
	out, err := command(root, "hack/install-helm.sh")
	if err != nil {
		return fmt.Errorf("building helm: %w", err)
	}
	helm = strings.TrimSpace(out)
	dir, err := os.MkdirTemp("", "zw-chart-")
	if err != nil {
		return err
	}
	binary = filepath.Join(dir, "zen-watcher")
	if _, err := command(root, "go", "build", "-o", binary, "./cmd/zen-watcher"); err != nil {
		return fmt.Errorf("building zen-watcher: %w", err)
	}
	monitoring, err := monitoringCRDs()
	if err != nil {
		return err
	}
	tools, err := testenv.ToolCRDs()
	if err != nil {
		return err
	}
	cluster, err = testenv.StartCluster(testenv.Options{ExtraCRDDirs: append(tools, monitoring...)})
	return err
}

// monitoringCRDs are the ServiceMonitor and PrometheusRule CRDs of the Prometheus Operator's own
// source, fetched through the module proxy into the module cache.
func monitoringCRDs() ([]string, error) {
	out, err := command("", "go", "mod", "download", "-json", prometheusOperator)
	if err != nil {
		return nil, fmt.Errorf("downloading %s for its CRDs: %w", prometheusOperator, err)
	}
	var mod struct{ Dir, Error string }
	if err := json.Unmarshal([]byte(out), &mod); err != nil || mod.Dir == "" {
		return nil, fmt.Errorf("downloading %s: %v %s", prometheusOperator, err, mod.Error)
	}
	dir := filepath.Join(mod.Dir, "example", "prometheus-operator-crd")
	return []string{
		filepath.Join(dir, "monitoring.coreos.com_servicemonitors.yaml"),
		filepath.Join(dir, "monitoring.coreos.com_prometheusrules.yaml"),
	}, nil
}

func command(dir, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// runHelm runs helm against the test cluster.
func runHelm(t *testing.T, args ...string) string {
	t.Helper()
	out, err := command(chartDir, helm, append(args, "--kubeconfig", cluster.Kubeconfig)...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// profiles are the documented value sets: the defaults and each file in the chart's ci/.
func profiles(t *testing.T) map[string]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(chartDir, "ci", "*-values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{"default": ""}
	for _, f := range files {
		out[strings.TrimSuffix(filepath.Base(f), "-values.yaml")] = f
	}
	return out
}

// render runs helm template for a profile and returns its objects.
func render(t *testing.T, release, namespace, valuesFile string, set ...string) []*unstructured.Unstructured {
	t.Helper()
	args := []string{"template", release, ".", "-n", namespace}
	if valuesFile != "" {
		args = append(args, "-f", valuesFile)
	}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	out, err := command(chartDir, helm, args...)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := testenv.DecodeObjects([]byte(out))
	if err != nil {
		t.Fatalf("decoding helm template output: %v", err)
	}
	return objs
}

func kinds(objs []*unstructured.Unstructured) map[string]int {
	out := map[string]int{}
	for _, o := range objs {
		out[o.GetKind()]++
	}
	return out
}

func find(objs []*unstructured.Unstructured, kind, suffix string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && strings.HasSuffix(o.GetName(), suffix) {
			return o
		}
	}
	return nil
}

func monitoringGVR(resource string) schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: "monitoring.coreos.com", Version: "v1", Resource: resource}
}
