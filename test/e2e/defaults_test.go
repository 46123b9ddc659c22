package e2e

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"

	"github.com/kube-zen/zen-watcher/internal/testenv"
	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/obsclient"
)

// TestDefaultSourcesStayWithIngesters runs on a control plane of its own, where no other test's
// Ingesters are: creating an Ingester for one tool (a Falco webhook) leaves the default sources
// of the other tools running; an Ingester that reads Warning Events replaces the default
// k8sevents source (and no Event is read by both), and deleting it brings the default back. The
// replica says in its log which default sources run and why.
func TestDefaultSourcesStayWithIngesters(t *testing.T) {
	cp, err := testenv.StartProcessCluster()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.Stop() })
	ctx := context.Background()
	dc, err := dynamic.NewForConfig(cp.Config)
	if err != nil {
		t.Fatal(err)
	}
	oc, err := obsclient.New(cp.Config)
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{"zen-system", "shop"} {
		if _, err := cp.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
			metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	r := startReplica(t, "defaults", "-kubeconfig", cp.Kubeconfig, "-namespace", "zen-system", "-member-id", "defaults")
	r.WaitReady(t, 60*time.Second)

	apply := func(name string, spec v1alpha1.IngesterSpec) {
		t.Helper()
		if err := testenv.CreateIngester(ctx, cp.Config, "zen-system", name, spec); err != nil {
			t.Fatal(err)
		}
	}
	count := func(source string) int {
		t.Helper()
		list, err := oc.ListObservations(ctx, "shop", v1alpha1.LabelSource+"="+source)
		if err != nil {
			t.Fatal(err)
		}
		return len(list.Items)
	}
	// warn creates a Warning Event and waits until it is an Observation of exactly the source named.
	sent := map[string]int{}
	warn := func(i int, source string) {
		t.Helper()
		e := warningEvent("shop", fmt.Sprintf("web-%d.probe", i), "Pod", fmt.Sprintf("web-%d", i), "Unhealthy",
			fmt.Sprintf("Readiness probe failed (%d)", i), corev1.EventTypeWarning)
		if _, err := cp.Kube.CoreV1().Events("shop").Create(ctx, e, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		sent[source]++
		eventually(t, 30*time.Second, func(context.Context) error {
			for _, s := range []string{"k8sevents", "events-custom"} {
				if got := count(s); got != sent[s] {
					return fmt.Errorf("%d Observations of %s, want %d", got, s, sent[s])
				}
			}
			return nil
		})
	}

	warn(1, "k8sevents")
	apply("falco", v1alpha1.IngesterSpec{Source: "falco", Adapter: v1alpha1.AdapterFalco,
		Webhook: &v1alpha1.WebhookSource{Path: "/falco", Auth: v1alpha1.WebhookAuth{Type: v1alpha1.WebhookAuthNone}}})
	waitRoute(t, r, "/falco")
	alert := []byte(`{"output":"Shell in a container","priority":"Warning","rule":"Terminal shell in container",` +
		`"time":"2026-12-03T10:00:00Z","hostname":"node-1","output_fields":{"k8s.ns.name":"shop","k8s.pod.name":"web-1"}}`)
	if code := post(t, r, "/falco", "", alert); code/100 != 2 {
		t.Fatalf("a Falco alert: HTTP %d", code)
	}
	warn(2, "k8sevents") // the default k8sevents source still runs beside the Falco Ingester
	eventually(t, 30*time.Second, func(context.Context) error {
		if n := count("falco"); n != 1 {
			return fmt.Errorf("%d Falco Observations, want 1", n)
		}
		return nil
	})

	apply("events-custom", v1alpha1.IngesterSpec{Source: "events-custom", Adapter: v1alpha1.AdapterK8sEvents,
		Informer: &v1alpha1.InformerSource{Version: "v1", Resource: "events", FieldSelector: "type=Warning"}})
	said := func(what string, parts ...string) {
		t.Helper()
		eventually(t, 30*time.Second, func(context.Context) error {
			for _, line := range strings.Split(r.Out.String(), "\n") {
				if !slices.ContainsFunc(parts, func(p string) bool { return !strings.Contains(line, p) }) {
					return nil
				}
			}
			return fmt.Errorf("the replica did not say %s", what)
		})
	}
	said("the default k8sevents source stopped", "default source stopped: an Ingester reads this tool")
	// The Ingester's first list reads the two Events already there.
	sent["events-custom"] = 2
	warn(3, "events-custom")

	if err := dc.Resource(v1alpha1.IngesterResource).Namespace("zen-system").Delete(ctx, "events-custom",
		metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// The Ingester's source reads until the replica sees the deletion: an Event created before
	// that is the Ingester's too (and the default's, as the next one).
	said("the Ingester's source stopped", `"source stopped"`, `"zen-system/events-custom"`)
	// The default source comes back, re-lists, and writes what it missed meanwhile: the third Event.
	sent["k8sevents"]++
	warn(4, "k8sevents")

	log := r.Out.String()
	for _, want := range []string{"default source runs: no Ingester reads this tool", `"source":"trivy"`, `"source":"kyverno"`, `"source":"certmanager"`} {
		if !strings.Contains(log, want) {
			t.Errorf("the replica's log does not say %q", want)
		}
	}
	if strings.Contains(log, "stopping the default sources") {
		t.Error("the default sources were all stopped")
	}
	if code := post(t, r, "/falco", "", alert); code != http.StatusAccepted && code/100 != 2 {
		t.Errorf("the Falco webhook after the changes: HTTP %d", code)
	}
}
