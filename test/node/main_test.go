//go:build node

// Package node runs the chart on a real node: `make node-up` starts one (hack/start-node.sh) with
// the images `make image` and `make redis-image` write, the tests install and drive the chart
// there with helm, and `make node-down` must leave the machine as it was. Run with `make test-node`
// (root; the build tag keeps `go test ./...` from starting a node).
package node

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kube-zen/zen-watcher/internal/testenv"
)

// node is the running node's clients and tools, set by TestMain.
var node struct {
	root       string
	kubeconfig string
	kube       kubernetes.Interface
	dyn        dynamic.Interface
	meta       metadata.Interface
	helm       string
	kubectl    string
	redisImage string
}

func TestMain(m *testing.M) {
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	root, err := testenv.RepoRoot()
	if err != nil {
		return 1, err
	}
	node.root = root
	up, err := makeTarget(root, "-s", "--no-print-directory", "node-up")
	if err != nil {
		_, _ = makeTarget(root, "-s", "--no-print-directory", "node-down")
		return 1, err
	}
	lines := strings.Split(strings.TrimSpace(up), "\n")
	node.kubeconfig = lines[len(lines)-1]
	code, err := setUp()
	if err == nil {
		code = m.Run()
	}
	// The node must go and leave nothing: node-down fails when it cannot undo everything.
	if out, derr := makeTarget(root, "-s", "--no-print-directory", "node-down"); derr != nil {
		return 1, fmt.Errorf("node-down: %w\n%s", derr, out)
	}
	return code, err
}

func setUp() (int, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", node.kubeconfig)
	if err != nil {
		return 1, fmt.Errorf("reading the node's kubeconfig %q: %w", node.kubeconfig, err)
	}
	// The loads the tests drive are findings a cluster makes, not one client's requests: client-go's
	// default of 5 a second would cap them.
	cfg.QPS, cfg.Burst = 500, 1000
	if node.kube, err = kubernetes.NewForConfig(cfg); err != nil {
		return 1, err
	}
	if node.dyn, err = dynamic.NewForConfig(cfg); err != nil {
		return 1, err
	}
	if node.meta, err = metadata.NewForConfig(cfg); err != nil {
		return 1, err
	}
	node.kubectl = filepath.Join(testenv.AssetsDir(), "kubectl")
	helm := exec.Command(filepath.Join(node.root, "hack", "install-helm.sh"))
	helm.Dir = node.root
	out, err := helm.Output()
	if err != nil {
		return 1, fmt.Errorf("building helm: %w", err)
	}
	node.helm = strings.TrimSpace(string(out))
	if node.redisImage, err = imageName(filepath.Join(node.root, "bin", "zen-watcher-redis.oci.tar")); err != nil {
		return 1, err
	}
	return 0, nil
}

// imageName reads the name an OCI image archive gives its image (its index's containerd
// annotation, which ctr import names the image by).
func imageName(archive string) (string, error) {
	f, err := os.Open(archive)
	if err != nil {
		return "", err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err != nil {
			return "", fmt.Errorf("%s: no index.json: %w", archive, err)
		}
		if h.Name != "index.json" {
			continue
		}
		var index struct {
			Manifests []struct{ Annotations map[string]string }
		}
		if err := json.NewDecoder(tr).Decode(&index); err != nil || len(index.Manifests) != 1 {
			return "", fmt.Errorf("%s: index.json: %v", archive, err)
		}
		return index.Manifests[0].Annotations["io.containerd.image.name"], nil
	}
}

// makeTarget runs make in the repository and returns what it printed on standard output.
func makeTarget(root string, args ...string) (string, error) {
	cmd := exec.Command("make", args...)
	cmd.Dir = root
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("make %s: %w\n%s%s", strings.Join(args, " "), err, out.String(), errOut.String())
	}
	return out.String(), nil
}

// command runs name with args and the node's kubeconfig, and fails the test on an error.
func command(t *testing.T, timeout time.Duration, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = node.root
	cmd.Env = append(os.Environ(), "KUBECONFIG="+node.kubeconfig)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
	return string(out)
}

// eventually retries check until it returns nil or timeout passes, then fails with its last error.
func eventually(t *testing.T, timeout time.Duration, what string, check func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var err error
	for {
		if err = check(ctx); err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}
