package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Adapter names the code that turns a tool's objects or payloads into findings.
// +kubebuilder:validation:Enum=trivy;kyverno;falco;audit;kubebench;checkov;certmanager;k8sevents;generic
type Adapter string

// The adapters zen-watcher ships. Generic maps any object or payload with the Ingester's mapping.
const (
	AdapterTrivy       Adapter = "trivy"
	AdapterKyverno     Adapter = "kyverno"
	AdapterFalco       Adapter = "falco"
	AdapterAudit       Adapter = "audit"
	AdapterKubeBench   Adapter = "kubebench"
	AdapterCheckov     Adapter = "checkov"
	AdapterCertManager Adapter = "certmanager"
	AdapterK8sEvents   Adapter = "k8sevents"
	AdapterGeneric     Adapter = "generic"
)

// Order is the order of the filter and dedup stages for a source.
// +kubebuilder:validation:Enum=filter_first;dedup_first;auto
type Order string

// The orders; auto lets the leader choose from the source's traffic.
const (
	OrderFilterFirst Order = "filter_first"
	OrderDedupFirst  Order = "dedup_first"
	OrderAuto        Order = "auto"
)

// DedupStrategy is how findings are recognized as already recorded.
// +kubebuilder:validation:Enum=fingerprint;event-stream;key
type DedupStrategy string

// The dedup strategies.
const (
	// DedupFingerprint hashes the normalized content of the finding.
	DedupFingerprint DedupStrategy = "fingerprint"
	// DedupEventStream lets at most maxEventsPerWindow findings per fingerprint through a window.
	DedupEventStream DedupStrategy = "event-stream"
	// DedupKey hashes an explicit list of fields.
	DedupKey DedupStrategy = "key"
)

// WebhookAuthType is how a webhook sender proves who it is.
// +kubebuilder:validation:Enum=none;bearer;hmac;mtls
type WebhookAuthType string

// The webhook authentication modes; none must be chosen explicitly.
const (
	WebhookAuthNone   WebhookAuthType = "none"
	WebhookAuthBearer WebhookAuthType = "bearer"
	WebhookAuthHMAC   WebhookAuthType = "hmac"
	WebhookAuthMTLS   WebhookAuthType = "mtls"
)

// InformerSource reads a tool's objects from the API server.
type InformerSource struct {
	// Group of the resource; empty for the core group.
	// +optional
	Group string `json:"group,omitempty"`
	// Version of the resource.
	// +kubebuilder:validation:MinLength=1
	Version string `json:"version"`
	// Resource is the plural resource name, for example "vulnerabilityreports".
	// +kubebuilder:validation:MinLength=1
	Resource string `json:"resource"`
	// Namespaces limits the watch to these namespaces; empty means all.
	// +optional
	// +kubebuilder:validation:MaxItems=256
	Namespaces []string `json:"namespaces,omitempty"`
	// LabelSelector filters the objects by label, in the API server's syntax.
	// +optional
	LabelSelector string `json:"labelSelector,omitempty"`
	// FieldSelector filters the objects by field, in the API server's syntax.
	// +optional
	FieldSelector string `json:"fieldSelector,omitempty"`
}

// SecretKeyRef names a key of a Secret in the Ingester's namespace.
type SecretKeyRef struct {
	// Name of the Secret.
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	// Key in the Secret.
	// +kubebuilder:validation:MinLength=1
	Key string `json:"key"`
}

// WebhookAuth configures how a webhook's senders authenticate.
type WebhookAuth struct {
	// Type of authentication. "none" must be chosen explicitly: a webhook without auth does not start.
	Type WebhookAuthType `json:"type"`
	// SecretRef holds the bearer token, the HMAC key, or the CA bundle for mTLS.
	// +optional
	SecretRef *SecretKeyRef `json:"secretRef,omitempty"`
	// SignatureHeader carries the HMAC-SHA256 signature of "<timestamp>.<body>" (hmac only).
	// +optional
	SignatureHeader string `json:"signatureHeader,omitempty"`
}

// WebhookSource receives pushed payloads over HTTP.
type WebhookSource struct {
	// Path the webhook is served on, for example "/falco".
	// +kubebuilder:validation:Pattern=`^/[A-Za-z0-9/_.-]*$`
	// +kubebuilder:validation:MaxLength=256
	Path string `json:"path"`
	// Auth configures sender authentication.
	Auth WebhookAuth `json:"auth"`
}

// FieldMapping copies one value of the tool's object or payload into the finding.
type FieldMapping struct {
	// From is a JSONPath-style path into the object, for example ".spec.rule".
	// +kubebuilder:validation:MinLength=1
	From string `json:"from"`
	// To is a field of the finding (severity, eventType, category, title, description, resource.kind,
	// resource.namespace, resource.name) or "details.<key>".
	// +kubebuilder:validation:MinLength=1
	To string `json:"to"`
}

// Mapping turns a generic object or payload into findings.
type Mapping struct {
	// Fields copied from the object into the finding.
	// +optional
	Fields []FieldMapping `json:"fields,omitempty"`
	// SeverityMap translates the tool's severity words into zen-watcher's severities.
	// +optional
	SeverityMap map[string]Severity `json:"severityMap,omitempty"`
	// Category every finding of this source has.
	// +optional
	Category Category `json:"category,omitempty"`
	// EventType every finding of this source has, unless mapped from a field.
	// +optional
	// +kubebuilder:validation:Pattern=`^[a-z0-9_]*$`
	EventType string `json:"eventType,omitempty"`
	// TitleTemplate is the title: text with fields of the object, e.g. "{{.check}} on {{.target.pod}}";
	// a field is a JSONPath as in fields[].from, and one the object lacks renders empty.
	// +optional
	TitleTemplate string `json:"titleTemplate,omitempty"`
	// DescriptionTemplate is the description, a template as TitleTemplate is.
	// +optional
	DescriptionTemplate string `json:"descriptionTemplate,omitempty"`
}

// FilterSpec decides which findings are worth an Observation.
type FilterSpec struct {
	// MinSeverity drops findings less urgent than this.
	// +optional
	MinSeverity Severity `json:"minSeverity,omitempty"`
	// IncludeNamespaces keeps only findings in these namespaces, when set.
	// +optional
	IncludeNamespaces []string `json:"includeNamespaces,omitempty"`
	// ExcludeNamespaces drops findings in these namespaces.
	// +optional
	ExcludeNamespaces []string `json:"excludeNamespaces,omitempty"`
	// Kinds keeps only findings about these resource kinds, when set.
	// +optional
	Kinds []string `json:"kinds,omitempty"`
	// EventTypes keeps only these event types, when set.
	// +optional
	EventTypes []string `json:"eventTypes,omitempty"`
	// Categories keeps only these categories, when set.
	// +optional
	Categories []Category `json:"categories,omitempty"`
	// ExcludeRules drops findings whose rule (the CVE, rule, policy or check id) is listed.
	// +optional
	ExcludeRules []string `json:"excludeRules,omitempty"`
	// Expression is a CEL expression over the finding that must be true to keep it.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	Expression string `json:"expression,omitempty"`
}

// DedupSpec configures how repeated findings are recognized.
type DedupSpec struct {
	// Enabled turns dedup on; it is on unless set to false.
	// +optional
	Enabled *bool `json:"enabled,omitempty"`
	// Strategy is the dedup algorithm.
	// +optional
	Strategy DedupStrategy `json:"strategy,omitempty"`
	// Window is how long a finding is remembered, as a duration such as "5m".
	// +optional
	Window *metav1.Duration `json:"window,omitempty"`
	// MaxEventsPerWindow is how many findings per fingerprint pass in a window (event-stream only).
	// +optional
	// +kubebuilder:validation:Minimum=1
	MaxEventsPerWindow int32 `json:"maxEventsPerWindow,omitempty"`
	// Fields are the finding's fields that make its key (key only), for example [source, kind, name].
	// +optional
	Fields []string `json:"fields,omitempty"`
}

// RateLimitSpec caps how many findings of a source enter dedup and the writer. Findings over the
// limit are counted as rate limited, never as duplicates; it is off unless set.
type RateLimitSpec struct {
	// EventsPerSecond is the sustained rate.
	// +kubebuilder:validation:Minimum=1
	EventsPerSecond int32 `json:"eventsPerSecond"`
	// Burst is how many findings may pass at once above the rate (default: EventsPerSecond).
	// +optional
	// +kubebuilder:validation:Minimum=1
	Burst int32 `json:"burst,omitempty"`
}

// ProcessingSpec configures the pipeline for one source.
type ProcessingSpec struct {
	// Filter decides which findings are kept.
	// +optional
	Filter *FilterSpec `json:"filter,omitempty"`
	// Dedup decides which findings were already recorded.
	// +optional
	Dedup *DedupSpec `json:"dedup,omitempty"`
	// Order of the filter and dedup stages.
	// +optional
	Order Order `json:"order,omitempty"`
	// RateLimit caps the source's findings per second; off unless set.
	// +optional
	RateLimit *RateLimitSpec `json:"rateLimit,omitempty"`
}

// IngesterSpec configures one source of findings.
// +kubebuilder:validation:XValidation:rule="has(self.informer) != has(self.webhook)",message="exactly one of informer or webhook must be set"
type IngesterSpec struct {
	// Source is the name findings of this Ingester carry in their Observations.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Source string `json:"source"`
	// Adapter is the code that reads the tool's objects or payloads.
	Adapter Adapter `json:"adapter"`
	// Informer reads objects from the API server.
	// +optional
	Informer *InformerSource `json:"informer,omitempty"`
	// Webhook receives pushed payloads.
	// +optional
	Webhook *WebhookSource `json:"webhook,omitempty"`
	// Mapping turns objects or payloads into findings (generic adapter).
	// +optional
	Mapping *Mapping `json:"mapping,omitempty"`
	// AdapterOptions tunes an adapter: resultsKey (kubebench, checkov: the ConfigMap key, default
	// results.json), expiryHorizon (certmanager: how far ahead expiry is reported, default 336h),
	// maxBodyBytes (webhooks: the largest body accepted, default 1048576, or 268435456 for an audit
	// body read one event at a time, with bearer, mtls or no auth), maxEventBytes (audit: what is
	// kept of one event, default 262144; a larger one is judged without its largest members),
	// includeOwnRequests (audit: "true" reports zen-watcher's own requests too).
	// +optional
	// +kubebuilder:validation:MaxProperties=16
	AdapterOptions map[string]string `json:"adapterOptions,omitempty"`
	// Processing configures filter, dedup and their order.
	// +optional
	Processing ProcessingSpec `json:"processing,omitempty"`
	// TTLSecondsAfterCreation is how long this source's Observations are kept.
	// +optional
	// +kubebuilder:validation:Minimum=60
	// +kubebuilder:validation:Maximum=31536000
	TTLSecondsAfterCreation *int64 `json:"ttlSecondsAfterCreation,omitempty"`
}

// IngesterStatus is what zen-watcher reports about a source.
type IngesterStatus struct {
	// ObservedGeneration is the generation of the spec this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions: Ready says whether the source runs.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// LastError is the last error the source met, if any.
	// +optional
	LastError string `json:"lastError,omitempty"`
	// EventsSeen counts the findings the source produced, summed over the live replicas when
	// several share the work (the leader writes the status).
	// +optional
	EventsSeen int64 `json:"eventsSeen,omitempty"`
	// ObservationsWritten counts the Observations written for the source, summed likewise.
	// +optional
	ObservationsWritten int64 `json:"observationsWritten,omitempty"`
	// Order is the order of the filter and dedup stages in force.
	// +optional
	Order Order `json:"order,omitempty"`
}

// Ingester configures one source of findings; zen-watcher applies changes without a restart.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:categories=zen
// +kubebuilder:printcolumn:name="Source",type=string,JSONPath=`.spec.source`
// +kubebuilder:printcolumn:name="Adapter",type=string,JSONPath=`.spec.adapter`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Order",type=string,JSONPath=`.status.order`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Ingester struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   IngesterSpec   `json:"spec"`
	Status IngesterStatus `json:"status,omitempty"`
}

// IngesterList is a list of Ingesters.
// +kubebuilder:object:root=true
type IngesterList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Ingester `json:"items"`
}
