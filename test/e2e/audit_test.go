package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kube-zen/zen-watcher/internal/testenv"
	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/obsclient"
)

// auditPolicy audits what the audit source judges, and keeps the control plane's own chatter
// (reads, watches) out. The first rule that matches decides.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
  users: ["system:anonymous"]
- level: None
  verbs: ["get", "list", "watch"]
- level: RequestResponse
  resources:
  - group: "rbac.authorization.k8s.io"
  - group: ""
    resources: ["pods", "secrets", "configmaps"]
- level: Metadata
`

// auditBackend is what the API server's audit webhook backend needs to reach a replica over TLS
// with a bearer token: the files, and the replica's address and serving certificate.
type auditBackend struct {
	addr, token          string
	certFile, keyFile    string
	policyFile, kubeFile string
	roots                *x509.CertPool
}

func newAuditBackend(t *testing.T) *auditBackend {
	t.Helper()
	dir := t.TempDir()
	ca, err := testenv.NewCA("zw-audit-ca")
	if err != nil {
		t.Fatal(err)
	}
	_, certPEM, keyPEM, err := ca.Leaf("127.0.0.1", time.Now().Add(24*time.Hour), true)
	if err != nil {
		t.Fatal(err)
	}
	b := &auditBackend{addr: testenv.FreeAddr(t), token: "audit-backend-token-7f3a9c", roots: ca.Pool(),
		certFile: filepath.Join(dir, "tls.crt"), keyFile: filepath.Join(dir, "tls.key"),
		policyFile: filepath.Join(dir, "policy.yaml"), kubeFile: filepath.Join(dir, "webhook.kubeconfig")}
	caFile := filepath.Join(dir, "ca.crt")
	kubeconfig := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: zen-watcher
  cluster: {server: "https://%s/audit", certificate-authority: %q}
users:
- name: audit
  user: {token: %q}
contexts:
- name: audit
  context: {cluster: zen-watcher, user: audit}
current-context: audit
`, b.addr, caFile, b.token)
	for path, body := range map[string][]byte{b.certFile: certPEM, b.keyFile: keyPEM, caFile: ca.CertPEM(),
		b.policyFile: []byte(auditPolicy), b.kubeFile: []byte(kubeconfig)} {
		if err := os.WriteFile(path, body, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// TestAPIServerAuditBackend: a kube-apiserver of its own, with an audit policy and its webhook
// backend pointed over TLS, with a bearer token, at a replica. Each request a security team wants
// to see becomes its Observation: a privileged pod, a cluster-admin binding, a kube-system Secret,
// a ConfigMap delete, an anonymous request, a request with a wrong token; a cluster-admin grant by
// a patch is critical too; a Lease deleted names its kind; a 600 KB ConfigMap's event is judged
// without its objects and its batch kept. Batches without findings queue nothing. Secrets written
// while the replica restarts each have one Observation. zen-watcher's own requests become none
// for five minutes — with a 60 s TTL its cleanup deletes are audited too, and they once fed the
// source for ever — and the API server reports no failed batch.
func TestAPIServerAuditBackend(t *testing.T) {
	b := newAuditBackend(t)
	ac, err := testenv.StartCluster(testenv.Options{APIServerArgs: map[string]string{
		"audit-policy-file": b.policyFile, "audit-webhook-config-file": b.kubeFile, "audit-webhook-batch-max-wait": "1s",
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ac.Stop() })
	ctx := context.Background()
	for _, ns := range []string{"zen-system", "audit-apps"} {
		if _, err := ac.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ac.Kube.CoreV1().Secrets("zen-system").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "audit-webhook"},
		StringData: map[string]string{"token": b.token}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	createIngester(t, ac, "audit", v1alpha1.IngesterSpec{Source: "audit", Adapter: v1alpha1.AdapterAudit,
		Webhook: &v1alpha1.WebhookSource{Path: "/audit", Auth: v1alpha1.WebhookAuth{Type: v1alpha1.WebhookAuthBearer,
			SecretRef: &v1alpha1.SecretKeyRef{Name: "audit-webhook", Key: "token"}}}})
	redisSrv, err := testenv.StartRedis()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = redisSrv.Close() })
	r := startReplica(t, "zw-audit", "-kubeconfig", ac.Kubeconfig, "-namespace", "zen-system", "-webhook-addr", b.addr,
		"-redis-addr", redisSrv.Addr,
		"-webhook-tls-cert-file", b.certFile, "-webhook-tls-key-file", b.keyFile,
		"-observation-ttl-seconds", "60", "-cleanup-interval", "5s")
	r.WaitReady(t, 60*time.Second)
	started := time.Now()
	tlsClient := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: b.roots}}}
	eventually(t, 20*time.Second, func(context.Context) error {
		resp, err := tlsClient.Get("https://" + b.addr + "/audit")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			return fmt.Errorf("GET /audit: HTTP %d, want 405 once the route is served", resp.StatusCode)
		}
		return nil
	})

	// What a security team wants to see, done as the test's own administrator.
	privileged := true
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "debug-shell"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{
		Name: "shell", Image: "busybox", SecurityContext: &corev1.SecurityContext{Privileged: &privileged}}}}}
	must(t, func() error {
		_, err := ac.Kube.CoreV1().Pods("audit-apps").Create(ctx, pod, metav1.CreateOptions{})
		return err
	})
	named := pod.DeepCopy() // its name is the API server's: the audit event has it in the response only
	named.Name, named.GenerateName = "", "probe-"
	must(t, func() error {
		_, err := ac.Kube.CoreV1().Pods("audit-apps").Create(ctx, named, metav1.CreateOptions{})
		return err
	})
	crb := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "give-bob-everything"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects: []rbacv1.Subject{{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: "bob"}}}
	must(t, func() error {
		_, err := ac.Kube.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{})
		return err
	})
	must(t, func() error { // granted again, by a patch that names only the subjects
		_, err := ac.Kube.RbacV1().ClusterRoleBindings().Patch(ctx, "give-bob-everything", types.MergePatchType,
			[]byte(`{"subjects":[{"kind":"User","apiGroup":"rbac.authorization.k8s.io","name":"mallory"}]}`), metav1.PatchOptions{})
		return err
	})
	must(t, func() error {
		_, err := ac.Kube.CoreV1().Secrets("kube-system").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "cloud-key"},
			StringData: map[string]string{"key": "k"}}, metav1.CreateOptions{})
		return err
	})
	must(t, func() error {
		_, err := ac.Kube.CoreV1().ConfigMaps("audit-apps").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "feature-flags"}}, metav1.CreateOptions{})
		return err
	})
	must(t, func() error {
		return ac.Kube.CoreV1().ConfigMaps("audit-apps").Delete(ctx, "feature-flags", metav1.DeleteOptions{})
	})
	must(t, func() error {
		_, err := ac.Kube.CoordinationV1().Leases("audit-apps").Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "batch-lock"}}, metav1.CreateOptions{})
		return err
	})
	must(t, func() error {
		return ac.Kube.CoordinationV1().Leases("audit-apps").Delete(ctx, "batch-lock", metav1.DeleteOptions{})
	})
	// A 600 KB object at the RequestResponse level: its event (request and response) is over a
	// megabyte, and a Secret write follows it within the batch's second. The event is judged
	// without its objects; the batch is kept.
	must(t, func() error {
		_, err := ac.Kube.CoreV1().ConfigMaps("audit-apps").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "bulk-config"},
			Data: map[string]string{"blob": strings.Repeat("0123456789", 60_000)}}, metav1.CreateOptions{})
		return err
	})
	must(t, func() error {
		_, err := ac.Kube.CoreV1().Secrets("kube-system").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "beside-the-bulk"},
			StringData: map[string]string{"key": "k"}}, metav1.CreateOptions{})
		return err
	})
	plain := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: apiServerRoots(t, ac)}}}
	if code := rawRequest(t, plain, http.MethodGet, ac.Config.Host+"/api/v1/namespaces", ""); code != http.StatusForbidden {
		t.Errorf("anonymous request: HTTP %d, want 403", code)
	}
	if code := rawRequest(t, plain, http.MethodPost, ac.Config.Host+"/api/v1/namespaces/audit-apps/configmaps", "not-a-token"); code != http.StatusUnauthorized {
		t.Errorf("request with a wrong token: HTTP %d, want 401", code)
	}

	oc, err := obsclient.New(ac.Config)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ eventType, severity, detail, verb string }{
		{"privileged_pod_created", "high", "debug-shell", "create"},
		{"privileged_pod_created", "high", "pods probe-", "create"},
		{"rbac_modified", "critical", "give-bob-everything", "create"},
		{"rbac_modified", "critical", "give-bob-everything", "patch"},
		{"secret_modified", "high", "cloud-key", "create"},
		{"configmap_modified", "low", "feature-flags", "delete"},
		{"anonymous_request", "high", "system:anonymous", ""},
		{"request_denied", "medium", "401", ""},
		{"resource_deleted", "low", "batch-lock", "delete"},
		{"configmap_modified", "low", "bulk-config", "create"},
		{"secret_modified", "high", "beside-the-bulk", "create"},
	}
	var created float64
	eventually(t, 30*time.Second, func(ctx context.Context) error {
		list, err := oc.ListObservations(ctx, "", v1alpha1.LabelSource+"=audit")
		if err != nil {
			return err
		}
		for _, w := range want {
			if !hasObservation(list.Items, w.eventType, w.severity, w.detail, w.verb) {
				return fmt.Errorf("no %s Observation of severity %s mentioning %q (verb %q) among %d", w.eventType, w.severity, w.detail, w.verb, len(list.Items))
			}
		}
		for _, o := range list.Items {
			if strings.Contains(o.Spec.Title, "batch-lock") && o.Spec.Resource.Kind != "Lease" {
				return fmt.Errorf("the Lease's Observation names the kind %q", o.Spec.Resource.Kind)
			}
			if strings.Contains(o.Spec.Title, "bulk-config") && string(o.Spec.Details["cut"]) != "requestObject,responseObject" {
				return fmt.Errorf("the 600 KB ConfigMap's Observation says it was cut of %q", o.Spec.Details["cut"])
			}
		}
		created = r.metric(`zen_watcher_observations_created_total{source="audit"}`)
		return nil
	})

	// Cleanup deletes them after their 60 s, and every delete is audited (as are its Lease
	// renewals and Observation writes): none of zen-watcher's own requests may become an
	// Observation, for five minutes from the replica's start, through its restart. Every audit
	// Observation is recorded while it lives (a minute at least).
	rec := recordObservations(t, oc, "audit")
	eventually(t, 150*time.Second, func(ctx context.Context) error {
		if n := r.metric(`zen_watcher_cleanup_deleted_total{reason="expired"}`); n < created {
			return fmt.Errorf("cleanup deleted %.0f of the first %.0f audit Observations", n, created)
		}
		return nil
	})
	// Most batches hold no finding (Observation writes, Lease renewals): answered, counted, and
	// nothing queued — an empty entry was once read back and logged as undecodable.
	if n := r.metric(`zen_watcher_webhook_requests_without_findings_total{source="audit"}`); n <= 0 {
		t.Error("no audit batch without findings was counted")
	}
	if strings.Contains(r.Out.String(), "undecodable") {
		t.Error("the replica logged an undecodable queue entry")
	}
	if n := apiServerMetric(t, ac, "apiserver_audit_error_total"); n != 0 {
		t.Errorf("the API server counted %v failed audit batches", n)
	}
	// The accounting: every event the API server sent arrives and is counted once, as a finding
	// or under the reason it is none. The API server goes on auditing the replica's requests, so
	// what it sent by now must arrive, and no more than it sent can.
	sent := apiServerMetric(t, ac, "apiserver_audit_event_total")
	eventually(t, 20*time.Second, func(context.Context) error {
		if got := r.metric(`zen_watcher_webhook_events_total{source="audit"}`); got < sent {
			return fmt.Errorf("%.0f audit events counted, the API server had sent %.0f", got, sent)
		}
		return nil
	})
	got := r.metric(`zen_watcher_webhook_events_total{source="audit"}`)
	if now := apiServerMetric(t, ac, "apiserver_audit_event_total"); got > now {
		t.Errorf("%.0f audit events counted, more than the %.0f the API server sent", got, now)
	}
	// One scrape holds the three counts of the same moment; the API server goes on auditing the
	// replica's Lease renewals, so a batch may be between its parse and its answer: retried.
	var events, findings, ignored float64
	eventually(t, 20*time.Second, func(context.Context) error {
		m := scrape(t, r)
		events, findings = m[`zen_watcher_webhook_events_total{source="audit"}`], m[`zen_watcher_webhook_findings_total{source="audit"}`]
		ignored = 0
		for _, reason := range []string{"own_request", "stage", "not_a_finding"} {
			ignored += m[`zen_watcher_source_objects_ignored_total{reason="`+reason+`",source="audit"}`]
		}
		if findings+ignored != events {
			return fmt.Errorf("%.0f findings and %.0f ignored do not add up to the %.0f events counted", findings, ignored, events)
		}
		return nil
	})
	t.Logf("audit events: %.0f sent by the API server by the first count, %.0f counted since: %.0f findings, %.0f ignored", sent, events, findings, ignored)
	if n := r.metric(`zen_watcher_webhook_events_cut_total{source="audit"}`); n < 1 {
		t.Errorf("%v audit events counted cut, want the 600 KB ConfigMap's at least", n)
	}

	restartDuringTraffic(t, ac, oc, b, r.Stop, func() *replica {
		return startReplica(t, "zw-audit-2", "-kubeconfig", ac.Kubeconfig, "-namespace", "zen-system", "-webhook-addr", b.addr,
			"-redis-addr", redisSrv.Addr, "-webhook-tls-cert-file", b.certFile, "-webhook-tls-key-file", b.keyFile,
			"-observation-ttl-seconds", "60", "-cleanup-interval", "5s")
	})

	for time.Since(started) < 5*time.Minute {
		time.Sleep(time.Second)
	}
	seen := rec.stop()
	own := 0
	for _, o := range seen {
		if o.Details["user"] == "zen-admin" || o.Resource.Kind == "observations" || o.Resource.Kind == "Observation" {
			own++
			if own <= 5 {
				t.Errorf("an Observation of zen-watcher's own request: %s", o.Title)
			}
		}
	}
	t.Logf("%d audit Observations seen in %v (the API server's bootstrap writes among them), %d of zen-watcher's own requests",
		len(seen), time.Since(started).Round(time.Second), own)
}

// observationRecorder lists a source's Observations every second and keeps each one it saw: with
// a short TTL one may live for only a minute.
type observationRecorder struct {
	mu      sync.Mutex
	seen    map[string]v1alpha1.ObservationSpec
	done    chan struct{}
	stopped chan struct{}
}

func recordObservations(t *testing.T, oc *obsclient.Client, source string) *observationRecorder {
	rec := &observationRecorder{seen: map[string]v1alpha1.ObservationSpec{}, done: make(chan struct{}), stopped: make(chan struct{})}
	go func() {
		defer close(rec.stopped)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			list, err := oc.ListObservations(ctx, "", v1alpha1.LabelSource+"="+source)
			cancel()
			if err != nil {
				t.Logf("listing Observations: %v", err)
			} else {
				rec.mu.Lock()
				for _, o := range list.Items {
					rec.seen[o.Name] = o.Spec
				}
				rec.mu.Unlock()
			}
			select {
			case <-rec.done:
				return
			case <-time.After(time.Second):
			}
		}
	}()
	t.Cleanup(func() { rec.stop() })
	return rec
}

// stop ends the recording and returns what was seen.
func (r *observationRecorder) stop() map[string]v1alpha1.ObservationSpec {
	select {
	case <-r.done:
	default:
		close(r.done)
	}
	<-r.stopped
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seen
}

// restartDuringTraffic writes Secrets, four a second, while the replica is stopped and started
// again: every one has exactly one Observation, and the API server fails no batch. A batch sent
// while nothing listens is retried by the API server's backoff (10 s, then longer); one sent
// while the new replica loads its routes is answered 503 and retried.
func restartDuringTraffic(t *testing.T, ac *testenv.Cluster, oc *obsclient.Client, b *auditBackend, stop func(), start func() *replica) {
	ctx := context.Background()
	var names []string
	write := func(n int) {
		for range n {
			name := fmt.Sprintf("rotated-%03d", len(names))
			must(t, func() error {
				_, err := ac.Kube.CoreV1().Secrets("audit-apps").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name},
					StringData: map[string]string{"key": name}}, metav1.CreateOptions{})
				return err
			})
			names = append(names, name)
			time.Sleep(250 * time.Millisecond)
		}
	}
	write(12)
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	write(12)
	<-stopped
	r := start()
	write(12)
	r.WaitReady(t, 60*time.Second)
	write(12)

	// Observations of the traffic, by the Secret they name; the TTL (60 s) may delete the first
	// before the last arrive, so every poll adds to what was seen.
	seen := map[string]map[string]bool{}
	eventually(t, 90*time.Second, func(ctx context.Context) error {
		list, err := oc.ListObservations(ctx, "audit-apps", v1alpha1.LabelSource+"=audit")
		if err != nil {
			return err
		}
		for _, o := range list.Items {
			if o.Spec.EventType == "secret_modified" && strings.HasPrefix(o.Spec.Resource.Name, "rotated-") {
				if seen[o.Spec.Resource.Name] == nil {
					seen[o.Spec.Resource.Name] = map[string]bool{}
				}
				seen[o.Spec.Resource.Name][o.Name] = true
			}
		}
		for _, n := range names {
			if len(seen[n]) == 0 {
				return fmt.Errorf("no Observation of Secret %s (%d of %d seen)", n, len(seen), len(names))
			}
		}
		return nil
	})
	for _, n := range names {
		if len(seen[n]) != 1 {
			t.Errorf("Secret %s has %d Observations, want 1", n, len(seen[n]))
		}
	}
	if len(seen) != len(names) {
		t.Errorf("%d Secrets have Observations, %d were written", len(seen), len(names))
	}
	if n := apiServerMetric(t, ac, "apiserver_audit_error_total"); n != 0 {
		t.Errorf("the API server counted %v failed audit batches through the restart", n)
	}
	t.Logf("%d Secrets written through a restart of the replica at %s, each with one Observation", len(names), b.addr)
}

// scrape reads every sample of a replica's metrics at once, by name with its labels.
func scrape(t *testing.T, r *replica) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + r.MetricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		if k := strings.LastIndexByte(line, ' '); k > 0 {
			if v, err := strconv.ParseFloat(line[k+1:], 64); err == nil {
				out[line[:k]] = v
			}
		}
	}
	return out
}

// createIngester creates an Ingester in zen-system of the control plane c.
func createIngester(t *testing.T, c *testenv.Cluster, name string, spec v1alpha1.IngesterSpec) {
	t.Helper()
	if err := testenv.CreateIngester(context.Background(), c.Config, "zen-system", name, spec); err != nil {
		t.Fatal(err)
	}
}

func must(t *testing.T, f func() error) {
	t.Helper()
	if err := f(); err != nil {
		t.Fatal(err)
	}
}

// apiServerRoots trusts the API server's serving certificate, for requests made without a client.
func apiServerRoots(t *testing.T, c *testenv.Cluster) *x509.CertPool {
	t.Helper()
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(c.Config.CAData) {
		t.Fatal("the API server's CA is not PEM")
	}
	return roots
}

// rawRequest sends one request to the API server with token as its bearer (none when empty) and
// returns the status code.
func rawRequest(t *testing.T, client *http.Client, method, url, token string) int {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader([]byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"}}`)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// hasObservation reports whether one of obs is of eventType and severity, of the request verb
// (any when empty), and mentions detail in its title or a detail value.
func hasObservation(obs []v1alpha1.Observation, eventType, severity, detail, verb string) bool {
	for _, o := range obs {
		if o.Spec.EventType != eventType || string(o.Spec.Severity) != severity || verb != "" && string(o.Spec.Details["verb"]) != verb {
			continue
		}
		if strings.Contains(o.Spec.Title, detail) {
			return true
		}
		for _, v := range o.Spec.Details {
			if string(v) == detail {
				return true
			}
		}
	}
	return false
}

// apiServerMetric is a counter of the API server's, summed over its labels; where match is given,
// over the samples whose labels hold every one of them (such as `code="409"`).
func apiServerMetric(t *testing.T, c *testenv.Cluster, name string, match ...string) float64 {
	t.Helper()
	raw, err := c.Kube.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line != name && !strings.HasPrefix(line, name+" ") && !strings.HasPrefix(line, name+"{") ||
			slices.ContainsFunc(match, func(m string) bool { return !strings.Contains(line, m) }) {
			continue
		}
		fields := strings.Fields(line)
		v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		if err == nil {
			total += v
		}
	}
	return total
}
