// Package checkov reads Checkov's JSON results (`checkov -o json`: one report, or a list of reports,
// one per framework) from a ConfigMap. Each failed check is a finding.
package checkov

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/pipeline"
	"github.com/kube-zen/zen-watcher/pkg/sources"
)

type failedCheck struct {
	CheckID       string  `json:"check_id"`
	BCCheckID     string  `json:"bc_check_id"`
	CheckName     string  `json:"check_name"`
	FilePath      string  `json:"file_path"`
	FileLineRange []int   `json:"file_line_range"`
	Resource      string  `json:"resource"`
	Severity      *string `json:"severity"`
	BCCategory    string  `json:"bc_category"`
	Guideline     string  `json:"guideline"`
}

type report struct {
	CheckType string `json:"check_type"`
	Results   struct {
		FailedChecks []failedCheck `json:"failed_checks"`
	} `json:"results"`
}

// Parser reads Checkov results from a ConfigMap's Key (default results.json).
type Parser struct {
	Key string
}

// ParseObject implements sources.ObjectParser.
func (p Parser) ParseObject(obj *unstructured.Unstructured) ([]*pipeline.Event, error) {
	var reports []report
	err := sources.ConfigMapResults(obj, p.Key, func(data []byte) (err error) {
		reports, err = decode(data)
		return err
	})
	if err != nil {
		return nil, err
	}
	var out []*pipeline.Event
	for _, r := range reports {
		for _, c := range r.Results.FailedChecks {
			out = append(out, finding(obj, r.CheckType, &c))
		}
	}
	return out, nil
}

func decode(data []byte) ([]report, error) {
	data = bytes.TrimSpace(data)
	var reports []report
	if len(data) > 0 && data[0] == '[' {
		if err := json.Unmarshal(data, &reports); err != nil {
			return nil, fmt.Errorf("checkov results: %w", err)
		}
		return reports, nil
	}
	var r report
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("checkov results: %w", err)
	}
	return []report{r}, nil
}

func finding(obj *unstructured.Unstructured, checkType string, c *failedCheck) *pipeline.Event {
	// Checkov rates checks only with a Prisma Cloud key; an unrated failed check is medium.
	sev := v1alpha1.SeverityMedium
	if c.Severity != nil && *c.Severity != "" {
		if s, ok := pipeline.NormalizeSeverity(*c.Severity); ok {
			sev = s
		} else {
			sev = v1alpha1.Severity(strings.ToLower(*c.Severity))
		}
	}
	lines := ""
	if len(c.FileLineRange) == 2 {
		lines = fmt.Sprintf("%d-%d", c.FileLineRange[0], c.FileLineRange[1])
	}
	return &pipeline.Event{
		Category: v1alpha1.CategorySecurity, Severity: sev, EventType: "iac_misconfiguration",
		Resource: resource(obj, checkType, c.Resource), Rule: c.CheckID,
		Identity: c.FilePath + "\x00" + c.Resource,
		Title:    c.CheckID + ": " + c.CheckName, Description: c.CheckName + " (" + c.Resource + " in " + c.FilePath + ")",
		Details: map[string]string{
			"checkID": c.CheckID, "bcCheckID": c.BCCheckID, "checkName": c.CheckName, "file": c.FilePath,
			"lines": lines, "iacResource": c.Resource, "checkType": checkType, "bcCategory": c.BCCategory,
			"guideline": c.Guideline,
		},
		Stateful: true,
	}
}

// resource: Checkov names Kubernetes resources Kind.namespace.name; for other frameworks the finding
// is about the ConfigMap that carries the results.
func resource(obj *unstructured.Unstructured, checkType, name string) v1alpha1.ResourceRef {
	if checkType == "kubernetes" {
		if parts := strings.SplitN(name, ".", 3); len(parts) == 3 {
			return v1alpha1.ResourceRef{APIVersion: sources.APIVersionOf(parts[0]), Kind: parts[0], Namespace: parts[1], Name: parts[2]}
		}
	}
	return sources.Self(obj)
}
