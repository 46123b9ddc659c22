package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
)

// finding is one finding to deliver: n is its number in the run, dupOf the number of the finding it
// repeats (-1 for none), sev its severity where the source carries one.
type finding struct {
	n, dupOf int
	sev      string
}

// key is what identifies finding n of a run in its Observation.
func (f finding) key(tok string) string {
	if f.dupOf >= 0 {
		return fmt.Sprintf("%s-%d", tok, f.dupOf)
	}
	return fmt.Sprintf("%s-%d", tok, f.n)
}

// driver delivers one source's findings through its real path and finds them in Observations.
type driver struct {
	// source is the Observations' source label.
	source string
	// spec is the source's Ingester (informer or webhook) in the scenario's namespace.
	spec func() v1alpha1.IngesterSpec
	// send delivers a finding.
	send func(ctx context.Context, r *run, f finding) error
	// key reads the finding's key back from an Observation.
	key func(obs *unstructured.Unstructured) string
	// carriesSeverity is true when send sets the finding's severity from f.sev.
	carriesSeverity bool
	// object builds the tool's object for a finding and gvr is its resource; nil for a webhook
	// source. The raw path (see probe) walks these.
	object func(name, ns, key, sev string) *unstructured.Unstructured
	gvr    schema.GroupVersionResource
}

var drivers = map[string]driver{
	"warnings": {source: "k8sevents", spec: informerSpec("k8sevents", v1alpha1.AdapterK8sEvents, "", "v1", "events", "type=Warning"),
		send: sendWarning, key: detail("spec", "resource", "name"), gvr: eventsGVR,
		object: func(name, ns, key, _ string) *unstructured.Unstructured { return warningEvent(name, ns, key) }},
	"trivy": {source: "trivy", spec: informerSpec("trivy", v1alpha1.AdapterTrivy, "aquasecurity.github.io", "v1alpha1", "vulnerabilityreports", ""),
		send: sendTrivy, key: detail("spec", "details", "vulnerabilityID"), carriesSeverity: true,
		gvr: vulnReportsGVR, object: trivyFinding},
	"kyverno": {source: "kyverno", spec: informerSpec("kyverno", v1alpha1.AdapterKyverno, "wgpolicyk8s.io", "v1alpha2", "policyreports", ""),
		send: sendPolicyReport, key: detail("spec", "details", "rule"), carriesSeverity: true,
		gvr: policyReportsGVR, object: policyReport},
	"falco": {source: "falco", spec: webhookSpec("falco", v1alpha1.AdapterFalco), send: sendFalco,
		key: detail("spec", "details", "output"), carriesSeverity: true},
	"audit": {source: "audit", spec: webhookSpec("audit", v1alpha1.AdapterAudit), send: sendAudit,
		key: detail("spec", "resource", "name")},
}

func informerSpec(source string, a v1alpha1.Adapter, group, version, resource, fields string) func() v1alpha1.IngesterSpec {
	return func() v1alpha1.IngesterSpec {
		return v1alpha1.IngesterSpec{Source: source, Adapter: a, Informer: &v1alpha1.InformerSource{
			Group: group, Version: version, Resource: resource, FieldSelector: fields}}
	}
}

func webhookSpec(source string, a v1alpha1.Adapter) func() v1alpha1.IngesterSpec {
	return func() v1alpha1.IngesterSpec {
		return v1alpha1.IngesterSpec{Source: source, Adapter: a, Webhook: &v1alpha1.WebhookSource{
			Path: "/" + source, Auth: v1alpha1.WebhookAuth{Type: v1alpha1.WebhookAuthNone}}}
	}
}

func detail(path ...string) func(*unstructured.Unstructured) string {
	return func(u *unstructured.Unstructured) string {
		v, _, _ := unstructured.NestedString(u.Object, path...)
		return v
	}
}

// ns spreads findings over the run's namespaces; a repeat goes where its original went.
func (r *run) ns(f finding) string {
	i := f.n
	if f.dupOf >= 0 {
		i = f.dupOf
	}
	return r.namespaces[i%len(r.namespaces)]
}

var (
	eventsGVR        = schema.GroupVersionResource{Version: "v1", Resource: "events"}
	vulnReportsGVR   = schema.GroupVersionResource{Group: "aquasecurity.github.io", Version: "v1alpha1", Resource: "vulnerabilityreports"}
	policyReportsGVR = schema.GroupVersionResource{Group: "wgpolicyk8s.io", Version: "v1alpha2", Resource: "policyreports"}
)

func sendWarning(ctx context.Context, r *run, f finding) error {
	return r.env.create(ctx, eventsGVR, warningEvent(fmt.Sprintf("%s-w-%d", r.tok, f.n), r.ns(f), f.key(r.tok)))
}

func sendTrivy(ctx context.Context, r *run, f finding) error {
	return r.env.create(ctx, vulnReportsGVR, trivyFinding(fmt.Sprintf("%s-r-%d", r.tok, f.n), r.ns(f), f.key(r.tok), f.sev))
}

func sendPolicyReport(ctx context.Context, r *run, f finding) error {
	return r.env.create(ctx, policyReportsGVR, policyReport(fmt.Sprintf("%s-p-%d", r.tok, f.n), r.ns(f), f.key(r.tok), f.sev))
}

// create creates u, a built-in kind through the typed client (protobuf, as the tools that write
// them do), a custom resource through the dynamic one.
func (e *env) create(ctx context.Context, gvr schema.GroupVersionResource, u *unstructured.Unstructured) error {
	var err error
	switch gvr.Resource {
	case "events":
		var ev corev1.Event
		if err = runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &ev); err == nil {
			_, err = e.cluster.Kube.CoreV1().Events(ev.Namespace).Create(ctx, &ev, metav1.CreateOptions{})
		}
	case "configmaps":
		var cm corev1.ConfigMap
		if err = runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &cm); err == nil {
			_, err = e.cluster.Kube.CoreV1().ConfigMaps(cm.Namespace).Create(ctx, &cm, metav1.CreateOptions{})
		}
	default:
		_, err = e.dyn.Resource(gvr).Namespace(u.GetNamespace()).Create(ctx, u, metav1.CreateOptions{})
	}
	return err
}

// warningEvent is a Warning Event about a Pod named key, as the kubelet writes one.
func warningEvent(name, ns, key string) *unstructured.Unstructured {
	now := time.Now().UTC().Format(time.RFC3339)
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Event",
		"metadata":       map[string]any{"name": name, "namespace": ns},
		"involvedObject": map[string]any{"apiVersion": "v1", "kind": "Pod", "namespace": ns, "name": key},
		"reason":         "BackOff", "message": "Back-off restarting failed container " + key, "type": "Warning",
		"count": int64(1), "firstTimestamp": now, "lastTimestamp": now,
	}}
}

// trivyFinding is a VulnerabilityReport with one vulnerability whose ID is key.
func trivyFinding(name, ns, key, sev string) *unstructured.Unstructured {
	return vulnerabilityReport(name, ns, "app-"+key, []any{map[string]any{
		"vulnerabilityID": key, "resource": "libscale", "installedVersion": "1.0", "fixedVersion": "1.1",
		"severity": strings.ToUpper(sev), "title": "scale test " + key, "primaryLink": "https://example.com/" + key,
		"score": 5.0, "target": "library/app:1.0", "lastModifiedDate": "2026-01-01T00:00:00Z",
		"publishedDate": "2026-01-01T00:00:00Z"}})
}

// policyReport is a PolicyReport with one failed result whose rule is key.
func policyReport(name, ns, key, sev string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "wgpolicyk8s.io/v1alpha2", "kind": "PolicyReport",
		"metadata": map[string]any{"name": name, "namespace": ns},
		"summary":  map[string]any{"fail": 1},
		"results": []any{map[string]any{
			"policy": "scale-policy", "rule": key, "result": "fail", "severity": sev, "scored": true,
			"message":   "validation failed for " + key,
			"resources": []any{map[string]any{"apiVersion": "v1", "kind": "Pod", "name": "pod-" + key, "namespace": ns}},
		}},
	}}
}

var falcoPriority = map[string]string{"critical": "Critical", "high": "Error", "medium": "Warning", "low": "Notice", "info": "Informational"}

func sendFalco(ctx context.Context, r *run, f finding) error {
	key := f.key(r.tok)
	body, _ := json.Marshal(map[string]any{"output": key, "priority": falcoPriority[f.sev], "rule": "Scale test",
		"time": time.Now().UTC().Format(time.RFC3339Nano), "hostname": "node-" + key, "source": "syscall"})
	return r.post(ctx, f.n, "/falco", body)
}

func sendAudit(ctx context.Context, r *run, f finding) error {
	ns, key := r.ns(f), f.key(r.tok)
	body, _ := json.Marshal(map[string]any{
		"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": fmt.Sprintf("%s-a-%d", r.tok, f.n),
		"stage": "ResponseComplete", "requestURI": "/api/v1/namespaces/" + ns + "/secrets", "verb": "create",
		"user":                     map[string]any{"username": "scale-user", "groups": []string{"system:authenticated"}},
		"objectRef":                map[string]any{"resource": "secrets", "namespace": ns, "name": key, "apiVersion": "v1"},
		"responseStatus":           map[string]any{"code": 201},
		"requestReceivedTimestamp": time.Now().UTC().Format(time.RFC3339Nano), "stageTimestamp": time.Now().UTC().Format(time.RFC3339Nano),
	})
	return r.post(ctx, f.n, "/audit", body)
}

// post sends a webhook body to a replica, round robin, trying the next one until one accepts it.
func (r *run) post(ctx context.Context, n int, path string, body []byte) error {
	var last error
	for attempt := range 3 * len(r.replicas) {
		rep := r.replicas[(n+attempt)%len(r.replicas)]
		if !rep.alive() {
			continue
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+rep.webhookAddr+path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := r.env.http.Do(req)
		if err != nil {
			last = err
			continue
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusAccepted {
			return nil
		}
		last = fmt.Errorf("%s: HTTP %d", path, resp.StatusCode)
		time.Sleep(50 * time.Millisecond)
	}
	return last
}
