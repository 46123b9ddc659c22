// Package demo runs `make demo` as a person would and checks that what it shows is true: every
// finding it creates is one Observation, the replica it kills is taken over, and the dashboards'
// queries answer from the Prometheus it starts.
package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kube-zen/zen-watcher/internal/testenv"
	"github.com/kube-zen/zen-watcher/pkg/obsclient"
)

// wantBySource is what the demo's findings make: each tool's findings in hack/demo, the kube-bench
// and Checkov files of testdata, two distinct Falco alerts (the third is a repeat) and one audit
// event. The Warning Events written after the failover come on top of k8sevents' six.
var wantBySource = map[string]int{
	"trivy": 17, "kyverno": 5, "certmanager": 4, "k8sevents": 6,
	"kube-bench": 1, "checkov": 4, "falco": 2, "audit": 1,
}

// emptyPanels are the dashboards' panels that have nothing to show in a healthy demo, and why.
var emptyPanels = map[string]string{
	"Write errors by reason":         "no write fails",
	"Webhook queue claimed and lost": "the killed replica held no queue entry",
	"Cleanup deletes":                "no Observation has expired",
}

func TestDemo(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("prometheus"); err != nil {
		t.Fatal("prometheus is not installed: run make prometheus (make test does)")
	}
	state := t.TempDir()
	env := append(os.Environ(), "ZW_STATE="+state)
	run := func(timeout time.Duration, name string, args ...string) string {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir, cmd.Env, cmd.WaitDelay = root, env, 10*time.Second
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run(5*time.Minute, "make", "--no-print-directory", "build")
	t.Cleanup(func() {
		run(2*time.Minute, "hack/demo.sh", "down")
		for _, pid := range pidFiles(t, state) {
			t.Errorf("demo-down left the process of %s running", pid)
		}
	})
	start := time.Now()
	out := run(5*time.Minute, "hack/demo.sh", "up")
	t.Logf("the demo took %v:\n%s", time.Since(start).Round(time.Second), out)

	for _, s := range []string{"== Observations (kubectl get obs -A)", "== By source, severity and category",
		"== Who owns what", "X-Zen-Signature: sha256=", "== Metrics", "Prometheus (scraping every 2s): http://",
		"nothing lost."} {
		if !strings.Contains(out, s) {
			t.Errorf("the demo's output lacks %q", s)
		}
	}
	if m := regexp.MustCompile(`Observations of falco: (\d+); deduplicated through Redis: (\d+)`).FindStringSubmatch(out); m == nil ||
		m[1] != "2" || m[2] == "0" {
		t.Errorf("the demo shows Falco's repeat as %q, want 2 Observations and a deduplication", m)
	}

	kubeconfig := filepath.Join(state, "cluster", "kubeconfig")
	after := killedOwned(t, out)
	ours := demoNamespaces(t, root)
	clusters := checkObservations(t, kubeconfig, ours, after)
	checkOwners(t, out, clusters)
	b, err := os.ReadFile(filepath.Join(state, "demo", "prometheus.url"))
	if err != nil {
		t.Fatal(err)
	}
	prom := strings.TrimSpace(string(b))
	curl := signedCurl(t, out)
	postSigned(t, root, env, curl)
	// The new leader publishes its ratios (the low-severity share) from findings that arrive after
	// its first tuning round, one interval (5 s in the demo) into its term: alerts keep coming, as
	// they would in a cluster, until they show. They are Notice alerts (low): the printed one is a
	// Warning (medium), whose share of low findings is zero whenever nothing else arrived since.
	low := strings.Replace(curl, `"priority":"Warning"`, `"priority":"Notice"`, 1)
	if low == curl {
		t.Fatalf("the printed signed curl posts no Warning alert:\n%s", curl)
	}
	ratios := `max(zen_watcher_low_severity_percent{namespace="zen-system"})`
	for deadline := time.Now().Add(time.Minute); ; {
		n, err := query(prom, ratios)
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the new leader published no low-severity share within a minute of alerts: %s\n%s\n%s", ratios,
				replicasNow(state), leaderGoroutines(state))
		}
		time.Sleep(5 * time.Second)
		postSigned(t, root, env, low)
	}
	checkDashboards(t, root, prom)
}

// checkOwners: the Observations the demo lists by owning replica, before the failover, add up to
// all of the demo's, every replica owning some; up to clusters more are the control plane's own.
func checkOwners(t *testing.T, out string, clusters int) {
	before, _, _ := strings.Cut(out, "== Failover")
	total, members := 0, 0
	for _, m := range regexp.MustCompile(`(?m)^zen-watcher-\d+: (\d+) Observations in `).FindAllStringSubmatch(before, -1) {
		n, err := strconv.Atoi(m[1])
		if err != nil {
			t.Fatal(err)
		}
		total += n
		members++
	}
	want := 0
	for _, n := range wantBySource {
		want += n
	}
	if members != 3 || total < want || total > want+clusters {
		t.Errorf("the demo lists %d Observations over %d replicas' namespaces, want %d over 3 (and up to %d of the control plane's)",
			total, members, want, clusters)
	}
}

// killedOwned reads from the demo's output how many namespaces the killed leader owned: the demo
// wrote a Warning Event in each after the failover.
func killedOwned(t *testing.T, out string) int {
	m := regexp.MustCompile(`a new Warning Event in each of the (\d+) demo namespaces`).FindStringSubmatch(out)
	if m == nil {
		t.Fatal("the demo's output does not say what it wrote after the failover")
	}
	var n int
	if _, err := fmt.Sscan(m[1], &n); err != nil || n == 0 {
		t.Error("the killed leader owned no namespace: the failover showed nothing")
	}
	return n
}

// demoNamespaces are the namespaces hack/demo creates, where its Warning Events are.
func demoNamespaces(t *testing.T, root string) map[string]bool {
	b, err := os.ReadFile(filepath.Join(root, "hack", "demo", "namespaces.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, m := range regexp.MustCompile(`name: ([a-z0-9-]+)`).FindAllStringSubmatch(string(b), -1) {
		names[m[1]] = true
	}
	if len(names) == 0 {
		t.Fatal("hack/demo/namespaces.yaml names no namespace")
	}
	return names
}

// checkObservations counts the Observations by source: each finding once, none twice, none lost.
// Warning Events outside the demo's namespaces are the control plane's own — a freshly started
// API server may report that the kubernetes Service's cluster IP is not allocated yet — and
// zen-watcher rightly writes them; they are logged and counted apart, and their number returned.
func checkObservations(t *testing.T, kubeconfig string, ours map[string]bool, afterFailover int) int {
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	c, err := obsclient.New(rc)
	if err != nil {
		t.Fatal(err)
	}
	list, err := c.List(context.Background(), "", metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	titles := map[string]bool{}
	clusters := 0
	for _, o := range list.Items {
		if o.Spec.Source == "k8sevents" && !ours[o.Namespace] {
			t.Logf("the control plane's own Warning Event, not the demo's: %s/%s %q", o.Namespace, o.Name, o.Spec.Title)
			clusters++
			continue
		}
		got[o.Spec.Source]++
		titles[o.Spec.Title] = true
	}
	want := map[string]int{}
	for s, n := range wantBySource {
		want[s] = n
	}
	want["k8sevents"] += afterFailover
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Observations by source %v, want %v", got, want)
	}
	for _, title := range []string{"Certificate sso-example-com expires in 10 days", "Certificate payments-mtls expired 3 days ago"} {
		if !titles[title] {
			t.Errorf("no Observation titled %q among %v", title, keys(titles))
		}
	}
	return clusters
}

// signedCurl is the signed curl the demo prints, as a person would paste it.
func signedCurl(t *testing.T, out string) string {
	i := strings.Index(out, "A signed Falco alert, copy-pasteable:\n")
	if i < 0 {
		t.Fatal("the demo prints no signed curl")
	}
	var script []string
	for _, line := range strings.Split(out[i:], "\n")[1:] {
		if !strings.HasPrefix(line, "  ") {
			break
		}
		script = append(script, strings.TrimPrefix(line, "  "))
	}
	return strings.Join(script, "\n")
}

// postSigned runs the signed curl and expects the webhook to take it.
func postSigned(t *testing.T, root string, env []string, script string) {
	t.Helper()
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
	cmd.Dir, cmd.Env = root, env
	b, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(b), `"accepted":1`) {
		t.Fatalf("the printed signed curl: %v, answered %s\n%s", err, b, script)
	}
}

// checkDashboards runs every panel's queries of the chart's dashboards against the demo's
// Prometheus: each main query must have data, or be one that a healthy demo leaves empty.
func checkDashboards(t *testing.T, root, prom string) {
	files, err := filepath.Glob(filepath.Join(root, "charts", "zen-watcher", "dashboards", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards: %v", err)
	}
	checked := 0
	for _, f := range files {
		for _, p := range panels(t, f) {
			if why, ok := emptyPanels[p.Title]; ok {
				t.Logf("%s: %q not checked: %s", filepath.Base(f), p.Title, why)
				continue
			}
			expr := strings.ReplaceAll(p.Targets[0].Expr, "$namespace", "zen-system")
			n := queryEventually(t, prom, expr)
			if n == 0 {
				t.Errorf("%s: panel %q has no data: %s", filepath.Base(f), p.Title, expr)
			}
			checked++
		}
	}
	if checked < 20 {
		t.Errorf("only %d panels checked", checked)
	}
}

type panel struct {
	Title   string `json:"title"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

func panels(t *testing.T, file string) []panel {
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []panel `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	var out []panel
	for _, p := range d.Panels {
		if len(p.Targets) > 0 {
			out = append(out, p)
		}
	}
	return out
}

// queryEventually returns how many series expr yields, trying for up to 30 s: a rate needs two
// scrapes of a series that began late (the failover's), and the leader publishes some gauges
// every few seconds.
func queryEventually(t *testing.T, prom, expr string) int {
	deadline := time.Now().Add(30 * time.Second)
	for {
		n, err := query(prom, expr)
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		if n > 0 || time.Now().After(deadline) {
			return n
		}
		time.Sleep(time.Second)
	}
}

func query(prom, expr string) (int, error) {
	var data struct {
		Result []json.RawMessage `json:"result"`
	}
	if err := testenv.PrometheusGet(prom, "/api/v1/query?query="+url.QueryEscape(expr), &data); err != nil {
		return 0, err
	}
	return len(data.Result), nil
}

// replicasNow tells what each live replica of the demo reports about leading, the falco source
// and the webhook queue (whether the accepted alerts were processed), and its last warnings and
// leader messages: what a failure needs to be understood.
func replicasNow(state string) string {
	var b strings.Builder
	logs, _ := filepath.Glob(filepath.Join(state, "demo", "zen-watcher-*.log"))
	for _, log := range logs {
		base := strings.TrimSuffix(log, ".log")
		if pid, err := os.ReadFile(base + ".pid"); err != nil || len(pid) == 0 {
			continue // killed
		}
		fmt.Fprintf(&b, "== %s\n", filepath.Base(base))
		for _, l := range strings.Split(replicaMetrics(base), "\n") {
			if strings.HasPrefix(l, "zen_watcher_leader ") || strings.HasPrefix(l, "zen_watcher_low_severity_percent") ||
				strings.HasPrefix(l, `zen_watcher_optimization_source_events_processed_total{source="falco"}`) ||
				strings.HasPrefix(l, "zen_watcher_webhook_queue_") || strings.HasPrefix(l, "zen_watcher_webhook_stream_lag") {
				fmt.Fprintln(&b, l)
			}
		}
		text, _ := os.ReadFile(log)
		var kept []string
		for _, l := range strings.Split(string(text), "\n") {
			if strings.Contains(l, `"level":"WARN"`) && !strings.Contains(l, "to be served") ||
				strings.Contains(l, `"level":"ERROR"`) || strings.Contains(l, "leader") {
				kept = append(kept, l)
			}
		}
		fmt.Fprintln(&b, strings.Join(kept[max(0, len(kept)-15):], "\n"))
	}
	return b.String()
}

// replicaMetrics returns the metrics a demo replica serves, by the files the demo keeps under
// base (its state directory and name), or "" when it serves none.
func replicaMetrics(base string) string {
	addr, err := os.ReadFile(base + ".metrics")
	if err != nil {
		return ""
	}
	resp, err := http.Get("http://" + strings.TrimSpace(string(addr)) + "/metrics")
	if err != nil {
		return ""
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

// leaderGoroutines stops the leading replica with SIGQUIT and returns where its leader's work
// stood: the goroutines of its Coordinator and member set, from the dump the Go runtime writes to
// its log, and its log lines about the shared state. It is for a failure the log alone does not
// explain.
func leaderGoroutines(state string) string {
	logs, _ := filepath.Glob(filepath.Join(state, "demo", "zen-watcher-*.log"))
	for _, log := range logs {
		base := strings.TrimSuffix(log, ".log")
		if !strings.Contains(replicaMetrics(base), "\nzen_watcher_leader 1\n") {
			continue
		}
		b, err := os.ReadFile(base + ".pid")
		var pid int
		if _, serr := fmt.Sscan(string(b), &pid); err != nil || serr != nil || pid <= 0 {
			return "the leader's PID is unknown"
		}
		if err := syscall.Kill(pid, syscall.SIGQUIT); err != nil {
			return fmt.Sprintf("signalling the leader %d: %v", pid, err)
		}
		for deadline := time.Now().Add(5 * time.Second); syscall.Kill(pid, 0) == nil && time.Now().Before(deadline); {
			time.Sleep(100 * time.Millisecond)
		}
		text, _ := os.ReadFile(log)
		var out strings.Builder
		fmt.Fprintf(&out, "== %s, stopped with SIGQUIT: its leader's goroutines and shared-state lines\n", filepath.Base(base))
		for _, block := range strings.Split(string(text), "\n\n") {
			if strings.Contains(block, "pkg/ha.(*Coordinator)") || strings.Contains(block, "pkg/shard.(*Members)") {
				fmt.Fprintln(&out, block)
			}
		}
		for _, l := range strings.Split(string(text), "\n") {
			if strings.Contains(l, "statistics") || strings.Contains(l, "order") || strings.Contains(l, "tuning") ||
				strings.Contains(l, "term") {
				fmt.Fprintln(&out, l)
			}
		}
		return out.String()
	}
	return "no replica reports that it leads"
}

// pidFiles lists the demo's PID files whose process still runs.
func pidFiles(t *testing.T, state string) []string {
	files, err := filepath.Glob(filepath.Join(state, "*", "*.pid"))
	if err != nil {
		t.Fatal(err)
	}
	var alive []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var pid int
		if _, err := fmt.Sscan(string(b), &pid); err == nil && pid > 0 && syscall.Kill(pid, 0) == nil {
			alive = append(alive, f)
		}
	}
	sort.Strings(alive)
	return alive
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
