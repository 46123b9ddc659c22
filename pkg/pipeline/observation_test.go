package pipeline

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
)

func TestBuildObservation(t *testing.T) {
	manyDetails := map[string]string{}
	for i := range 100 {
		manyDetails[fmt.Sprintf("k%03d", i)] = "v"
	}
	cases := []struct {
		name      string
		mutate    func(*Event)
		check     func(t *testing.T, o *v1alpha1.Observation)
		truncated bool
	}{
		{
			name: "stateful finding gets a deterministic name in the resource's namespace",
			mutate: func(e *Event) {
				e.Stateful = true
			},
			check: func(t *testing.T, o *v1alpha1.Observation) {
				if o.Name != "trivy-"+o.Spec.Fingerprint || o.GenerateName != "" {
					t.Errorf("name %q generateName %q", o.Name, o.GenerateName)
				}
				if o.Namespace != "kube-system" {
					t.Errorf("namespace %q", o.Namespace)
				}
				if o.Labels[v1alpha1.LabelSeverity] != "high" || o.Labels[v1alpha1.LabelSource] != "trivy" ||
					o.Labels[v1alpha1.LabelCategory] != "security" {
					t.Errorf("labels %v", o.Labels)
				}
			},
		},
		{
			name:   "stream finding gets a generated name",
			mutate: func(e *Event) {},
			check: func(t *testing.T, o *v1alpha1.Observation) {
				if o.Name != "" || o.GenerateName != "trivy-" {
					t.Errorf("name %q generateName %q", o.Name, o.GenerateName)
				}
			},
		},
		{
			name:   "cluster-scoped finding goes to the release namespace",
			mutate: func(e *Event) { e.Resource.Namespace = "" },
			check: func(t *testing.T, o *v1alpha1.Observation) {
				if o.Namespace != "zen-system" {
					t.Errorf("namespace %q", o.Namespace)
				}
			},
		},
		{
			name:      "long description is cut and marked",
			mutate:    func(e *Event) { e.Description = strings.Repeat("d", 10000) },
			truncated: true,
			check: func(t *testing.T, o *v1alpha1.Observation) {
				if len(o.Spec.Description) != v1alpha1.MaxDescriptionLength {
					t.Errorf("description length %d", len(o.Spec.Description))
				}
			},
		},
		{
			name:      "too many details are bounded",
			mutate:    func(e *Event) { e.Details = manyDetails },
			truncated: true,
			check: func(t *testing.T, o *v1alpha1.Observation) {
				if len(o.Spec.Details) != v1alpha1.MaxDetails {
					t.Errorf("%d details", len(o.Spec.Details))
				}
			},
		},
		{
			name:   "empty detail values are left out",
			mutate: func(e *Event) { e.Details = map[string]string{"a": "", "b": "x"} },
			check: func(t *testing.T, o *v1alpha1.Observation) {
				if len(o.Spec.Details) != 1 || o.Spec.Details["b"] != "x" {
					t.Errorf("details %v", o.Spec.Details)
				}
			},
		},
		{
			name:   "ttl is carried",
			mutate: func(e *Event) { e.TTLSeconds = 3600 },
			check: func(t *testing.T, o *v1alpha1.Observation) {
				if o.Spec.TTLSecondsAfterCreation == nil || *o.Spec.TTLSecondsAfterCreation != 3600 {
					t.Errorf("ttl %v", o.Spec.TTLSecondsAfterCreation)
				}
				exp, err := strconv.ParseInt(o.Labels[v1alpha1.LabelExpiresAt], 10, 64)
				if err != nil || exp < time.Now().Unix()+3590 || exp > time.Now().Unix()+3600 {
					t.Errorf("expires-at label %q", o.Labels[v1alpha1.LabelExpiresAt])
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := baseEvent()
			tc.mutate(&e)
			e.FP = Fingerprint(&e)
			o := BuildObservation(&e, "zen-system")
			if got := o.Spec.Details[DetailTruncated] == "true"; got != tc.truncated {
				t.Errorf("truncated mark %v, want %v", got, tc.truncated)
			}
			tc.check(t, o)
		})
	}
}
