// Package e2e runs zen-watcher replicas as real processes, exactly as `make run` does, against a
// real kube-apiserver and etcd (and Redis where a test needs it).
package e2e

import (
	"context"
	"fmt"
	"net/http"
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
type replica struct {
	name        string
	metricsAddr string
	webhookAddr string
	cmd         *exec.Cmd
	out         *testenv.Buffer
	exited      chan struct{}
	err         error
}

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
	r := &replica{
		name:        name,
		metricsAddr: testenv.FreeAddr(t),
		webhookAddr: testenv.FreeAddr(t),
		out:         &testenv.Buffer{},
		exited:      make(chan struct{}),
	}
	args := append([]string{"-kubeconfig", cluster.Kubeconfig, "-metrics-addr", r.metricsAddr,
		"-webhook-addr", r.webhookAddr, "-order-tune-interval", "1s"}, extra...)
	r.cmd = exec.Command(bin, args...)
	r.cmd.Stdout, r.cmd.Stderr = r.out, r.out
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() { r.err = r.cmd.Wait(); close(r.exited) }()
	t.Cleanup(func() {
		r.stop()
		if t.Failed() {
			t.Logf("output of %s:\n%s", name, r.out.String())
		}
	})
	return r
}

// stop ends the process gracefully and waits for it.
func (r *replica) stop() {
	select {
	case <-r.exited:
		return
	default:
	}
	_ = r.cmd.Process.Signal(os.Interrupt)
	select {
	case <-r.exited:
	case <-time.After(15 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.exited
	}
}

// waitReady polls /readyz until it answers 200.
func (r *replica) waitReady(t *testing.T, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-r.exited:
			t.Fatalf("%s exited before it was ready: %v\n%s", r.name, r.err, r.out.String())
		default:
		}
		resp, err := http.Get("http://" + r.metricsAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s not ready within %s\n%s", r.name, timeout, r.out.String())
}

// eventually retries cond until it returns nil or timeout passes, then fails with its last error.
func eventually(t *testing.T, timeout time.Duration, cond func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var err error
	for {
		if err = cond(ctx); err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("condition not met within %s: %v", timeout, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
