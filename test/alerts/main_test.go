// Package alerts runs the chart's alert rules, as rendered, in a real Prometheus (Debian's
// package) that scrapes real zen-watcher replicas against a real kube-apiserver and redis-server,
// and checks that each alert follows the fault it names: it becomes pending when the fault
// starts, fires after its for:, and resolves when the fault ends; in a healthy steady state
// none fires.
package alerts

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/kube-zen/zen-watcher/internal/testenv"
)

var (
	cluster *testenv.Cluster
	binary  string
	helm    string
	root    string
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if err := setUp(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(filepath.Dir(binary))
	return testenv.RunWithCluster(m, testenv.Options{}, &cluster)
}

func setUp() error {
	var err error
	if root, err = testenv.RepoRoot(); err != nil {
		return err
	}
	for _, tool := range []string{"prometheus", "promtool"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is not installed: run hack/ensure-prometheus.sh (or make prometheus)", tool)
		}
	}
	out, err := exec.Command(filepath.Join(root, "hack", "install-helm.sh")).Output()
	if err != nil {
		return fmt.Errorf("building helm: %w", err)
	}
	helm = strings.TrimSpace(string(out))
	dir, err := os.MkdirTemp("", "zw-alerts-")
	if err != nil {
		return err
	}
	binary = filepath.Join(dir, "zen-watcher")
	build := exec.Command("go", "build", "-o", binary, "./cmd/zen-watcher")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("building zen-watcher: %v\n%s", err, out)
	}
	return nil
}

// renderRules writes the chart's rule groups, rendered for a release in namespace with the values
// set, as a Prometheus rule file in dir; it returns the file's name and the alerts in it.
func renderRules(t *testing.T, dir, namespace string, set ...string) (string, []string) {
	t.Helper()
	args := []string{"template", "zw", filepath.Join(root, "charts", "zen-watcher"), "-n", namespace,
		"--show-only", "templates/prometheusrule.yaml", "--set", "metrics.prometheusRule.enabled=true"}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	out, err := exec.Command(helm, args...).Output()
	if err != nil {
		t.Fatalf("helm template: %v", err)
	}
	var rule struct {
		Spec struct {
			Groups []struct {
				Rules []struct {
					Alert string `json:"alert"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"spec"`
	}
	var spec struct {
		Spec any `json:"spec"`
	}
	if err := yaml.Unmarshal(out, &rule); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(out, &spec); err != nil {
		t.Fatal(err)
	}
	var alerts []string
	for _, g := range rule.Spec.Groups {
		for _, r := range g.Rules {
			alerts = append(alerts, r.Alert)
		}
	}
	b, err := yaml.Marshal(spec.Spec)
	if err != nil {
		t.Fatal(err)
	}
	name := "rules-" + namespace + ".yaml"
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return name, alerts
}

// replica is one zen-watcher process on the test cluster, its member ID its name.
type replica = testenv.Replica

func startReplica(t *testing.T, name string, args ...string) *replica {
	t.Helper()
	return startReplicaOn(t, name, "", args...)
}

// startReplicaOn starts a replica serving its metrics on metricsAddr, an address a Prometheus may
// already scrape.
func startReplicaOn(t *testing.T, name, metricsAddr string, args ...string) *replica {
	t.Helper()
	return testenv.StartReplica(t, binary, name, metricsAddr,
		append([]string{"-kubeconfig", cluster.Kubeconfig, "-member-id", name}, args...)...)
}

func eventually(t *testing.T, timeout time.Duration, cond func() error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		err := cond()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("not within %s: %v", timeout, err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}
