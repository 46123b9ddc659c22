// Package testenv brings up the real parts zen-watcher's integration tests run against: a
// kube-apiserver and etcd (through controller-runtime's envtest, with the binaries that
// `make tools` builds) with the project's CRDs installed, and a real redis-server on a free port.
package testenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

// K8sVersion is the version of the control-plane binaries the tests expect.
const K8sVersion = "v1.37.2"

// Options tunes the control plane.
type Options struct {
	// ExtraCRDDirs are installed after the project's own CRDs (the tools' CRDs, for example).
	ExtraCRDDirs []string
	// FeatureGates are passed to kube-apiserver; ShardedListAndWatch=true is always on unless
	// DisableSharding is set.
	DisableSharding bool
	// APIServerArgs are further kube-apiserver flags, name (without dashes) to value: an audit
	// policy and webhook backend, say.
	APIServerArgs map[string]string
}

// Cluster is a running control plane.
type Cluster struct {
	// Config reaches the API server as a cluster administrator.
	Config *rest.Config
	// Kubeconfig is a file with the same credentials, for processes the test starts.
	Kubeconfig string
	// Kube is a typed client on Config.
	Kube kubernetes.Interface
	// EtcdURL is etcd's client URL (its /metrics tells the database size).
	EtcdURL string

	env *envtest.Environment
	dir string
}

// AssetsDir is where the control-plane binaries are: $KUBEBUILDER_ASSETS, else the cache that
// hack/build-k8s-bins.sh fills.
func AssetsDir() string {
	if d := os.Getenv("KUBEBUILDER_ASSETS"); d != "" {
		return d
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Join(cache, "zen-watcher", "k8s", K8sVersion)
}

// RepoRoot is the directory of the module's go.mod, found from the working directory up.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			if _, err := os.Stat(filepath.Join(dir, "charts", "zen-watcher", "crds")); err == nil {
				return dir, nil
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("repository root (go.mod with charts/zen-watcher/crds) not found")
		}
		dir = parent
	}
}

// StartCluster starts etcd and kube-apiserver, installs the CRDs and waits until they are served.
func StartCluster(opts Options) (*Cluster, error) {
	if err := unitOnly("a control plane"); err != nil {
		return nil, err
	}
	assets := AssetsDir()
	var missing []string
	for _, b := range []string{"kube-apiserver", "etcd", "kubectl"} {
		if _, err := os.Stat(filepath.Join(assets, b)); err != nil {
			missing = append(missing, b)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("control-plane binaries %s missing in %s: run `make tools` (about 11 minutes "+
			"the first time), or point KUBEBUILDER_ASSETS at a directory that has them",
			strings.Join(missing, ", "), assets)
	}
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     append([]string{filepath.Join(root, "charts", "zen-watcher", "crds")}, opts.ExtraCRDDirs...),
		ErrorIfCRDPathMissing: true,
	}
	if !opts.DisableSharding {
		env.ControlPlane.GetAPIServer().Configure().Append("feature-gates", "ShardedListAndWatch=true")
	}
	for name, value := range opts.APIServerArgs {
		env.ControlPlane.GetAPIServer().Configure().Set(name, value)
	}
	// envtest logs through controller-runtime's logger, which otherwise prints a stack trace on
	// every test binary's output to say that it was never set.
	ctrllog.SetLogger(logr.Discard())
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("starting kube-apiserver and etcd from %s: %w", assets, err)
	}
	c := &Cluster{Config: cfg, env: env}
	if u := env.ControlPlane.Etcd.URL; u != nil {
		c.EtcdURL = u.String()
	}
	if err := c.finish(); err != nil {
		_ = env.Stop()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) finish() error {
	c.Config.QPS, c.Config.Burst = -1, 1000
	kube, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		return fmt.Errorf("building client: %w", err)
	}
	c.Kube = kube
	user, err := c.env.AddUser(envtest.User{Name: "zen-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return fmt.Errorf("adding admin user: %w", err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return fmt.Errorf("writing kubeconfig: %w", err)
	}
	c.dir, err = os.MkdirTemp("", "zw-testenv-")
	if err != nil {
		return err
	}
	c.Kubeconfig = filepath.Join(c.dir, "kubeconfig")
	return os.WriteFile(c.Kubeconfig, kc, 0o600)
}

// Stop stops the control plane and removes its files.
func (c *Cluster) Stop() error {
	err := c.env.Stop()
	if c.dir != "" {
		err = errors.Join(err, os.RemoveAll(c.dir))
	}
	return err
}

// RunWithCluster is a TestMain body: it starts a control plane into *c, runs the tests, stops it, and
// returns the exit code. A control plane that does not start fails the package with the reason.
func RunWithCluster(m *testing.M, opts Options, c **Cluster) int {
	cluster, err := StartCluster(opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	*c = cluster
	defer func() {
		if err := cluster.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping control plane:", err)
		}
	}()
	return m.Run()
}
