package chart

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql/parser"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
)

// ruleExprs are the alert expressions of the chart's PrometheusRule, rendered with every alert on.
func ruleExprs(t *testing.T) map[string]string {
	t.Helper()
	objs := render(t, "zw", "zen", "", "metrics.prometheusRule.enabled=true")
	rule := find(objs, "PrometheusRule", "zen-watcher")
	if rule == nil {
		t.Fatal("no PrometheusRule rendered")
	}
	return exprsOf(t, rule)
}

func exprsOf(t *testing.T, rule *unstructured.Unstructured) map[string]string {
	t.Helper()
	out := map[string]string{}
	groups, _, _ := unstructured.NestedSlice(rule.Object, "spec", "groups")
	for _, g := range groups {
		for _, r := range g.(map[string]any)["rules"].([]any) {
			m := r.(map[string]any)
			out[m["alert"].(string)] = m["expr"].(string)
		}
	}
	return out
}

// dashboardExprs are the queries of the chart's dashboards, with the namespace variable filled.
func dashboardExprs(t *testing.T) map[string]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(chartDir, "dashboards", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("dashboards: %v", err)
	}
	out := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			Panels []struct {
				Title   string
				Targets []struct{ Expr string }
			}
		}
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, p := range d.Panels {
			for i, tg := range p.Targets {
				key := filepath.Base(f) + ": " + p.Title + " #" + string(rune('A'+i))
				out[key] = strings.ReplaceAll(tg.Expr, "$namespace", "zen")
			}
		}
	}
	return out
}

// metricNames parses each expression with Prometheus's own parser and returns the metrics used.
func metricNames(t *testing.T, exprs map[string]string) map[string][]string {
	t.Helper()
	used := map[string][]string{}
	p := parser.NewParser(parser.Options{})
	for where, e := range exprs {
		expr, err := p.ParseExpr(e)
		if err != nil {
			t.Errorf("%s: %q does not parse: %v", where, e, err)
			continue
		}
		parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
			if vs, ok := n.(*parser.VectorSelector); ok {
				used[vs.Name] = append(used[vs.Name], where)
			}
			return nil
		})
	}
	return used
}

func TestRulesAndDashboardsParse(t *testing.T) {
	rules := ruleExprs(t)
	if len(rules) < 7 {
		t.Errorf("%d alerts rendered: %v", len(rules), rules)
	}
	if used := metricNames(t, rules); len(used) < 7 {
		t.Errorf("alerts use only %v", used)
	}
	if used := metricNames(t, dashboardExprs(t)); len(used) < 25 {
		t.Errorf("dashboards use only %d metrics", len(used))
	}
	// The control: the parser refuses a broken expression.
	if _, err := parser.NewParser(parser.Options{}).ParseExpr("sum(rate(zen_watcher_observations_created_total[5m])"); err == nil {
		t.Error("an unbalanced expression parsed")
	}
}

// checkMetricsExist scrapes a running replica and checks that every metric the alerts and
// dashboards use is one it exports (histograms by their _bucket series).
func checkMetricsExist(t *testing.T, r *replica, traffic func()) {
	t.Helper()
	exprs := ruleExprs(t)
	for k, v := range dashboardExprs(t) {
		exprs[k] = v
	}
	used := metricNames(t, exprs)
	var missing []string
	// The tuner's and cleanup's series appear after their first round, a second or two in; the
	// leader's ratios only for findings counted after its first round, which on a loaded machine
	// may come after all of the test's first findings: traffic sends more at each poll.
	eventually(t, 30*time.Second, func() error {
		traffic()
		exported, err := scrape(r)
		if err != nil {
			return err
		}
		missing = missing[:0]
		for name, where := range used {
			if !exported[name] {
				missing = append(missing, name+" (in "+strings.Join(where, ", ")+")")
			}
		}
		sort.Strings(missing)
		if len(missing) > 0 {
			return fmt.Errorf("not exported by a running replica:\n%s", strings.Join(missing, "\n"))
		}
		return nil
	})
	t.Logf("all %d metrics of the alerts and dashboards are exported", len(used))
}

// scrape returns the metric names in a replica's /metrics.
func scrape(r *replica) (map[string]bool, error) {
	resp, err := http.Get("http://" + r.MetricsAddr + "/metrics")
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	exported := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		name, _, _ := strings.Cut(line, "{")
		name, _, _ = strings.Cut(name, " ")
		exported[name] = true
	}
	return exported, nil
}

// promRule returns the installed PrometheusRule's expressions, one per line.
func promRule(t *testing.T, dyn dynamic.Interface, ns, name string) string {
	t.Helper()
	u, err := dyn.Resource(monitoringGVR("prometheusrules")).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, e := range exprsOf(t, u) {
		lines = append(lines, e)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// TestRulesFollowTheValues: an alert on a gauge that a configuration never sets is not rendered
// for it — the gauge would stay 0 and the alert fire forever.
func TestRulesFollowTheValues(t *testing.T) {
	for _, tc := range []struct {
		set          string
		absent, kept []string
	}{
		{set: "sharding.enabled=false", absent: []string{"ZenWatcherMembersBelowReplicas"}, kept: []string{"ZenWatcherNoLeader", "ZenWatcherRedisDown"}},
		{set: "leaderElection.enabled=false", absent: []string{"ZenWatcherNoLeader"}, kept: []string{"ZenWatcherMembersBelowReplicas"}},
		{set: "redis.mode=none", absent: []string{"ZenWatcherRedisDown"}, kept: []string{"ZenWatcherMembersBelowReplicas", "ZenWatcherNoLeader"}},
		{set: "replicaCount=3", kept: []string{"ZenWatcherMembersBelowReplicas", "ZenWatcherNoLeader", "ZenWatcherRedisDown"}},
	} {
		t.Run(tc.set, func(t *testing.T) {
			objs := render(t, "zw", "zen", "", "metrics.prometheusRule.enabled=true", tc.set)
			rule := find(objs, "PrometheusRule", "zen-watcher")
			if rule == nil {
				t.Fatal("no PrometheusRule rendered")
			}
			alerts := exprsOf(t, rule)
			for _, a := range tc.absent {
				if _, ok := alerts[a]; ok {
					t.Errorf("%s rendered with %s", a, tc.set)
				}
			}
			for _, a := range tc.kept {
				if _, ok := alerts[a]; !ok {
					t.Errorf("%s missing with %s", a, tc.set)
				}
			}
		})
	}
}

// TestRulesSelectTheNamespaceLabel: every alert selects the release's series by the label the
// scrape puts the pod's namespace in, whatever name the values give it.
func TestRulesSelectTheNamespaceLabel(t *testing.T) {
	for _, tc := range []struct{ set, want string }{
		{"", `namespace="zen"`},
		{"metrics.prometheusRule.namespaceLabel=kubernetes_namespace", `kubernetes_namespace="zen"`},
	} {
		set := []string{"metrics.prometheusRule.enabled=true"}
		if tc.set != "" {
			set = append(set, tc.set)
		}
		rule := find(render(t, "zw", "zen", "", set...), "PrometheusRule", "zen-watcher")
		if rule == nil {
			t.Fatal("no PrometheusRule rendered")
		}
		for alert, expr := range exprsOf(t, rule) {
			p := parser.NewParser(parser.Options{})
			e, err := p.ParseExpr(expr)
			if err != nil {
				t.Fatalf("%s: %v", alert, err)
			}
			parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
				if vs, ok := n.(*parser.VectorSelector); ok && !strings.Contains(vs.String(), tc.want) {
					t.Errorf("%s (%s): %s does not select %s", alert, tc.set, vs, tc.want)
				}
				return nil
			})
		}
	}
}
