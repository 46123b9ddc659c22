package generic

import (
	"fmt"
	"strings"

	"k8s.io/client-go/util/jsonpath"
)

// A template is text with fields of the object between double braces: `{{.check}} on
// {{.target.pod}}`. A field is a JSONPath such as the mapping's `from` takes (`.a.b`,
// `.a.dotted\.key`, `.list[*]`, `.list[0].name`), rendered as lookup renders it; a field the object
// lacks renders empty. Nothing else is evaluated — no functions, pipelines or conditions — so that
// the binary carries no reflection-driven template engine: text/template alone made the linker keep
// every exported method of every type (see docs/ARCHITECTURE.md, memory).
type template struct {
	name  string
	parts []part
}

// part is literal text, or a field when path is set.
type part struct {
	text string
	path *jsonpath.JSONPath
}

// parseTemplate compiles text; an action that is not a field is an error naming it.
func parseTemplate(name, text string) (*template, error) {
	t := &template{name: name}
	for rest := text; rest != ""; {
		open := strings.Index(rest, "{{")
		if open < 0 {
			t.parts = append(t.parts, part{text: rest})
			break
		}
		if open > 0 {
			t.parts = append(t.parts, part{text: rest[:open]})
		}
		end := strings.Index(rest[open:], "}}")
		if end < 0 {
			return nil, fmt.Errorf("%sTemplate: %q opens {{ without closing it", name, rest[open:])
		}
		action := strings.TrimSpace(rest[open+2 : open+end])
		rest = rest[open+end+2:]
		if !strings.HasPrefix(action, ".") || strings.ContainsAny(action, " |()") {
			return nil, fmt.Errorf("%sTemplate: {{%s}} is not a field: a template holds fields such as {{.spec.check}} only", name, action)
		}
		jp := jsonpath.New(name).AllowMissingKeys(true)
		if err := jp.Parse("{" + action + "}"); err != nil {
			return nil, fmt.Errorf("%sTemplate: {{%s}}: %w", name, action, err)
		}
		t.parts = append(t.parts, part{path: jp})
	}
	return t, nil
}

// render writes the template over data.
func (t *template) render(data map[string]any) (string, error) {
	var b strings.Builder
	for _, p := range t.parts {
		if p.path == nil {
			b.WriteString(p.text)
			continue
		}
		v, err := lookup(p.path, data)
		if err != nil {
			return "", fmt.Errorf("%s template: %w", t.name, err)
		}
		b.WriteString(v)
	}
	return b.String(), nil
}
