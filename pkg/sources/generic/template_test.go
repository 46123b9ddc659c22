package generic

import (
	"strings"
	"testing"
)

// TestTemplates: fields render as mapped fields do — nested, bracketed, lists joined by commas,
// objects as JSON, missing ones empty — and anything but a field is refused when compiled.
func TestTemplates(t *testing.T) {
	data := map[string]any{
		"check": "privileged", "score": 7.5, "ok": false,
		"target": map[string]any{"pod": "web-1", "k8s.namespace": "shop"},
		"tags":   []any{"a", "b"},
		"labels": map[string]any{"app": "web"},
	}
	for _, tc := range []struct {
		text, want string
	}{
		{"{{.check}} on {{.target.pod}}", "privileged on web-1"},
		{"{{ .check }}", "privileged"},
		{`in {{.target.k8s\.namespace}}`, "in shop"},
		{"tags {{.tags[*]}}; first {{.tags[0]}}", "tags a,b; first a"},
		{"{{.labels}}", `{"app":"web"}`},
		{"{{.score}} {{.ok}}", "7.5 false"},
		{"[{{.missing}}] [{{.target.missing}}]", "[] []"},
		{"no fields at all", "no fields at all"},
		{"", ""},
		{"a } b { c", "a } b { c"},
	} {
		tmpl, err := parseTemplate("title", tc.text)
		if err != nil {
			t.Errorf("%q: %v", tc.text, err)
			continue
		}
		if got, err := tmpl.render(data); err != nil || got != tc.want {
			t.Errorf("%q rendered %q (%v), want %q", tc.text, got, err, tc.want)
		}
	}
	for _, bad := range []string{
		"{{.a", "{{if .a}}x{{end}}", `{{printf "%s" .a}}`, "{{.a | upper}}", "{{a}}", "{{}}", "{{.a[}}",
	} {
		if _, err := parseTemplate("title", bad); err == nil {
			t.Errorf("%q compiled", bad)
		} else if !strings.Contains(err.Error(), "titleTemplate") {
			t.Errorf("%q: the error does not name the template: %v", bad, err)
		}
	}
}

func FuzzTemplate(f *testing.F) {
	f.Add("{{.check}} on {{.target.pod}}", `{"check":"x","target":{"pod":"p"}}`)
	f.Fuzz(func(t *testing.T, text, _ string) {
		tmpl, err := parseTemplate("title", text)
		if err != nil {
			return
		}
		_, _ = tmpl.render(map[string]any{"check": "x", "list": []any{1, "two"}}) // must not panic
	})
}
