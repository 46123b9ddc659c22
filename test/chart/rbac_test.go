package chart

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/kube-zen/zen-watcher/internal/testenv"
	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/obsclient"
)

const rbacNS, rbacRelease = "zen-rbac", "rbac"

// TestReplicaOnTheChartServiceAccount installs the chart, mints a token for its ServiceAccount and
// runs a replica with nothing else: findings from a webhook, Warning Events, Trivy reports and
// PolicyReports must become Observations without a single 403. Access reviews check that the
// grants stop where they should. Then every metric the chart's alerts and dashboards use must be
// in that replica's /metrics.
func TestReplicaOnTheChartServiceAccount(t *testing.T) {
	ctx := context.Background()
	runHelm(t, "install", rbacRelease, ".", "-n", rbacNS, "--create-namespace",
		"--set", "sources.create=true", "--set", "sources.falco.enabled=true",
		"--set", "webhook.secretNames={falco-webhook}",
		"--set", "metrics.prometheusRule.enabled=true", "--set", "grafana.dashboards.enabled=true")
	t.Cleanup(func() {
		_, _ = command(chartDir, helm, "uninstall", rbacRelease, "-n", rbacNS, "--kubeconfig", cluster.Kubeconfig)
	})
	if _, err := cluster.Kube.CoreV1().Secrets(rbacNS).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "falco-webhook"}, Data: map[string][]byte{"token": []byte("rbac-test-token")},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	sa := rbacRelease + "-zen-watcher"
	kubeconfig := serviceAccountKubeconfig(t, sa)
	redis, err := testenv.StartRedis()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = redis.Close() })
	r := startReplica(t, kubeconfig, "-namespace", rbacNS, "-release", rbacRelease, "-member-id", "rbac-0", "-owner-deployment", sa,
		"-redis-addr", redis.Addr, "-cleanup-interval", "1s", "-order-tune-interval", "1s", "-coordination-interval", "1s")
	r.WaitReady(t, 60*time.Second)

	load(t, r)
	for _, source := range []string{"falco", "k8sevents", "trivy", "kyverno"} {
		waitSource(t, source)
	}
	eventually(t, 30*time.Second, func() error {
		ing := &v1alpha1.Ingester{}
		u, err := dynamicClient(t).Resource(v1alpha1.IngesterResource).Namespace(rbacNS).Get(ctx, "falco", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if _, ok := u.Object["status"]; !ok {
			return fmt.Errorf("Ingester falco has no status yet (%v)", ing)
		}
		return nil
	})
	if out := r.Out.String(); strings.Contains(strings.ToLower(out), "forbidden") {
		t.Errorf("the replica met a 403 on the chart's ServiceAccount:\n%s", out)
	}

	checkAccess(t, "system:serviceaccount:"+rbacNS+":"+sa)
	sent := 0
	checkMetricsExist(t, r, func() {
		sent++
		postFalco(t, r, fmt.Sprintf(`{"output":"rbac test %d","priority":"Notice","rule":"RBAC test","time":"%s","hostname":"node-rbac"}`,
			sent, time.Now().UTC().Format(time.RFC3339Nano)))
	})
	checkOwned(t, sa)
}

// checkOwned: what the replica created in the release namespace names the release's Deployment
// its owner, so that the garbage collector deletes it with the release.
func checkOwned(t *testing.T, deployment string) {
	t.Helper()
	ctx := context.Background()
	d, err := cluster.Kube.AppsV1().Deployments(rbacNS).Get(ctx, deployment, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var objs []metav1.Object
	leases, err := cluster.Kube.CoordinationV1().Leases(rbacNS).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range leases.Items {
		objs = append(objs, &leases.Items[i])
	}
	table, err := cluster.Kube.CoreV1().ConfigMaps(rbacNS).Get(ctx, rbacRelease+"-shards", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	objs = append(objs, table)
	if len(objs) < 3 { // the member Lease, the leader Lease and the table
		t.Fatalf("the replica created %d objects in %s, want its member and leader Leases and the table", len(objs), rbacNS)
	}
	for _, o := range objs {
		owners := o.GetOwnerReferences()
		if len(owners) != 1 || owners[0].UID != d.UID || owners[0].Kind != "Deployment" {
			t.Errorf("%s is owned by %+v, want the Deployment %s", o.GetName(), owners, deployment)
		}
	}
}

// serviceAccountKubeconfig mints a token for the ServiceAccount and writes a kubeconfig that uses
// it alone.
func serviceAccountKubeconfig(t *testing.T, sa string) string {
	t.Helper()
	exp := int64(3600)
	tok, err := cluster.Kube.CoreV1().ServiceAccounts(rbacNS).CreateToken(context.Background(), sa,
		&authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("minting a token for %s: %v", sa, err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["test"] = &clientcmdapi.Cluster{Server: cluster.Config.Host, CertificateAuthorityData: cluster.Config.CAData}
	cfg.AuthInfos[sa] = &clientcmdapi.AuthInfo{Token: tok.Status.Token}
	cfg.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: sa}
	cfg.CurrentContext = "test"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// load drives every kind of source the chart's default Ingesters read, plus the webhook.
// postFalco posts a Falco alert to the replica's webhook until it is accepted.
func postFalco(t *testing.T, r *replica, body string) {
	t.Helper()
	eventually(t, 30*time.Second, func() error {
		req, _ := http.NewRequest(http.MethodPost, "http://"+r.WebhookAddr+"/falco", bytes.NewReader([]byte(body)))
		req.Header.Set("Authorization", "Bearer rbac-test-token")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			return fmt.Errorf("falco webhook: HTTP %d", resp.StatusCode)
		}
		return nil
	})
}

func load(t *testing.T, r *replica) {
	t.Helper()
	ctx := context.Background()
	postFalco(t, r, `{"output":"rbac test","priority":"Critical","rule":"RBAC test","time":"2026-11-26T10:00:00Z","hostname":"node-rbac"}`)
	createNamespace(t, "rbac-apps")
	ev := &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: "rbac-warning", Namespace: "rbac-apps"},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: "rbac-apps", Name: "web-0", APIVersion: "v1"},
		Reason:         "BackOff", Message: "Back-off restarting failed container", Type: corev1.EventTypeWarning,
		FirstTimestamp: metav1.Now(), LastTimestamp: metav1.Now(), Count: 1,
	}
	if _, err := cluster.Kube.CoreV1().Events("rbac-apps").Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"trivy-operator/config-audit-ttl.yaml", "policyreport/sample-falco-policy.yaml"} {
		objs, err := testenv.FixtureObjects(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			if strings.HasPrefix(o.GetKind(), "Cluster") {
				continue // the namespaced reports are enough to show the grants
			}
			o.SetNamespace("rbac-apps")
			o.SetResourceVersion("")
			gv, _ := schema.ParseGroupVersion(o.GetAPIVersion())
			gvr := gv.WithResource(strings.ToLower(o.GetKind()) + "s")
			if _, err := dynamicClient(t).Resource(gvr).Namespace("rbac-apps").Create(ctx, o, metav1.CreateOptions{}); err != nil {
				t.Fatalf("creating %s from %s: %v", o.GetKind(), f, err)
			}
		}
	}
}

func waitSource(t *testing.T, source string) {
	t.Helper()
	c, err := obsclient.New(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, func() error {
		list, err := c.ListObservations(context.Background(), "", v1alpha1.LabelSource+"="+source)
		if err != nil {
			return err
		}
		if len(list.Items) == 0 {
			return fmt.Errorf("no Observation of %s yet", source)
		}
		return nil
	})
}

// checkAccess asks the API server what the ServiceAccount may do.
func checkAccess(t *testing.T, user string) {
	t.Helper()
	cases := []struct {
		verb, group, resource, namespace, name string
		allowed                                bool
	}{
		{"create", v1alpha1.SchemeGroupVersion.Group, "observations", "anywhere", "", true},
		{"update", v1alpha1.SchemeGroupVersion.Group, "ingesters/status", "anywhere", "", true},
		{"get", "", "secrets", rbacNS, "falco-webhook", true},
		{"update", "coordination.k8s.io", "leases", rbacNS, "", true},
		{"get", "apps", "deployments", rbacNS, rbacRelease + "-zen-watcher", true},
		{"get", "apps", "deployments", rbacNS, "other-deployment", false},
		{"list", "apps", "deployments", rbacNS, "", false},
		{"get", "", "secrets", rbacNS, "other-secret", false},
		{"list", "", "secrets", "", "", false},
		{"get", "", "secrets", "default", "falco-webhook", false},
		{"list", "", "configmaps", "", "", false},
		{"create", "", "pods", rbacNS, "", false},
		{"delete", v1alpha1.SchemeGroupVersion.Group, "ingesters", rbacNS, "", false},
		{"update", v1alpha1.SchemeGroupVersion.Group, "observations", "anywhere", "", false},
		{"create", "coordination.k8s.io", "leases", "default", "", false},
		{"create", "rbac.authorization.k8s.io", "clusterrolebindings", "", "", false},
	}
	for _, tc := range cases {
		sar := &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
			User: user, Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + rbacNS, "system:authenticated"},
			ResourceAttributes: &authzv1.ResourceAttributes{Verb: tc.verb, Group: tc.group, Resource: strings.Split(tc.resource, "/")[0],
				Subresource: subresource(tc.resource), Namespace: tc.namespace, Name: tc.name},
		}}
		got, err := cluster.Kube.AuthorizationV1().SubjectAccessReviews().Create(context.Background(), sar, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got.Status.Allowed != tc.allowed {
			t.Errorf("%s %s %s in %q (%s): allowed %v, want %v", tc.verb, tc.group, tc.resource, tc.namespace, tc.name,
				got.Status.Allowed, tc.allowed)
		}
	}
}

func subresource(r string) string {
	_, sub, _ := strings.Cut(r, "/")
	return sub
}

func dynamicClient(t *testing.T) dynamic.Interface {
	t.Helper()
	d, err := dynamic.NewForConfig(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// replica is one zen-watcher process on a kubeconfig of the test's choosing.
type replica = testenv.Replica

func startReplica(t *testing.T, kubeconfig string, args ...string) *replica {
	t.Helper()
	return testenv.StartReplica(t, binary, "replica", "", append([]string{"-kubeconfig", kubeconfig}, args...)...)
}

func eventually(t *testing.T, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %v", timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
