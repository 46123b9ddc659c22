package testenv

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// ProcessCluster is etcd and kube-apiserver run as this package's own processes, with their
// certificates and data in a directory that outlives either: the API server can be stopped and
// started again at the same address, with the same serving certificate, over the same etcd, as a
// real control plane is restarted. (envtest cannot: its Stop removes the certificates.)
type ProcessCluster struct {
	// Config reaches the API server as a cluster administrator.
	Config *rest.Config
	// Kubeconfig is a file with the same credentials, for processes the test starts.
	Kubeconfig string
	// Kube is a typed client on Config.
	Kube kubernetes.Interface

	dir       string
	etcd      *exec.Cmd
	apiserver *exec.Cmd
	apiArgs   []string
}

// StartProcessCluster starts etcd and kube-apiserver (ShardedListAndWatch on) on free loopback
// ports and installs zen-watcher's CRDs and any extra ones.
func StartProcessCluster(extraCRDs ...string) (*ProcessCluster, error) {
	if err := unitOnly("a control plane"); err != nil {
		return nil, err
	}
	bin := AssetsDir()
	for _, b := range []string{"etcd", "kube-apiserver"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			return nil, fmt.Errorf("%s missing in %s: run `make tools`", b, bin)
		}
	}
	dir, err := os.MkdirTemp("", "zw-cp-")
	if err != nil {
		return nil, err
	}
	c := &ProcessCluster{dir: dir}
	if err := c.start(bin); err != nil {
		_ = c.Stop()
		return nil, err
	}
	root, err := RepoRoot()
	if err != nil {
		_ = c.Stop()
		return nil, err
	}
	_, err = envtest.InstallCRDs(c.Config, envtest.CRDInstallOptions{
		Paths: append([]string{filepath.Join(root, "charts", "zen-watcher", "crds")}, extraCRDs...), ErrorIfPathMissing: true,
	})
	if err != nil {
		_ = c.Stop()
		return nil, fmt.Errorf("installing CRDs: %w", err)
	}
	return c, nil
}

func (c *ProcessCluster) start(bin string) error {
	ports, err := freePorts(3)
	if err != nil {
		return err
	}
	etcdURL, peerURL := "http://127.0.0.1:"+strconv.Itoa(ports[0]), "http://127.0.0.1:"+strconv.Itoa(ports[1])
	c.etcd = exec.Command(filepath.Join(bin, "etcd"), "--name", "zw", "--data-dir", filepath.Join(c.dir, "etcd"),
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "zw="+peerURL, "--log-level", "warn")
	if err := c.launch(c.etcd, "etcd.log"); err != nil {
		return err
	}
	token, err := c.credentials()
	if err != nil {
		return err
	}
	certs := filepath.Join(c.dir, "certs")
	c.apiArgs = []string{"--etcd-servers", etcdURL, "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
		"--secure-port", strconv.Itoa(ports[2]), "--cert-dir", certs, "--token-auth-file", filepath.Join(certs, "tokens.csv"),
		"--authorization-mode", "RBAC", "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file", filepath.Join(certs, "sa.pub"), "--service-account-signing-key-file", filepath.Join(certs, "sa.key"),
		"--service-cluster-ip-range", "10.0.0.0/24", "--endpoint-reconciler-type", "none",
		"--disable-admission-plugins", "ServiceAccount", "--feature-gates", "ShardedListAndWatch=true"}
	host := "https://127.0.0.1:" + strconv.Itoa(ports[2])
	c.Config = &rest.Config{Host: host, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{Insecure: true},
		QPS: -1, Burst: 1000}
	if c.Kube, err = kubernetes.NewForConfig(c.Config); err != nil {
		return err
	}
	c.Kubeconfig = filepath.Join(c.dir, "kubeconfig")
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: local, cluster: {server: %q, insecure-skip-tls-verify: true}}]
users: [{name: admin, user: {token: %q}}]
contexts: [{name: local, context: {cluster: local, user: admin, namespace: default}}]
current-context: local
`, host, token)
	if err := os.WriteFile(c.Kubeconfig, []byte(kc), 0o600); err != nil {
		return err
	}
	return c.StartAPIServer()
}

// credentials writes the service-account key pair and an administrator token, and returns the token.
func (c *ProcessCluster) credentials() (string, error) {
	certs := filepath.Join(c.dir, "certs")
	if err := os.MkdirAll(certs, 0o700); err != nil {
		return "", err
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return "", err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return "", err
	}
	files := map[string][]byte{
		"sa.key": pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}),
		"sa.pub": pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}),
	}
	raw := make([]byte, 24)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	token := hex.EncodeToString(raw)
	files["tokens.csv"] = []byte(token + ",admin,admin-uid,system:masters\n")
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(certs, name), b, 0o600); err != nil {
			return "", err
		}
	}
	return token, nil
}

func (c *ProcessCluster) launch(cmd *exec.Cmd, logName string) error {
	f, err := os.Create(filepath.Join(c.dir, logName))
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("starting %s: %w", filepath.Base(cmd.Path), err)
	}
	return nil
}

// StartAPIServer starts kube-apiserver (again) and waits until it is ready.
func (c *ProcessCluster) StartAPIServer() error {
	if c.apiserver != nil && c.apiserver.ProcessState == nil {
		return errors.New("kube-apiserver already running")
	}
	c.apiserver = exec.Command(filepath.Join(AssetsDir(), "kube-apiserver"), c.apiArgs...)
	if err := c.launch(c.apiserver, "apiserver.log"); err != nil {
		return err
	}
	// The API server serves a certificate it made itself, on loopback.
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.Config.Host+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+c.Config.BearerToken)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	logs, _ := os.ReadFile(filepath.Join(c.dir, "apiserver.log"))
	return fmt.Errorf("kube-apiserver not ready within 90s:\n%s", tail(logs, 2000))
}

// StopAPIServer stops kube-apiserver as a restart does (SIGTERM, then SIGKILL after 20s) and
// waits for it; etcd and the certificates stay.
func (c *ProcessCluster) StopAPIServer() error {
	return stopProcess(c.apiserver, 20*time.Second)
}

// PauseAPIServer stops kube-apiserver with SIGSTOP: connections are still accepted by the kernel
// and requests hang, as with an API server that is overloaded or cut off behind a proxy.
func (c *ProcessCluster) PauseAPIServer() error {
	if c.apiserver == nil || c.apiserver.Process == nil || c.apiserver.ProcessState != nil {
		return errors.New("kube-apiserver not running")
	}
	return c.apiserver.Process.Signal(syscall.SIGSTOP)
}

// ResumeAPIServer continues a paused kube-apiserver.
func (c *ProcessCluster) ResumeAPIServer() error {
	if c.apiserver == nil || c.apiserver.Process == nil {
		return errors.New("kube-apiserver not started")
	}
	return c.apiserver.Process.Signal(syscall.SIGCONT)
}

// Stop stops the API server, then etcd, and removes the directory.
func (c *ProcessCluster) Stop() error {
	err := errors.Join(stopProcess(c.apiserver, 20*time.Second), stopProcess(c.etcd, 10*time.Second))
	return errors.Join(err, os.RemoveAll(c.dir))
}

func stopProcess(cmd *exec.Cmd, grace time.Duration) error {
	if cmd == nil || cmd.Process == nil || cmd.ProcessState != nil {
		return nil
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(grace):
		_ = cmd.Process.Kill()
		<-done
	}
	return nil
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
