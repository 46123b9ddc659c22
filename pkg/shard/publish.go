package shard

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// TableKey is the key of the published table in its ConfigMap.
const TableKey = "table.json"

// TableConfigMap names the ConfigMap a release's leader publishes its shard table in.
func TableConfigMap(release string) string { return release + "-shards" }

// tableJSON is the table as people and obsctl read it: chunks with their ranges written as the API
// server's shard selector writes them.
type tableJSON struct {
	Generation  uint64      `json:"generation"`
	PublishedBy string      `json:"publishedBy,omitempty"`
	PublishedAt time.Time   `json:"publishedAt,omitzero"`
	Chunks      []chunkJSON `json:"chunks"`
}

type chunkJSON struct {
	Start  string  `json:"start"`
	End    string  `json:"end"`
	Weight float64 `json:"weight"`
	Owner  string  `json:"owner"`
}

func hex64(h uint64) string { return fmt.Sprintf("0x%016x", h) }

// EncodeTable writes t for its ConfigMap, saying who published it and when.
func EncodeTable(t *Table, by string, at time.Time) ([]byte, error) {
	out := tableJSON{Generation: t.Generation, PublishedBy: by, PublishedAt: at.UTC().Truncate(time.Second)}
	for i, s := range t.Starts {
		end := "0x10000000000000000"
		if i+1 < len(t.Starts) {
			end = hex64(t.Starts[i+1])
		}
		out.Chunks = append(out.Chunks, chunkJSON{Start: hex64(s), End: end, Weight: t.Weights[i], Owner: t.Owners[i]})
	}
	return json.MarshalIndent(out, "", " ")
}

// DecodeTable reads a published table; it refuses one whose chunks do not tile the space.
func DecodeTable(b []byte) (*Table, error) {
	var in tableJSON
	if err := json.Unmarshal(b, &in); err != nil {
		return nil, fmt.Errorf("reading the shard table: %w", err)
	}
	t := &Table{Generation: in.Generation, PublishedBy: in.PublishedBy, PublishedAt: in.PublishedAt}
	for i, c := range in.Chunks {
		s, err := strconv.ParseUint(c.Start, 0, 64)
		if err != nil {
			return nil, fmt.Errorf("reading the shard table: chunk %d: %w", i, err)
		}
		if (i == 0 && s != 0) || (i > 0 && s <= t.Starts[i-1]) || c.Owner == "" {
			return nil, fmt.Errorf("reading the shard table: chunk %d (%s, owner %q) does not follow the one before", i, c.Start, c.Owner)
		}
		t.Starts, t.Weights, t.Owners = append(t.Starts, s), append(t.Weights, c.Weight), append(t.Owners, c.Owner)
	}
	if len(t.Starts) == 0 {
		return nil, fmt.Errorf("reading the shard table: no chunks")
	}
	return t, nil
}

// ConfigMapTables keeps a release's shard table in a ConfigMap of the release's namespace: the
// leader writes it, every replica follows it, and people and obsctl read it.
type ConfigMapTables struct {
	Client    kubernetes.Interface
	Namespace string
	Release   string
	// Self names the publisher in what it writes.
	Self string
	// Owners, when set, own the ConfigMap: deleting them (the release's Deployment) deletes it.
	Owners []metav1.OwnerReference
}

// Publish writes t as the next generation and returns it with that generation. The write names
// the ConfigMap's resourceVersion read just before, so of two replicas that both think they lead,
// one write fails instead of both landing.
func (c *ConfigMapTables) Publish(ctx context.Context, t *Table) (*Table, error) {
	cms := c.Client.CoreV1().ConfigMaps(c.Namespace)
	name := TableConfigMap(c.Release)
	cm, err := cms.Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		cm = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: c.Namespace,
			Labels: map[string]string{LabelMember: c.Release}, OwnerReferences: c.Owners}}
	case err != nil:
		return nil, fmt.Errorf("reading the shard table: %w", err)
	}
	// t's generation is the one it was derived from: a ConfigMap deleted meanwhile does not make
	// the generations start over below what the replicas hold.
	next := *t
	next.Generation = t.Generation + 1
	if prev, err := DecodeTable([]byte(cm.Data[TableKey])); err == nil {
		next.Generation = max(prev.Generation, t.Generation) + 1
	}
	b, err := EncodeTable(&next, c.Self, time.Now())
	if err != nil {
		return nil, err
	}
	cm.Data = map[string]string{TableKey: string(b)}
	if len(cm.OwnerReferences) == 0 {
		cm.OwnerReferences = c.Owners
	}
	if cm.ResourceVersion == "" {
		_, err = cms.Create(ctx, cm, metav1.CreateOptions{})
	} else {
		_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
	}
	if err != nil {
		return nil, fmt.Errorf("publishing shard table generation %d: %w", next.Generation, err)
	}
	return &next, nil
}

// Follow hands on every table published in the ConfigMap until ctx ends; synced is closed once the
// ConfigMap has been read (whether or not there is a table yet).
func (c *ConfigMapTables) Follow(ctx context.Context, onTable func(*Table), onError func(error)) (synced <-chan struct{}) {
	sel := fields.OneTermEqualSelector("metadata.name", TableConfigMap(c.Release)).String()
	cms := c.Client.CoreV1().ConfigMaps(c.Namespace)
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = sel
			return cms.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = sel
			return cms.Watch(ctx, o)
		},
	}
	inf := cache.NewSharedIndexInformer(lw, &corev1.ConfigMap{}, 0, cache.Indexers{})
	take := func(obj any) {
		cm, ok := obj.(*corev1.ConfigMap)
		if !ok {
			return
		}
		t, err := DecodeTable([]byte(cm.Data[TableKey]))
		if err != nil {
			onError(err)
			return
		}
		onTable(t)
	}
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: take, UpdateFunc: func(_, obj any) { take(obj) },
	})
	done := make(chan struct{})
	go inf.RunWithContext(ctx)
	go func() {
		if cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
			close(done)
		}
	}()
	return done
}
