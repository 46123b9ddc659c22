package chart

import (
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// promtool returns the path of Prometheus's promtool (Debian's prometheus package, which
// `make test` installs through hack/ensure-prometheus.sh).
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool is not installed: run hack/ensure-prometheus.sh (or make prometheus)")
	}
	return p
}

// writeRules renders the chart's rule groups as a Prometheus rule file in dir, for release
// namespace zen-system with the values set, and returns its path.
func writeRules(t *testing.T, dir string, set ...string) string {
	t.Helper()
	objs := render(t, "zw", "zen-system", "", append([]string{"metrics.prometheusRule.enabled=true"}, set...)...)
	rule := find(objs, "PrometheusRule", "zen-watcher")
	if rule == nil {
		t.Fatal("no PrometheusRule rendered")
	}
	b, err := yaml.Marshal(rule.Object["spec"])
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// ruleTests lists, from a promtool test file, the alerts some case expects to fire and those some
// case expects to stay quiet.
func ruleTests(t *testing.T, file string) (fires, quiet map[string]bool) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string           `json:"alertname"`
				ExpAlerts []map[string]any `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	fires, quiet = map[string]bool{}, map[string]bool{}
	for _, tc := range f.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				quiet[a.Alertname] = true
			}
		}
	}
	return fires, quiet
}

// TestRulesUnderPromtool: the chart's rules as rendered pass `promtool check rules`, and
// `promtool test rules` runs testdata/rules-test.yaml against them: every alert has a case where
// it fires on synthetic series and one where it must not, its long `for:` included.
func TestRulesUnderPromtool(t *testing.T) {
	tool := promtool(t)
	dir := t.TempDir()
	rules := writeRules(t, dir, "replicaCount=3")
	tests, err := os.ReadFile(filepath.Join("testdata", "rules-test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	testFile := filepath.Join(dir, "rules-test.yaml")
	if err := os.WriteFile(testFile, tests, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(tool, "check", "rules", rules).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	if out, err := exec.Command(tool, "test", "rules", testFile).CombinedOutput(); err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}

	fires, quiet := ruleTests(t, testFile)
	var untested []string
	for alert := range ruleExprs(t) {
		if !fires[alert] || !quiet[alert] {
			untested = append(untested, alert)
		}
	}
	sort.Strings(untested)
	if len(untested) > 0 {
		t.Errorf("alerts without a case that fires and one that stays quiet: %s", strings.Join(untested, ", "))
	}

	// The control: the same tests refuse a rule whose `for:` changed.
	b, err := os.ReadFile(rules)
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(string(b), "for: 2m", "for: 30m", 1)
	if changed == string(b) {
		t.Fatal("no rule with for: 2m to change")
	}
	if err := os.WriteFile(rules, []byte(changed), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(tool, "test", "rules", testFile).CombinedOutput(); err == nil {
		t.Errorf("promtool test rules passed a rule whose for: went from 2m to 30m:\n%s", out)
	}
}
