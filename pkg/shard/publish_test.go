package shard

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/metadata"
)

// TestNamespacesFollowsTheCluster: the namespaces informer has the cluster's namespaces once
// synced, and signals a namespace created later.
func TestNamespacesFollowsTheCluster(t *testing.T) {
	c := servers["gate-on"]
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mc, err := metadata.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	n := NewNamespaces(mc)
	if n.Names() != nil {
		t.Fatal("names before the first list")
	}
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	wait := func(what string, cond func([]string) bool) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for !cond(n.Names()) {
			select {
			case <-n.Changes():
			case <-deadline:
				t.Fatalf("%s: names %v", what, n.Names())
			}
		}
	}
	wait("synced", func(ns []string) bool { return slices.Contains(ns, "default") })
	if _, err := c.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "followed-later"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	wait("created", func(ns []string) bool { return slices.Contains(ns, "followed-later") })
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}

// TestConfigMapTables: a published table reaches every follower with its generation; generations
// go on rising when the ConfigMap is deleted; a ConfigMap edited into nonsense is reported and
// changes nothing.
func TestConfigMapTables(t *testing.T) {
	c := servers["gate-on"]
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := c.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "tables"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	store := &ConfigMapTables{Client: c.Kube, Namespace: "tables", Release: "zw", Self: "zw-a"}
	var mu sync.Mutex
	var got []uint64
	var errs []error
	synced := store.Follow(ctx, func(t *Table) { mu.Lock(); got = append(got, t.Generation); mu.Unlock() },
		func(err error) { mu.Lock(); errs = append(errs, err); mu.Unlock() })
	select {
	case <-synced:
	case <-time.After(10 * time.Second):
		t.Fatal("the follower did not sync with no ConfigMap yet")
	}
	seen := func(want uint64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			mu.Lock()
			ok := slices.Contains(got, want)
			mu.Unlock()
			if ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("generation %d never followed; followed %v", want, got)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	table := NewTable(CountWeighted(names("team-%d", 20)), []string{"zw-a", "zw-b"}, 8, nil)
	first, err := store.Publish(ctx, table)
	if err != nil || first.Generation != 1 {
		t.Fatalf("first publish: generation %v, %v", first, err)
	}
	seen(1)
	second, err := store.Publish(ctx, first)
	if err != nil || second.Generation != 2 {
		t.Fatalf("second publish: %v, %v", second, err)
	}
	seen(2)
	if err := c.Kube.CoreV1().ConfigMaps("tables").Delete(ctx, TableConfigMap("zw"), metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	third, err := store.Publish(ctx, second)
	if err != nil || third.Generation != 3 {
		t.Fatalf("publish after the ConfigMap was deleted: %v, %v", third, err)
	}
	seen(3)
	cm, err := c.Kube.CoreV1().ConfigMaps("tables").Get(ctx, TableConfigMap("zw"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data[TableKey] = `{"generation": 9, "chunks": []}`
	if _, err := c.Kube.CoreV1().ConfigMaps("tables").Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(errs)
		mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a table with no chunks was not reported")
		}
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if slices.Contains(got, 9) {
		t.Errorf("followed %v after a table with no chunks", got)
	}
}
