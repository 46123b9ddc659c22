package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/kube-zen/zen-watcher/internal/testenv"
	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/obsclient"
)

// result is one run, as written to JSON.
type result struct {
	Scenario         string    `json:"scenario"`
	Started          time.Time `json:"started"`
	Machine          string    `json:"machine"`
	Replicas         int       `json:"replicas"`
	TargetRate       float64   `json:"targetFindingsPerSecond"`
	RawCreatesPerSec float64   `json:"rawCreatesPerSecond"`
	FindingsIn       int       `json:"findingsIn"`
	FindingsPerSec   float64   `json:"findingsPerSecond"`
	Observations     int       `json:"observations"`
	ObsPerSec        float64   `json:"observationsPerSecond"`
	RatioOfRaw       float64   `json:"ratioOfRawCeiling"`
	Lost             int       `json:"lost"`
	LatencyP50Ms     float64   `json:"latencyP50Ms"`
	LatencyP95Ms     float64   `json:"latencyP95Ms"`
	LatencyP99Ms     float64   `json:"latencyP99Ms"`
}

func machine() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s, %d CPUs, %s/%s", host, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH)
}

func restConfig(c *testenv.Cluster) *rest.Config {
	rc := rest.CopyConfig(c.Config)
	rc.QPS, rc.Burst = -1, 1000
	return rc
}

func namespace(ctx context.Context, c *testenv.Cluster, name string) error {
	_, err := c.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	return err
}

// rawCeiling is the create rate of a plain client with 16 workers on the same server, now.
func rawCeiling(ctx context.Context, c *testenv.Cluster) (float64, error) {
	if err := namespace(ctx, c, "raw-ceiling"); err != nil {
		return 0, err
	}
	oc, err := obsclient.New(restConfig(c))
	if err != nil {
		return 0, err
	}
	create := func(prefix string, n int) (time.Duration, error) {
		var next atomic.Int64
		var firstErr atomic.Value
		var wg sync.WaitGroup
		start := time.Now()
		for range 16 {
			wg.Go(func() {
				for i := next.Add(1) - 1; i < int64(n); i = next.Add(1) - 1 {
					o := &v1alpha1.Observation{
						ObjectMeta: metav1.ObjectMeta{Namespace: "raw-ceiling", Name: prefix + strconv.FormatInt(i, 10)},
						Spec: v1alpha1.ObservationSpec{Source: "raw", Category: "operations", Severity: "medium",
							EventType: "back_off", Title: "BackOff on Pod pod-1", Description: "Back-off restarting failed container"},
					}
					if err := oc.Create(ctx, o); err != nil {
						firstErr.CompareAndSwap(nil, err)
						return
					}
				}
			})
		}
		wg.Wait()
		if err, ok := firstErr.Load().(error); ok {
			return 0, err
		}
		return time.Since(start), nil
	}
	if _, err := create("warm-", 300); err != nil {
		return 0, err
	}
	d, err := create("raw-", 1500)
	if err != nil {
		return 0, err
	}
	return 1500 / d.Seconds(), nil
}

// startReplicas runs the binary as processes and waits until each is ready; stop ends them.
func startReplicas(ctx context.Context, binary, kubeconfig, redis string, n int, dir string) (stop func(), err error) {
	var cmds []*exec.Cmd
	stop = func() {
		for _, c := range cmds {
			_ = c.Process.Signal(os.Interrupt)
		}
		for _, c := range cmds {
			_ = c.Wait()
		}
	}
	for i := range n {
		metricsAddr, hookAddr := freeAddr(), freeAddr()
		logf, err := os.Create(filepath.Join(dir, fmt.Sprintf("replica-%d.log", i)))
		if err != nil {
			stop()
			return nil, err
		}
		c := exec.CommandContext(ctx, binary, "-kubeconfig", kubeconfig, "-namespace", "default",
			"-redis-addr", redis, "-member-id", fmt.Sprintf("scale-%d", i),
			"-metrics-addr", metricsAddr, "-webhook-addr", hookAddr)
		c.Stdout, c.Stderr = logf, logf
		if err := c.Start(); err != nil {
			stop()
			return nil, err
		}
		cmds = append(cmds, c)
		if err := waitReady(metricsAddr, 60*time.Second); err != nil {
			stop()
			return nil, fmt.Errorf("replica %d: %w (log in %s)", i, err, logf.Name())
		}
	}
	return stop, nil
}

func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "127.0.0.1:0"
	}
	defer ln.Close()
	return ln.Addr().String()
}

func waitReady(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if resp, err := http.Get("http://" + addr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("not ready within %s", timeout)
}

// drive creates warnings at the target rate over 20 namespaces and watches their Observations.
func drive(ctx context.Context, c *testenv.Cluster, o options, res *result) error {
	var nss []string
	for i := range 20 {
		ns := fmt.Sprintf("%02d-scale", i)
		if err := namespace(ctx, c, ns); err != nil {
			return err
		}
		nss = append(nss, ns)
	}
	dyn, err := dynamic.NewForConfig(restConfig(c))
	if err != nil {
		return err
	}
	w, err := dyn.Resource(v1alpha1.ObservationResource).Watch(ctx, metav1.ListOptions{
		LabelSelector: v1alpha1.LabelSource + "=k8sevents"})
	if err != nil {
		return err
	}
	defer w.Stop()
	var mu sync.Mutex
	created := map[string]time.Time{}
	var latencies []time.Duration
	var lastSeen time.Time
	seen := make(chan struct{}, 1)
	go func() {
		for e := range w.ResultChan() {
			u, ok := e.Object.(*unstructured.Unstructured)
			if !ok || e.Type != watch.Added {
				continue
			}
			name, _, _ := unstructured.NestedString(u.Object, "spec", "resource", "name")
			mu.Lock()
			if t, ok := created[name]; ok {
				latencies = append(latencies, time.Since(t))
				delete(created, name)
				lastSeen = time.Now()
			}
			mu.Unlock()
			select {
			case seen <- struct{}{}:
			default:
			}
		}
	}()

	start := time.Now()
	tick := time.NewTicker(time.Duration(float64(time.Second) / o.rate))
	defer tick.Stop()
	n := 0
	for time.Since(start) < o.duration {
		<-tick.C
		ns := nss[n%len(nss)]
		pod := fmt.Sprintf("pod-%d", n)
		ev := &corev1.Event{
			ObjectMeta:     metav1.ObjectMeta{Name: fmt.Sprintf("scale-%d", n), Namespace: ns},
			InvolvedObject: corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: ns, Name: pod},
			Reason:         "BackOff", Message: "Back-off restarting failed container " + pod, Type: corev1.EventTypeWarning,
			Count: 1, FirstTimestamp: metav1.Now(), LastTimestamp: metav1.Now(),
		}
		mu.Lock()
		created[pod] = time.Now()
		mu.Unlock()
		if _, err := c.Kube.CoreV1().Events(ns).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating warning %d: %w", n, err)
		}
		n++
	}
	loadTime := time.Since(start)
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		left := len(created)
		mu.Unlock()
		if left == 0 {
			break
		}
		select {
		case <-seen:
		case <-time.After(time.Second):
		}
	}
	mu.Lock()
	defer mu.Unlock()
	res.FindingsIn = n
	res.FindingsPerSec = float64(n) / loadTime.Seconds()
	res.Observations = len(latencies)
	res.Lost = len(created)
	if !lastSeen.IsZero() {
		res.ObsPerSec = float64(len(latencies)) / lastSeen.Sub(start).Seconds()
	}
	if res.RawCreatesPerSec > 0 {
		res.RatioOfRaw = res.ObsPerSec / res.RawCreatesPerSec
	}
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	pct := func(p float64) float64 {
		if len(latencies) == 0 {
			return 0
		}
		return float64(latencies[int(p*float64(len(latencies)-1))].Microseconds()) / 1000
	}
	res.LatencyP50Ms, res.LatencyP95Ms, res.LatencyP99Ms = pct(0.50), pct(0.95), pct(0.99)
	return nil
}
