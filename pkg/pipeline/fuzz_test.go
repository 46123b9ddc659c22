package pipeline

import (
	"regexp"
	"testing"
	"unicode/utf8"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
)

var eventTypePattern = regexp.MustCompile(`^[a-z0-9_]{1,128}$`)

func FuzzNormalizeEventType(f *testing.F) {
	for _, s := range []string{"", "BackOff", "policy-violation", "Ünïcode", "\xff\xfe", "a__b", "ABC"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := NormalizeEventType(s)
		if !eventTypePattern.MatchString(got) {
			t.Fatalf("NormalizeEventType(%q) = %q, not [a-z0-9_]{1,128}", s, got)
		}
		if again := NormalizeEventType(got); again != got {
			t.Fatalf("not idempotent: %q -> %q -> %q", s, got, again)
		}
	})
}

// FuzzBuildObservation feeds arbitrary strings through the fingerprint and the Observation builder:
// the result must be within the CRD's bounds, valid UTF-8, and the fingerprint stable.
func FuzzBuildObservation(f *testing.F) {
	f.Add("trivy", "ns", "name", "CVE-1", "title", "desc", "key", "value", "HIGH")
	f.Add("", "", "", "", "\xff", "\xc3", "", "\xe2\x82", "")
	f.Fuzz(func(t *testing.T, source, ns, name, identity, title, desc, key, value, sev string) {
		severity, _ := NormalizeSeverity(sev)
		ev := &Event{
			Source: source, Category: v1alpha1.CategorySecurity, Severity: severity,
			EventType: NormalizeEventType(identity),
			Resource:  v1alpha1.ResourceRef{Namespace: ns, Name: name},
			Identity:  identity, Title: title, Description: desc,
			Details: map[string]string{key: value},
		}
		ev.FP = Fingerprint(ev)
		if again := Fingerprint(ev); again != ev.FP {
			t.Fatalf("fingerprint not stable: %x vs %x", ev.FP, again)
		}
		o := BuildObservation(ev, "zen-system")
		if len(o.Spec.Title) > v1alpha1.MaxTitleLength || !utf8.ValidString(o.Spec.Title) {
			t.Fatalf("title out of bounds: %q", o.Spec.Title)
		}
		if len(o.Spec.Description) > v1alpha1.MaxDescriptionLength || !utf8.ValidString(o.Spec.Description) {
			t.Fatalf("description out of bounds")
		}
		if len(o.Spec.Details) > v1alpha1.MaxDetails {
			t.Fatalf("%d details", len(o.Spec.Details))
		}
		for k, v := range o.Spec.Details {
			if len(v) > v1alpha1.MaxDetailValueLength || !utf8.ValidString(string(v)) {
				t.Fatalf("detail %q out of bounds", k)
			}
		}
		if o.Namespace == "" {
			t.Fatal("no namespace")
		}
	})
}
