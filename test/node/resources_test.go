//go:build node

package node

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// measuredNamespaces carry the load the replicas are measured under.
var measuredNamespaces = []string{"catalog", "recommendations", "payments-gateway", "tenant-7f3k2", "data-pipeline",
	"ingress-nginx", "team-c", "staging-web"}

// summary is the part of the kubelet's /stats/summary read here: each container's cgroup figures.
type summary struct {
	Pods []struct {
		PodRef struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"podRef"`
		Containers []struct {
			Name string `json:"name"`
			CPU  struct {
				Time                 time.Time `json:"time"`
				UsageCoreNanoSeconds uint64    `json:"usageCoreNanoSeconds"`
			} `json:"cpu"`
			Memory struct {
				WorkingSetBytes uint64 `json:"workingSetBytes"`
				RSSBytes        uint64 `json:"rssBytes"`
			} `json:"memory"`
		} `json:"containers"`
	} `json:"pods"`
}

// sample is one pod's figures at one time: its container's cgroup as the kubelet reports it, and
// the process's own (VmRSS counts the binary's pages, which the cgroup may not be charged for).
type sample struct {
	at               time.Time
	cpuNanos         uint64
	workingSet, rss  uint64
	vmRSS, heapInUse float64
	goMemLimit       float64
	goMaxProcs       float64
}

// usage is one pod's figures over a phase: the peaks, and CPU as the mean rate between the first
// and last sample.
type usage struct {
	workingSet, rss, vmRSS, heapInUse float64 // peak MiB
	millicores                        float64
}

func sampleReplicas(ctx context.Context, pods []corev1.Pod) (map[string]sample, error) {
	raw, err := node.kube.CoreV1().RESTClient().Get().AbsPath("/api/v1/nodes", pods[0].Spec.NodeName, "proxy/stats/summary").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the kubelet's summary: %w", err)
	}
	var s summary
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("decoding the kubelet's summary: %w", err)
	}
	out := map[string]sample{}
	for _, p := range pods {
		var smp sample
		found := false
		for _, sp := range s.Pods {
			if sp.PodRef.Namespace != p.Namespace || sp.PodRef.Name != p.Name {
				continue
			}
			for _, c := range sp.Containers {
				if c.Name == "zen-watcher" {
					smp.at, smp.cpuNanos = c.CPU.Time, c.CPU.UsageCoreNanoSeconds
					smp.workingSet, smp.rss = c.Memory.WorkingSetBytes, c.Memory.RSSBytes
					found = true
				}
			}
		}
		if !found {
			return nil, fmt.Errorf("the kubelet's summary has no zen-watcher container of %s", p.Name)
		}
		for series, v := range map[string]*float64{"process_resident_memory_bytes": &smp.vmRSS,
			"go_memstats_heap_inuse_bytes": &smp.heapInUse, "go_gc_gomemlimit_bytes": &smp.goMemLimit,
			"go_sched_gomaxprocs_threads": &smp.goMaxProcs} {
			if *v, err = podMetric(ctx, p, series); err != nil {
				return nil, err
			}
		}
		out[p.Name] = smp
	}
	return out, nil
}

// measure samples the pods every 5 s for d and sums each up.
func measure(t *testing.T, pods []corev1.Pod, d time.Duration) map[string]usage {
	t.Helper()
	var samples []map[string]sample
	for end := time.Now().Add(d); ; {
		s, err := sampleReplicas(context.Background(), pods)
		if err != nil {
			t.Fatal(err)
		}
		samples = append(samples, s)
		if time.Now().After(end) {
			break
		}
		time.Sleep(5 * time.Second)
	}
	const mi = 1 << 20
	out := map[string]usage{}
	for _, p := range pods {
		var u usage
		for _, s := range samples {
			smp := s[p.Name]
			u.workingSet = math.Max(u.workingSet, float64(smp.workingSet)/mi)
			u.rss = math.Max(u.rss, float64(smp.rss)/mi)
			u.vmRSS = math.Max(u.vmRSS, smp.vmRSS/mi)
			u.heapInUse = math.Max(u.heapInUse, smp.heapInUse/mi)
		}
		first, last := samples[0][p.Name], samples[len(samples)-1][p.Name]
		if secs := last.at.Sub(first.at).Seconds(); secs > 0 {
			u.millicores = float64(last.cpuNanos-first.cpuNanos) / secs / 1e6
		}
		out[p.Name] = u
	}
	return out
}

// TestResourcesOnTheNode installs the chart as the README does (the default preset) and measures
// each replica idle and with 100 Warning Events a second over the release: the cgroup's working
// set and RSS as the kubelet reports them, the process's VmRSS and heap in use, and CPU. Each
// replica's soft memory limit is 90% of its container's limit, what it holds at 100/s stays under
// the preset's request, and every Event sent has exactly one Observation.
//
// ZW_NODE_HELM_ARGS adds arguments to its helm install (split at spaces), to measure a variant:
// ZW_NODE_HELM_ARGS='--set extraEnv[0].name=GOMAXPROCS --set-string extraEnv[0].value=2'.
func TestResourcesOnTheNode(t *testing.T) {
	createNamespace(t, releaseNS)
	install := []string{"install", release, "charts/zen-watcher", "-n", releaseNS,
		"--set", "haOptimization.enabled=true", "--set", "redis.bundled.image=" + node.redisImage, "--wait", "--timeout", "3m"}
	if extra := strings.Fields(os.Getenv("ZW_NODE_HELM_ARGS")); len(extra) > 0 {
		t.Logf("helm install with %q", extra)
		install = append(install, extra...)
	}
	command(t, 4*time.Minute, node.helm, install...)
	t.Cleanup(func() {
		command(t, 2*time.Minute, node.helm, "uninstall", release, "-n", releaseNS, "--wait", "--timeout", "90s")
	})
	for _, ns := range measuredNamespaces {
		createNamespace(t, ns)
	}
	pods := replicaPods(t, 3)
	ctx := context.Background()
	first, err := sampleReplicas(ctx, pods)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods {
		limit := p.Spec.Containers[0].Resources.Limits.Memory().Value()
		if want := math.Floor(float64(limit) * 0.9); math.Abs(first[p.Name].goMemLimit-want) > 1 {
			t.Errorf("%s: GOMEMLIMIT %.0f, want 90%% of the container's limit %d (%.0f)", p.Name, first[p.Name].goMemLimit, limit, want)
		}
		// The preset requests a fraction of a core; the node has more than one.
		want, why := wantMaxProcs(t, p)
		if got := first[p.Name].goMaxProcs; got != want {
			t.Errorf("%s: GOMAXPROCS %.0f, want %.0f (%s)", p.Name, got, want, why)
		}
	}

	time.Sleep(20 * time.Second) // settled: the shard table cut, the informers synced
	idle := measure(t, pods, 10*time.Second)

	l := &ledger{namespaces: measuredNamespaces, sent: map[string]int{}}
	load := startEventLoad(t, l, 40*time.Millisecond, 4) // 100 a second
	time.Sleep(10 * time.Second)
	before, started := l.total(), time.Now()
	busy := measure(t, pods, 30*time.Second)
	rate := float64(l.total()-before) / time.Since(started).Seconds()
	load.halt()
	exactlyOnce(t, l, "100 Warning Events a second")

	var table strings.Builder
	fmt.Fprintf(&table, "%-30s %-8s %8s %8s %8s %8s %8s\n", "replica", "phase", "WS MiB", "RSS MiB", "VmRSS", "heap", "CPU m")
	for _, p := range pods {
		for _, phase := range []struct {
			name string
			u    usage
		}{{"idle", idle[p.Name]}, {fmt.Sprintf("%.0f/s", rate), busy[p.Name]}} {
			u := phase.u
			fmt.Fprintf(&table, "%-30s %-8s %8.1f %8.1f %8.1f %8.1f %8.0f\n", p.Name, phase.name, u.workingSet, u.rss, u.vmRSS,
				u.heapInUse, u.millicores)
		}
	}
	t.Logf("each replica, peaks over the phase and mean CPU (the working set and RSS are the cgroup's, by the kubelet):\n%s", table.String())

	if rate < 85 {
		t.Fatalf("the load reached %.0f Warning Events a second, want about 100: the figures measure less", rate)
	}
	// 100 a second over three replicas is within both the small preset (up to 50 a second a
	// replica) and the default one: what each replica held must fit either's request.
	small := presetRequest(t, "small")
	for _, p := range pods {
		request := float64(p.Spec.Containers[0].Resources.Requests.Memory().Value()) / (1 << 20)
		u := busy[p.Name]
		peak := math.Max(u.workingSet, u.vmRSS)
		for preset, req := range map[string]float64{"installed": request, "small": small} {
			if peak > req {
				t.Errorf("%s at %.0f/s: %.1f MiB, above the %s preset's request of %.0f MiB", p.Name, rate, peak, preset, req)
			}
		}
	}
}

// presetRequest is the memory request, in MiB, the chart renders for a resources preset.
func presetRequest(t *testing.T, preset string) float64 {
	t.Helper()
	out := command(t, time.Minute, node.helm, "template", release, "charts/zen-watcher", "-n", releaseNS,
		"--set", "resourcesPreset="+preset, "--show-only", "templates/deployment.yaml")
	var d appsv1.Deployment
	if err := yaml.Unmarshal([]byte(out), &d); err != nil {
		t.Fatalf("decoding the rendered Deployment: %v", err)
	}
	return float64(d.Spec.Template.Spec.Containers[0].Resources.Requests.Memory().Value()) / (1 << 20)
}

// wantMaxProcs is the GOMAXPROCS p's replica must run with: the CPU request rounded up, as the
// chart sets it, or the value extraEnv gives.
func wantMaxProcs(t *testing.T, p corev1.Pod) (float64, string) {
	t.Helper()
	c := p.Spec.Containers[0]
	for _, e := range c.Env {
		if e.Name != "GOMAXPROCS" || e.ValueFrom != nil {
			continue
		}
		n, err := strconv.Atoi(e.Value)
		if err != nil {
			t.Fatalf("%s: GOMAXPROCS %q in the pod's environment", p.Name, e.Value)
		}
		return float64(n), "extraEnv's value"
	}
	return math.Ceil(c.Resources.Requests.Cpu().AsApproximateFloat64()), fmt.Sprintf("the CPU request %s, rounded up", c.Resources.Requests.Cpu())
}
