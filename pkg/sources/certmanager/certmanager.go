// Package certmanager reads cert-manager Certificates (cert-manager.io/v1): a Certificate that is not
// Ready is a high finding, one that expires within the horizon a medium one, and one that has
// expired a critical one. Expiry comes with time, not with a change of the object, so the parser
// is Timed: its objects are looked at again every ResyncPeriod.
package certmanager

import (
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/pipeline"
	"github.com/kube-zen/zen-watcher/pkg/sources"
)

// Resource is the Certificate resource.
func Resource() schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: "cert-manager.io", Version: "v1", Resource: "certificates"}
}

// DefaultHorizon is how far ahead an expiry is reported unless configured.
const DefaultHorizon = 14 * 24 * time.Hour

type certificate struct {
	Spec struct {
		SecretName string   `json:"secretName"`
		CommonName string   `json:"commonName"`
		DNSNames   []string `json:"dnsNames"`
		IssuerRef  struct {
			Name string `json:"name"`
			Kind string `json:"kind"`
		} `json:"issuerRef"`
	} `json:"spec"`
	Status struct {
		Conditions []struct {
			Type    string `json:"type"`
			Status  string `json:"status"`
			Reason  string `json:"reason"`
			Message string `json:"message"`
		} `json:"conditions"`
		NotAfter    string `json:"notAfter"`
		RenewalTime string `json:"renewalTime"`
	} `json:"status"`
}

// Parser reads Certificates.
type Parser struct {
	// Horizon is how far ahead an expiry is reported (DefaultHorizon when zero).
	Horizon time.Duration
	// Resync is how often Certificates are looked at again (an hour when zero).
	Resync time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// ResyncPeriod implements sources.Timed.
func (p Parser) ResyncPeriod() time.Duration {
	if p.Resync > 0 {
		return p.Resync
	}
	return time.Hour
}

// ParseObject implements sources.ObjectParser.
func (p Parser) ParseObject(obj *unstructured.Unstructured) ([]*pipeline.Event, error) {
	var c certificate
	part := map[string]any{"spec": obj.Object["spec"], "status": obj.Object["status"]}
	if err := sources.FromObject(&unstructured.Unstructured{Object: part}, &c); err != nil {
		return nil, fmt.Errorf("certificate %s/%s: %w", obj.GetNamespace(), obj.GetName(), err)
	}
	now := time.Now()
	if p.Now != nil {
		now = p.Now()
	}
	horizon := p.Horizon
	if horizon <= 0 {
		horizon = DefaultHorizon
	}
	base := func() *pipeline.Event {
		return &pipeline.Event{
			Category: v1alpha1.CategorySecurity, Resource: v1alpha1.ResourceRef{
				APIVersion: "cert-manager.io/v1", Kind: "Certificate", Namespace: obj.GetNamespace(), Name: obj.GetName(),
			},
			Details: map[string]string{
				"secretName": c.Spec.SecretName, "commonName": c.Spec.CommonName, "issuer": c.Spec.IssuerRef.Kind + "/" + c.Spec.IssuerRef.Name,
				"notAfter": c.Status.NotAfter, "renewalTime": c.Status.RenewalTime,
			},
			Stateful: true,
		}
	}
	var out []*pipeline.Event
	for _, cond := range c.Status.Conditions {
		if cond.Type != "Ready" || cond.Status == "True" {
			continue
		}
		ev := base()
		ev.Severity, ev.EventType, ev.Rule = v1alpha1.SeverityHigh, "certificate_not_ready", "not-ready"
		ev.Identity = cond.Reason + "\x00" + cond.Message
		ev.Title = fmt.Sprintf("Certificate %s is not ready: %s", obj.GetName(), cond.Reason)
		ev.Description = cond.Message
		ev.Details["reason"] = cond.Reason
		out = append(out, ev)
	}
	if c.Status.NotAfter == "" {
		return out, nil
	}
	notAfter, err := time.Parse(time.RFC3339, c.Status.NotAfter)
	if err != nil {
		return out, fmt.Errorf("certificate %s/%s: status.notAfter %q: %w", obj.GetNamespace(), obj.GetName(), c.Status.NotAfter, err)
	}
	left := notAfter.Sub(now)
	if left > horizon {
		return out, nil
	}
	ev := base()
	ev.Identity = c.Status.NotAfter // a renewed certificate is a new finding when it nears expiry again
	if left <= 0 {
		ev.Severity, ev.EventType, ev.Rule = v1alpha1.SeverityCritical, "certificate_expired", "expired"
		ev.Title = fmt.Sprintf("Certificate %s expired %s ago", obj.GetName(), inWords(-left))
		ev.Description = fmt.Sprintf("Certificate %s/%s (secret %s) expired at %s.", obj.GetNamespace(), obj.GetName(),
			c.Spec.SecretName, c.Status.NotAfter)
	} else {
		ev.Severity, ev.EventType, ev.Rule = v1alpha1.SeverityMedium, "certificate_expiring", "expiring"
		ev.Title = fmt.Sprintf("Certificate %s expires in %s", obj.GetName(), inWords(left))
		ev.Description = fmt.Sprintf("Certificate %s/%s (secret %s) is valid until %s.", obj.GetNamespace(), obj.GetName(),
			c.Spec.SecretName, c.Status.NotAfter)
	}
	return append(out, ev), nil
}

// inWords is a duration as a person reads it in a title: whole days from two days on, else hours,
// else "less than an hour".
func inWords(d time.Duration) string {
	const day = 24 * time.Hour
	switch {
	case d >= 2*day:
		return fmt.Sprintf("%d days", int(d/day))
	case d >= 2*time.Hour:
		return fmt.Sprintf("%d hours", int(d/time.Hour))
	case d >= time.Hour:
		return "1 hour"
	default:
		return "less than an hour"
	}
}
