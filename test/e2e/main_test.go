// Package e2e runs zen-watcher replicas as real processes, exactly as `make run` does, against a
// real kube-apiserver and etcd (and Redis where a test needs it).
package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/kube-zen/zen-watcher/internal/testenv"
)

var (
	cluster *testenv.Cluster
	binary  string
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "zw-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binary = filepath.Join(dir, "zen-watcher")
	root, err := testenv.RepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	build := exec.Command("go", "build", "-race", "-o", binary, "./cmd/zen-watcher")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building zen-watcher: %v\n%s", err, out)
		return 1
	}
	crds, err := testenv.ToolCRDs()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cluster, err = testenv.StartCluster(testenv.Options{ExtraCRDDirs: crds})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		if err := cluster.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping control plane:", err)
		}
	}()
	return m.Run()
}

// replica is one zen-watcher process.
type replica struct{ *testenv.Replica }

// startReplica starts the daemon with the test cluster's kubeconfig; extra flags come last and win.
func startReplica(t *testing.T, name string, extra ...string) *replica {
	t.Helper()
	return startBinary(t, binary, name, extra...)
}

// plainBinary is the daemon built without the race detector, whose shadow memory would hide
// what a test measures of the process's own memory; built once, by the first test that needs it.
var plainBinary = sync.OnceValues(func() (string, error) {
	root, err := testenv.RepoRoot()
	if err != nil {
		return "", err
	}
	path := binary + "-plain"
	build := exec.Command("go", "build", "-o", path, "./cmd/zen-watcher")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building zen-watcher without -race: %v\n%s", err, out)
	}
	return path, nil
})

// startBinary is startReplica with the daemon at bin.
func startBinary(t *testing.T, bin, name string, extra ...string) *replica {
	t.Helper()
	args := append([]string{"-kubeconfig", cluster.Kubeconfig, "-order-tune-interval", "1s"}, extra...)
	return &replica{testenv.StartReplica(t, bin, name, "", args...)}
}

// eventually retries cond until it returns nil or timeout passes, then fails with what was last wrong.
func eventually(t *testing.T, timeout time.Duration, cond func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	// cause is the last failure that is not the wait's own deadline cutting a poll short: it says
	// what was still wrong, where the final poll's error often says only that time ran out.
	var cause error
	for {
		err := cond(ctx)
		if err == nil {
			return
		}
		if ctx.Err() == nil || cause == nil {
			cause = err
		}
		select {
		case <-ctx.Done():
			if err != cause {
				t.Fatalf("condition not met within %s: %v (the last poll, cut short: %v)", timeout, cause, err)
			}
			t.Fatalf("condition not met within %s: %v", timeout, cause)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
