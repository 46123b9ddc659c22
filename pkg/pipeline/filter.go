package pipeline

import (
	"context"
	"fmt"
	"sync"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/interpreter"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/metrics"
)

// FilterConfig is a source's resolved filter configuration; empty lists restrict nothing.
type FilterConfig struct {
	MinSeverity       v1alpha1.Severity
	IncludeNamespaces []string
	ExcludeNamespaces []string
	Kinds             []string
	EventTypes        []string
	Categories        []v1alpha1.Category
	ExcludeRules      []string
	// Expression is CEL over the finding; it must be true to keep it.
	Expression string
}

// Filter is the stage that decides whether a finding is worth an Observation. Its list rules are
// set lookups; its CEL expression is compiled once, when the configuration is loaded.
type Filter struct {
	minRank     int
	includeNS   set
	excludeNS   set
	kinds       set
	eventTypes  set
	categories  set
	excludeRule set
	program     cel.Program
	evalErrors  prometheus.Counter
	acts        sync.Pool // of *activation
}

type set map[string]struct{}

func newSet[S ~string](items []S) set {
	if len(items) == 0 {
		return nil
	}
	s := make(set, len(items))
	for _, it := range items {
		s[string(it)] = struct{}{}
	}
	return s
}

func (s set) has(k string) bool {
	_, ok := s[k]
	return ok
}

// NewFilter compiles cfg for source. An expression that does not compile, or is not boolean, is an
// error that names the position of the problem.
func NewFilter(source string, cfg FilterConfig, m *metrics.Metrics) (*Filter, error) {
	f := &Filter{
		minRank:     -1,
		includeNS:   newSet(cfg.IncludeNamespaces),
		excludeNS:   newSet(cfg.ExcludeNamespaces),
		kinds:       newSet(cfg.Kinds),
		eventTypes:  newSet(cfg.EventTypes),
		categories:  newSet(cfg.Categories),
		excludeRule: newSet(cfg.ExcludeRules),
		evalErrors:  m.PipelineErrors.WithLabelValues(source, "filter_expression"),
	}
	if cfg.MinSeverity != "" {
		if f.minRank = cfg.MinSeverity.Rank(); f.minRank < 0 {
			return nil, fmt.Errorf("filter minSeverity %q: want critical, high, medium, low or info", cfg.MinSeverity)
		}
	}
	if cfg.Expression != "" {
		prg, err := CompileExpression(cfg.Expression)
		if err != nil {
			return nil, err
		}
		f.program = prg
	}
	return f, nil
}

// Name implements Stage.
func (f *Filter) Name() string { return "filter" }

// Outcome implements Stage.
func (f *Filter) Outcome() Outcome { return OutcomeFiltered }

// Process implements Stage. The cheapest checks run first.
func (f *Filter) Process(_ context.Context, ev *Event) (bool, error) {
	if f.minRank >= 0 && ev.Severity.Rank() < f.minRank {
		return false, nil
	}
	ns := ev.Resource.Namespace
	if f.excludeNS != nil && f.excludeNS.has(ns) ||
		f.includeNS != nil && !f.includeNS.has(ns) ||
		f.kinds != nil && !f.kinds.has(ev.Resource.Kind) ||
		f.eventTypes != nil && !f.eventTypes.has(ev.EventType) ||
		f.categories != nil && !f.categories.has(string(ev.Category)) ||
		f.excludeRule != nil && f.excludeRule.has(ev.Rule) {
		return false, nil
	}
	if f.program == nil {
		return true, nil
	}
	return f.eval(ev), nil
}

// eval runs the expression. An evaluation error (a missing details key, say) keeps the finding and
// is counted: a filter that cannot decide must not lose findings.
func (f *Filter) eval(ev *Event) bool {
	act, _ := f.acts.Get().(*activation)
	if act == nil {
		act = new(activation)
	}
	act.ev = ev
	out, _, err := f.program.Eval(act)
	act.ev = nil
	f.acts.Put(act)
	if err != nil {
		f.evalErrors.Inc()
		return true
	}
	keep, ok := out.Value().(bool)
	return !ok || keep
}

// celVariables declares what an expression can read: the finding's fields as top-level variables.
func celVariables() []cel.EnvOption {
	return []cel.EnvOption{
		cel.Variable("source", cel.StringType),
		cel.Variable("category", cel.StringType),
		cel.Variable("severity", cel.StringType),
		cel.Variable("severityRank", cel.IntType),
		cel.Variable("eventType", cel.StringType),
		cel.Variable("apiVersion", cel.StringType),
		cel.Variable("kind", cel.StringType),
		cel.Variable("ns", cel.StringType), // "namespace" is reserved in CEL,
		cel.Variable("name", cel.StringType),
		cel.Variable("rule", cel.StringType),
		cel.Variable("identity", cel.StringType),
		cel.Variable("title", cel.StringType),
		cel.Variable("description", cel.StringType),
		cel.Variable("details", cel.MapType(cel.StringType, cel.StringType)),
	}
}

// CompileExpression compiles a filter expression. It is exported so that configuration can be
// checked before it is applied.
func CompileExpression(expr string) (cel.Program, error) {
	env, err := cel.NewEnv(celVariables()...)
	if err != nil {
		return nil, fmt.Errorf("building CEL environment: %w", err)
	}
	ast, iss := env.Compile(expr)
	if iss.Err() != nil {
		return nil, fmt.Errorf("filter expression: %w", iss.Err())
	}
	if ast.OutputType() != cel.BoolType {
		return nil, fmt.Errorf("filter expression must be a bool, not %s", ast.OutputType())
	}
	prg, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, fmt.Errorf("filter expression: %w", err)
	}
	return prg, nil
}

// activation binds the variables to one Event's fields directly, so that no map of variables is
// built per evaluation.
type activation struct {
	ev *Event
}

// ResolveName implements interpreter.Activation.
func (a *activation) ResolveName(name string) (any, bool) {
	ev := a.ev
	switch name {
	case "source":
		return types.String(ev.Source), true
	case "category":
		return types.String(ev.Category), true
	case "severity":
		return types.String(ev.Severity), true
	case "severityRank":
		return types.Int(ev.Severity.Rank()), true
	case "eventType":
		return types.String(ev.EventType), true
	case "apiVersion":
		return types.String(ev.Resource.APIVersion), true
	case "kind":
		return types.String(ev.Resource.Kind), true
	case "ns":
		return types.String(ev.Resource.Namespace), true
	case "name":
		return types.String(ev.Resource.Name), true
	case "rule":
		return types.String(ev.Rule), true
	case "identity":
		return types.String(ev.Identity), true
	case "title":
		return types.String(ev.Title), true
	case "description":
		return types.String(ev.Description), true
	case "details":
		return detailsVal(ev.Details), true
	}
	return nil, false
}

// Parent implements interpreter.Activation.
func (a *activation) Parent() interpreter.Activation { return nil }

func detailsVal(d map[string]string) ref.Val {
	if d == nil {
		d = map[string]string{}
	}
	return types.NewStringStringMap(types.DefaultTypeAdapter, d)
}

var _ Stage = (*Filter)(nil)
