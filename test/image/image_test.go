// Package image tests the container image `make image` writes, without docker: built twice to the
// same digest, imported into a real containerd, and run by runc as the non-root user it names,
// against a real API server.
package image

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/redis/go-redis/v9"

	"github.com/kube-zen/zen-watcher/internal/testenv"
)

// build runs `make image` into out and returns the image's name and its manifest's digest.
func build(t *testing.T, root, out string) (name, digest string) {
	t.Helper()
	cmd := exec.Command("make", "-s", "--no-print-directory", "image", "IMAGE_ARCHIVE="+out)
	cmd.Dir = root
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make image: %v\n%s", err, b)
	}
	// ociimage prints "archive name digest" last.
	f := strings.Fields(strings.TrimSpace(string(b)))
	if len(f) < 3 || f[len(f)-3] != out || !strings.HasPrefix(f[len(f)-1], "sha256:") {
		t.Fatalf("make image printed %q, want %q, a name and a digest", b, out)
	}
	return f[len(f)-2], f[len(f)-1]
}

// TestImage: `make image` gives the same digest twice, tagged with the chart's appVersion;
// containerd imports it under that name; runc runs it as 65532 with no shell to run; and the
// product in it reaches a real API server, becomes ready and stops cleanly on SIGTERM.
func TestImage(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	name, digest := build(t, root, filepath.Join(dir, "a.oci.tar"))
	if _, again := build(t, root, filepath.Join(dir, "b.oci.tar")); again != digest {
		t.Errorf("two builds of the same sources: %s and %s", digest, again)
	}
	chart, err := os.ReadFile(filepath.Join(root, "charts", "zen-watcher", "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	appVersion := regexp.MustCompile(`(?m)^appVersion: "?([^"\n]+)"?$`).FindSubmatch(chart)
	if appVersion == nil || name != "ghcr.io/kube-zen/zen-watcher:"+string(appVersion[1]) {
		t.Errorf("image named %s, want ghcr.io/kube-zen/zen-watcher:<the chart's appVersion>", name)
	}
	t.Logf("make image: %s %s", name, digest)

	cluster, err := testenv.StartProcessCluster()
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Stop()
	ctrd, err := testenv.StartContainerd()
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := ctrd.Stop(); err != nil {
			t.Errorf("stopping containerd: %v", err)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if out, err := ctrd.Ctr(ctx, "images", "import", filepath.Join(dir, "a.oci.tar")); err != nil {
		t.Fatal(err)
	} else if !strings.Contains(out, name) {
		t.Errorf("ctr images import printed %q, want %s", out, name)
	}
	out, err := ctrd.Ctr(ctx, "images", "ls")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(regexp.QuoteMeta(name) + `\s+\S+\s+` + digest).MatchString(out) {
		t.Errorf("containerd holds\n%s\nwant %s at %s", out, name, digest)
	}

	// No shell: an image that is only the binary runs nothing else.
	if out, err := ctrd.Ctr(ctx, "run", "--rm", name, "zw-shell", "/bin/sh", "-c", "true"); err == nil {
		t.Errorf("the image ran a shell: %s", out)
	}

	// The product, on the host's network, with the API server's credentials mounted read-only
	// and readable by its user.
	config := filepath.Join(dir, "config")
	if err := os.Mkdir(config, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	kc, err := os.ReadFile(cluster.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(config, "kubeconfig"), kc, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "zen-image"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	metrics := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	var logs testenv.Buffer
	run := ctrd.Command(ctx, "run", "--rm", "--net-host",
		"--mount", "type=bind,src="+config+",dst=/config,options=rbind:ro",
		name, "zw-image", "/zen-watcher", "-kubeconfig", "/config/kubeconfig", "-namespace", "zen-image",
		"-metrics-addr", metrics, "-webhook-addr", "127.0.0.1:"+strconv.Itoa(testenv.FreePort(t)))
	run.Stdout, run.Stderr = &logs, &logs
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- run.Wait() }()
	if err := waitReady(ctx, "http://"+metrics+"/readyz", exited); err != nil {
		t.Fatalf("the container did not become ready: %v\n%s", err, logs.String())
	}
	tasks, err := ctrd.Ctr(ctx, "tasks", "ls")
	if err != nil {
		t.Fatal(err)
	}
	pid := taskPID(tasks, "zw-image")
	if pid == 0 {
		t.Fatalf("no running task zw-image in\n%s", tasks)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	if uid := regexp.MustCompile(`(?m)^Uid:\s+(\d+)`).FindSubmatch(status); uid == nil || string(uid[1]) != "65532" {
		t.Errorf("the product runs as uid %q, want 65532", uid)
	}
	// It joined: its member Lease is in the API server.
	leases, err := cluster.Kube.CoordinationV1().Leases("zen-image").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(leases.Items) == 0 {
		t.Error("the containerized replica wrote no Lease")
	}

	// SIGTERM: a clean stop, exit status 0, well inside a pod's default grace period of 30 s.
	stopped := time.Now()
	if _, err := ctrd.Ctr(ctx, "tasks", "kill", "-s", "SIGTERM", "zw-image"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("the product did not exit 0 on SIGTERM: %v\n%s", err, logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the product still runs 30 s after SIGTERM\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "zen-watcher stopped") {
		t.Errorf("the product's log does not end with its stop:\n%s", logs.String())
	}
	t.Logf("ran as 65532, ready, %d Leases; stopped cleanly in %s", len(leases.Items),
		time.Since(stopped).Round(10*time.Millisecond))
}

// waitReady polls url until it answers 200, the container exits, or ctx ends.
func waitReady(ctx context.Context, url string, exited <-chan error) error {
	var last error
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s: %s", url, resp.Status)
		}
		last = err
		select {
		case <-ctx.Done():
			return last
		case err := <-exited:
			return fmt.Errorf("the container exited: %v", err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// taskPID finds a running task's PID in `ctr tasks ls` (TASK PID STATUS).
func taskPID(tasks, id string) int {
	for _, line := range strings.Split(tasks, "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == id && f[2] == "RUNNING" {
			pid, _ := strconv.Atoi(f[1])
			return pid
		}
	}
	return 0
}

// TestRedisImage: `make redis-image` packs Debian's redis-server with the libraries it links;
// runc runs it as 999 (the chart's Redis pod's user) with its data in a volume, and it answers,
// keeps what it is given, and exits 0 on SIGTERM.
func TestRedisImage(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	archive := filepath.Join(dir, "redis.oci.tar")
	cmd := exec.Command("make", "-s", "--no-print-directory", "redis-image", "REDIS_IMAGE_ARCHIVE="+archive)
	cmd.Dir = root
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make redis-image: %v\n%s", err, b)
	}
	f := strings.Fields(strings.TrimSpace(string(b)))
	if len(f) < 3 || f[len(f)-3] != archive {
		t.Fatalf("make redis-image printed %q", b)
	}
	name := f[len(f)-2]
	ctrd, err := testenv.StartContainerd()
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := ctrd.Stop(); err != nil {
			t.Errorf("stopping containerd: %v", err)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := ctrd.Ctr(ctx, "images", "import", archive); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(data, 999, 999); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	port := testenv.FreePort(t)
	var logs testenv.Buffer
	run := ctrd.Command(ctx, "run", "--rm", "--net-host", "--mount", "type=bind,src="+data+",dst=/data,options=rbind:rw",
		// ctr runs the command given in place of the entrypoint (a pod's args follow it instead).
		name, "zw-redis", "/usr/bin/redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
		"--dir", "/data", "--maxmemory-policy", "noeviction")
	run.Stdout, run.Stderr = &logs, &logs
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- run.Wait() }()
	addr := "127.0.0.1:" + strconv.Itoa(port)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("redis exited: %v\n%s", err, logs.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis did not listen within 30 s\n%s", logs.String())
		}
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING: %v\n%s", err, logs.String())
	}
	if err := rdb.Set(ctx, "zen", "watcher", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if v, err := rdb.Get(ctx, "zen").Result(); err != nil || v != "watcher" {
		t.Errorf("GET zen: %q, %v", v, err)
	}
	tasks, err := ctrd.Ctr(ctx, "tasks", "ls")
	if err != nil {
		t.Fatal(err)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", taskPID(tasks, "zw-redis")))
	if err != nil {
		t.Fatal(err)
	}
	if uid := regexp.MustCompile(`(?m)^Uid:\s+(\d+)`).FindSubmatch(status); uid == nil || string(uid[1]) != "999" {
		t.Errorf("redis runs as uid %q, want 999", uid)
	}
	if _, err := ctrd.Ctr(ctx, "tasks", "kill", "-s", "SIGTERM", "zw-redis"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("redis did not exit 0 on SIGTERM: %v\n%s", err, logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("redis still runs 30 s after SIGTERM\n%s", logs.String())
	}
	// Its append-only file is in the volume, written by its user.
	aof, err := filepath.Glob(filepath.Join(data, "appendonlydir", "*"))
	if err != nil || len(aof) == 0 {
		t.Errorf("no append-only file in the volume: %v", err)
	}
	t.Logf("%s: answered, ran as 999, wrote %d append-only files", name, len(aof))
}
