package main

import (
	"fmt"
	"sort"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
)

func newGetCmd(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "get NAME",
		Short: "Show one Observation",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ns, err := o.scope()
			if err != nil {
				return err
			}
			if ns == "" {
				return fmt.Errorf("get needs a namespace (-n), not -A")
			}
			c, err := o.observations()
			if err != nil {
				return err
			}
			obs, err := c.Get(cmd.Context(), ns, args[0])
			if err != nil {
				return err
			}
			obs.TypeMeta = metav1.TypeMeta{APIVersion: v1alpha1.SchemeGroupVersion.String(), Kind: "Observation"}
			if done, err := printStructured(o.out, o.output, obs); done {
				return err
			}
			return describe(o, obs)
		},
	}
}

// describe writes an Observation for people: the finding first, then its details.
func describe(o *options, obs *v1alpha1.Observation) error {
	s := obs.Spec
	t := newTable(o.out, "Name:", obs.Namespace+"/"+obs.Name)
	t.row("Source:", s.Source)
	t.row("Severity:", string(s.Severity))
	t.row("Category:", string(s.Category))
	t.row("Type:", s.EventType)
	t.row("Resource:", fmt.Sprintf("%s %s/%s (%s)", s.Resource.Kind, s.Resource.Namespace, s.Resource.Name, s.Resource.APIVersion))
	t.row("Title:", s.Title)
	t.row("Description:", s.Description)
	t.row("Fingerprint:", s.Fingerprint)
	t.row("Detected:", s.DetectedAt.String())
	t.row("Created:", obs.CreationTimestamp.String()+" ("+age(obs.CreationTimestamp.Time)+" ago)")
	if exp := obs.Labels[v1alpha1.LabelExpiresAt]; exp != "" {
		t.row("Expires at (Unix):", exp)
	}
	keys := make([]string, 0, len(s.Details))
	for k := range s.Details {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if len(keys) > 0 {
		t.row("Details:", "")
	}
	for _, k := range keys {
		t.row("  "+k+":", string(s.Details[k]))
	}
	return t.flush()
}
