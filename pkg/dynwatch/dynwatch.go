// Package dynwatch decorates a dynamic client so that its watches decode each event in one pass.
//
// client-go's dynamic client reads every watch event seven times over: the JSON framer scans it
// for its end, the event envelope is sniffed for a kind, validated and decoded (its object
// copied out as raw bytes), and the object is then sniffed for its kind, validated and parsed
// into the map an Unstructured holds. Only the last pass is needed, and a replica syncing 20,000
// Trivy reports spent four fifths of its CPU in the seven. Here each event is read by one streaming
// JSON decoder that scans it once to find its end and parses it once, envelope and object together,
// into the same map with the same number types (sigs.k8s.io/json: integers int64, other numbers
// float64, keys case-sensitive): a quarter of the CPU per event (BenchmarkWatchDecode).
//
// Everything but Watch is the wrapped client's own.
package dynwatch

import (
	"context"
	"fmt"
	"io"
	"net/http"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	kjson "sigs.k8s.io/json"
)

// NewForConfig returns a dynamic client for cfg whose watches decode each event once.
func NewForConfig(cfg *rest.Config) (dynamic.Interface, error) {
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("building dynamic client: %w", err)
	}
	conf := dynamic.ConfigFor(cfg)
	// client-go's own Watch takes no token from the client-side rate limiter: a watch re-opened
	// while creates use up the budget must not wait behind them.
	conf.QPS, conf.RateLimiter = -1, nil
	// The decoder reads JSON: never let the client ask for CBOR (client-go's ClientsPreferCBOR).
	conf.AcceptContentTypes, conf.ContentType = runtime.ContentTypeJSON, runtime.ContentTypeJSON
	rc, err := rest.UnversionedRESTClientFor(conf)
	if err != nil {
		return nil, fmt.Errorf("building REST client for watches: %w", err)
	}
	return &client{Interface: dyn, rc: rc}, nil
}

// client is a dynamic client whose resources watch through rc.
type client struct {
	dynamic.Interface
	rc rest.Interface
}

// Resource implements dynamic.Interface.
func (c *client) Resource(gvr schema.GroupVersionResource) dynamic.NamespaceableResourceInterface {
	return &resource{NamespaceableResourceInterface: c.Interface.Resource(gvr), rc: c.rc, gvr: gvr}
}

// resource is a cluster-wide resource (or all namespaces of a namespaced one).
type resource struct {
	dynamic.NamespaceableResourceInterface
	rc  rest.Interface
	gvr schema.GroupVersionResource
}

// Namespace implements dynamic.NamespaceableResourceInterface.
func (r *resource) Namespace(ns string) dynamic.ResourceInterface {
	return &namespaced{ResourceInterface: r.NamespaceableResourceInterface.Namespace(ns), rc: r.rc, gvr: r.gvr, ns: ns}
}

// Watch implements dynamic.ResourceInterface.
func (r *resource) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	return open(ctx, r.rc, r.gvr, "", opts)
}

// namespaced is a resource in one namespace.
type namespaced struct {
	dynamic.ResourceInterface
	rc  rest.Interface
	gvr schema.GroupVersionResource
	ns  string
}

// Watch implements dynamic.ResourceInterface.
func (n *namespaced) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	return open(ctx, n.rc, n.gvr, n.ns, opts)
}

// parameterCodec writes ListOptions as query parameters the way the dynamic client does.
var parameterCodec = func() runtime.ParameterCodec {
	s := runtime.NewScheme()
	metav1.AddToGroupVersion(s, optionsVersion)
	return runtime.NewParameterCodec(s)
}()

var optionsVersion = schema.GroupVersion{Version: "v1"}

// open starts a watch of gvr in ns ("" for all) as the dynamic client would, and reads its events
// with an eventStream.
func open(ctx context.Context, rc rest.Interface, gvr schema.GroupVersionResource, ns string, opts metav1.ListOptions) (watch.Interface, error) {
	opts.Watch = true
	body, err := rc.Get().AbsPath(path(gvr, ns)...).
		SpecificallyVersionedParams(&opts, parameterCodec, optionsVersion).
		Stream(ctx)
	if err != nil {
		// As client-go's Watch does: a connection that broke or timed out before the first
		// byte is an empty watch, which the reflector opens again from where it was.
		if utilnet.IsProbableEOF(err) || utilnet.IsTimeout(err) {
			return watch.NewEmptyWatch(), nil
		}
		return nil, err
	}
	return watch.NewStreamWatcher(newEventStream(body),
		// The code client-go reports an event it cannot decode with: the cause is not known.
		apierrors.NewClientErrorReporter(http.StatusInternalServerError, http.MethodGet, "ClientWatchDecoding")), nil
}

func path(gvr schema.GroupVersionResource, ns string) []string {
	p := []string{"apis", gvr.Group, gvr.Version}
	if gvr.Group == "" {
		p = []string{"api", gvr.Version}
	}
	if ns != "" {
		p = append(p, "namespaces", ns)
	}
	return append(p, gvr.Resource)
}

// eventStream decodes a watch's JSON stream (watch.Decoder), each event in one pass.
type eventStream struct {
	body io.ReadCloser
	dec  kjson.Decoder
}

func newEventStream(body io.ReadCloser) *eventStream {
	return &eventStream{body: body, dec: kjson.NewDecoderCaseSensitivePreserveInts(body)}
}

// event is a watch event as the API server writes it in JSON.
type event struct {
	Type   watch.EventType `json:"type"`
	Object map[string]any  `json:"object"`
}

// Decode implements watch.Decoder: the next event, or io.EOF once the server ended the watch.
func (s *eventStream) Decode() (watch.EventType, runtime.Object, error) {
	var ev event
	if err := s.dec.Decode(&ev); err != nil {
		return "", nil, err
	}
	switch ev.Type {
	case watch.Added, watch.Modified, watch.Deleted, watch.Error, watch.Bookmark:
	default:
		return "", nil, fmt.Errorf("got invalid watch event type: %q", ev.Type)
	}
	if ev.Object == nil {
		return "", nil, fmt.Errorf("watch event %s has no object", ev.Type)
	}
	// What client-go's decoders demand of an object too: without a kind it is no object.
	kind, _ := ev.Object["kind"].(string)
	if kind == "" {
		return "", nil, fmt.Errorf("watch event %s: the object has no kind", ev.Type)
	}
	if kind == "Status" && ev.Object["apiVersion"] == "v1" {
		// The one typed object of client-go's dynamic decoder, so that a watch's error reads as
		// the API error it is.
		status := &metav1.Status{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(ev.Object, status); err != nil {
			return "", nil, fmt.Errorf("watch event %s: %w", ev.Type, err)
		}
		return ev.Type, status, nil
	}
	return ev.Type, &unstructured.Unstructured{Object: ev.Object}, nil
}

// Close implements watch.Decoder.
func (s *eventStream) Close() { _ = s.body.Close() }
