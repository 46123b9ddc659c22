package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/ingester"
	"github.com/kube-zen/zen-watcher/pkg/metrics"
	"github.com/kube-zen/zen-watcher/pkg/obsclient"
	"github.com/kube-zen/zen-watcher/pkg/pipeline"
	"github.com/kube-zen/zen-watcher/pkg/sources"
)

// explainer answers why a finding has, or would have, the Observation it has.
type explainer struct {
	o         *options
	obs       *obsclient.Client
	ingesters []v1alpha1.Ingester
}

func newExplainCmd(o *options) *cobra.Command {
	var file, source, adapter string
	cmd := &cobra.Command{
		Use:   "explain [NAME | --file FILE --source SOURCE]",
		Short: "Say why an Observation exists, or what would become of a finding",
		Long: "With NAME: how the Observation's name and fingerprint derive, how its source dedups it, and " +
			"whether the source's filter would keep it today. With --file: the finding(s) in FILE (a webhook " +
			"body, or a Kubernetes object for an informer source) run through the source's parser, filter " +
			"and the Observations that exist: written, filtered, or deduplicated, and why. -n is the " +
			"release's namespace, where findings without a namespace go.",
		Example: `  obsctl explain -n shop trivy-3f2a9c0d1e2b4a57
  obsctl explain -n zen-system --source falco --file alert.json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := newExplainer(cmd.Context(), o)
			if err != nil {
				return err
			}
			switch {
			case len(args) == 1 && file == "":
				return e.observation(cmd.Context(), args[0])
			case len(args) == 0 && file != "" && source != "":
				return e.finding(cmd.Context(), file, source, v1alpha1.Adapter(adapter))
			}
			return errors.New("give an Observation's NAME, or --file and --source")
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&file, "file", "f", "", "a finding: a webhook body, or an object for an informer source (- for stdin)")
	fl.StringVar(&source, "source", "", "the source the finding comes from")
	fl.StringVar(&adapter, "adapter", "", "the adapter, when no Ingester configures the source")
	return cmd
}

func newExplainer(ctx context.Context, o *options) (*explainer, error) {
	rc, err := o.restConfig()
	if err != nil {
		return nil, err
	}
	c, err := obsclient.New(rc)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("building dynamic client: %w", err)
	}
	list, err := dyn.Resource(v1alpha1.IngesterResource).List(ctx, metav1.ListOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("listing Ingesters: %w", err)
	}
	e := &explainer{o: o, obs: c}
	if list != nil {
		for _, u := range list.Items {
			var ing v1alpha1.Ingester
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &ing); err == nil {
				e.ingesters = append(e.ingesters, ing)
			}
		}
	}
	return e, nil
}

// ingesterFor is the first Ingester of source, or nil.
func (e *explainer) ingesterFor(source string) *v1alpha1.Ingester {
	for i := range e.ingesters {
		if e.ingesters[i].Spec.Source == source {
			return &e.ingesters[i]
		}
	}
	return nil
}

// processing is the source's processing as the replicas compile it: its Ingester's over the
// defaults of a replica started without flags.
func (e *explainer) processing(source string) (pipeline.SourceConfig, string) {
	defaults := pipeline.SourceConfig{Dedup: &pipeline.DedupConfig{Strategy: v1alpha1.DedupFingerprint}}
	if ing := e.ingesterFor(source); ing != nil {
		return pipeline.FromIngester(&ing.Spec, defaults), "Ingester " + ing.Namespace + "/" + ing.Name
	}
	return defaults, "no Ingester (the replicas' defaults)"
}

func (e *explainer) observation(ctx context.Context, name string) error {
	ns, err := e.o.scope()
	if err != nil {
		return err
	}
	obs, err := e.obs.Get(ctx, ns, name)
	if err != nil {
		return err
	}
	s := obs.Spec
	w := e.o.out
	fmt.Fprintf(w, "Observation %s/%s of %s: %s %s %s on %s %s\n", obs.Namespace, obs.Name, s.Source,
		s.Severity, s.Category, s.EventType, s.Resource.Kind, s.Resource.Name)
	fmt.Fprintf(w, "Fingerprint %s: source, category, severity, type, resource, rule and identity, hashed.\n", s.Fingerprint)
	switch {
	case obs.Name == pipeline.ObservationName(s.Source, s.Fingerprint):
		fmt.Fprintln(w, "Name: from the fingerprint. The finding is a state its source re-reads (a report entry, a "+
			"warning); reading it again, after a restart or by another replica, writes nothing new.")
	case obs.GenerateName != "":
		fmt.Fprintln(w, "Name: generated. The finding carries no identity of its own occurrence.")
	default:
		fmt.Fprintln(w, "Name: from the fingerprint and the occurrence (an alert's time, an audit ID). The same "+
			"occurrence delivered twice is written once; a new occurrence is deduplicated by the window.")
	}
	cfg, from := e.processing(s.Source)
	fmt.Fprintf(w, "Processing of %s, from %s:\n", s.Source, from)
	describeDedup(w, cfg)
	ev := &pipeline.Event{Source: s.Source, Category: s.Category, Severity: s.Severity, EventType: s.EventType,
		Resource: s.Resource, Rule: ruleOf(obs)}
	kept, why, err := filterVerdict(s.Source, cfg, ev)
	if err != nil {
		return err
	}
	if kept {
		fmt.Fprintf(w, "  filter: %s; this finding passes it today.\n", why)
	} else {
		fmt.Fprintf(w, "  filter: %s; this finding would be dropped today (it was kept when written).\n", why)
	}
	fmt.Fprintf(w, "Written %s ago", age(obs.CreationTimestamp.Time))
	if exp := obs.Labels[v1alpha1.LabelExpiresAt]; exp != "" {
		fmt.Fprintf(w, "; expires at Unix time %s (its own TTL)", exp)
	}
	fmt.Fprintln(w, ".")
	return nil
}

func describeDedup(w io.Writer, cfg pipeline.SourceConfig) {
	if cfg.Dedup == nil {
		fmt.Fprintln(w, "  dedup: off; every finding is written.")
		return
	}
	window := "the replicas' window (-dedup-window, 60s by default, or HA optimization's)"
	if cfg.Dedup.Window > 0 {
		window = cfg.Dedup.Window.String()
	}
	fmt.Fprintf(w, "  dedup: %s; a finding with the same key within %s is not written again.\n", cfg.Dedup.Strategy, window)
}

// filterVerdict runs the source's filter over ev, and says what the filter is.
func filterVerdict(source string, cfg pipeline.SourceConfig, ev *pipeline.Event) (bool, string, error) {
	if cfg.Filter == nil {
		return true, "none", nil
	}
	f, err := pipeline.NewFilter(source, *cfg.Filter, metrics.New(prometheus.NewRegistry()))
	if err != nil {
		return false, "", fmt.Errorf("compiling the filter of %s: %w", source, err)
	}
	keep, err := f.Process(context.Background(), ev)
	if err != nil {
		return false, "", err
	}
	return keep, describeFilter(cfg.Filter), nil
}

func describeFilter(f *pipeline.FilterConfig) string {
	var parts []string
	add := func(name string, vals []string) {
		if len(vals) > 0 {
			parts = append(parts, name+" "+strings.Join(vals, ","))
		}
	}
	if f.MinSeverity != "" {
		parts = append(parts, "severity at least "+string(f.MinSeverity))
	}
	add("namespaces", f.IncludeNamespaces)
	add("not namespaces", f.ExcludeNamespaces)
	add("kinds", f.Kinds)
	add("event types", f.EventTypes)
	cats := make([]string, len(f.Categories))
	for i, c := range f.Categories {
		cats[i] = string(c)
	}
	add("categories", cats)
	add("not rules", f.ExcludeRules)
	if f.Expression != "" {
		parts = append(parts, "CEL "+f.Expression)
	}
	if len(parts) == 0 {
		return "keeps everything"
	}
	return strings.Join(parts, "; ")
}

// finding runs the findings of a file through the source's parser and filter, and looks for the
// Observations they would collide with.
func (e *explainer) finding(ctx context.Context, file, source string, adapter v1alpha1.Adapter) error {
	ns, err := e.o.scope()
	if err != nil {
		return err
	}
	body, err := readInput(file)
	if err != nil {
		return err
	}
	events, err := e.parse(source, adapter, body)
	if err != nil {
		return err
	}
	cfg, from := e.processing(source)
	w := e.o.out
	fmt.Fprintf(w, "%d finding(s) of %s, processed as by %s:\n", len(events), source, from)
	for i, ev := range events {
		ev.Source = source
		ev.FP = pipeline.Fingerprint(ev)
		fmt.Fprintf(w, "\n[%d] %s %s %s on %s %s/%s, fingerprint %s\n", i+1, ev.Severity, ev.Category, ev.EventType,
			ev.Resource.Kind, ev.Resource.Namespace, ev.Resource.Name, ev.FingerprintHex())
		kept, why, err := filterVerdict(source, cfg, ev)
		if err != nil {
			return err
		}
		if !kept {
			fmt.Fprintf(w, "  filtered: the filter (%s) drops it; no Observation.\n", why)
			continue
		}
		fmt.Fprintf(w, "  filter (%s): kept.\n", why)
		if err := e.collision(ctx, ev, ns, cfg); err != nil {
			return err
		}
	}
	return nil
}

// collision says whether ev would be written, or is already recorded.
func (e *explainer) collision(ctx context.Context, ev *pipeline.Event, ns string, cfg pipeline.SourceConfig) error {
	w := e.o.out
	want := pipeline.BuildObservation(ev, ns)
	if want.Name != "" {
		if _, err := e.obs.Get(ctx, want.Namespace, want.Name); err == nil {
			fmt.Fprintf(w, "  already recorded as %s/%s: writing it again creates nothing.\n", want.Namespace, want.Name)
			return nil
		} else if !apierrors.IsNotFound(err) {
			return err
		}
	}
	var same *v1alpha1.Observation
	err := e.obs.EachObservation(ctx, "", v1alpha1.LabelSource+"="+ev.Source, 500, func(o *v1alpha1.Observation) error {
		if o.Spec.Fingerprint == ev.FingerprintHex() && (same == nil || o.CreationTimestamp.After(same.CreationTimestamp.Time)) {
			same = o.DeepCopy()
		}
		return nil
	})
	if err != nil {
		return err
	}
	if same != nil && cfg.Dedup != nil {
		fmt.Fprintf(w, "  deduplicated while the window lasts: %s/%s has the same fingerprint (written %s ago).\n",
			same.Namespace, same.Name, age(same.CreationTimestamp.Time))
		describeDedup(w, cfg)
		return nil
	}
	name := want.Name
	if name == "" {
		name = want.GenerateName + "<generated>"
	}
	fmt.Fprintf(w, "  would be written as %s/%s.\n", want.Namespace, name)
	return nil
}

// parse reads body with the parser of the source's Ingester, or of the adapter named.
func (e *explainer) parse(source string, adapter v1alpha1.Adapter, body []byte) ([]*pipeline.Event, error) {
	spec := v1alpha1.IngesterSpec{Source: source, Adapter: adapter}
	if ing := e.ingesterFor(source); ing != nil && adapter == "" {
		spec = ing.Spec
	}
	if spec.Adapter == "" {
		return nil, fmt.Errorf("no Ingester configures source %s: name its --adapter", source)
	}
	if spec.Webhook == nil && spec.Informer == nil {
		spec.Webhook = &v1alpha1.WebhookSource{}
		if _, _, err := ingester.Parsers(&spec); err != nil {
			spec.Webhook, spec.Informer = nil, &v1alpha1.InformerSource{}
		}
	}
	objParser, payloadParser, err := ingester.Parsers(&spec)
	if err != nil {
		return nil, err
	}
	if payloadParser != nil {
		return payloadParser.ParsePayload(body)
	}
	objs, err := sources.DecodeObjects(body)
	if err != nil {
		return nil, fmt.Errorf("decoding objects: %w", err)
	}
	var out []*pipeline.Event
	for _, obj := range objs {
		evs, err := objParser.ParseObject(obj)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", obj.GetKind(), obj.GetName(), err)
		}
		out = append(out, evs...)
	}
	return out, nil
}

func readInput(file string) ([]byte, error) {
	if file == "-" {
		return readAll(os.Stdin)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading the finding: %w", err)
	}
	return b, nil
}
