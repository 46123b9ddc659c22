// Package kubebench reads kube-bench's JSON results (`kube-bench --json`, with or without totals) from
// a ConfigMap. Each FAIL is a finding, and each WARN a low one.
package kubebench

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

type result struct {
	TestNumber     string `json:"test_number"`
	TestDesc       string `json:"test_desc"`
	Remediation    string `json:"remediation"`
	Status         string `json:"status"`
	Scored         bool   `json:"scored"`
	ActualValue    string `json:"actual_value"`
	ExpectedResult string `json:"expected_result"`
	Reason         string `json:"reason"`
}

type control struct {
	ID       string `json:"id"`
	Version  string `json:"version"`
	Text     string `json:"text"`
	NodeType string `json:"node_type"`
	Tests    []struct {
		Section string   `json:"section"`
		Desc    string   `json:"desc"`
		Results []result `json:"results"`
	} `json:"tests"`
}

// Parser reads kube-bench results from a ConfigMap's Key (default results.json).
type Parser struct {
	Key string
}

// ParseObject implements sources.ObjectParser.
func (p Parser) ParseObject(obj *unstructured.Unstructured) ([]*pipeline.Event, error) {
	var controls []control
	err := sources.ConfigMapResults(obj, p.Key, func(data []byte) (err error) {
		controls, err = decode(data)
		return err
	})
	if err != nil {
		return nil, err
	}
	// kube-bench reports on a node; the ConfigMap that carries the results names it, if anyone does.
	node := obj.GetLabels()["kube-bench.aquasecurity.github.io/node"]
	if node == "" {
		node = obj.GetAnnotations()["kube-bench.aquasecurity.github.io/node"]
	}
	res := sources.Self(obj)
	if node != "" {
		res = v1alpha1.ResourceRef{APIVersion: "v1", Kind: "Node", Name: node}
	}
	var out []*pipeline.Event
	for _, c := range controls {
		for _, t := range c.Tests {
			for _, r := range t.Results {
				if ev := finding(&c, t.Section, t.Desc, &r, res, node); ev != nil {
					out = append(out, ev)
				}
			}
		}
	}
	return out, nil
}

// decode accepts both shapes kube-bench writes: {"Controls": [...], "Totals": {...}} and a bare array.
func decode(data []byte) ([]control, error) {
	data = bytes.TrimSpace(data)
	var controls []control
	if len(data) > 0 && data[0] == '[' {
		if err := json.Unmarshal(data, &controls); err != nil {
			return nil, fmt.Errorf("kube-bench results: %w", err)
		}
		return controls, nil
	}
	var doc struct {
		Controls []control `json:"Controls"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("kube-bench results: %w", err)
	}
	return doc.Controls, nil
}

func finding(c *control, section, sectionDesc string, r *result, res v1alpha1.ResourceRef, node string) *pipeline.Event {
	var sev v1alpha1.Severity
	var eventType string
	switch strings.ToUpper(r.Status) {
	case "FAIL":
		sev, eventType = v1alpha1.SeverityMedium, "cis_benchmark_failure"
		if r.Scored {
			sev = v1alpha1.SeverityHigh
		}
	case "WARN":
		sev, eventType = v1alpha1.SeverityLow, "cis_benchmark_warning"
	default:
		return nil
	}
	desc := r.Remediation
	if r.Reason != "" {
		desc = r.Reason + "\n" + desc
	}
	return &pipeline.Event{
		Category: v1alpha1.CategoryCompliance, Severity: sev, EventType: eventType, Resource: res,
		Rule: r.TestNumber, Identity: node + "\x00" + c.NodeType,
		Title: r.TestNumber + " " + r.TestDesc, Description: desc,
		Details: map[string]string{
			"check": r.TestNumber, "status": strings.ToUpper(r.Status), "description": r.TestDesc,
			"control": c.ID + " " + c.Text, "section": section + " " + sectionDesc, "nodeType": c.NodeType,
			"benchmarkVersion": c.Version, "actualValue": r.ActualValue, "expectedResult": r.ExpectedResult,
			"remediation": r.Remediation, "node": node,
		},
		Stateful: true,
	}
}
