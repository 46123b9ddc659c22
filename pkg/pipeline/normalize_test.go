package pipeline

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
)

func TestNormalizeSeverity(t *testing.T) {
	cases := []struct {
		in     string
		want   v1alpha1.Severity
		wantOK bool
	}{
		{"CRITICAL", v1alpha1.SeverityCritical, true},
		{"fatal", v1alpha1.SeverityCritical, true},
		{"Emergency", v1alpha1.SeverityCritical, true},
		{"HIGH", v1alpha1.SeverityHigh, true},
		{"Error", v1alpha1.SeverityHigh, true},
		{"ALERT", v1alpha1.SeverityHigh, true},
		{"MEDIUM", v1alpha1.SeverityMedium, true},
		{" Warning ", v1alpha1.SeverityMedium, true},
		{"low", v1alpha1.SeverityLow, true},
		{"INFO", v1alpha1.SeverityInfo, true},
		{"Notice", v1alpha1.SeverityInfo, true},
		{"debug", v1alpha1.SeverityInfo, true},
		{"UNKNOWN", v1alpha1.SeverityInfo, false},
		{"", v1alpha1.SeverityInfo, false},
	}
	for _, tc := range cases {
		got, ok := NormalizeSeverity(tc.in)
		if got != tc.want || ok != tc.wantOK {
			t.Errorf("NormalizeSeverity(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.wantOK)
		}
	}
}

func TestNormalizeEventType(t *testing.T) {
	cases := []struct{ in, want string }{
		{"vulnerability", "vulnerability"},
		{"FailedScheduling", "failed_scheduling"},
		{"BackOff", "back_off"},
		{"policy-violation", "policy_violation"},
		{"Policy Violation", "policy_violation"},
		{"  --  ", "unknown"},
		{"", "unknown"},
		{"K8sAudit", "k8s_audit"},
		{"ÜberFail", "ber_fail"},
		{strings.Repeat("a", 300), strings.Repeat("a", 128)},
	}
	for _, tc := range cases {
		if got := NormalizeEventType(tc.in); got != tc.want {
			t.Errorf("NormalizeEventType(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestTruncate(t *testing.T) {
	cases := []struct {
		in      string
		max     int
		want    string
		wantCut bool
	}{
		{"short", 10, "short", false},
		{"exactly", 7, "exactly", false},
		{"too long", 3, "too", true},
		{"héllo", 2, "h", true}, // é is two bytes: never split a rune
		{"bad\xffutf8", 100, "bad\uFFFDutf8", false},
	}
	for _, tc := range cases {
		got, cut := truncate(tc.in, tc.max)
		if got != tc.want || cut != tc.wantCut || !utf8.ValidString(got) {
			t.Errorf("truncate(%q, %d) = %q, %v; want %q, %v", tc.in, tc.max, got, cut, tc.want, tc.wantCut)
		}
	}
}
