package shard

import (
	"context"
	"fmt"
	"slices"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/tools/cache"
)

var namespacesGVR = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}

// Namespaces follows the names of the cluster's namespaces with a metadata-only informer: the
// table is cut where they are, and a namespace created later is owned (by the chunk its hash falls
// in) the moment it exists, with no listing to wait for.
type Namespaces struct {
	client metadata.Interface

	mu      sync.Mutex
	names   map[string]struct{}
	synced  bool
	changes chan struct{}
}

// NewNamespaces returns the follower of the cluster's namespaces; call Run.
func NewNamespaces(client metadata.Interface) *Namespaces {
	return &Namespaces{client: client, names: map[string]struct{}{}, changes: make(chan struct{}, 1)}
}

// Changes signals that a namespace was created or deleted (only the latest signal is kept).
func (n *Namespaces) Changes() <-chan struct{} { return n.changes }

// Names are the namespaces now, sorted; nil until the first list has arrived.
func (n *Namespaces) Names() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.synced {
		return nil
	}
	out := make([]string, 0, len(n.names))
	for name := range n.names {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// Run follows the namespaces until ctx ends; Changes signals once the first list has arrived.
func (n *Namespaces) Run(ctx context.Context) error {
	inf := metadatainformer.NewFilteredMetadataInformer(n.client, namespacesGVR, metav1.NamespaceAll, 0,
		cache.Indexers{}, nil).Informer()
	// Only the names matter: the informer keeps nothing else of a namespace.
	if err := inf.SetTransform(func(obj any) (any, error) {
		if m, ok := obj.(*metav1.PartialObjectMetadata); ok {
			return &metav1.PartialObjectMetadata{TypeMeta: m.TypeMeta, ObjectMeta: metav1.ObjectMeta{
				Name: m.Name, UID: m.UID, ResourceVersion: m.ResourceVersion}}, nil
		}
		return obj, nil
	}); err != nil {
		return fmt.Errorf("following namespaces: %w", err)
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { n.set(obj, true) },
		DeleteFunc: func(obj any) { n.set(obj, false) },
	}); err != nil {
		return fmt.Errorf("following namespaces: %w", err)
	}
	go inf.RunWithContext(ctx)
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return nil
	}
	n.mu.Lock()
	n.synced = true
	n.mu.Unlock()
	n.signal()
	<-ctx.Done()
	return nil
}

func (n *Namespaces) set(obj any, present bool) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return
	}
	n.mu.Lock()
	_, had := n.names[m.Name]
	if present {
		n.names[m.Name] = struct{}{}
	} else {
		delete(n.names, m.Name)
	}
	synced := n.synced
	n.mu.Unlock()
	if had != present && synced {
		n.signal()
	}
}

func (n *Namespaces) signal() {
	select {
	case n.changes <- struct{}{}:
	default:
	}
}
