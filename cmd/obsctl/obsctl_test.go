package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/utils/ptr"

	"github.com/kube-zen/zen-watcher/internal/testenv"
	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/obsclient"
	"github.com/kube-zen/zen-watcher/pkg/pipeline"
	"github.com/kube-zen/zen-watcher/pkg/shard"
	"github.com/kube-zen/zen-watcher/pkg/sources/falco"
)

var cluster *testenv.Cluster

func TestMain(m *testing.M) {
	os.Exit(testenv.RunWithCluster(m, testenv.Options{}, &cluster))
}

// obsctl runs one command line in process and returns its output.
func obsctl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := newRootCmd(&out, &errOut)
	cmd.SetArgs(append([]string{"--kubeconfig", cluster.Kubeconfig}, args...))
	err := cmd.ExecuteContext(context.Background())
	return out.String() + errOut.String(), err
}

func mustObsctl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := obsctl(t, args...)
	if err != nil {
		t.Fatalf("obsctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func ensureNamespace(t testing.TB, name string) {
	t.Helper()
	_, err := cluster.Kube.CoreV1().Namespaces().Create(context.Background(),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// seed writes Observations as the pipeline builds them: 12 trivy vulnerabilities in shop (8 of one
// CVE), 5 Warning Events in bank, 3 falco alerts in zen-system.
func seed(t *testing.T) {
	t.Helper()
	for _, ns := range []string{"shop", "bank", "zen-system"} {
		ensureNamespace(t, ns)
	}
	c, err := obsclient.New(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	var evs []*pipeline.Event
	for i := range 12 {
		cve := "CVE-2026-0001"
		sev := v1alpha1.SeverityCritical
		if i >= 8 {
			cve, sev = fmt.Sprintf("CVE-2026-%04d", 100+i), v1alpha1.SeverityLow
		}
		evs = append(evs, &pipeline.Event{Source: "trivy", Category: v1alpha1.CategorySecurity, Severity: sev,
			EventType: "vulnerability", Rule: cve, Identity: fmt.Sprint(i), Stateful: true, Title: cve,
			Resource: v1alpha1.ResourceRef{APIVersion: "apps/v1", Kind: "Deployment", Namespace: "shop", Name: fmt.Sprintf("cart-%d", i%3)},
			Details:  map[string]string{"vulnerabilityID": cve}})
	}
	for i := range 5 {
		evs = append(evs, &pipeline.Event{Source: "k8sevents", Category: v1alpha1.CategoryOperations, Severity: v1alpha1.SeverityMedium,
			EventType: "back_off", Rule: "BackOff", Identity: fmt.Sprint(i), Stateful: true, Title: "BackOff",
			Resource: v1alpha1.ResourceRef{APIVersion: "v1", Kind: "Pod", Namespace: "bank", Name: fmt.Sprintf("ledger-%d", i)},
			Details:  map[string]string{"reason": "BackOff"}})
	}
	for i := range 3 {
		evs = append(evs, &pipeline.Event{Source: "falco", Category: v1alpha1.CategorySecurity, Severity: v1alpha1.SeverityHigh,
			EventType: "runtime_alert", Rule: "Terminal shell in container", Identity: fmt.Sprint(i), Instance: fmt.Sprint(i),
			Resource: v1alpha1.ResourceRef{APIVersion: "v1", Kind: "Node", Name: "node-1"}, Title: "Terminal shell in container",
			Details: map[string]string{"rule": "Terminal shell in container"}})
	}
	for _, ev := range evs {
		ev.FP = pipeline.Fingerprint(ev)
		if err := c.Create(context.Background(), pipeline.BuildObservation(ev, "zen-system")); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
}

func TestListFiltersAndFormats(t *testing.T) {
	seed(t)
	rows := func(out string) int { return strings.Count(strings.TrimSpace(out), "\n") } // minus the header
	cases := []struct {
		args []string
		want int
	}{
		{[]string{"list", "-A"}, 20},
		{[]string{"list", "-n", "shop"}, 12},
		{[]string{"list", "-A", "--severity", "high"}, 11},
		{[]string{"list", "-A", "--severity", "HIGH", "--source", "trivy"}, 8},
		{[]string{"list", "-A", "--category", "operations"}, 5},
		{[]string{"list", "-A", "--since", "1h", "--page-size", "3"}, 20},
	}
	for _, tc := range cases {
		if got := rows(mustObsctl(t, tc.args...)); got != tc.want {
			t.Errorf("obsctl %s: %d rows, want %d", strings.Join(tc.args, " "), got, tc.want)
		}
	}
	var list v1alpha1.ObservationList
	if err := json.Unmarshal([]byte(mustObsctl(t, "list", "-A", "--source", "falco", "-o", "json")), &list); err != nil || len(list.Items) != 3 {
		t.Errorf("json: %d items, %v", len(list.Items), err)
	}
	if out := mustObsctl(t, "list", "-n", "bank", "-o", "yaml"); !strings.Contains(out, "kind: Observation") {
		t.Errorf("yaml:\n%s", out)
	}
	for _, bad := range [][]string{{"list", "-A", "--severity", "urgent"}, {"list", "-A", "-o", "xml"}, {"list", "-A", "--source", "Not Valid"}} {
		if _, err := obsctl(t, bad...); err == nil {
			t.Errorf("obsctl %s: no error", strings.Join(bad, " "))
		}
	}
}

func TestStatsAndGet(t *testing.T) {
	seed(t)
	var st Stats
	if err := json.Unmarshal([]byte(mustObsctl(t, "stats", "-A", "-o", "json", "--top", "3")), &st); err != nil {
		t.Fatal(err)
	}
	if st.Total != 20 || st.BySource["trivy"] != 12 || st.BySeverity["critical"] != 8 || st.ByCategory["operations"] != 5 {
		t.Errorf("stats %+v", st)
	}
	if len(st.TopRules) != 3 || st.TopRules[0] != (Count{Name: "CVE-2026-0001", Count: 8}) {
		t.Errorf("top rules %+v", st.TopRules)
	}
	if len(st.TopResources) != 3 || st.TopResources[0] != (Count{Name: "Deployment shop/cart-0", Count: 4}) {
		t.Errorf("top resources %+v", st.TopResources)
	}
	table := mustObsctl(t, "stats", "-n", "bank")
	if !strings.Contains(table, "Observations: 5") || !strings.Contains(table, "BackOff") {
		t.Errorf("stats table:\n%s", table)
	}

	list := observations(t, "shop")
	name := list[0].Name
	if out := mustObsctl(t, "get", "-n", "shop", name); !strings.Contains(out, "Fingerprint:") || !strings.Contains(out, "vulnerabilityID:") {
		t.Errorf("get:\n%s", out)
	}
	if _, err := obsctl(t, "get", "-n", "shop", "no-such"); err == nil {
		t.Error("get of a missing Observation: no error")
	}
}

func observations(t *testing.T, ns string) []v1alpha1.Observation {
	t.Helper()
	c, err := obsclient.New(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	l, err := c.ListObservations(context.Background(), ns, "")
	if err != nil || len(l.Items) == 0 {
		t.Fatalf("observations in %s: %v", ns, err)
	}
	return l.Items
}

// TestShards writes the member Leases of three live replicas and one expired, and a leader Lease,
// and checks the shares obsctl computes against the ring the replicas compute.
func TestShards(t *testing.T) {
	ctx := context.Background()
	ensureNamespace(t, "zen-ha")
	for i := range 6 {
		ensureNamespace(t, fmt.Sprintf("team-%d", i))
	}
	leases := cluster.Kube.CoordinationV1().Leases("zen-ha")
	lease := func(name, holder string, renewed time.Time, labels map[string]string) {
		_, err := leases.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(holder), LeaseDurationSeconds: ptr.To(int32(60)),
				RenewTime: &metav1.MicroTime{Time: renewed}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
	}
	member := map[string]string{shard.LabelMember: "ha"}
	for _, m := range []string{"zw-a", "zw-b", "zw-c"} {
		lease("ha-member-"+m, m, time.Now(), member)
	}
	lease("ha-member-zw-gone", "zw-gone", time.Now().Add(-time.Hour), member)
	// A replica stopping says so: the others count it no more, and neither does the table shown.
	lease("ha-member-zw-leaving", "zw-leaving", time.Now(), member)
	if l, err := leases.Get(ctx, "ha-member-zw-leaving", metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	} else {
		l.Annotations = map[string]string{shard.AnnotationLeaving: "true"}
		if _, err := leases.Update(ctx, l, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	lease("ha-leader", "zw-b", time.Now(), nil)

	var st Shards
	if err := json.Unmarshal([]byte(mustObsctl(t, "shards", "-n", "zen-ha", "--release", "ha", "-o", "json")), &st); err != nil {
		t.Fatal(err)
	}
	if st.Leader != "zw-b" || len(st.Members) != 3 || !slices.Equal(st.Leaving, []string{"zw-leaving"}) {
		t.Fatalf("shards %+v", st)
	}
	nss, err := cluster.Kube.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, n := range nss.Items {
		names = append(names, n.Name)
	}
	members := []string{"zw-a", "zw-b", "zw-c"}
	// Before a table is published, obsctl shows the cut every replica makes of the namespaces.
	cut := shard.NewTable(shard.CountWeighted(names), members, shard.DefaultChunks, nil)
	checkShards(t, st, cut, len(names))
	for _, m := range st.Members {
		if m.HandOver != "unreported" {
			t.Errorf("%s: hand-over %q before any holding was reported", m.Name, m.HandOver)
		}
	}
	// zw-a reports holding its share, and watches; zw-b still the whole space (letting go); zw-c
	// nothing.
	for id, h := range map[string]string{"zw-a": cut.Ranges("zw-a").Encode(), "zw-b": shard.Ranges{{}}.Encode()} {
		l, err := leases.Get(ctx, "ha-member-"+id, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		l.Annotations = map[string]string{shard.AnnotationHolding: h}
		if id == "zw-a" {
			l.Annotations[shard.AnnotationWatching] = "true"
		}
		if _, err := leases.Update(ctx, l, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	st = Shards{}
	if err := json.Unmarshal([]byte(mustObsctl(t, "shards", "-n", "zen-ha", "--release", "ha", "-o", "json")), &st); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"zw-a": "settled", "zw-b": "pending", "zw-c": "unreported"}
	for _, m := range st.Members {
		if m.HandOver != want[m.Name] {
			t.Errorf("%s: hand-over %q, want %q", m.Name, m.HandOver, want[m.Name])
		}
		if m.Watching != (m.Name == "zw-a") {
			t.Errorf("%s: watching %v; only zw-a's Lease says it watches", m.Name, m.Watching)
		}
	}
	if st.Generation != 0 {
		t.Errorf("generation %d with no table published", st.Generation)
	}
	if out := mustObsctl(t, "shards", "-n", "zen-ha", "--release", "ha"); !strings.Contains(out, "3 members, leader zw-b") ||
		!strings.Contains(out, "no table published") || !strings.Contains(out, "WATCHING") ||
		!strings.Contains(out, "leaving: zw-leaving") {
		t.Errorf("shards table:\n%s", out)
	}
	// A published table naming a member that is gone is shown adapted to the live members, as
	// the replicas apply it.
	pub := shard.NewTable(shard.CountWeighted(names), append(members, "zw-gone"), 16, nil)
	published, err := (&shard.ConfigMapTables{Client: cluster.Kube, Namespace: "zen-ha", Release: "ha", Self: "zw-b"}).Publish(ctx, pub)
	if err != nil {
		t.Fatal(err)
	}
	st = Shards{}
	if err := json.Unmarshal([]byte(mustObsctl(t, "shards", "-n", "zen-ha", "--release", "ha", "-o", "json")), &st); err != nil {
		t.Fatal(err)
	}
	checkShards(t, st, published.Adapt(members), len(names))
	if st.Generation != published.Generation || st.PublishedBy != "zw-b" || len(st.Chunks) != len(pub.Starts) {
		t.Errorf("generation %d by %q with %d chunks, want %d by zw-b with %d", st.Generation, st.PublishedBy,
			len(st.Chunks), published.Generation, len(pub.Starts))
	}
	out := mustObsctl(t, "shards", "-n", "zen-ha", "--release", "ha", "--show-chunks")
	if !strings.Contains(out, fmt.Sprintf("table generation %d, published by zw-b", published.Generation)) ||
		!strings.Contains(out, "0x0000000000000000") || strings.Contains(out, "zw-gone") {
		t.Errorf("shards with chunks:\n%s", out)
	}
}

// checkShards holds what obsctl shows to want: every namespace on its owner, each member once.
func checkShards(t *testing.T, st Shards, want *shard.Table, namespaces int) {
	t.Helper()
	seen, share := 0, 0.0
	for _, m := range st.Members {
		seen += len(m.Namespaces)
		share += m.Share
		for _, ns := range m.Namespaces {
			if o := want.Owner(shard.Hash(ns)); o != m.Name {
				t.Errorf("%s shown on %s, owned by %s", ns, m.Name, o)
			}
		}
		if m.Leader != (m.Name == "zw-b") {
			t.Errorf("%s leader %v", m.Name, m.Leader)
		}
		if len(m.Ranges) == 0 || len(m.Ranges) > shard.MaxRanges {
			t.Errorf("%s: %d ranges", m.Name, len(m.Ranges))
		}
	}
	if seen != namespaces || share < 0.999 || share > 1.001 {
		t.Errorf("%d namespaces of %d shared, shares sum to %.3f", seen, namespaces, share)
	}
}

// TestExplain explains a stored Observation, and runs Falco alerts through the source's Ingester:
// one below its filter, one that would be written, and the same one again once written.
func TestExplain(t *testing.T) {
	seed(t)
	ctx := context.Background()
	ing := &v1alpha1.Ingester{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.SchemeGroupVersion.String(), Kind: "Ingester"},
		ObjectMeta: metav1.ObjectMeta{Name: "falco", Namespace: "zen-system"},
		Spec: v1alpha1.IngesterSpec{Source: "falco", Adapter: v1alpha1.AdapterFalco,
			Webhook:    &v1alpha1.WebhookSource{Path: "/falco", Auth: v1alpha1.WebhookAuth{Type: v1alpha1.WebhookAuthNone}},
			Processing: v1alpha1.ProcessingSpec{Filter: &v1alpha1.FilterSpec{MinSeverity: v1alpha1.SeverityHigh}}},
	}
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(ing)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dyn.Resource(v1alpha1.IngesterResource).Namespace("zen-system").Create(ctx,
		&unstructured.Unstructured{Object: u}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}

	stored := observations(t, "bank")[0]
	out := mustObsctl(t, "explain", "-n", "bank", stored.Name)
	for _, want := range []string{"Name: from the fingerprint", "Fingerprint " + stored.Spec.Fingerprint, "no Ingester", "dedup: fingerprint"} {
		if !strings.Contains(out, want) {
			t.Errorf("explain of a stored warning lacks %q:\n%s", want, out)
		}
	}

	dir := t.TempDir()
	write := func(name, priority string) string {
		p := filepath.Join(dir, name)
		body := fmt.Sprintf(`{"output":"explain %s","priority":%q,"rule":"Explain test","time":"2026-11-26T10:00:00Z","hostname":"node-x"}`, name, priority)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	low, crit := write("low.json", "Notice"), write("crit.json", "Critical")
	if out := mustObsctl(t, "explain", "-n", "zen-system", "--source", "falco", "-f", low); !strings.Contains(out, "filtered: the filter (severity at least high)") {
		t.Errorf("low alert:\n%s", out)
	}
	out = mustObsctl(t, "explain", "-n", "zen-system", "--source", "falco", "-f", crit)
	if !strings.Contains(out, "kept") || !strings.Contains(out, "would be written as zen-system/falco-") {
		t.Fatalf("critical alert:\n%s", out)
	}
	body, _ := os.ReadFile(crit)
	evs, err := falco.Parser{}.ParsePayload(body)
	if err != nil {
		t.Fatal(err)
	}
	evs[0].Source = "falco"
	evs[0].FP = pipeline.Fingerprint(evs[0])
	c, _ := obsclient.New(cluster.Config)
	if err := c.Create(ctx, pipeline.BuildObservation(evs[0], "zen-system")); err != nil {
		t.Fatal(err)
	}
	if out := mustObsctl(t, "explain", "-n", "zen-system", "--source", "falco", "-f", crit); !strings.Contains(out, "already recorded as zen-system/falco-") {
		t.Errorf("critical alert once written:\n%s", out)
	}
	if _, err := obsctl(t, "explain", "-n", "zen-system", "--source", "nobody", "-f", crit); err == nil ||
		!strings.Contains(err.Error(), "--adapter") {
		t.Errorf("unknown source: %v", err)
	}
}
