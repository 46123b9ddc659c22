package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/obsclient"
)

// refuseObservations makes the API server answer every Observation create in the namespaces
// labelled zen-e2e=refuse-observations with 500, as it does when an admission webhook it must call
// is down: a validating webhook at an address where nothing listens, with failurePolicy Fail. It
// returns once a dry-run create is refused, and a function that removes the webhook.
func refuseObservations(t *testing.T, ns string) (lift func()) {
	t.Helper()
	ctx := context.Background()
	name := "zen-e2e-refuse-observations"
	vwc := &admissionv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Webhooks: []admissionv1.ValidatingWebhook{{
			Name:                    "refuse.zen-e2e.kube-zen.io",
			ClientConfig:            admissionv1.WebhookClientConfig{URL: ptr.To("https://127.0.0.1:1/refuse")},
			Rules:                   []admissionv1.RuleWithOperations{{Operations: []admissionv1.OperationType{admissionv1.Create}, Rule: admissionv1.Rule{APIGroups: []string{v1alpha1.SchemeGroupVersion.Group}, APIVersions: []string{"*"}, Resources: []string{"observations"}}}},
			NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"zen-e2e": "refuse-observations"}},
			FailurePolicy:           ptr.To(admissionv1.Fail),
			SideEffects:             ptr.To(admissionv1.SideEffectClassNone),
			AdmissionReviewVersions: []string{"v1"},
			TimeoutSeconds:          ptr.To(int32(1)),
		}},
	}
	vwcs := cluster.Kube.AdmissionregistrationV1().ValidatingWebhookConfigurations()
	if _, err := vwcs.Create(ctx, vwc, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating the refusing webhook: %v", err)
	}
	lift = func() {
		if err := vwcs.Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("deleting the refusing webhook: %v", err)
		}
	}
	t.Cleanup(lift)
	probe := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": v1alpha1.SchemeGroupVersion.String(), "kind": "Observation",
		"metadata": map[string]any{"generateName": "probe-", "namespace": ns},
		"spec":     map[string]any{"source": "probe", "category": "operations", "severity": "low", "eventType": "probe"},
	}}
	eventually(t, 30*time.Second, func(ctx context.Context) error {
		_, err := dyn(t).Resource(v1alpha1.ObservationResource).Namespace(ns).Create(ctx, probe,
			metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if !apierrors.IsInternalError(err) {
			return fmt.Errorf("a dry-run create was answered %v, not yet refused by the webhook", err)
		}
		return nil
	})
	return lift
}

// TestFailedWriteIsRetriedBeforeTheResync: the API server refuses Observation creates in one
// namespace (500) for longer than the writer's own retries last. The Warning Event there gets its
// Observation seconds after the refusals stop — the informer hands it on again after a backoff —
// not at the next resync ten minutes later.
func TestFailedWriteIsRetriedBeforeTheResync(t *testing.T) {
	ctx := context.Background()
	const ns = "refused-writes"
	if _, err := cluster.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: ns, Labels: map[string]string{"zen-e2e": "refuse-observations"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	lift := refuseObservations(t, ns)
	r := startReplica(t, "retry-0")
	r.WaitReady(t, 60*time.Second)
	e := warningEvent(ns, "api.1", "Pod", "api-0", "BackOff", "Back-off restarting failed container api", corev1.EventTypeWarning)
	if _, err := cluster.Kube.CoreV1().Events(ns).Create(ctx, e, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	const failed = `zen_watcher_observations_failed_total{reason="server_error",source="k8sevents"}`
	eventually(t, 90*time.Second, func(context.Context) error {
		if n := r.metric(failed); n < 1 {
			return fmt.Errorf("%s = %v: the writer has not given up yet", failed, n)
		}
		return nil
	})
	c, err := obsclient.New(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	list, err := c.ListObservations(ctx, ns, v1alpha1.LabelSource+"=k8sevents")
	if err != nil || len(list.Items) != 0 {
		t.Fatalf("while refused: %d Observations (%v); want none", len(list.Items), err)
	}
	lift()
	lifted := time.Now()
	eventually(t, 90*time.Second, func(ctx context.Context) error {
		list, err := c.ListObservations(ctx, ns, v1alpha1.LabelSource+"=k8sevents")
		switch {
		case err != nil:
			return err
		case len(list.Items) != 1:
			return fmt.Errorf("%d Observations of the warning, want 1", len(list.Items))
		}
		return nil
	})
	retried := r.metric(`zen_watcher_findings_retried_total{source="k8sevents"}`)
	t.Logf("written %s after the refusals stopped; the object was retried %v times", time.Since(lifted).Round(100*time.Millisecond), retried)
	if retried < 1 {
		t.Errorf("findings_retried_total = %v: written, but not by a retry", retried)
	}
}
