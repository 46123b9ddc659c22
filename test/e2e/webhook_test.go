package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
)

func post(t *testing.T, r *replica, path, token string, body []byte) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+r.WebhookAddr+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// waitRoute waits until a webhook path is served: a GET is answered 405 (use POST), not 404 (no
// such route) nor 503 (the routes are still being loaded).
func waitRoute(t *testing.T, r *replica, path string) {
	t.Helper()
	eventually(t, 20*time.Second, func(context.Context) error {
		resp, err := http.Get("http://" + r.WebhookAddr + path)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			return fmt.Errorf("%s not served yet: GET answered %d", path, resp.StatusCode)
		}
		return nil
	})
}

// TestWebhookSources posts the tools' real payloads to Ingester-declared webhooks, checks the exact
// Observations, the answers to bad requests, and that changing and deleting the Ingester at run
// time changes what is collected.
func TestWebhookSources(t *testing.T) {
	ensureNamespace(t, "zen-system")
	_, err := cluster.Kube.CoreV1().Secrets("zen-system").Create(context.Background(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "audit-webhook"}, Data: map[string][]byte{"token": []byte("s3cret-token")},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ingester(t, "falco", v1alpha1.IngesterSpec{Source: "falco", Adapter: v1alpha1.AdapterFalco,
		Webhook: &v1alpha1.WebhookSource{Path: "/falco", Auth: v1alpha1.WebhookAuth{Type: v1alpha1.WebhookAuthNone}}})
	ingester(t, "audit", v1alpha1.IngesterSpec{Source: "audit", Adapter: v1alpha1.AdapterAudit,
		Webhook: &v1alpha1.WebhookSource{Path: "/audit", Auth: v1alpha1.WebhookAuth{Type: v1alpha1.WebhookAuthBearer,
			SecretRef: &v1alpha1.SecretKeyRef{Name: "audit-webhook", Key: "token"}}}})
	r := startReplica(t, "zw-hooks", "-namespace", "zen-system")
	r.WaitReady(t, 60*time.Second)
	waitRoute(t, r, "/falco")
	waitRoute(t, r, "/audit")

	// Falco: eight alerts of one rule on one host (JSON lines) are one finding for dedup: one
	// Observation. The falcosidekick test alert is another.
	if code := post(t, r, "/falco", "", fixtureBytes(t, "falco/single_rule_with_cat_write.json")); code != http.StatusAccepted {
		t.Fatalf("falco alerts: HTTP %d", code)
	}
	if code := post(t, r, "/falco", "", fixtureBytes(t, "falco/falcosidekick_client_test_falcoTestInput.json")); code != http.StatusAccepted {
		t.Fatalf("falcosidekick alert: HTTP %d", code)
	}
	falco := waitObservations(t, "zen-system", "falco", 2)
	byRule := map[string]v1alpha1.ObservationSpec{}
	for _, o := range falco {
		byRule[string(o.Spec.Details["rule"])] = o.Spec
	}
	if s := byRule["open_from_cat"]; s.Severity != "medium" || s.EventType != "runtime_alert" ||
		s.Resource != (v1alpha1.ResourceRef{APIVersion: "v1", Kind: "Node", Name: "test-falco-hostname"}) ||
		s.Description != "An open was seen (command=cat /dev/null)" || s.Details["proc.cmdline"] != "cat /dev/null" {
		t.Errorf("falco Observation %+v", s)
	}
	if s := byRule["Test rule"]; s.Severity != "info" || s.Details["proc.name"] != "falcosidekick" {
		t.Errorf("falcosidekick Observation %+v", s)
	}

	// Audit: an EventList as the API server's webhook backend sends it, with the right token.
	var items []string
	for _, f := range []string{"create_secret.json", "exec_pod.json", "attach_cluster_admin_role.json", "anonymous_creates_namespace_foo.json"} {
		items = append(items, strings.TrimSpace(string(fixtureBytes(t, "k8s-audit/"+f))))
	}
	list := []byte(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[` + strings.Join(items, ",") + `]}`)
	if code := post(t, r, "/audit", "wrong", list); code != http.StatusUnauthorized {
		t.Errorf("wrong token: HTTP %d, want 401", code)
	}
	if code := post(t, r, "/audit", "", list); code != http.StatusUnauthorized {
		t.Errorf("no token: HTTP %d, want 401", code)
	}
	if code := post(t, r, "/audit", "s3cret-token", list); code != http.StatusAccepted {
		t.Fatalf("audit list: HTTP %d", code)
	}
	byType := map[string]v1alpha1.Observation{}
	for _, ns := range []string{"default", "foo", "zen-system"} {
		for _, o := range observations(t, ns, "audit") {
			byType[o.Spec.EventType] = o
		}
	}
	eventually(t, 20*time.Second, func(context.Context) error {
		byType = map[string]v1alpha1.Observation{}
		for _, ns := range []string{"default", "zen-system"} {
			for _, o := range observations(t, ns, "audit") {
				byType[o.Spec.EventType] = o
			}
		}
		if len(byType) != 4 {
			return fmt.Errorf("audit Observations of types %v", keys(byType))
		}
		return nil
	})
	if o := byType["rbac_modified"]; o.Spec.Severity != "critical" || o.Spec.Resource.Kind != "ClusterRoleBinding" {
		t.Errorf("rbac Observation %+v", o.Spec)
	}
	if o := byType["pod_exec"]; o.Namespace != "default" || o.Spec.Details["user"] != "minikube-user" || o.Spec.Severity != "high" {
		t.Errorf("exec Observation %s %+v", o.Namespace, o.Spec)
	}

	// Bad requests: the right code each, and nothing written.
	for _, c := range []struct {
		name   string
		method string
		path   string
		ctype  string
		body   []byte
		want   int
	}{
		{"not JSON", "POST", "/falco", "application/json", []byte("rule=x"), 400},
		{"wrong shape", "POST", "/falco", "application/json", []byte(`{"hello":"world"}`), 400},
		{"too large", "POST", "/falco", "application/json", bytes.Repeat([]byte("x"), 2<<20), 413},
		{"wrong method", "GET", "/falco", "", nil, 405},
		{"wrong content type", "POST", "/falco", "application/xml", []byte("<a/>"), 415},
		{"unknown path", "POST", "/nope", "application/json", []byte("{}"), 404},
	} {
		req, _ := http.NewRequest(c.method, "http://"+r.WebhookAddr+c.path, bytes.NewReader(c.body))
		if c.ctype != "" {
			req.Header.Set("Content-Type", c.ctype)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s: HTTP %d, want %d", c.name, resp.StatusCode, c.want)
		}
	}

	// Change the Falco Ingester at run time: high and above only. A Warning (medium) alert of a new
	// rule is now filtered; a Critical one is written.
	setFalcoFilter(t, "high")
	eventually(t, 20*time.Second, func(context.Context) error {
		if g := getIngester(t, "falco").Status.ObservedGeneration; g < 2 {
			return fmt.Errorf("status of generation %d", g)
		}
		return nil
	})
	for _, prio := range []string{"Warning", "Critical"} {
		alert := fmt.Sprintf(`{"output":"%s alert","priority":"%s","rule":"rule-%s","time":"2026-11-26T10:00:00Z","hostname":"node-1"}`, prio, prio, prio)
		if code := post(t, r, "/falco", "", []byte(alert)); code != http.StatusAccepted {
			t.Fatalf("%s alert: HTTP %d", prio, code)
		}
	}
	waitObservations(t, "zen-system", "falco", 3)
	// Delete it: the path is no longer served.
	deleteIngester(t, "falco")
	eventually(t, 20*time.Second, func(context.Context) error {
		if code := post(t, r, "/falco", "", []byte(`{"rule":"r","output":"o","priority":"Critical"}`)); code != http.StatusNotFound {
			return fmt.Errorf("HTTP %d after the Ingester was deleted", code)
		}
		return nil
	})
	// The status is written every few seconds, the last findings' counts with the next write.
	eventually(t, 20*time.Second, func(context.Context) error {
		st := getIngester(t, "audit").Status
		if st.EventsSeen != 4 || st.Order == "" || len(st.Conditions) == 0 || st.Conditions[0].Reason != "Serving" {
			return fmt.Errorf("audit Ingester status %+v", st)
		}
		return nil
	})
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func setFalcoFilter(t *testing.T, minSeverity string) {
	t.Helper()
	ri := dyn(t).Resource(v1alpha1.IngesterResource).Namespace("zen-system")
	u, err := ri.Get(context.Background(), "falco", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := unstructured.SetNestedField(u.Object, minSeverity, "spec", "processing", "filter", "minSeverity"); err != nil {
		t.Fatal(err)
	}
	if _, err := ri.Update(context.Background(), u, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestSourceWaitsForItsCRD: an Ingester for cert-manager before cert-manager is installed says so in
// its status, and starts on its own once the CRD appears; expiring and unready Certificates then
// become Observations.
func TestSourceWaitsForItsCRD(t *testing.T) {
	ns := "certs-e2e"
	createNamespace(t, ns)
	ingester(t, "certs", v1alpha1.IngesterSpec{Source: "certmanager", Adapter: v1alpha1.AdapterCertManager,
		Informer:       &v1alpha1.InformerSource{Group: "cert-manager.io", Version: "v1", Resource: "certificates"},
		AdapterOptions: map[string]string{"expiryHorizon": "720h"}})
	r := startReplica(t, "zw-certs", "-namespace", "zen-system")
	r.WaitReady(t, 60*time.Second)
	eventually(t, 20*time.Second, func(context.Context) error {
		st := getIngester(t, "certs").Status
		if len(st.Conditions) == 0 || st.Conditions[0].Reason != "WaitingForResource" {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})

	installCRD(t, "cert-manager/cert-manager.io_certificates.yaml")
	eventually(t, 60*time.Second, func(context.Context) error {
		st := getIngester(t, "certs").Status
		if len(st.Conditions) == 0 || st.Conditions[0].Status != "True" {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
	var certs []*unstructured.Unstructured
	for _, u := range fixture(t, "cert-manager/cert-manager-resources.yaml") {
		if u.GetKind() == "Certificate" {
			certs = append(certs, create(t, u, ns))
		}
	}
	if len(certs) == 0 {
		t.Fatal("no Certificate in the fixture")
	}
	c := certs[0]
	c.Object["status"] = map[string]any{
		"conditions": []any{map[string]any{"type": "Ready", "status": "False", "reason": "Issuing",
			"message": "Issuing certificate as Secret does not exist", "lastTransitionTime": "2026-11-26T10:00:00Z"}},
		"notAfter": time.Now().Add(72 * time.Hour).UTC().Format(time.RFC3339),
	}
	gvr := schema.GroupVersionResource{Group: "cert-manager.io", Version: "v1", Resource: "certificates"}
	if _, err := dyn(t).Resource(gvr).Namespace(ns).UpdateStatus(context.Background(), c, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	obs := waitObservations(t, ns, "certmanager", 2)
	types := map[string]v1alpha1.Severity{}
	for _, o := range obs {
		types[o.Spec.EventType] = o.Spec.Severity
		if o.Spec.Resource.Kind != "Certificate" || o.Spec.Resource.Name != c.GetName() {
			t.Errorf("resource %+v", o.Spec.Resource)
		}
	}
	if types["certificate_not_ready"] != "high" || types["certificate_expiring"] != "medium" {
		t.Errorf("Observations %v", types)
	}
}

func installCRD(t *testing.T, path string) {
	t.Helper()
	u := fixture(t, path)[0]
	crd := &apiextv1.CustomResourceDefinition{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, crd); err != nil {
		t.Fatal(err)
	}
	gvr := apiextv1.SchemeGroupVersion.WithResource("customresourcedefinitions")
	if _, err := dyn(t).Resource(gvr).Create(context.Background(), u, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func(ctx context.Context) error {
		got, err := dyn(t).Resource(gvr).Get(ctx, crd.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		conds, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
		for _, c := range conds {
			if m := c.(map[string]any); m["type"] == "Established" && m["status"] == "True" {
				return nil
			}
		}
		return fmt.Errorf("CRD %s not established", crd.Name)
	})
}

// TestIngesterStartsWhenItsSecretAppears: a webhook Ingester created before the Secret it names
// waits (its route is not served, its status says WaitingForSecret) and starts, without being
// touched, once the Secret exists.
func TestIngesterStartsWhenItsSecretAppears(t *testing.T) {
	ensureNamespace(t, "zen-system")
	ingester(t, "falco-late", v1alpha1.IngesterSpec{Source: "falcol", Adapter: v1alpha1.AdapterFalco,
		Webhook: &v1alpha1.WebhookSource{Path: "/falcol", Auth: v1alpha1.WebhookAuth{Type: v1alpha1.WebhookAuthBearer,
			SecretRef: &v1alpha1.SecretKeyRef{Name: "falco-late-token", Key: "token"}}}})
	r := startReplica(t, "late", "-namespace", "zen-system", "-release", "late", "-member-id", "late",
		"-webhook-secret-refresh", "1s")
	r.WaitReady(t, 60*time.Second)
	time.Sleep(2 * time.Second) // two refreshes without the Secret
	if code := post(t, r, "/falcol", "late-token-5c1e", []byte(alertBody("late-0"))); code != http.StatusNotFound {
		t.Fatalf("before its Secret exists the route answers %d, want 404", code)
	}
	eventually(t, 15*time.Second, func(context.Context) error {
		c := meta.FindStatusCondition(getIngester(t, "falco-late").Status.Conditions, "Ready")
		if c == nil || c.Status != metav1.ConditionFalse || c.Reason != "WaitingForSecret" ||
			!strings.Contains(c.Message, "zen-system/falco-late-token") {
			return fmt.Errorf("before its Secret exists the Ready condition is %+v", c)
		}
		return nil
	})
	secrets := cluster.Kube.CoreV1().Secrets("zen-system")
	if _, err := secrets.Create(context.Background(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "falco-late-token"},
		Data: map[string][]byte{"token": []byte("late-token-5c1e")}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = secrets.Delete(context.Background(), "falco-late-token", metav1.DeleteOptions{}) })
	eventually(t, 15*time.Second, func(context.Context) error {
		if code := post(t, r, "/falcol", "late-token-5c1e", []byte(alertBody("late-1"))); code/100 != 2 {
			return fmt.Errorf("the route answers %d", code)
		}
		return nil
	})
	if code := post(t, r, "/falcol", "wrong", []byte(alertBody("late-2"))); code != http.StatusUnauthorized {
		t.Errorf("a wrong token: %d, want 401", code)
	}
	eventually(t, 15*time.Second, func(context.Context) error {
		c := meta.FindStatusCondition(getIngester(t, "falco-late").Status.Conditions, "Ready")
		if c == nil || c.Status != metav1.ConditionTrue || c.Reason != "Serving" {
			return fmt.Errorf("once its Secret exists the Ready condition is %+v", c)
		}
		return nil
	})
}

// TestUnwritableFindingsAreRefusedBeforeTheAnswer: through the binary, alerts whose Observation the
// API server would refuse (a pod name over 253, a namespace over 63, a 200 KB detail key) get 422
// with the reason and leave no Observation and no multi-megabyte log line; a good alert after them
// is written.
func TestUnwritableFindingsAreRefusedBeforeTheAnswer(t *testing.T) {
	ensureNamespace(t, "zen-system")
	ensureNamespace(t, "unwritable")
	ingester(t, "falco-unwritable", v1alpha1.IngesterSpec{Source: "falcou", Adapter: v1alpha1.AdapterFalco,
		Webhook: &v1alpha1.WebhookSource{Path: "/falcou", Auth: v1alpha1.WebhookAuth{Type: v1alpha1.WebhookAuthNone}}})
	r := startReplica(t, "unwritable", "-namespace", "zen-system", "-release", "unwritable", "-member-id", "unwritable")
	r.WaitReady(t, 60*time.Second)
	waitRoute(t, r, "/falcou")
	alert := func(fields map[string]string) []byte {
		b, err := json.Marshal(map[string]any{"output": "unwritable test", "priority": "Warning", "rule": "Unwritable test",
			"time": "2026-12-01T10:00:00Z", "hostname": "node-1", "output_fields": fields})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tc := range []struct {
		name   string
		fields map[string]string
	}{
		{"pod name over 253", map[string]string{"k8s.ns.name": "unwritable", "k8s.pod.name": strings.Repeat("p", 300)}},
		{"namespace over 63", map[string]string{"k8s.ns.name": strings.Repeat("n", 64), "k8s.pod.name": "cart-0"}},
		{"a 200 KB detail key", map[string]string{"k8s.ns.name": "unwritable", strings.Repeat("k", 200_000): "1"}},
	} {
		if code := post(t, r, "/falcou", "", alert(tc.fields)); code != http.StatusUnprocessableEntity {
			t.Errorf("%s: HTTP %d, want 422", tc.name, code)
		}
	}
	if code := post(t, r, "/falcou", "", alert(map[string]string{"k8s.ns.name": "unwritable", "k8s.pod.name": "cart-0"})); code != http.StatusAccepted {
		t.Fatalf("a good alert after them: HTTP %d, want 202", code)
	}
	waitObservations(t, "unwritable", "falcou", 1)
	if n := r.metric(`zen_watcher_webhook_rejected_total{reason="unwritable",source="falcou"}`); n != 3 {
		t.Errorf("%v refusals counted, want 3", n)
	}
	if out := r.Out.String(); len(out) > 256<<10 {
		t.Errorf("the replica logged %d bytes for three refusals", len(out))
	}
}

// TestNoNotFoundWhileRoutesLoad: a sender that posts from the moment a replica's port opens (as
// the API server's audit backend does, and it does not retry a 404) is answered 503 with
// Retry-After until the Ingesters' routes are registered, never 404. (The alert's large integer
// field is kept to its last digit on the way.)
func TestNoNotFoundWhileRoutesLoad(t *testing.T) {
	ingester(t, "falco-startup", v1alpha1.IngesterSpec{Source: "falcostart", Adapter: v1alpha1.AdapterFalco,
		Webhook: &v1alpha1.WebhookSource{Path: "/falco-startup", Auth: v1alpha1.WebhookAuth{Type: v1alpha1.WebhookAuthNone}}})
	r := startReplica(t, "zw-startup", "-namespace", "zen-system", "-release", "startup")
	client := &http.Client{Timeout: 2 * time.Second}
	body := []byte(`{"output":"startup alert","priority":"Critical","rule":"Startup","time":"2026-12-01T00:00:00Z","hostname":"node-1",` +
		`"output_fields":{"evt.time":1764547200123456789}}`)
	codes := map[int]int{}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := client.Post("http://"+r.WebhookAddr+"/falco-startup", "application/json", bytes.NewReader(body))
		if err != nil {
			time.Sleep(2 * time.Millisecond) // the port is not open yet
			continue
		}
		resp.Body.Close()
		codes[resp.StatusCode]++
		if resp.StatusCode == http.StatusAccepted {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Logf("answers from the port's opening to the first 202: %v", codes)
	if codes[http.StatusAccepted] != 1 {
		t.Fatalf("never answered 202 within a minute: %v", codes)
	}
	if codes[http.StatusNotFound] > 0 {
		t.Errorf("%d answers 404 before the route was served", codes[http.StatusNotFound])
	}
	// Its nanosecond timestamp, past a float64's digits, is stored as sent.
	obs := waitObservations(t, "zen-system", "falcostart", 1)
	if got := obs[0].Spec.Details["evt.time"]; got != "1764547200123456789" {
		t.Errorf("evt.time stored as %q, want 1764547200123456789", got)
	}
}
