package main

import (
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
)

// Stats counts Observations.
type Stats struct {
	Total        int            `json:"total"`
	BySource     map[string]int `json:"bySource"`
	BySeverity   map[string]int `json:"bySeverity"`
	ByCategory   map[string]int `json:"byCategory"`
	TopResources []Count        `json:"topResources"`
	TopRules     []Count        `json:"topRules"`
}

// Count is one entry of a top list.
type Count struct {
	Name  string `json:"name"`
	Count int    `json:"count"`
}

// ruleOf is what an Observation was found by: the CVE, check, rule or reason in its details, else
// its title.
func ruleOf(obs *v1alpha1.Observation) string {
	for _, k := range []string{"vulnerabilityID", "checkID", "ruleID", "rule", "reason"} {
		if v := obs.Spec.Details[k]; v != "" {
			return string(v)
		}
	}
	return obs.Spec.Title
}

func newStatsCmd(o *options) *cobra.Command {
	f := &filters{}
	top := 10
	cmd := &cobra.Command{
		Use:     "stats",
		Short:   "Count Observations by source, severity and category, with the top resources and rules",
		Example: `  obsctl stats -A --since 24h --top 5`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st := Stats{BySource: map[string]int{}, BySeverity: map[string]int{}, ByCategory: map[string]int{}}
			resources, rules := map[string]int{}, map[string]int{}
			if err := f.each(cmd, o, func(obs *v1alpha1.Observation) {
				s := obs.Spec
				st.Total++
				st.BySource[s.Source]++
				st.BySeverity[string(s.Severity)]++
				st.ByCategory[string(s.Category)]++
				resources[strings.Trim(fmt.Sprintf("%s %s/%s", s.Resource.Kind, s.Resource.Namespace, s.Resource.Name), " /")]++
				rules[ruleOf(obs)]++
			}); err != nil {
				return err
			}
			st.TopResources, st.TopRules = topN(resources, top), topN(rules, top)
			if done, err := printStructured(o.out, o.output, st); done {
				return err
			}
			return printStats(o, &st)
		},
	}
	f.register(cmd)
	cmd.Flags().IntVar(&top, "top", 10, "entries in the top lists")
	return cmd
}

func topN(counts map[string]int, n int) []Count {
	out := make([]Count, 0, len(counts))
	for k, v := range counts {
		out = append(out, Count{Name: k, Count: v})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Name < out[j].Name
	})
	return out[:min(n, len(out))]
}

func printStats(o *options, st *Stats) error {
	fmt.Fprintf(o.out, "Observations: %d\n\n", st.Total)
	for _, group := range []struct {
		title  string
		counts map[string]int
	}{{"SOURCE", st.BySource}, {"SEVERITY", st.BySeverity}, {"CATEGORY", st.ByCategory}} {
		t := newTable(o.out, group.title, "COUNT")
		for _, c := range topN(group.counts, len(group.counts)) {
			t.row(c.Name, fmt.Sprint(c.Count))
		}
		if err := t.flush(); err != nil {
			return err
		}
		fmt.Fprintln(o.out)
	}
	for _, group := range []struct {
		title string
		top   []Count
	}{{"TOP RESOURCES", st.TopResources}, {"TOP RULES", st.TopRules}} {
		t := newTable(o.out, group.title, "COUNT")
		for _, c := range group.top {
			t.row(c.Name, fmt.Sprint(c.Count))
		}
		if err := t.flush(); err != nil {
			return err
		}
		fmt.Fprintln(o.out)
	}
	return nil
}
