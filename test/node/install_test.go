//go:build node

package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kube-zen/zen-watcher/internal/testenv"
	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/sources/trivy"
)

const release, releaseNS = "zen-watcher", "zen-system"

// findingNamespaces are where the test's findings are, named as a cluster's are.
var findingNamespaces = []string{"shop", "payments", "checkout-api", "team-a", "monitoring-stack", "feature-login-v2"}

// TestHelmInstall: the README's install on a real node, with the bundled Redis (its image built
// here) and a Falco webhook: three replicas Ready and using Redis, one leader, every namespace
// owned by exactly one replica; Trivy reports, Warning Events and Falco alerts posted to the
// chart's Service with the bearer token of its Secret each become exactly one Observation; `helm
// uninstall` removes all of the release but the CRDs.
func TestHelmInstall(t *testing.T) {
	for _, crd := range toolCRDs(t) {
		command(t, time.Minute, node.kubectl, "apply", "-f", crd)
	}
	token := randomToken(t)
	createNamespace(t, releaseNS)
	_, err := node.kube.CoreV1().Secrets(releaseNS).Create(context.Background(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "falco-webhook"}, StringData: map[string]string{"token": token},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	command(t, 4*time.Minute, node.helm, "install", release, "charts/zen-watcher", "-n", releaseNS, "--create-namespace",
		"--set", "haOptimization.enabled=true", "--set", "redis.bundled.image="+node.redisImage,
		"--set", "sources.create=true", "--set", "sources.falco.enabled=true", "--wait", "--timeout", "3m")
	pods := replicaPods(t, 3)
	t.Logf("helm install: %d replicas and Redis Ready in %s", len(pods), time.Since(started).Round(100*time.Millisecond))

	eventually(t, time.Minute, "one leader among the replicas", func(ctx context.Context) error {
		leaders := 0.0
		for _, p := range replicaPods(t, 3) {
			v, err := podMetric(ctx, p, "zen_watcher_leader")
			if err != nil {
				return err
			}
			leaders += v
		}
		if leaders != 1 {
			return fmt.Errorf("%v replicas lead", leaders)
		}
		return nil
	})

	// Without it a replica still works, on its own dedup and without the durable webhook queue,
	// so nothing else here would tell.
	eventually(t, time.Minute, "every replica using the bundled Redis", func(ctx context.Context) error {
		for _, p := range replicaPods(t, 3) {
			v, err := podMetric(ctx, p, "zen_watcher_redis_available")
			if err != nil {
				return err
			}
			if v != 1 {
				return fmt.Errorf("%s: zen_watcher_redis_available %v", p.Name, v)
			}
		}
		return nil
	})

	for _, ns := range findingNamespaces {
		createNamespace(t, ns)
	}
	eventually(t, 90*time.Second, "every namespace owned by exactly one replica", func(ctx context.Context) error {
		nss, err := node.kube.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		owned := 0.0
		for _, p := range replicaPods(t, 3) {
			v, err := podMetric(ctx, p, "zen_watcher_shard_namespaces_owned")
			if err != nil {
				return err
			}
			owned += v
		}
		if owned != float64(len(nss.Items)) {
			return fmt.Errorf("the replicas own %v namespaces between them, the cluster has %d", owned, len(nss.Items))
		}
		return nil
	})

	// The ledger: what was sent, by namespace and source.
	want := map[string]map[string]int{}
	report := vulnerabilityReport(t)
	findings, err := trivy.Parser{}.ParseObject(report)
	if err != nil {
		t.Fatal(err)
	}
	for i, ns := range findingNamespaces {
		want[ns] = map[string]int{}
		createVulnerabilityReport(t, report, ns)
		want[ns]["trivy"] = len(findings)
		for j := range i%3 + 1 {
			warningEvent(t, ns, fmt.Sprintf("probe-failed-%d", j))
		}
		want[ns]["k8sevents"] = i%3 + 1
	}
	webhook := serviceURL(t, release) + "/falco"
	for i := range 20 {
		ns := findingNamespaces[i%len(findingNamespaces)]
		postFalco(t, webhook, token, ns, i)
		want[ns]["falco"]++
	}
	eventually(t, 2*time.Minute, "exactly one Observation per finding sent", func(ctx context.Context) error {
		for _, ns := range findingNamespaces {
			for source, n := range want[ns] {
				got, err := observations(ctx, ns, source)
				if err != nil {
					return err
				}
				if got != n {
					return fmt.Errorf("%s: %d %s Observations, want %d", ns, got, source, n)
				}
			}
		}
		return nil
	})
	// Held a while: nothing written twice once the replicas have re-cut for the new namespaces.
	time.Sleep(5 * time.Second)
	for _, ns := range findingNamespaces {
		for source, n := range want[ns] {
			if got, err := observations(context.Background(), ns, source); err != nil || got != n {
				t.Errorf("%s: %d %s Observations (%v), want %d", ns, got, source, err, n)
			}
		}
	}
	t.Logf("%d namespaces: Trivy reports, Warning Events and 20 Falco alerts each became exactly one Observation", len(findingNamespaces))

	command(t, 2*time.Minute, node.helm, "uninstall", release, "-n", releaseNS, "--wait", "--timeout", "90s")
	eventually(t, time.Minute, "nothing of the release left but its CRDs", func(ctx context.Context) error {
		return leftOfRelease(ctx)
	})
	for _, crd := range []string{"observations.zen.kube-zen.io", "ingesters.zen.kube-zen.io"} {
		if _, err := node.dyn.Resource(schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1",
			Resource: "customresourcedefinitions"}).Get(context.Background(), crd, metav1.GetOptions{}); err != nil {
			t.Errorf("CRD %s after helm uninstall: %v", crd, err)
		}
	}
}

// leftOfRelease names what of the release is still in the cluster: the chart's objects, and what
// the replicas themselves create in the release namespace (Leases, the shard table).
func leftOfRelease(ctx context.Context) error {
	var left []string
	selector := metav1.ListOptions{LabelSelector: "app.kubernetes.io/instance=" + release}
	for _, gvr := range []schema.GroupVersionResource{
		{Version: "v1", Resource: "pods"}, {Version: "v1", Resource: "services"}, {Version: "v1", Resource: "configmaps"},
		{Version: "v1", Resource: "secrets"}, {Version: "v1", Resource: "serviceaccounts"},
		{Group: "apps", Version: "v1", Resource: "deployments"}, {Group: "coordination.k8s.io", Version: "v1", Resource: "leases"},
		{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "roles"},
		{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "rolebindings"},
		{Group: "policy", Version: "v1", Resource: "poddisruptionbudgets"},
		{Group: v1alpha1.GroupName, Version: "v1alpha1", Resource: "ingesters"},
	} {
		list, err := node.meta.Resource(gvr).Namespace(releaseNS).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, o := range list.Items {
			if strings.HasPrefix(o.Name, release) || o.Labels["app.kubernetes.io/instance"] == release {
				left = append(left, gvr.Resource+"/"+o.Name)
			}
		}
	}
	for _, gvr := range []schema.GroupVersionResource{
		{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles"},
		{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterrolebindings"},
	} {
		list, err := node.meta.Resource(gvr).List(ctx, selector)
		if err != nil {
			return err
		}
		for _, o := range list.Items {
			left = append(left, gvr.Resource+"/"+o.Name)
		}
	}
	if len(left) > 0 {
		return fmt.Errorf("left: %s", strings.Join(left, ", "))
	}
	return nil
}

func toolCRDs(t *testing.T) []string {
	t.Helper()
	crds, err := testenv.ToolCRDs()
	if err != nil {
		t.Fatal(err)
	}
	return crds
}

func randomToken(t *testing.T) string {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func createNamespace(t *testing.T, name string) {
	t.Helper()
	_, err := node.kube.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// replicaPods are the release's zen-watcher pods that are Ready; the test fails unless there are n.
func replicaPods(t *testing.T, n int) []corev1.Pod {
	t.Helper()
	list, err := node.kube.CoreV1().Pods(releaseNS).List(context.Background(), metav1.ListOptions{
		LabelSelector: "app.kubernetes.io/instance=" + release + ",app.kubernetes.io/name=zen-watcher,app.kubernetes.io/component!=redis"})
	if err != nil {
		t.Fatal(err)
	}
	var ready []corev1.Pod
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil && slices.ContainsFunc(p.Status.Conditions, func(c corev1.PodCondition) bool {
			return c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue
		}) {
			ready = append(ready, p)
		}
	}
	if len(ready) != n {
		t.Fatalf("%d replicas Ready, want %d", len(ready), n)
	}
	return ready
}

// podMetric reads one series (its exact text) from a pod's metrics, through the node's bridge.
func podMetric(ctx context.Context, p corev1.Pod, series string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.Status.PodIP+":9090/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, fmt.Errorf("%s has no %s", p.Name, series)
}

func serviceURL(t *testing.T, name string) string {
	t.Helper()
	svc, err := node.kube.CoreV1().Services(releaseNS).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range svc.Spec.Ports {
		if p.Name == "webhook" || p.Port == 8080 {
			return fmt.Sprintf("http://%s:%d", svc.Spec.ClusterIP, p.Port)
		}
	}
	t.Fatalf("Service %s has no webhook port: %+v", name, svc.Spec.Ports)
	return ""
}

func postFalco(t *testing.T, url, token, ns string, i int) {
	t.Helper()
	body := fmt.Sprintf(`{"output":"Shell spawned in a container (node test %d)","priority":"Warning","rule":"Terminal shell in container",`+
		`"time":%q,"hostname":"zw-node","source":"syscall","output_fields":{"k8s.ns.name":%q,"k8s.pod.name":"web-%d"}}`,
		i, time.Now().UTC().Format(time.RFC3339Nano), ns, i)
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader([]byte(body)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("POST %s: %s %s", url, resp.Status, b)
	}
}

// vulnerabilityReport is a report Trivy Operator wrote (its test data).
func vulnerabilityReport(t *testing.T) *unstructured.Unstructured {
	t.Helper()
	objs, err := testenv.FixtureObjects("trivy-operator/vulnerabilityReportList.json")
	if err != nil || len(objs) == 0 {
		t.Fatalf("the VulnerabilityReport fixture: %v", err)
	}
	return testenv.CurrentVulnerabilityReport(objs[0])
}

func createVulnerabilityReport(t *testing.T, report *unstructured.Unstructured, ns string) {
	t.Helper()
	o := testenv.RetargetTrivyReport(report, ns)
	o.SetNamespace(ns)
	o.SetResourceVersion("")
	o.SetUID("")
	gvr := schema.GroupVersionResource{Group: "aquasecurity.github.io", Version: "v1alpha1", Resource: "vulnerabilityreports"}
	if _, err := node.dyn.Resource(gvr).Namespace(ns).Create(context.Background(), o, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating the VulnerabilityReport in %s: %v", ns, err)
	}
}

func warningEvent(t *testing.T, ns, name string) {
	t.Helper()
	now := metav1.Now()
	_, err := node.kube.CoreV1().Events(ns).Create(context.Background(), &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: name},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: "web-0", APIVersion: "v1"},
		Reason:         "Unhealthy", Message: "Readiness probe failed: " + name, Type: corev1.EventTypeWarning,
		FirstTimestamp: now, LastTimestamp: now, Count: 1, Source: corev1.EventSource{Component: "kubelet", Host: "zw-node"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

// observations counts the Observations of a source in a namespace.
func observations(ctx context.Context, ns, source string) (int, error) {
	list, err := node.meta.Resource(v1alpha1.SchemeGroupVersion.WithResource("observations")).Namespace(ns).List(ctx,
		metav1.ListOptions{LabelSelector: v1alpha1.LabelSource + "=" + source})
	if err != nil {
		return 0, err
	}
	return len(list.Items), nil
}
