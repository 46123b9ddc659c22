package main

import (
	"maps"
	"strings"
	"testing"
)

func TestRequestsBy(t *testing.T) {
	text := `# HELP apiserver_request_total Counter of apiserver requests
apiserver_request_total{code="201",component="apiserver",dry_run="",group="zen.kube-zen.io",resource="observations",scope="resource",subresource="",verb="POST",version="v1alpha1"} 120
apiserver_request_total{code="409",component="apiserver",dry_run="",group="zen.kube-zen.io",resource="observations",scope="resource",subresource="",verb="POST",version="v1alpha1"} 3
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="status",verb="PATCH",version="v1"} 7
process_cpu_seconds_total 12.5
`
	m, err := parseMetrics(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"POST observations": 123, "PATCH pods": 7}
	if got := requestsBy(m); !maps.Equal(got, want) {
		t.Errorf("requestsBy = %v, want %v", got, want)
	}
	for _, tc := range []struct{ labels, name, want string }{
		{`resource="pods",subresource="status",verb="PATCH"}`, "resource", "pods"},
		{`subresource="status",resource="pods"}`, "resource", "pods"},
		{`subresource="status",resource="pods"}`, "subresource", "status"},
		{`verb="GET"}`, "code", ""},
	} {
		if got := label(tc.labels, tc.name); got != tc.want {
			t.Errorf("label(%s, %s) = %q, want %q", tc.labels, tc.name, got, tc.want)
		}
	}
}
