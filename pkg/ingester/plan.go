// Package ingester runs the sources that Ingester objects describe: it starts, restarts and stops
// them as Ingesters change, keeps the pipeline's per-source configuration in step, runs a default
// set of sources while there is no Ingester at all, and reports each Ingester's status.
package ingester

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/server"
	"github.com/kube-zen/zen-watcher/pkg/sources"
	"github.com/kube-zen/zen-watcher/pkg/sources/audit"
	"github.com/kube-zen/zen-watcher/pkg/sources/certmanager"
	"github.com/kube-zen/zen-watcher/pkg/sources/checkov"
	"github.com/kube-zen/zen-watcher/pkg/sources/falco"
	"github.com/kube-zen/zen-watcher/pkg/sources/generic"
	"github.com/kube-zen/zen-watcher/pkg/sources/k8sevents"
	"github.com/kube-zen/zen-watcher/pkg/sources/kubebench"
	"github.com/kube-zen/zen-watcher/pkg/sources/kyverno"
	"github.com/kube-zen/zen-watcher/pkg/sources/trivy"
)

// plan is what running one source takes: the informers or the webhook, with their parsers.
type plan struct {
	source    string
	informers []informerPlan
	webhook   *server.Route
	// key changes exactly when the running source must be restarted (not for processing changes).
	key string
}

type informerPlan struct {
	cfg    sources.InformerConfig
	parser sources.ObjectParser
}

// SecretReader reads one key of a Secret; the webhook's credentials come through it.
type SecretReader interface {
	SecretValue(ctx context.Context, namespace, name, key string) ([]byte, error)
}

// planFor compiles an Ingester into a plan; self is the user zen-watcher's own API requests are
// made as. Every error names what in the spec is wrong.
func planFor(ctx context.Context, ing *v1alpha1.Ingester, secrets SecretReader, self string) (*plan, error) {
	spec := &ing.Spec
	p := &plan{source: spec.Source}
	switch {
	case spec.Informer != nil:
		parser, err := objectParser(spec)
		if err != nil {
			return nil, err
		}
		inf := spec.Informer
		p.informers = []informerPlan{{parser: parser, cfg: sources.InformerConfig{
			Source:        spec.Source,
			GVR:           schema.GroupVersionResource{Group: inf.Group, Version: inf.Version, Resource: inf.Resource},
			Namespaces:    inf.Namespaces,
			LabelSelector: inf.LabelSelector,
			FieldSelector: inf.FieldSelector,
		}}}
	case spec.Webhook != nil:
		route, err := webhookRoute(ctx, ing, secrets, self)
		if err != nil {
			return nil, err
		}
		p.webhook = route
	default:
		return nil, fmt.Errorf("spec: one of informer or webhook is required")
	}
	p.key = restartKey(spec)
	return p, nil
}

// restartKey hashes what the running source depends on; processing is applied without a restart.
func restartKey(spec *v1alpha1.IngesterSpec) string {
	b, _ := json.Marshal([]any{spec.Source, spec.Adapter, spec.Informer, spec.Webhook, spec.Mapping, spec.AdapterOptions})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

func objectParser(spec *v1alpha1.IngesterSpec) (sources.ObjectParser, error) {
	opts := spec.AdapterOptions
	switch spec.Adapter {
	case v1alpha1.AdapterTrivy:
		return trivy.Parser{}, nil
	case v1alpha1.AdapterKyverno:
		return kyverno.Parser{}, nil
	case v1alpha1.AdapterK8sEvents:
		return k8sevents.Parser{}, nil
	case v1alpha1.AdapterKubeBench:
		return kubebench.Parser{Key: opts["resultsKey"]}, nil
	case v1alpha1.AdapterCheckov:
		return checkov.Parser{Key: opts["resultsKey"]}, nil
	case v1alpha1.AdapterCertManager:
		p := certmanager.Parser{}
		if h := opts["expiryHorizon"]; h != "" {
			d, err := time.ParseDuration(h)
			if err != nil || d <= 0 {
				return nil, fmt.Errorf("adapterOptions.expiryHorizon %q: want a positive duration such as 336h", h)
			}
			p.Horizon = d
		}
		return p, nil
	case v1alpha1.AdapterGeneric:
		return generic.New(spec.Mapping)
	}
	return nil, fmt.Errorf("adapter %s reads webhooks, not objects: set spec.webhook", spec.Adapter)
}

func payloadParser(spec *v1alpha1.IngesterSpec) (sources.PayloadParser, error) {
	switch spec.Adapter {
	case v1alpha1.AdapterFalco:
		return falco.Parser{}, nil
	case v1alpha1.AdapterAudit:
		return audit.Parser{}, nil
	case v1alpha1.AdapterGeneric:
		return generic.New(spec.Mapping)
	}
	return nil, fmt.Errorf("adapter %s reads objects, not webhooks: set spec.informer", spec.Adapter)
}

func webhookRoute(ctx context.Context, ing *v1alpha1.Ingester, secrets SecretReader, self string) (*server.Route, error) {
	spec := &ing.Spec
	parser, err := payloadParser(spec)
	if err != nil {
		return nil, err
	}
	if spec.Adapter == v1alpha1.AdapterAudit {
		if parser, err = auditParser(spec.AdapterOptions, self); err != nil {
			return nil, err
		}
	}
	route := &server.Route{Path: spec.Webhook.Path, Source: spec.Source, Parser: parser}
	if route.MaxBodyBytes, err = byteOption(spec.AdapterOptions, "maxBodyBytes"); err != nil {
		return nil, err
	}
	auth, err := webhookAuth(ctx, ing, secrets)
	if err != nil {
		return nil, err
	}
	route.Auth = auth
	return route, nil
}

// auditParser is the audit adapter's parser as its options shape it.
func auditParser(opts map[string]string, self string) (audit.Parser, error) {
	var p audit.Parser
	switch own := opts["includeOwnRequests"]; own {
	case "", "false":
		p.IgnoreUser = self
	case "true":
	default:
		return p, fmt.Errorf("adapterOptions.includeOwnRequests %q: want true or false", own)
	}
	n, err := byteOption(opts, "maxEventBytes")
	p.MaxEventBytes = int(n)
	return p, err
}

// byteOption reads an adapter option that is a positive number of bytes; zero when it is unset.
func byteOption(opts map[string]string, key string) (int64, error) {
	s := opts[key]
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n > 1<<40 {
		return 0, fmt.Errorf("adapterOptions.%s %q: want a positive number of bytes", key, s)
	}
	return n, nil
}

// webhookAuth builds a webhook's authenticator, with its credential read from the Secret now.
func webhookAuth(ctx context.Context, ing *v1alpha1.Ingester, secrets SecretReader) (server.Authenticator, error) {
	auth := ing.Spec.Webhook.Auth
	if auth.Type == v1alpha1.WebhookAuthNone {
		return server.NoAuth{}, nil
	}
	if auth.SecretRef == nil {
		return nil, fmt.Errorf("webhook.auth: %s needs a secretRef", auth.Type)
	}
	secret, err := secrets.SecretValue(ctx, ing.Namespace, auth.SecretRef.Name, auth.SecretRef.Key)
	if isMissing(err) {
		return nil, &secretMissing{namespace: ing.Namespace, name: auth.SecretRef.Name, key: auth.SecretRef.Key, err: err}
	}
	if err != nil {
		return nil, fmt.Errorf("webhook.auth.secretRef: %w", err)
	}
	switch auth.Type {
	case v1alpha1.WebhookAuthBearer:
		return server.BearerAuth{Token: secret}, nil
	case v1alpha1.WebhookAuthHMAC:
		return &server.HMACAuth{Key: secret, SignatureHeader: auth.SignatureHeader}, nil
	case v1alpha1.WebhookAuthMTLS:
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(secret) {
			return nil, fmt.Errorf("webhook.auth.secretRef: %s/%s holds no PEM CA certificate", auth.SecretRef.Name, auth.SecretRef.Key)
		}
		return &server.MTLSAuth{Roots: roots}, nil
	}
	return nil, fmt.Errorf("webhook.auth.type %q: want none, bearer, hmac or mtls", auth.Type)
}

// defaultIngesters is the set that runs while no Ingester exists: the tools most clusters have,
// each waiting for its CRDs if they are not installed.
func defaultIngesters() []*v1alpha1.Ingester {
	mk := func(source string, a v1alpha1.Adapter, gvr schema.GroupVersionResource, fieldSelector string) *v1alpha1.Ingester {
		return &v1alpha1.Ingester{
			ObjectMeta: metav1.ObjectMeta{Name: "default-" + source + "-" + gvr.Resource},
			Spec: v1alpha1.IngesterSpec{Source: source, Adapter: a, Informer: &v1alpha1.InformerSource{
				Group: gvr.Group, Version: gvr.Version, Resource: gvr.Resource, FieldSelector: fieldSelector,
			}},
		}
	}
	var out []*v1alpha1.Ingester
	for _, gvr := range trivy.Resources() {
		out = append(out, mk("trivy", v1alpha1.AdapterTrivy, gvr, ""))
	}
	for _, gvr := range kyverno.Resources() {
		out = append(out, mk("kyverno", v1alpha1.AdapterKyverno, gvr, ""))
	}
	out = append(out,
		mk("k8sevents", v1alpha1.AdapterK8sEvents, k8sevents.Resource(), k8sevents.FieldSelector),
		mk("certmanager", v1alpha1.AdapterCertManager, certmanager.Resource(), ""),
	)
	return out
}

// Parsers returns how an Ingester's source reads its input: an object parser for an informer
// source, a payload parser for a webhook (the other is nil). obsctl explain runs findings through
// them exactly as the running source would.
func Parsers(spec *v1alpha1.IngesterSpec) (sources.ObjectParser, sources.PayloadParser, error) {
	if spec.Webhook != nil {
		p, err := payloadParser(spec)
		return nil, p, err
	}
	p, err := objectParser(spec)
	return p, nil, err
}
