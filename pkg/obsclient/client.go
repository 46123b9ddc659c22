// Package obsclient is a small typed client for zen-watcher's own resources, built on client-go's
// REST client: just the calls zen-watcher makes, with no generated clientset behind it.
package obsclient

import (
	"context"
	"fmt"
	"strconv"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
	return c.List(ctx, namespace, metav1.ListOptions{LabelSelector: labelSelector})
}

// List lists one page of Observations of a namespace ("" for all): opts.Limit bounds it and
// opts.Continue, from the previous page's ListMeta, asks for the next.
func (c *Client) List(ctx context.Context, namespace string, opts metav1.ListOptions) (*v1alpha1.ObservationList, error) {
	req := c.rc.Get().Namespace(namespace).Resource(v1alpha1.ObservationResource.Resource)
	if opts.LabelSelector != "" {
		req = req.Param("labelSelector", opts.LabelSelector)
	}
	if opts.Limit > 0 {
		req = req.Param("limit", strconv.FormatInt(opts.Limit, 10))
	}
	if opts.Continue != "" {
		req = req.Param("continue", opts.Continue)
	}
	out := &v1alpha1.ObservationList{}
	if err := req.Do(ctx).Into(out); err != nil {
		return nil, fmt.Errorf("listing observations in %q: %w", namespace, err)
	}
	return out, nil
}

// EachObservation calls fn for every Observation of a namespace ("" for all) matching the label
// selector, a page of pageSize at a time, so that 50,000 of them never sit in memory at once.
func (c *Client) EachObservation(ctx context.Context, namespace, labelSelector string, pageSize int64,
	fn func(*v1alpha1.Observation) error) error {
	opts := metav1.ListOptions{LabelSelector: labelSelector, Limit: pageSize}
	for {
		page, err := c.List(ctx, namespace, opts)
		if err != nil {
			return err
		}
		for i := range page.Items {
			if err := fn(&page.Items[i]); err != nil {
				return err
			}
		}
		if page.Continue == "" {
			return nil
		}
		opts.Continue = page.Continue
	}
}

// Get reads one Observation.
func (c *Client) Get(ctx context.Context, namespace, name string) (*v1alpha1.Observation, error) {
	out := &v1alpha1.Observation{}
	err := c.rc.Get().Namespace(namespace).Resource(v1alpha1.ObservationResource.Resource).Name(name).Do(ctx).Into(out)
	if err != nil {
		return nil, fmt.Errorf("reading observation %s/%s: %w", namespace, name, err)
	}
	return out, nil
}
