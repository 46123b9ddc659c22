package pipeline

import (
	"context"
	"strings"
	"testing"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
)

func TestFilter(t *testing.T) {
	cases := []struct {
		name   string
		cfg    FilterConfig
		mutate func(*Event)
		keep   bool
	}{
		{"no rules keep all", FilterConfig{}, nil, true},
		{"min severity keeps high", FilterConfig{MinSeverity: "medium"}, nil, true},
		{"min severity drops low", FilterConfig{MinSeverity: "medium"}, func(e *Event) { e.Severity = v1alpha1.SeverityLow }, false},
		{"include namespace", FilterConfig{IncludeNamespaces: []string{"kube-system"}}, nil, true},
		{"include namespace misses", FilterConfig{IncludeNamespaces: []string{"prod"}}, nil, false},
		{"exclude namespace", FilterConfig{ExcludeNamespaces: []string{"kube-system"}}, nil, false},
		{"kinds", FilterConfig{Kinds: []string{"Deployment"}}, nil, false},
		{"event types", FilterConfig{EventTypes: []string{"vulnerability"}}, nil, true},
		{"categories", FilterConfig{Categories: []v1alpha1.Category{"compliance"}}, nil, false},
		{"exclude rule", FilterConfig{ExcludeRules: []string{"CVE-2021-3121"}}, nil, false},
		{"cel true", FilterConfig{Expression: `severity in ['critical', 'high'] && ns.startsWith('kube-') && rule != 'CVE-0'`}, nil, true},
		{"cel false", FilterConfig{Expression: `severityRank >= 4`}, nil, false},
		{"cel on details", FilterConfig{Expression: `'fixedVersion' in details && details['fixedVersion'] != ''`},
			func(e *Event) { e.Details = map[string]string{"fixedVersion": "1.3.2"} }, true},
		{"cel on missing details", FilterConfig{Expression: `'fixedVersion' in details`}, nil, false},
		// A missing key errors at evaluation: the finding is kept, and counted, never lost.
		{"cel evaluation error keeps", FilterConfig{Expression: `details['nope'] == 'x'`}, nil, true},
		{"list rules run before cel", FilterConfig{MinSeverity: "critical", Expression: `true`}, nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, err := NewFilter("trivy", tc.cfg, newMetrics())
			if err != nil {
				t.Fatal(err)
			}
			ev := baseEvent()
			if tc.mutate != nil {
				tc.mutate(&ev)
			}
			keep, err := f.Process(context.Background(), &ev)
			if err != nil || keep != tc.keep {
				t.Errorf("Process = %v, %v; want %v", keep, err, tc.keep)
			}
		})
	}
}

func TestFilterRejectsBadConfiguration(t *testing.T) {
	cases := []struct {
		name    string
		cfg     FilterConfig
		wantErr string
	}{
		{"syntax error with position", FilterConfig{Expression: "severity == 'high' &&"}, "<input>:1:"},
		{"unknown variable", FilterConfig{Expression: "sevrity == 'high'"}, "undeclared reference to 'sevrity'"},
		{"not a bool", FilterConfig{Expression: "severity"}, "must be a bool"},
		{"bad min severity", FilterConfig{MinSeverity: "HIGH"}, "minSeverity"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewFilter("trivy", tc.cfg, newMetrics())
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}
