package main

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kube-zen/zen-watcher/internal/testenv"
	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/obsclient"
	"github.com/kube-zen/zen-watcher/pkg/pipeline"
)

// BenchmarkList50000 measures obsctl on a cluster holding 50,000 Observations (ZW_OBSCTL_OBSERVATIONS
// changes the number): a full list, a list the API server narrows by label, and stats.
//
//	go test ./cmd/obsctl -run '^$' -bench List50000 -benchtime 3x
func BenchmarkList50000(b *testing.B) {
	n := testenv.PositiveIntFromEnv(b, "ZW_OBSCTL_OBSERVATIONS", 50_000)
	fill(b, n)
	for _, args := range [][]string{
		{"list", "-A", "--source", "bench"},
		{"list", "-A", "--source", "bench", "--severity", "critical"},
		{"list", "-A", "--source", "bench", "-o", "json"},
		{"stats", "-A", "--source", "bench"},
	} {
		b.Run(strings.Join(args, " "), func(b *testing.B) {
			for b.Loop() {
				var out, errOut bytes.Buffer
				cmd := newRootCmd(&out, &errOut)
				cmd.SetArgs(append([]string{"--kubeconfig", cluster.Kubeconfig}, args...))
				if err := cmd.ExecuteContext(context.Background()); err != nil {
					b.Fatal(err, errOut.String())
				}
			}
		})
	}
}

// fill creates Observations of source bench until n exist, in 20 namespaces, a fifth of them critical.
func fill(b *testing.B, n int) {
	b.Helper()
	c, err := obsclient.New(cluster.Config)
	if err != nil {
		b.Fatal(err)
	}
	existing, err := c.List(context.Background(), "", metav1.ListOptions{LabelSelector: v1alpha1.LabelSource + "=bench", Limit: 1})
	if err != nil {
		b.Fatal(err)
	}
	have := len(existing.Items)
	if existing.RemainingItemCount != nil {
		have += int(*existing.RemainingItemCount)
	}
	if have >= n {
		return
	}
	start := time.Now()
	for i := range 20 {
		ensureNamespace(b, fmt.Sprintf("bench-%02d", i))
	}
	var wg sync.WaitGroup
	next := make(chan int)
	for range 32 {
		wg.Go(func() {
			for i := range next {
				sev := v1alpha1.SeverityMedium
				if i%5 == 0 {
					sev = v1alpha1.SeverityCritical
				}
				ev := &pipeline.Event{Source: "bench", Category: v1alpha1.CategorySecurity, Severity: sev, EventType: "vulnerability",
					Rule: fmt.Sprintf("CVE-2026-%05d", i%500), Identity: strconv.Itoa(i), Stateful: true, Title: "bench",
					Resource: v1alpha1.ResourceRef{Kind: "Pod", Namespace: fmt.Sprintf("bench-%02d", i%20), Name: fmt.Sprintf("p-%d", i%1000)},
					Details:  map[string]string{"vulnerabilityID": fmt.Sprintf("CVE-2026-%05d", i%500)}}
				ev.FP = pipeline.Fingerprint(ev)
				_ = c.Create(context.Background(), pipeline.BuildObservation(ev, "default"))
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	b.Logf("created %d Observations in %s", n, time.Since(start).Round(time.Second))
}
