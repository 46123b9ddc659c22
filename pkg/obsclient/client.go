// Package obsclient is a small typed client for zen-watcher's own resources, built on client-go's
// REST client: just the calls zen-watcher makes, with no generated clientset behind it.
package obsclient

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
)

// Client reads and writes Observations and Ingesters.
type Client struct {
	rc rest.Interface
}

// New returns a client for the API server that cfg points at. cfg's rate limits apply as they are.
func New(cfg *rest.Config) (*Client, error) {
	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("registering zen-watcher types: %w", err)
	}
	c := rest.CopyConfig(cfg)
	c.GroupVersion = &v1alpha1.SchemeGroupVersion
	c.APIPath = "/apis"
	c.ContentType = runtime.ContentTypeJSON
	c.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	if c.UserAgent == "" {
		c.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	rc, err := rest.RESTClientFor(c)
	if err != nil {
		return nil, fmt.Errorf("building REST client for %s: %w", v1alpha1.SchemeGroupVersion, err)
	}
	return &Client{rc: rc}, nil
}

// Create writes obs. The response body is not decoded: the writer needs only the outcome.
func (c *Client) Create(ctx context.Context, obs *v1alpha1.Observation) error {
	return c.rc.Post().
		Namespace(obs.Namespace).
		Resource(v1alpha1.ObservationResource.Resource).
		Body(obs).
		Do(ctx).
		Error()
}

// ListObservations lists the Observations of a namespace ("" for all) matching a label selector.
func (c *Client) ListObservations(ctx context.Context, namespace, labelSelector string) (*v1alpha1.ObservationList, error) {
	req := c.rc.Get().Namespace(namespace).Resource(v1alpha1.ObservationResource.Resource)
	if labelSelector != "" {
		req = req.Param("labelSelector", labelSelector)
	}
	out := &v1alpha1.ObservationList{}
	if err := req.Do(ctx).Into(out); err != nil {
		return nil, fmt.Errorf("listing observations in %q: %w", namespace, err)
	}
	return out, nil
}
