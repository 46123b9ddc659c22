package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Category is the broad kind of a finding.
// +kubebuilder:validation:Enum=security;compliance;performance;operations;cost
type Category string

// The categories a finding can have.
const (
	CategorySecurity    Category = "security"
	CategoryCompliance  Category = "compliance"
	CategoryPerformance Category = "performance"
	CategoryOperations  Category = "operations"
	CategoryCost        Category = "cost"
)

// Severity is how urgent a finding is, on one scale for every tool.
// +kubebuilder:validation:Enum=critical;high;medium;low;info
type Severity string

// The severities, from the most to the least urgent.
const (
	SeverityCritical Severity = "critical"
	SeverityHigh     Severity = "high"
	SeverityMedium   Severity = "medium"
	SeverityLow      Severity = "low"
	SeverityInfo     Severity = "info"
)

// Rank orders severities: critical is 4, info is 0, and an unknown severity -1, so that
// "at least medium" is a single integer comparison on the hot path.
func (s Severity) Rank() int {
	switch s {
	case SeverityCritical:
		return 4
	case SeverityHigh:
		return 3
	case SeverityMedium:
		return 2
	case SeverityLow:
		return 1
	case SeverityInfo:
		return 0
	}
	return -1
}

// Labels zen-watcher sets on every Observation, so that selectors and RBAC can use them.
const (
	LabelSource   = GroupName + "/source"
	LabelSeverity = GroupName + "/severity"
	LabelCategory = GroupName + "/category"
	// LabelExpiresAt holds, for an Observation with its own TTL, the Unix second after which it may
	// be deleted: cleanup decides from metadata alone. Without it, the global TTL applies from the
	// creation time.
	LabelExpiresAt = GroupName + "/expires-at"
)

// Bounds on what one Observation may carry; the API server enforces them through the CRD schema and
// the pipeline truncates to them before writing, so a large finding is shortened, never rejected.
const (
	MaxTitleLength       = 512
	MaxDescriptionLength = 4096
	MaxDetails           = 64
	MaxDetailValueLength = 4096
)

// DetailValue is one value in an Observation's details.
// +kubebuilder:validation:MaxLength=4096
type DetailValue string

// ResourceRef names the Kubernetes object a finding is about.
type ResourceRef struct {
	// APIVersion of the affected object, for example "v1" or "apps/v1".
	// +optional
	// +kubebuilder:validation:MaxLength=253
	APIVersion string `json:"apiVersion,omitempty"`
	// Kind of the affected object, for example "Pod".
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Kind string `json:"kind,omitempty"`
	// Namespace of the affected object; empty for cluster-scoped objects.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace,omitempty"`
	// Name of the affected object.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name,omitempty"`
}

// ObservationSpec is the normalized finding.
type ObservationSpec struct {
	// Source is the tool or Ingester that reported the finding, for example "trivy" or "falco".
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Source string `json:"source"`
	// Category is the broad kind of the finding.
	Category Category `json:"category"`
	// Severity on zen-watcher's single scale.
	Severity Severity `json:"severity"`
	// EventType says what happened, in lower snake case, for example "vulnerability" or "policy_violation".
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:Pattern=`^[a-z0-9_]+$`
	EventType string `json:"eventType"`
	// Resource is the object the finding is about.
	// +optional
	Resource ResourceRef `json:"resource,omitempty"`
	// Title is a one-line summary.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Title string `json:"title,omitempty"`
	// Description is the longer explanation.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	Description string `json:"description,omitempty"`
	// Details holds the finding's identity and tool-specific facts (CVE id, rule, policy, versions...).
	// +optional
	// +kubebuilder:validation:MaxProperties=64
	Details map[string]DetailValue `json:"details,omitempty"`
	// DetectedAt is when the tool reported the finding.
	// +optional
	DetectedAt metav1.Time `json:"detectedAt,omitempty"`
	// Fingerprint is the dedup strategy's hash of the finding.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:Pattern=`^[a-z0-9:-]*$`
	Fingerprint string `json:"fingerprint,omitempty"`
	// TTLSecondsAfterCreation overrides how long the Observation is kept.
	// +optional
	// +kubebuilder:validation:Minimum=60
	// +kubebuilder:validation:Maximum=31536000
	TTLSecondsAfterCreation *int64 `json:"ttlSecondsAfterCreation,omitempty"`
}

// ObservationStatus is what zen-watcher learned about the finding after it was first written.
type ObservationStatus struct {
	// Count is how many times the finding was reported, when the source keeps counting.
	// +optional
	// +kubebuilder:validation:Minimum=0
	Count int64 `json:"count,omitempty"`
	// LastSeenAt is when the finding was last reported.
	// +optional
	LastSeenAt *metav1.Time `json:"lastSeenAt,omitempty"`
}

// Observation is one finding from a security, compliance or operations tool, normalized.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=obs,categories=zen
// +kubebuilder:printcolumn:name="Source",type=string,JSONPath=`.spec.source`
// +kubebuilder:printcolumn:name="Severity",type=string,JSONPath=`.spec.severity`
// +kubebuilder:printcolumn:name="Category",type=string,JSONPath=`.spec.category`
// +kubebuilder:printcolumn:name="Type",type=string,JSONPath=`.spec.eventType`
// +kubebuilder:printcolumn:name="Kind",type=string,JSONPath=`.spec.resource.kind`
// +kubebuilder:printcolumn:name="Resource",type=string,JSONPath=`.spec.resource.name`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Observation struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ObservationSpec   `json:"spec"`
	Status ObservationStatus `json:"status,omitempty"`
}

// ObservationList is a list of Observations.
// +kubebuilder:object:root=true
type ObservationList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Observation `json:"items"`
}
