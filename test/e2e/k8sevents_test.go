package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kube-zen/zen-watcher/internal/testenv"
	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/obsclient"
)

func createNamespace(t *testing.T, name string) {
	t.Helper()
	_, err := cluster.Kube.CoreV1().Namespaces().Create(context.Background(),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
}

func warningEvent(ns, name, kind, object, reason, message, typ string) *corev1.Event {
	now := metav1.NewTime(time.Now())
	return &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		InvolvedObject: corev1.ObjectReference{
			APIVersion: "v1", Kind: kind, Namespace: ns, Name: object, UID: types.UID("uid-" + object),
		},
		Reason: reason, Message: message, Type: typ, Count: 1,
		FirstTimestamp: now, LastTimestamp: now,
		Source: corev1.EventSource{Component: "kubelet"},
	}
}

// TestWarningEventsBecomeObservations runs three replicas against the real API server, creates
// Warning Events (and one Normal Event) and finds exactly one Observation per distinct warning,
// even though every replica sees every event and a warning repeats.
func TestWarningEventsBecomeObservations(t *testing.T) {
	ctx := context.Background()
	nsA, nsB := "events-a", "events-b"
	createNamespace(t, nsA)
	createNamespace(t, nsB)

	replicas := []*replica{
		startReplica(t, "zw-0"), startReplica(t, "zw-1"), startReplica(t, "zw-2"),
	}
	for _, r := range replicas {
		r.WaitReady(t, 60*time.Second)
	}

	events := []*corev1.Event{
		warningEvent(nsA, "web.1", "Pod", "web-0", "BackOff", "Back-off restarting failed container web", corev1.EventTypeWarning),
		warningEvent(nsA, "web.2", "Pod", "web-1", "FailedScheduling", "0/3 nodes are available", corev1.EventTypeWarning),
		warningEvent(nsB, "db.1", "PersistentVolumeClaim", "data", "ProvisioningFailed", "no storage class", corev1.EventTypeWarning),
		warningEvent(nsB, "db.2", "Pod", "db-0", "Scheduled", "assigned to node-1", corev1.EventTypeNormal),
	}
	for _, e := range events {
		if _, err := cluster.Kube.CoreV1().Events(e.Namespace).Create(ctx, e, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// The first warning repeats: same reason and message, higher count. It is the same finding.
	repeat := events[0].DeepCopy()
	repeat.Count = 5
	repeat.LastTimestamp = metav1.NewTime(time.Now())
	cur, err := cluster.Kube.CoreV1().Events(nsA).Get(ctx, repeat.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	repeat.ResourceVersion = cur.ResourceVersion
	if _, err := cluster.Kube.CoreV1().Events(nsA).Update(ctx, repeat, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	client, err := obsclient.New(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct{ ns, kind, name, eventType string }{
		"web-0": {nsA, "Pod", "web-0", "back_off"},
		"web-1": {nsA, "Pod", "web-1", "failed_scheduling"},
		"data":  {nsB, "PersistentVolumeClaim", "data", "provisioning_failed"},
	}
	selector := v1alpha1.LabelSource + "=k8sevents"
	eventually(t, 20*time.Second, func(ctx context.Context) error {
		n := 0
		for _, ns := range []string{nsA, nsB} {
			list, err := client.ListObservations(ctx, ns, selector)
			if err != nil {
				return err
			}
			n += len(list.Items)
		}
		if n != len(want) {
			return fmt.Errorf("%d observations, want %d", n, len(want))
		}
		return nil
	})
	// Give the replicas time to write any duplicate they would write, then check the exact set.
	time.Sleep(2 * time.Second)
	got := map[string]v1alpha1.Observation{}
	for _, ns := range []string{nsA, nsB} {
		list, err := client.ListObservations(ctx, ns, selector)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range list.Items {
			if _, dup := got[o.Spec.Resource.Name]; dup {
				t.Errorf("two Observations for %s", o.Spec.Resource.Name)
			}
			got[o.Spec.Resource.Name] = o
		}
	}
	if len(got) != len(want) {
		t.Fatalf("observations for %d resources, want %d", len(got), len(want))
	}
	// Each Warning created while the replicas watched was timed once from its creation to its
	// watch event (the update of the first is not an arrival); a replica that restarted its
	// informers on a new share lists rather than receives, so fewer may be timed, never more.
	var timed, within5s float64
	for _, r := range replicas {
		timed += max(0, r.metric(`zen_watcher_watch_delivery_seconds_count{source="k8sevents"}`))
		within5s += max(0, r.metric(`zen_watcher_watch_delivery_seconds_bucket{source="k8sevents",le="5"}`))
	}
	if timed < 1 || timed > 3 || within5s != timed {
		t.Errorf("watch delivery timed %v Warnings (%v within 5 s), want 1-3, all within 5 s", timed, within5s)
	}
	for name, w := range want {
		o, ok := got[name]
		if !ok {
			t.Errorf("no Observation for %s", name)
			continue
		}
		s := o.Spec
		if o.Namespace != w.ns || s.Resource.Namespace != w.ns || s.Resource.Kind != w.kind ||
			s.EventType != w.eventType || s.Source != "k8sevents" ||
			s.Severity != v1alpha1.SeverityMedium || s.Category != v1alpha1.CategoryOperations ||
			s.Details["reason"] == "" || s.Fingerprint == "" || o.Name != "k8sevents-"+s.Fingerprint {
			t.Errorf("Observation for %s: %s/%s %+v", name, o.Namespace, o.Name, s)
		}
	}
}

// TestFailsFastWithoutAPIServer: a kubeconfig that does not exist, or a server that does not answer,
// ends the daemon with a clear error within seconds instead of a hang.
func TestFailsFastWithoutAPIServer(t *testing.T) {
	dir := t.TempDir()
	dead := filepath.Join(dir, "dead-kubeconfig")
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:%d", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`, testenv.FreePort(t))
	if err := os.WriteFile(dead, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		args    []string
		wantMsg string
	}{
		{"missing kubeconfig", []string{"-kubeconfig", filepath.Join(dir, "nope")}, "kubeconfig"},
		{"server not answering", []string{"-kubeconfig", dead, "-connect-timeout", "2s"}, "does not answer"},
		{"bad flag value", []string{"-kubeconfig", dead, "-writer-workers", "many"}, "writer-workers"},
		// A leader that could never renew, and a TTL under a minute: refused before anything runs.
		{"renew deadline as long as the lease", []string{"-kubeconfig", dead, "-leader-lease-duration", "5s",
			"-leader-renew-deadline", "5s"}, "-leader-renew-deadline (env LEADER_RENEW_DEADLINE) = 5s: must be positive and shorter"},
		{"sub-minute TTL", []string{"-kubeconfig", dead, "-observation-ttl-seconds", "30"},
			"-observation-ttl-seconds (env OBSERVATION_TTL_SECONDS) = 30: must be from 60"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := startReplica(t, tc.name, tc.args...)
			select {
			case <-r.Exited():
			case <-time.After(10 * time.Second):
				t.Fatal("still running after 10s")
			}
			if r.Err() == nil {
				t.Fatal("exited 0")
			}
			if !strings.Contains(r.Out.String(), tc.wantMsg) {
				t.Errorf("output does not mention %q:\n%s", tc.wantMsg, r.Out.String())
			}
		})
	}
}
