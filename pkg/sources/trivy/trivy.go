// Package trivy reads the reports of Trivy Operator (aquasecurity.github.io/v1alpha1):
// VulnerabilityReport, ConfigAuditReport, ExposedSecretReport, RbacAssessmentReport and their
// cluster-scoped variants. Each vulnerability, failed check and exposed secret is one finding.
package trivy

import (
	"fmt"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/pipeline"
	"github.com/kube-zen/zen-watcher/pkg/sources"
)

// Group is Trivy Operator's API group.
const Group = "aquasecurity.github.io"

// Resources are the report kinds read by default.
func Resources() []schema.GroupVersionResource {
	var out []schema.GroupVersionResource
	for _, r := range []string{
		"vulnerabilityreports", "configauditreports", "exposedsecretreports", "rbacassessmentreports",
		"clustervulnerabilityreports", "clusterconfigauditreports", "clusterrbacassessmentreports",
	} {
		out = append(out, schema.GroupVersionResource{Group: Group, Version: "v1alpha1", Resource: r})
	}
	return out
}

// The labels Trivy Operator puts on a report to name the workload it is about.
const (
	labelKind      = "trivy-operator.resource.kind"
	labelName      = "trivy-operator.resource.name"
	labelNamespace = "trivy-operator.resource.namespace"
	labelContainer = "trivy-operator.container.name"
)

type report struct {
	Report struct {
		Artifact struct {
			Repository string `json:"repository"`
			Tag        string `json:"tag"`
			Digest     string `json:"digest"`
		} `json:"artifact"`
		Registry struct {
			Server string `json:"server"`
		} `json:"registry"`
		Vulnerabilities []vulnerability `json:"vulnerabilities"`
		Checks          []check         `json:"checks"`
		Secrets         []secret        `json:"secrets"`
	} `json:"report"`
}

type vulnerability struct {
	VulnerabilityID  string   `json:"vulnerabilityID"`
	Resource         string   `json:"resource"`
	InstalledVersion string   `json:"installedVersion"`
	FixedVersion     string   `json:"fixedVersion"`
	Severity         string   `json:"severity"`
	Title            string   `json:"title"`
	PrimaryLink      string   `json:"primaryLink"`
	Target           string   `json:"target"`
	Score            *float64 `json:"score"`
}

type check struct {
	CheckID     string   `json:"checkID"`
	Title       string   `json:"title"`
	Description string   `json:"description"`
	Severity    string   `json:"severity"`
	Category    string   `json:"category"`
	Success     bool     `json:"success"`
	Messages    []string `json:"messages"`
	Remediation string   `json:"remediation"`
}

// secret is an exposed secret; its match (the secret text itself) is deliberately not decoded.
type secret struct {
	RuleID   string `json:"ruleID"`
	Title    string `json:"title"`
	Severity string `json:"severity"`
	Category string `json:"category"`
	Target   string `json:"target"`
}

// Parser parses every Trivy report kind.
type Parser struct{}

// ParseObject implements sources.ObjectParser.
func (Parser) ParseObject(obj *unstructured.Unstructured) ([]*pipeline.Event, error) {
	var r report
	if err := sources.FromObject(&unstructured.Unstructured{Object: map[string]any{"report": obj.Object["report"]}}, &r); err != nil {
		return nil, fmt.Errorf("%s %s/%s: %w", obj.GetKind(), obj.GetNamespace(), obj.GetName(), err)
	}
	w := workload(obj)
	container := obj.GetLabels()[labelContainer]
	image := imageOf(&r)
	switch kind := strings.TrimPrefix(obj.GetKind(), "Cluster"); kind {
	case "VulnerabilityReport":
		return vulnerabilities(&r, w, container, image), nil
	case "ConfigAuditReport":
		return checks(&r, w, "misconfiguration"), nil
	case "RbacAssessmentReport":
		return checks(&r, w, "rbac_misconfiguration"), nil
	case "ExposedSecretReport":
		return secrets(&r, w, container, image), nil
	default:
		return nil, fmt.Errorf("unknown Trivy report kind %q", obj.GetKind())
	}
}

// workload is the object a report is about: from Trivy's labels, else the report's controller,
// else the report itself.
func workload(obj *unstructured.Unstructured) v1alpha1.ResourceRef {
	l := obj.GetLabels()
	if kind, name := l[labelKind], l[labelName]; kind != "" && name != "" {
		ns, ok := l[labelNamespace]
		if !ok {
			ns = obj.GetNamespace()
		}
		ref := v1alpha1.ResourceRef{APIVersion: sources.APIVersionOf(kind), Kind: kind, Namespace: ns, Name: name}
		if owner, ok := sources.ControllerOf(obj); ok && owner.Kind == kind {
			ref.APIVersion = owner.APIVersion
		}
		return ref
	}
	if owner, ok := sources.ControllerOf(obj); ok {
		return owner
	}
	return sources.Self(obj)
}

func imageOf(r *report) string {
	a := r.Report.Artifact
	if a.Repository == "" {
		return ""
	}
	img := a.Repository
	if s := r.Report.Registry.Server; s != "" {
		img = s + "/" + img
	}
	if a.Tag != "" {
		img += ":" + a.Tag
	}
	if a.Digest != "" {
		img += "@" + a.Digest
	}
	return img
}

// severity maps Trivy's words; UNKNOWN is Trivy's own word for an unrated entry, not an error.
func severity(s string) v1alpha1.Severity {
	if strings.EqualFold(s, "UNKNOWN") || strings.EqualFold(s, "NONE") {
		return v1alpha1.SeverityInfo
	}
	sev, ok := pipeline.NormalizeSeverity(s)
	if !ok {
		return v1alpha1.Severity(strings.ToLower(s)) // the pipeline counts it and makes it info
	}
	return sev
}

func vulnerabilities(r *report, w v1alpha1.ResourceRef, container, image string) []*pipeline.Event {
	out := make([]*pipeline.Event, 0, len(r.Report.Vulnerabilities))
	for _, v := range r.Report.Vulnerabilities {
		d := map[string]string{
			"vulnerabilityID":  v.VulnerabilityID,
			"package":          v.Resource,
			"installedVersion": v.InstalledVersion,
			"fixedVersion":     v.FixedVersion,
			"primaryLink":      v.PrimaryLink,
			"title":            v.Title,
			"container":        container,
			"image":            image,
			"target":           v.Target,
		}
		if v.Score != nil {
			d["score"] = strconv.FormatFloat(*v.Score, 'f', -1, 64)
		}
		out = append(out, &pipeline.Event{
			Category: v1alpha1.CategorySecurity, Severity: severity(v.Severity), EventType: "vulnerability",
			Resource: w, Rule: v.VulnerabilityID,
			Identity:    container + "\x00" + v.Target + "\x00" + v.Resource + "\x00" + v.InstalledVersion,
			Title:       fmt.Sprintf("%s in %s %s", v.VulnerabilityID, v.Resource, v.InstalledVersion),
			Description: v.Title,
			Details:     d,
			Stateful:    true,
		})
	}
	return out
}

func checks(r *report, w v1alpha1.ResourceRef, eventType string) []*pipeline.Event {
	var out []*pipeline.Event
	for _, c := range r.Report.Checks {
		if c.Success {
			continue
		}
		desc := c.Description
		if len(c.Messages) > 0 {
			desc = strings.Join(c.Messages, "\n")
		}
		out = append(out, &pipeline.Event{
			Category: v1alpha1.CategorySecurity, Severity: severity(c.Severity), EventType: eventType,
			Resource: w, Rule: c.CheckID,
			Title:       c.CheckID + ": " + c.Title,
			Description: desc,
			Details: map[string]string{
				"checkID": c.CheckID, "title": c.Title, "checkCategory": c.Category,
				"description": c.Description, "remediation": c.Remediation,
			},
			Stateful: true,
		})
	}
	return out
}

func secrets(r *report, w v1alpha1.ResourceRef, container, image string) []*pipeline.Event {
	out := make([]*pipeline.Event, 0, len(r.Report.Secrets))
	for _, s := range r.Report.Secrets {
		out = append(out, &pipeline.Event{
			Category: v1alpha1.CategorySecurity, Severity: severity(s.Severity), EventType: "exposed_secret",
			Resource: w, Rule: s.RuleID, Identity: container + "\x00" + s.Target,
			Title:       fmt.Sprintf("%s in %s", s.Title, s.Target),
			Description: fmt.Sprintf("Trivy found a secret (%s) in %s of image %s. The secret itself is not copied here.", s.Title, s.Target, image),
			Details: map[string]string{
				"ruleID": s.RuleID, "title": s.Title, "secretCategory": s.Category, "target": s.Target,
				"container": container, "image": image,
			},
			Stateful: true,
		})
	}
	return out
}
