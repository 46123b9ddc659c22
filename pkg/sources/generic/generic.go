// Package generic maps any Kubernetes object or JSON payload to a finding with an Ingester's mapping:
// JSONPath-style field copies, a severity map, a fixed category and event type, and templates for
// the title and description. It is how users bring tools zen-watcher does not know.
package generic

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/cespare/xxhash/v2"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/util/jsonpath"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/pipeline"
	"github.com/kube-zen/zen-watcher/pkg/sources"
)

// Parser is a compiled mapping. It parses objects (ObjectParser) and payloads (PayloadParser).
type Parser struct {
	fields      []field
	severityMap map[string]v1alpha1.Severity
	category    v1alpha1.Category
	eventType   string
	title       *template
	description *template
}

type field struct {
	from string
	path *jsonpath.JSONPath
	set  func(ev *pipeline.Event, v string)
}

// New compiles m; every path and template is checked here, so a bad mapping is an error when the
// Ingester is applied, not on every finding.
func New(m *v1alpha1.Mapping) (*Parser, error) {
	if m == nil {
		return nil, fmt.Errorf("the generic adapter needs a mapping")
	}
	p := &Parser{category: m.Category, eventType: m.EventType, severityMap: map[string]v1alpha1.Severity{}}
	for k, v := range m.SeverityMap {
		p.severityMap[strings.ToLower(k)] = v
	}
	for _, f := range m.Fields {
		set, err := setter(f.To)
		if err != nil {
			return nil, err
		}
		jp := jsonpath.New(f.From).AllowMissingKeys(true)
		expr := f.From
		if !strings.HasPrefix(expr, "{") {
			expr = "{" + expr + "}"
		}
		if err := jp.Parse(expr); err != nil {
			return nil, fmt.Errorf("mapping from %q: %w", f.From, err)
		}
		p.fields = append(p.fields, field{from: f.From, path: jp, set: set})
	}
	var err error
	if p.title, err = compile("title", m.TitleTemplate); err != nil {
		return nil, err
	}
	if p.description, err = compile("description", m.DescriptionTemplate); err != nil {
		return nil, err
	}
	return p, nil
}

func compile(name, text string) (*template, error) {
	if text == "" {
		return nil, nil
	}
	return parseTemplate(name, text)
}

// setter returns how a mapped value is stored in the finding.
func setter(to string) (func(*pipeline.Event, string), error) {
	if k, ok := strings.CutPrefix(to, "details."); ok && k != "" {
		return func(ev *pipeline.Event, v string) { ev.Details[k] = v }, nil
	}
	setters := map[string]func(*pipeline.Event, string){
		"severity":            func(ev *pipeline.Event, v string) { ev.Severity = v1alpha1.Severity(v) },
		"eventType":           func(ev *pipeline.Event, v string) { ev.EventType = v },
		"category":            func(ev *pipeline.Event, v string) { ev.Category = v1alpha1.Category(strings.ToLower(v)) },
		"title":               func(ev *pipeline.Event, v string) { ev.Title = v },
		"description":         func(ev *pipeline.Event, v string) { ev.Description = v },
		"rule":                func(ev *pipeline.Event, v string) { ev.Rule = v },
		"identity":            func(ev *pipeline.Event, v string) { ev.Identity = v },
		"instance":            func(ev *pipeline.Event, v string) { ev.Instance = v },
		"resource.apiVersion": func(ev *pipeline.Event, v string) { ev.Resource.APIVersion = v },
		"resource.kind":       func(ev *pipeline.Event, v string) { ev.Resource.Kind = v },
		"resource.namespace":  func(ev *pipeline.Event, v string) { ev.Resource.Namespace = v },
		"resource.name":       func(ev *pipeline.Event, v string) { ev.Resource.Name = v },
	}
	if s, ok := setters[to]; ok {
		return s, nil
	}
	return nil, fmt.Errorf("mapping to %q: want severity, eventType, category, title, description, rule, identity, "+
		"instance, resource.apiVersion, resource.kind, resource.namespace, resource.name or details.<key>", to)
}

// ParseObject implements sources.ObjectParser: one finding per object, about the object unless the
// mapping names another resource.
func (p *Parser) ParseObject(obj *unstructured.Unstructured) ([]*pipeline.Event, error) {
	ev, err := p.finding(obj.Object, sources.Self(obj))
	if err != nil {
		return nil, fmt.Errorf("%s %s/%s: %w", obj.GetKind(), obj.GetNamespace(), obj.GetName(), err)
	}
	ev.Stateful = true
	return []*pipeline.Event{ev}, nil
}

// ParsePayload implements sources.PayloadParser: one finding per JSON object in the body. Each is
// an occurrence named by a hash of its bytes, so a body delivered twice is written once.
func (p *Parser) ParsePayload(body []byte) ([]*pipeline.Event, error) {
	var out []*pipeline.Event
	err := sources.DecodeItems(body, func(raw json.RawMessage) error {
		var data map[string]any
		if err := json.Unmarshal(raw, &data); err != nil {
			return err
		}
		ev, err := p.finding(data, v1alpha1.ResourceRef{})
		if err != nil {
			return err
		}
		if ev.Instance == "" {
			ev.Instance = fmt.Sprintf("%016x", xxhash.Sum64(raw))
		}
		out = append(out, ev)
		return nil
	})
	return out, err
}

func (p *Parser) finding(data map[string]any, self v1alpha1.ResourceRef) (*pipeline.Event, error) {
	ev := &pipeline.Event{
		Category: p.category, EventType: p.eventType, Severity: v1alpha1.SeverityInfo,
		Resource: self, Details: map[string]string{},
	}
	if ev.Category == "" {
		ev.Category = v1alpha1.CategoryOperations
	}
	for _, f := range p.fields {
		v, err := lookup(f.path, data)
		if err != nil {
			return nil, fmt.Errorf("mapping from %q: %w", f.from, err)
		}
		if v != "" {
			f.set(ev, v)
		}
	}
	ev.Severity = p.severity(string(ev.Severity))
	var err error
	if ev.Title, err = render(p.title, data, ev.Title); err != nil {
		return nil, err
	}
	if ev.Description, err = render(p.description, data, ev.Description); err != nil {
		return nil, err
	}
	return ev, nil
}

// severity applies the severity map, then the usual words; anything else goes on as it is, for
// the pipeline to count and make info.
func (p *Parser) severity(s string) v1alpha1.Severity {
	if sev, ok := p.severityMap[strings.ToLower(s)]; ok {
		return sev
	}
	if sev, ok := pipeline.NormalizeSeverity(s); ok {
		return sev
	}
	return v1alpha1.Severity(strings.ToLower(s))
}

// lookup evaluates a path; several results are joined with commas, objects are rendered as JSON.
func lookup(jp *jsonpath.JSONPath, data map[string]any) (string, error) {
	results, err := jp.FindResults(data)
	if err != nil {
		return "", err
	}
	var parts []string
	for _, rs := range results {
		for _, r := range rs {
			if !r.IsValid() || !r.CanInterface() {
				continue
			}
			switch v := r.Interface().(type) {
			case nil:
			case string:
				parts = append(parts, v)
			case map[string]any, []any:
				b, _ := json.Marshal(v)
				parts = append(parts, string(b))
			default:
				parts = append(parts, fmt.Sprint(v))
			}
		}
	}
	return strings.Join(parts, ","), nil
}

// render renders a template over the object, or keeps fallback when there is none.
func render(t *template, data map[string]any, fallback string) (string, error) {
	if t == nil {
		return fallback, nil
	}
	return t.render(data)
}
