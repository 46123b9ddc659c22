package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
)

// filters narrow the Observations a command reads. Source, severity and category are label
// selectors the API server applies; since is applied as the pages arrive.
type filters struct {
	source, minSeverity, category string
	since                         time.Duration
	pageSize                      int64
}

func (f *filters) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.source, "source", "", "only this source")
	fl.StringVar(&f.minSeverity, "severity", "", "only this severity or more urgent (critical, high, medium, low, info)")
	fl.StringVar(&f.category, "category", "", "only this category")
	fl.DurationVar(&f.since, "since", 0, "only Observations created within this long, such as 1h")
	fl.Int64Var(&f.pageSize, "page-size", 500, "Observations per request")
}

// selector is the label selector of the filters.
func (f *filters) selector() (string, error) {
	sel := labels.NewSelector()
	add := func(key string, op selection.Operator, vals ...string) error {
		r, err := labels.NewRequirement(key, op, vals)
		if err != nil {
			return err
		}
		sel = sel.Add(*r)
		return nil
	}
	if f.source != "" {
		if err := add(v1alpha1.LabelSource, selection.Equals, f.source); err != nil {
			return "", fmt.Errorf("--source: %w", err)
		}
	}
	if f.category != "" {
		if err := add(v1alpha1.LabelCategory, selection.Equals, f.category); err != nil {
			return "", fmt.Errorf("--category: %w", err)
		}
	}
	if f.minSeverity != "" {
		min := v1alpha1.Severity(strings.ToLower(f.minSeverity))
		if min.Rank() < 0 {
			return "", fmt.Errorf("--severity %q: want critical, high, medium, low or info", f.minSeverity)
		}
		var at []string
		for _, s := range []v1alpha1.Severity{v1alpha1.SeverityCritical, v1alpha1.SeverityHigh,
			v1alpha1.SeverityMedium, v1alpha1.SeverityLow, v1alpha1.SeverityInfo} {
			if s.Rank() >= min.Rank() {
				at = append(at, string(s))
			}
		}
		if err := add(v1alpha1.LabelSeverity, selection.In, at...); err != nil {
			return "", err
		}
	}
	return sel.String(), nil
}

// each calls fn for every Observation in scope that passes the filters.
func (f *filters) each(cmd *cobra.Command, o *options, fn func(*v1alpha1.Observation)) error {
	ns, err := o.scope()
	if err != nil {
		return err
	}
	sel, err := f.selector()
	if err != nil {
		return err
	}
	c, err := o.observations()
	if err != nil {
		return err
	}
	cutoff := time.Time{}
	if f.since > 0 {
		cutoff = time.Now().Add(-f.since)
	}
	return c.EachObservation(cmd.Context(), ns, sel, f.pageSize, func(obs *v1alpha1.Observation) error {
		if obs.CreationTimestamp.Time.Before(cutoff) {
			return nil
		}
		fn(obs)
		return nil
	})
}

func newListCmd(o *options) *cobra.Command {
	f := &filters{}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List Observations, filtered by source, severity, category and age",
		Example: `  obsctl list -A --severity high --since 24h
  obsctl list -n shop --source trivy -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			list := &v1alpha1.ObservationList{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "List"}}
			if err := f.each(cmd, o, func(obs *v1alpha1.Observation) {
				obs.TypeMeta = metav1.TypeMeta{APIVersion: v1alpha1.SchemeGroupVersion.String(), Kind: "Observation"}
				list.Items = append(list.Items, *obs)
			}); err != nil {
				return err
			}
			if done, err := printStructured(o.out, o.output, list); done {
				return err
			}
			if len(list.Items) == 0 {
				fmt.Fprintln(o.errOut, "No Observations found.")
				return nil
			}
			t := newTable(o.out, "NAMESPACE", "NAME", "SOURCE", "SEVERITY", "CATEGORY", "TYPE", "RESOURCE", "AGE")
			for _, obs := range list.Items {
				s := obs.Spec
				res := strings.Trim(s.Resource.Kind+"/"+s.Resource.Name, "/")
				t.row(obs.Namespace, obs.Name, s.Source, string(s.Severity), string(s.Category), s.EventType, res,
					age(obs.CreationTimestamp.Time))
			}
			return t.flush()
		},
	}
	f.register(cmd)
	return cmd
}
