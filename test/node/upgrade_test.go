//go:build node

package node

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// loadNamespaces carry the Warning Events sent while the release changes under them.
var loadNamespaces = []string{"orders", "inventory", "billing-worker", "search-api", "team-b", "edge-gateway", "audit-log", "ml-batch"}

// ledger is what a load sent over its namespaces and the API server accepted, by namespace.
type ledger struct {
	namespaces []string
	mu         sync.Mutex
	sent       map[string]int
	n          int
}

// eventLoad creates Warning Events round robin over the ledger's namespaces, one every interval from each
// of its workers, until stopped; each accepted create is in the ledger.
type eventLoad struct {
	stop chan struct{}
	done sync.WaitGroup
}

func startEventLoad(t *testing.T, l *ledger, every time.Duration, workers int) *eventLoad {
	e := &eventLoad{stop: make(chan struct{})}
	for range workers {
		e.done.Go(func() {
			tick := time.NewTicker(every)
			defer tick.Stop()
			for {
				select {
				case <-e.stop:
					return
				case <-tick.C:
				}
				l.create(t)
			}
		})
	}
	return e
}

// create sends the ledger's next Warning Event and counts it once the API server has it.
func (l *ledger) create(t *testing.T) {
	l.mu.Lock()
	i := l.n
	l.n++
	l.mu.Unlock()
	ns := l.namespaces[i%len(l.namespaces)]
	now := metav1.Now()
	_, err := node.kube.CoreV1().Events(ns).Create(context.Background(), &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: fmt.Sprintf("load-%06d", i)},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: fmt.Sprintf("worker-%d", i%7), APIVersion: "v1"},
		Reason:         "BackOff", Message: fmt.Sprintf("Back-off restarting failed container (%d)", i),
		Type: corev1.EventTypeWarning, FirstTimestamp: now, LastTimestamp: now, Count: 1,
		Source: corev1.EventSource{Component: "kubelet", Host: "zw-node"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Logf("creating a Warning Event in %s: %v (not in the ledger)", ns, err)
		return
	}
	l.mu.Lock()
	l.sent[ns]++
	l.mu.Unlock()
}

// total is the number of Warning Events the API server accepted.
func (l *ledger) total() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, v := range l.sent {
		n += v
	}
	return n
}

func (e *eventLoad) halt() {
	close(e.stop)
	e.done.Wait()
}

// exactlyOnce waits until every Warning Event in the ledger has exactly one Observation, then
// holds it a few seconds: nothing lost, nothing written twice.
func exactlyOnce(t *testing.T, l *ledger, step string) {
	t.Helper()
	l.mu.Lock()
	want := map[string]int{}
	total := 0
	for ns, n := range l.sent {
		want[ns] = n
		total += n
	}
	l.mu.Unlock()
	check := func(ctx context.Context) error {
		for ns, n := range want {
			got, err := observations(ctx, ns, "k8sevents")
			if err != nil {
				return err
			}
			if got != n {
				return fmt.Errorf("%s: %d Observations of %d Warning Events", ns, got, n)
			}
		}
		return nil
	}
	started := time.Now()
	eventually(t, 2*time.Minute, step+": every Warning Event written once", check)
	time.Sleep(3 * time.Second)
	if err := check(context.Background()); err != nil {
		t.Errorf("%s, 3 s after it was exact: %v", step, err)
	}
	t.Logf("%s: %d Warning Events, each one Observation (settled %s after the load stopped)", step, total,
		time.Since(started).Round(100*time.Millisecond))
}

// TestUpgradesUnderLoad drives the release through what operators do while findings keep coming:
// scaling 3 → 5 → 2, deleting a pod, killing a container with ctr, and a rolling update to a new
// image tag. After each step every Warning Event sent has exactly one Observation.
func TestUpgradesUnderLoad(t *testing.T) {
	createNamespace(t, releaseNS)
	command(t, 4*time.Minute, node.helm, "install", release, "charts/zen-watcher", "-n", releaseNS, "--create-namespace",
		"--set", "haOptimization.enabled=true", "--set", "redis.bundled.image="+node.redisImage, "--wait", "--timeout", "3m")
	t.Cleanup(func() {
		command(t, 2*time.Minute, node.helm, "uninstall", release, "-n", releaseNS, "--wait", "--timeout", "90s")
	})
	for _, ns := range loadNamespaces {
		createNamespace(t, ns)
	}
	l := &ledger{namespaces: loadNamespaces, sent: map[string]int{}}
	step := func(name string, do func()) {
		t.Helper()
		load := startEventLoad(t, l, 40*time.Millisecond, 1)
		time.Sleep(3 * time.Second)
		do()
		time.Sleep(3 * time.Second)
		load.halt()
		exactlyOnce(t, l, name)
	}

	step("3 replicas", func() {})
	step("scaling 3 → 5 → 2", func() {
		for _, n := range []int{5, 2} {
			command(t, 4*time.Minute, node.helm, "upgrade", release, "charts/zen-watcher", "-n", releaseNS, "--reuse-values",
				"--set", "replicaCount="+strconv.Itoa(n), "--wait", "--timeout", "3m")
			waitReplicas(t, n)
		}
	})
	step("a pod deleted", func() {
		p := replicaPods(t, 2)[0]
		if err := node.kube.CoreV1().Pods(releaseNS).Delete(context.Background(), p.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitReplicas(t, 2)
	})
	step("a container killed with ctr", func() {
		p := replicaPods(t, 2)[0]
		id := strings.TrimPrefix(p.Status.ContainerStatuses[0].ContainerID, "containerd://")
		command(t, time.Minute, "ctr", "-a", filepath.Join(filepath.Dir(node.kubeconfig), "containerd", "containerd.sock"),
			"-n", "k8s.io", "tasks", "kill", "-s", "SIGKILL", id)
		eventually(t, 2*time.Minute, "the killed container restarted and Ready", func(ctx context.Context) error {
			q, err := node.kube.CoreV1().Pods(releaseNS).Get(ctx, p.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if q.Status.ContainerStatuses[0].RestartCount == 0 || !q.Status.ContainerStatuses[0].Ready {
				return fmt.Errorf("%s: %d restarts, ready %v", p.Name, q.Status.ContainerStatuses[0].RestartCount, q.Status.ContainerStatuses[0].Ready)
			}
			return nil
		})
	})
	step("a rolling update to a new image tag", func() {
		tag := "0.1.0-rolled"
		archive := filepath.Join(t.TempDir(), "rolled.oci.tar")
		if out, err := makeTarget(node.root, "-s", "--no-print-directory", "image", "IMAGE=ghcr.io/kube-zen/zen-watcher:"+tag,
			"IMAGE_ARCHIVE="+archive); err != nil {
			t.Fatal(err, out)
		}
		command(t, time.Minute, "ctr", "-a", filepath.Join(filepath.Dir(node.kubeconfig), "containerd", "containerd.sock"),
			"-n", "k8s.io", "images", "import", archive)
		command(t, 4*time.Minute, node.helm, "upgrade", release, "charts/zen-watcher", "-n", releaseNS, "--reuse-values",
			"--set", "image.tag="+tag, "--wait", "--timeout", "3m")
		eventually(t, 2*time.Minute, "every replica on the new tag", func(ctx context.Context) error {
			for _, p := range replicaPods(t, 2) {
				if img := p.Spec.Containers[0].Image; !strings.HasSuffix(img, ":"+tag) {
					return fmt.Errorf("%s runs %s", p.Name, img)
				}
			}
			return nil
		})
	})
}

// waitReplicas waits until exactly n replicas are Ready and no other is left terminating.
func waitReplicas(t *testing.T, n int) {
	t.Helper()
	eventually(t, 3*time.Minute, fmt.Sprintf("%d replicas Ready", n), func(ctx context.Context) error {
		list, err := node.kube.CoreV1().Pods(releaseNS).List(ctx, metav1.ListOptions{
			LabelSelector: "app.kubernetes.io/instance=" + release + ",app.kubernetes.io/name=zen-watcher,app.kubernetes.io/component!=redis"})
		if err != nil {
			return err
		}
		ready := 0
		for _, p := range list.Items {
			if p.DeletionTimestamp != nil {
				return fmt.Errorf("%s is still terminating", p.Name)
			}
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
					ready++
				}
			}
		}
		if ready != n || len(list.Items) != n {
			return fmt.Errorf("%d of %d pods Ready, want %d", ready, len(list.Items), n)
		}
		return nil
	})
}
