package v1alpha1_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kube-zen/zen-watcher/internal/testenv"
	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/obsclient"
)

var cluster *testenv.Cluster

func TestMain(m *testing.M) {
	os.Exit(testenv.RunWithCluster(m, testenv.Options{}, &cluster))
}

func validObservation(name string) *v1alpha1.Observation {
	return &v1alpha1.Observation{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "schema"},
		Spec: v1alpha1.ObservationSpec{
			Source:     "trivy",
			Category:   v1alpha1.CategorySecurity,
			Severity:   v1alpha1.SeverityHigh,
			EventType:  "vulnerability",
			Resource:   v1alpha1.ResourceRef{APIVersion: "apps/v1", Kind: "Deployment", Namespace: "schema", Name: "web"},
			Title:      "CVE-2021-3121 in gogo/protobuf",
			Details:    map[string]v1alpha1.DetailValue{"vulnerabilityID": "CVE-2021-3121"},
			DetectedAt: metav1.NewTime(time.Now()),
		},
	}
}

// TestObservationSchema proves that the API server itself, through the generated CRD, accepts a
// well-formed Observation and rejects each kind of malformed one.
func TestObservationSchema(t *testing.T) {
	ctx := context.Background()
	if _, err := cluster.Kube.CoreV1().Namespaces().Create(ctx,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "schema"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	client, err := obsclient.New(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	tooMany := map[string]v1alpha1.DetailValue{}
	for i := range v1alpha1.MaxDetails + 1 {
		tooMany[fmt.Sprintf("k%d", i)] = "v"
	}
	ttl := int64(10)
	cases := []struct {
		name    string
		mutate  func(*v1alpha1.Observation)
		wantErr string // substring of the field path in the rejection; empty means accepted
	}{
		{"valid", func(*v1alpha1.Observation) {}, ""},
		{"bad severity", func(o *v1alpha1.Observation) { o.Spec.Severity = "HIGH" }, "spec.severity"},
		{"bad category", func(o *v1alpha1.Observation) { o.Spec.Category = "misc" }, "spec.category"},
		{"bad event type", func(o *v1alpha1.Observation) { o.Spec.EventType = "Policy Violation" }, "spec.eventType"},
		{"empty source", func(o *v1alpha1.Observation) { o.Spec.Source = "" }, "spec.source"},
		{"too many details", func(o *v1alpha1.Observation) { o.Spec.Details = tooMany }, "spec.details"},
		{"detail too long", func(o *v1alpha1.Observation) {
			o.Spec.Details["description"] = v1alpha1.DetailValue(strings.Repeat("x", v1alpha1.MaxDetailValueLength+1))
		}, "spec.details"},
		{"title too long", func(o *v1alpha1.Observation) {
			o.Spec.Title = strings.Repeat("t", v1alpha1.MaxTitleLength+1)
		}, "spec.title"},
		{"ttl too short", func(o *v1alpha1.Observation) { o.Spec.TTLSecondsAfterCreation = &ttl }, "spec.ttlSecondsAfterCreation"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			obs := validObservation(fmt.Sprintf("obs-%d", i))
			tc.mutate(obs)
			err := client.Create(ctx, obs)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("valid Observation rejected: %v", err)
			case tc.wantErr != "" && err == nil:
				t.Fatalf("Observation with %s accepted", tc.name)
			case tc.wantErr != "" && (!apierrors.IsInvalid(err) || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("want an Invalid error about %s, got: %v", tc.wantErr, err)
			}
		})
	}
}
