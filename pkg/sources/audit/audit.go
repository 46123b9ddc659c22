// Package audit reads Kubernetes audit events (audit.k8s.io/v1 EventList, as the API server's audit
// webhook backend posts them; single events and JSON lines are read too) and keeps those a security
// team wants to see: deletes, writes to Secrets and ConfigMaps, RBAC changes, privileged or
// host-namespace Pods, exec and attach, anonymous and denied requests.
package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/pipeline"
	"github.com/kube-zen/zen-watcher/pkg/sources"
)

type objectRef struct {
	Resource    string `json:"resource"`
	Namespace   string `json:"namespace"`
	Name        string `json:"name"`
	APIGroup    string `json:"apiGroup"`
	APIVersion  string `json:"apiVersion"`
	Subresource string `json:"subresource"`
}

type event struct {
	Kind       string `json:"kind"`
	AuditID    string `json:"auditID"`
	Stage      string `json:"stage"`
	RequestURI string `json:"requestURI"`
	Verb       string `json:"verb"`
	User       struct {
		Username string   `json:"username"`
		Groups   []string `json:"groups"`
	} `json:"user"`
	SourceIPs      []string   `json:"sourceIPs"`
	UserAgent      string     `json:"userAgent"`
	ObjectRef      *objectRef `json:"objectRef"`
	ResponseStatus *struct {
		Code    int    `json:"code"`
		Reason  string `json:"reason"`
		Message string `json:"message"`
	} `json:"responseStatus"`
	RequestObject            json.RawMessage `json:"requestObject"`
	ResponseObject           json.RawMessage `json:"responseObject"`
	RequestReceivedTimestamp string          `json:"requestReceivedTimestamp"`
}

// Parser parses audit events.
type Parser struct {
	// IgnoreUser is a user whose requests are no findings: zen-watcher's own. Its cleanup deletes,
	// Lease writes and Observation writes are audited too, and as findings they would become
	// Observations that expire, whose deletes are audited, and so on for ever.
	IgnoreUser string
	// MaxEventBytes bounds what is kept of one event (sources.DefaultMaxItemBytes when zero). An
	// event over it loses its largest members, the request and response objects in practice, as
	// the API server's own truncating backend drops them, and is still judged on the rest: one
	// large object must not cost the batch it came in.
	MaxEventBytes int
}

// ParsePayload implements sources.PayloadParser.
func (p Parser) ParsePayload(body []byte) ([]*pipeline.Event, error) {
	out, _, err := p.ParseTallied(body)
	return out, err
}

// Reasons an audit event is no finding, as ParseTallied counts them.
const (
	IgnoredOwnRequest = "own_request"   // made by zen-watcher itself (Parser.IgnoreUser)
	IgnoredStage      = "stage"         // not the stage a finding is judged at
	IgnoredNoFinding  = "not_a_finding" // finished, but nothing a finding is made of
)

// ParseTallied implements sources.TallyingParser.
func (p Parser) ParseTallied(body []byte) ([]*pipeline.Event, sources.Tally, error) {
	return p.ParseStream(bytes.NewReader(body))
}

// ParseStream implements sources.StreamingParser: each event of the body (an EventList's items,
// not the list) counts once, as a finding or under the reason it is none, and an event that had
// members cut counts in Tally.Cut besides.
func (p Parser) ParseStream(r io.Reader) ([]*pipeline.Event, sources.Tally, error) {
	tally := sources.Tally{Ignored: map[string]int{}}
	var out []*pipeline.Event
	opts := sources.StreamOptions{MaxItemBytes: p.MaxEventBytes, ListKey: "items"}
	err := sources.StreamItems(r, opts, func(raw json.RawMessage, cut []string) error {
		var e event
		if err := json.Unmarshal(raw, &e); err != nil {
			return fmt.Errorf("not an audit event: %w", err)
		}
		if e.AuditID == "" || e.Verb == "" {
			if len(cut) > 0 {
				return fmt.Errorf("not an audit event: auditID and verb are required (members cut for size: %s)", strings.Join(cut, ", "))
			}
			return errors.New("not an audit event: auditID and verb are required")
		}
		tally.Events++
		if len(cut) > 0 {
			tally.Cut++
		}
		if p.IgnoreUser != "" && e.User.Username == p.IgnoreUser {
			tally.Ignored[IgnoredOwnRequest]++
			return nil
		}
		f, why := finding(&e)
		if f == nil {
			tally.Ignored[why]++
			return nil
		}
		if len(cut) > 0 {
			f.Details["cut"] = strings.Join(cut, ",")
		}
		out = append(out, f)
		return nil
	})
	if err != nil {
		return nil, sources.Tally{}, err
	}
	return out, tally, nil
}

// verdict is what an audit event is, as a finding.
type verdict struct {
	eventType string
	severity  v1alpha1.Severity
	rule      string
	why       string
}

// finding is the finding an event is, or nil and the reason it is none.
func finding(e *event) (*pipeline.Event, string) {
	v, why := classify(e)
	if why != "" {
		return nil, why
	}
	ref := objectRef{}
	if e.ObjectRef != nil {
		ref = *e.ObjectRef
	}
	if ref.Name == "" {
		ref.Name = createdName(e) // a create with generateName: the name is in the response
	}
	detected, _ := time.Parse(time.RFC3339Nano, e.RequestReceivedTimestamp)
	code := 0
	if e.ResponseStatus != nil {
		code = e.ResponseStatus.Code
	}
	target := ref.Resource
	if ref.Subresource != "" {
		target += "/" + ref.Subresource
	}
	if ref.Name != "" {
		target += " " + ref.Name
	}
	if ref.Namespace != "" {
		target += " in " + ref.Namespace
	}
	who := e.User.Username
	if who == "" {
		who = "an unauthenticated client" // a failed authentication names no user
	}
	return &pipeline.Event{
		Category: v1alpha1.CategorySecurity, Severity: v.severity, EventType: v.eventType,
		Resource: resource(ref), Rule: v.rule,
		Identity:    e.User.Username + "\x00" + e.Verb + "\x00" + ref.Subresource,
		Instance:    e.AuditID,
		Title:       fmt.Sprintf("%s %s %s", who, e.Verb, target),
		Description: fmt.Sprintf("%s: %s %s %s (HTTP %d).", v.why, who, e.Verb, e.RequestURI, code),
		Details: map[string]string{
			"auditID": e.AuditID, "user": e.User.Username, "groups": strings.Join(e.User.Groups, ","),
			"verb": e.Verb, "requestURI": e.RequestURI, "sourceIPs": strings.Join(e.SourceIPs, ","),
			"userAgent": e.UserAgent, "code": strconv.Itoa(code), "stage": e.Stage,
			"subresource": ref.Subresource, "resource": ref.Resource,
		},
		DetectedAt: detected,
	}, ""
}

// classify decides whether an audit event is a finding, and which (the most telling reason wins),
// or why it is none.
func classify(e *event) (verdict, string) {
	ref := objectRef{}
	if e.ObjectRef != nil {
		ref = *e.ObjectRef
	}
	streaming := ref.Resource == "pods" && (ref.Subresource == "exec" || ref.Subresource == "attach" || ref.Subresource == "portforward")
	code := 0
	if e.ResponseStatus != nil {
		code = e.ResponseStatus.Code
	}
	// A finished request is reported at ResponseComplete; exec and attach are long running, and what
	// matters is that they started. A failed authentication is audited at ResponseStarted only,
	// with no user.
	started := e.Stage == "ResponseStarted" && (streaming || code == 401)
	if e.Stage != "ResponseComplete" && !started {
		return verdict{}, IgnoredStage
	}
	switch {
	case e.User.Username == "system:anonymous":
		return verdict{"anonymous_request", v1alpha1.SeverityHigh, "anonymous-request", "An unauthenticated request was made"}, ""
	case code == 401 || code == 403:
		return verdict{"request_denied", v1alpha1.SeverityMedium, "request-denied", "A request was denied"}, ""
	case code >= 400:
		return verdict{}, IgnoredNoFinding
	case streaming:
		return verdict{"pod_" + ref.Subresource, v1alpha1.SeverityHigh, "pod-" + ref.Subresource, "Someone opened a session into a running container"}, ""
	}
	write := e.Verb == "create" || e.Verb == "update" || e.Verb == "patch" || e.Verb == "delete" || e.Verb == "deletecollection"
	if !write {
		return verdict{}, IgnoredNoFinding
	}
	switch {
	case ref.Resource == "pods" && ref.Subresource == "" && e.Verb == "create":
		if why := hostAccess(e.RequestObject); why != "" {
			return verdict{"privileged_pod_created", v1alpha1.SeverityHigh, "privileged-pod", "A pod was created with " + why}, ""
		}
	case ref.APIGroup == "rbac.authorization.k8s.io":
		sev := v1alpha1.SeverityHigh
		// A patch names only what it changes (the subjects, say); the response, at the
		// RequestResponse level, names the role.
		if bindsClusterAdmin(e.RequestObject) || bindsClusterAdmin(e.ResponseObject) {
			sev = v1alpha1.SeverityCritical
		}
		return verdict{"rbac_modified", sev, "rbac-change", "RBAC was changed"}, ""
	case ref.Resource == "secrets":
		sev := v1alpha1.SeverityMedium
		if ref.Namespace == "kube-system" {
			sev = v1alpha1.SeverityHigh
		}
		return verdict{"secret_modified", sev, "secret-write", "A Secret was written"}, ""
	case ref.Resource == "configmaps":
		return verdict{"configmap_modified", v1alpha1.SeverityLow, "configmap-write", "A ConfigMap was written"}, ""
	}
	if e.Verb == "delete" || e.Verb == "deletecollection" {
		return verdict{"resource_deleted", v1alpha1.SeverityLow, "delete", "An object was deleted"}, ""
	}
	return verdict{}, IgnoredNoFinding
}

type podSpec struct {
	Spec struct {
		HostNetwork bool `json:"hostNetwork"`
		HostPID     bool `json:"hostPID"`
		HostIPC     bool `json:"hostIPC"`
		Containers  []struct {
			SecurityContext *struct {
				Privileged *bool `json:"privileged"`
			} `json:"securityContext"`
		} `json:"containers"`
	} `json:"spec"`
}

// hostAccess says how a pod reaches into its node (privileged containers, host namespaces), or "".
// The request object is there at the Request and RequestResponse audit levels only.
func hostAccess(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var p podSpec
	if json.Unmarshal(raw, &p) != nil {
		return ""
	}
	var why []string
	for _, c := range p.Spec.Containers {
		if c.SecurityContext != nil && c.SecurityContext.Privileged != nil && *c.SecurityContext.Privileged {
			why = append(why, "a privileged container")
			break
		}
	}
	for name, on := range map[string]bool{"hostNetwork": p.Spec.HostNetwork, "hostPID": p.Spec.HostPID, "hostIPC": p.Spec.HostIPC} {
		if on {
			why = append(why, name)
		}
	}
	return strings.Join(why, ", ")
}

func createdName(e *event) string {
	var o struct {
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	for _, raw := range []json.RawMessage{e.ResponseObject, e.RequestObject} {
		if len(raw) > 0 && json.Unmarshal(raw, &o) == nil && o.Metadata.Name != "" {
			return o.Metadata.Name
		}
	}
	return ""
}

func bindsClusterAdmin(raw json.RawMessage) bool {
	var b struct {
		RoleRef struct {
			Name string `json:"name"`
		} `json:"roleRef"`
	}
	return len(raw) > 0 && json.Unmarshal(raw, &b) == nil && b.RoleRef.Name == "cluster-admin"
}

// kinds are the kinds of the resources Kubernetes serves itself, and zen-watcher's, by their
// plural as audit events name them. An audit event names no kind, and a plural is no kind: a
// resource not here gets none (its plural is in the details).
var kinds = map[string]string{
	"pods": "Pod", "secrets": "Secret", "configmaps": "ConfigMap", "namespaces": "Namespace",
	"serviceaccounts": "ServiceAccount", "services": "Service", "nodes": "Node", "endpoints": "Endpoints",
	"events": "Event", "limitranges": "LimitRange", "resourcequotas": "ResourceQuota",
	"persistentvolumeclaims": "PersistentVolumeClaim", "persistentvolumes": "PersistentVolume",
	"replicationcontrollers": "ReplicationController", "podtemplates": "PodTemplate",
	"deployments": "Deployment", "daemonsets": "DaemonSet", "statefulsets": "StatefulSet",
	"replicasets": "ReplicaSet", "controllerrevisions": "ControllerRevision", "jobs": "Job", "cronjobs": "CronJob",
	"horizontalpodautoscalers": "HorizontalPodAutoscaler", "poddisruptionbudgets": "PodDisruptionBudget",
	"roles": "Role", "clusterroles": "ClusterRole", "rolebindings": "RoleBinding", "clusterrolebindings": "ClusterRoleBinding",
	"ingresses": "Ingress", "ingressclasses": "IngressClass", "networkpolicies": "NetworkPolicy",
	"endpointslices": "EndpointSlice", "leases": "Lease", "priorityclasses": "PriorityClass",
	"storageclasses": "StorageClass", "volumeattachments": "VolumeAttachment", "csidrivers": "CSIDriver", "csinodes": "CSINode",
	"runtimeclasses": "RuntimeClass", "certificatesigningrequests": "CertificateSigningRequest",
	"mutatingwebhookconfigurations":   "MutatingWebhookConfiguration",
	"validatingwebhookconfigurations": "ValidatingWebhookConfiguration",
	"validatingadmissionpolicies":     "ValidatingAdmissionPolicy", "validatingadmissionpolicybindings": "ValidatingAdmissionPolicyBinding",
	"customresourcedefinitions": "CustomResourceDefinition", "apiservices": "APIService", "flowschemas": "FlowSchema",
	"prioritylevelconfigurations": "PriorityLevelConfiguration",
	"observations":                "Observation", "ingesters": "Ingester",
}

func resource(ref objectRef) v1alpha1.ResourceRef {
	kind := kinds[ref.Resource]
	apiVersion := ref.APIVersion
	if ref.APIGroup != "" && ref.APIVersion != "" {
		apiVersion = ref.APIGroup + "/" + ref.APIVersion
	}
	ns := ref.Namespace
	if kind == "Namespace" {
		ns = ref.Name
	}
	return v1alpha1.ResourceRef{APIVersion: apiVersion, Kind: kind, Namespace: ns, Name: ref.Name}
}
