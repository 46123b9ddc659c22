package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kube-zen/zen-watcher/internal/testenv"
	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/obsclient"
)

// TestGenericMapping: a generic webhook Ingester maps a tool's JSON — fields by JSONPath, a key
// with dots, a severity word, and title and description templates over the payload — into an
// Observation, through a real replica and API server.
func TestGenericMapping(t *testing.T) {
	cp, err := testenv.StartCluster(testenv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.Stop() })
	ctx := context.Background()
	for _, ns := range []string{"zen-system", "shop"} {
		if _, err := cp.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
			metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	createIngester(t, cp, "my-scanner", v1alpha1.IngesterSpec{Source: "my-scanner", Adapter: v1alpha1.AdapterGeneric,
		Webhook: &v1alpha1.WebhookSource{Path: "/my-scanner", Auth: v1alpha1.WebhookAuth{Type: v1alpha1.WebhookAuthNone}},
		Mapping: &v1alpha1.Mapping{
			Category: v1alpha1.CategorySecurity, EventType: "scan_result",
			Fields: []v1alpha1.FieldMapping{{From: ".level", To: "severity"}, {From: ".check", To: "rule"},
				{From: `.target.k8s\.namespace`, To: "resource.namespace"}, {From: ".target.pod", To: "resource.name"},
				{From: ".tags[*]", To: "details.tags"}},
			SeverityMap:         map[string]v1alpha1.Severity{"P1": v1alpha1.SeverityCritical},
			TitleTemplate:       "{{.check}} on {{.target.pod}}",
			DescriptionTemplate: "{{ .check }} failed in {{.target.k8s\\.namespace}} (tags {{.tags[*]}}){{.missing}}",
		}})
	r := startReplica(t, "zw-generic", "-kubeconfig", cp.Kubeconfig, "-namespace", "zen-system")
	r.WaitReady(t, 60*time.Second)
	body := []byte(`{"level":"P1","check":"privileged-container","target":{"pod":"web-1","k8s.namespace":"shop"},"tags":["cis","pss"]}`)
	eventually(t, 20*time.Second, func(context.Context) error {
		resp, err := http.Post("http://"+r.WebhookAddr+"/my-scanner", "application/json", bytes.NewReader(body))
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("POST /my-scanner: HTTP %d", resp.StatusCode)
		}
		return nil
	})
	obs, err := obsclient.New(cp.Config)
	if err != nil {
		t.Fatal(err)
	}
	var got v1alpha1.ObservationSpec
	eventually(t, 20*time.Second, func(ctx context.Context) error {
		list, err := obs.ListObservations(ctx, "shop", v1alpha1.LabelSource+"=my-scanner")
		if err != nil {
			return err
		}
		if len(list.Items) != 1 {
			return fmt.Errorf("%d Observations of my-scanner in shop, want 1", len(list.Items))
		}
		got = list.Items[0].Spec
		return nil
	})
	want := map[string][2]string{
		"title":       {got.Title, "privileged-container on web-1"},
		"description": {got.Description, "privileged-container failed in shop (tags cis,pss)"},
		"severity":    {string(got.Severity), string(v1alpha1.SeverityCritical)},
		"resource":    {got.Resource.Name, "web-1"},
		"tags":        {string(got.Details["tags"]), "cis,pss"},
	}
	for what, gw := range want {
		if gw[0] != gw[1] {
			t.Errorf("%s %q, want %q", what, gw[0], gw[1])
		}
	}
}
