package certmanager

import (
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kube-zen/zen-watcher/internal/testenv"
	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
)

var now = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func withStatus(obj *unstructured.Unstructured, ready, reason, notAfter string) *unstructured.Unstructured {
	o := obj.DeepCopy()
	st := map[string]any{"conditions": []any{map[string]any{"type": "Ready", "status": ready, "reason": reason, "message": "msg " + reason}}}
	if notAfter != "" {
		st["notAfter"] = notAfter
	}
	o.Object["status"] = st
	return o
}

func TestCertificates(t *testing.T) {
	objs, err := testenv.FixtureObjects("cert-manager/cert-manager-resources.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cert *unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == "Certificate" {
			cert = o
			break
		}
	}
	if cert == nil {
		t.Fatal("no Certificate in the fixture")
	}
	p := Parser{Now: func() time.Time { return now }}
	cases := []struct {
		name string
		obj  *unstructured.Unstructured
		want []string // event types
		sevs []v1alpha1.Severity
	}{
		{"spec only, as applied: nothing yet", cert, nil, nil},
		{"ready and far from expiry", withStatus(cert, "True", "Ready", now.Add(60*24*time.Hour).Format(time.RFC3339)), nil, nil},
		{"not ready", withStatus(cert, "False", "DoesNotExist", ""), []string{"certificate_not_ready"}, []v1alpha1.Severity{"high"}},
		{"expiring", withStatus(cert, "True", "Ready", now.Add(3*24*time.Hour).Format(time.RFC3339)), []string{"certificate_expiring"}, []v1alpha1.Severity{"medium"}},
		{"expired and not ready", withStatus(cert, "False", "Expired", now.Add(-time.Hour).Format(time.RFC3339)),
			[]string{"certificate_not_ready", "certificate_expired"}, []v1alpha1.Severity{"high", "critical"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			evs, err := p.ParseObject(tc.obj)
			if err != nil {
				t.Fatal(err)
			}
			if len(evs) != len(tc.want) {
				t.Fatalf("%d findings, want %d", len(evs), len(tc.want))
			}
			for i, e := range evs {
				if e.EventType != tc.want[i] || e.Severity != tc.sevs[i] || e.Resource.Kind != "Certificate" ||
					e.Resource.Name != cert.GetName() || e.Details["secretName"] == "" {
					t.Errorf("finding %d: %+v", i, e)
				}
			}
		})
	}
	bad := withStatus(cert, "True", "Ready", "next tuesday")
	if _, err := p.ParseObject(bad); err == nil {
		t.Error("unparsable notAfter: no error")
	}
}

// TestExpiryInWords: titles say how long is left, or how long ago, as a person reads it, and an
// expired certificate's description does not call it valid.
func TestExpiryInWords(t *testing.T) {
	objs, err := testenv.FixtureObjects("cert-manager/cert-manager-resources.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cert *unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == "Certificate" {
			cert = o
		}
	}
	p := Parser{Now: func() time.Time { return now }, Horizon: 30 * 24 * time.Hour}
	for _, tc := range []struct {
		left               time.Duration
		title, description string
	}{
		{10*24*time.Hour + 3*time.Hour, "expires in 10 days", "is valid until"},
		{36 * time.Hour, "expires in 36 hours", "is valid until"},
		{90 * time.Minute, "expires in 1 hour", "is valid until"},
		{20 * time.Minute, "expires in less than an hour", "is valid until"},
		{-3 * 24 * time.Hour, "expired 3 days ago", "expired at"},
		{-5 * time.Hour, "expired 5 hours ago", "expired at"},
	} {
		notAfter := now.Add(tc.left).Format(time.RFC3339)
		evs, err := p.ParseObject(withStatus(cert, "True", "Ready", notAfter))
		if err != nil || len(evs) != 1 {
			t.Fatalf("%s left: %d findings, %v", tc.left, len(evs), err)
		}
		if !strings.HasSuffix(evs[0].Title, tc.title) {
			t.Errorf("%s left: title %q, want it to end %q", tc.left, evs[0].Title, tc.title)
		}
		if !strings.Contains(evs[0].Description, tc.description+" "+notAfter) {
			t.Errorf("%s left: description %q, want %q %s", tc.left, evs[0].Description, tc.description, notAfter)
		}
	}
}
