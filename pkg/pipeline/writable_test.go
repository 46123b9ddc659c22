package pipeline

import (
	"strings"
	"testing"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
)

func TestWritable(t *testing.T) {
	base := func() *Event {
		return &Event{Source: "falco", Category: v1alpha1.CategorySecurity, Severity: v1alpha1.SeverityHigh,
			EventType: "runtime_alert", Title: "Terminal shell in container",
			Resource: v1alpha1.ResourceRef{APIVersion: "v1", Kind: "Pod", Namespace: "shop", Name: "cart-0"},
			Details:  map[string]string{"proc.name": "bash"}}
	}
	many := map[string]string{}
	for i := range 64 {
		many[strings.Repeat("k", 200)+string(rune('a'+i%26))+string(rune('a'+i/26))] = strings.Repeat("v", 4096)
	}
	for _, tc := range []struct {
		name  string
		spoil func(*Event)
		want  string // part of the reason; "" for writable
	}{
		{"as it is", func(*Event) {}, ""},
		{"a long title is shortened, not refused", func(e *Event) { e.Title = strings.Repeat("t", 10_000) }, ""},
		{"cluster-scoped", func(e *Event) { e.Resource.Namespace = "" }, ""},
		{"pod name over 253", func(e *Event) { e.Resource.Name = strings.Repeat("p", 254) }, "resource.name"},
		{"namespace over 63", func(e *Event) { e.Resource.Namespace = strings.Repeat("n", 64) }, "resource.namespace"},
		{"namespace not a DNS label", func(e *Event) { e.Resource.Namespace = "Shop_1" }, "resource.namespace \"Shop_1\""},
		{"kind over 63", func(e *Event) { e.Resource.Kind = strings.Repeat("K", 64) }, "resource.kind"},
		{"detail key over 253", func(e *Event) { e.Details[strings.Repeat("x", 200_000)] = "1" }, "detail key"},
		{"over 64 KiB in all", func(e *Event) { e.Details = many }, "the Observation would be"},
		{"bad source", func(e *Event) { e.Source = "Falco!" }, "source"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := base()
			tc.spoil(ev)
			err := Writable(ev)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("reason %v, want one naming %q", err, tc.want)
			case err != nil && len(err.Error()) > 300:
				t.Errorf("the reason is %d bytes: it must quote a bounded part of the value", len(err.Error()))
			}
		})
	}
}
