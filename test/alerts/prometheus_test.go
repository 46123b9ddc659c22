package alerts

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/kube-zen/zen-watcher/internal/testenv"
)

// prometheus is a Prometheus server the test started, scraping and evaluating every second.
type prometheus struct {
	url string
	out *testenv.Buffer
}

// target is a replica's metrics address and the namespace its pod would run in, which the scrape
// adds as the label "namespace" as the chart's ServiceMonitor does.
type target struct{ addr, namespace string }

func startPrometheus(t *testing.T, dir string, ruleFiles []string, targets []target) *prometheus {
	t.Helper()
	byNS := map[string][]string{}
	for _, tg := range targets {
		byNS[tg.namespace] = append(byNS[tg.namespace], tg.addr)
	}
	var static []map[string]any
	for ns, addrs := range byNS {
		static = append(static, map[string]any{"targets": addrs, "labels": map[string]string{"namespace": ns}})
	}
	cfg := map[string]any{
		"global":         map[string]string{"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "900ms"},
		"rule_files":     ruleFiles,
		"scrape_configs": []map[string]any{{"job_name": "zen-watcher", "static_configs": static}},
	}
	b, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgFile, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("promtool", "check", "config", cfgFile).CombinedOutput(); err != nil {
		t.Fatalf("promtool check config: %v\n%s", err, out)
	}
	addr := testenv.FreeAddr(t)
	p := &prometheus{url: "http://" + addr, out: &testenv.Buffer{}}
	cmd := exec.Command("prometheus", "--config.file="+cfgFile, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("prometheus output:\n%s", p.out.String())
		}
	})
	eventually(t, 60*time.Second, func() error {
		select {
		case <-exited:
			t.Fatalf("prometheus exited:\n%s", p.out.String())
		default:
		}
		resp, err := http.Get(p.url + "/-/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("prometheus not ready: %s", resp.Status)
		}
		return nil
	})
	return p
}

// get decodes the data of a Prometheus API answer.
func (p *prometheus) get(path string, data any) error {
	return testenv.PrometheusGet(p.url, path, data)
}

// alert is one entry of Prometheus's /api/v1/alerts.
type alert struct {
	Labels   map[string]string `json:"labels"`
	State    string            `json:"state"`
	ActiveAt time.Time         `json:"activeAt"`
	Value    string            `json:"value"` // the expression's value when last evaluated
}

func (a alert) String() string {
	return fmt.Sprintf("%s{namespace=%q} %s since %s", a.Labels["alertname"], a.Labels["namespace"], a.State, a.ActiveAt.Format(time.TimeOnly))
}

// alerts are the pending and firing alerts.
func (p *prometheus) alerts() ([]alert, error) {
	var data struct {
		Alerts []alert `json:"alerts"`
	}
	err := p.get("/api/v1/alerts", &data)
	return data.Alerts, err
}

// state is the state of alert name for namespace ns: "pending", "firing" or "" (inactive).
func (p *prometheus) state(name, ns string) (string, error) {
	all, err := p.alerts()
	if err != nil {
		return "", err
	}
	for _, a := range all {
		if a.Labels["alertname"] == name && (a.Labels["namespace"] == "" || a.Labels["namespace"] == ns) {
			return a.State, nil
		}
	}
	return "", nil
}

// await waits until alert name of namespace ns is in state (or, for "", inactive) and logs how
// long after since it got there.
func (p *prometheus) await(t *testing.T, name, ns, state string, since time.Time, timeout time.Duration) time.Duration {
	t.Helper()
	eventually(t, timeout, func() error {
		got, err := p.state(name, ns)
		if err != nil {
			return err
		}
		if got != state {
			return fmt.Errorf("%s of %s is %q, want %q", name, ns, got, state)
		}
		return nil
	})
	d := time.Since(since).Round(100 * time.Millisecond)
	want := state
	if want == "" {
		want = "inactive"
	}
	t.Logf("%s (%s): %s %s after the fault changed", name, ns, want, d)
	return d
}

// ruleHealth returns the alerting rules Prometheus loaded and those that do not evaluate cleanly.
func (p *prometheus) ruleHealth() (loaded []string, unhealthy []string, err error) {
	var data struct {
		Groups []struct {
			File  string `json:"file"`
			Rules []struct {
				Name      string `json:"name"`
				Type      string `json:"type"`
				Health    string `json:"health"`
				LastError string `json:"lastError"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := p.get("/api/v1/rules?type=alert", &data); err != nil {
		return nil, nil, err
	}
	for _, g := range data.Groups {
		for _, r := range g.Rules {
			loaded = append(loaded, filepath.Base(g.File)+":"+r.Name)
			if r.Health != "ok" {
				unhealthy = append(unhealthy, fmt.Sprintf("%s: %s %s", r.Name, r.Health, r.LastError))
			}
		}
	}
	sort.Strings(loaded)
	return loaded, unhealthy, nil
}

// scraped waits until every target is up.
func (p *prometheus) scraped(t *testing.T, n int) {
	t.Helper()
	eventually(t, 60*time.Second, func() error {
		var data struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  []any             `json:"value"`
			} `json:"result"`
		}
		if err := p.get("/api/v1/query?query=up", &data); err != nil {
			return err
		}
		var up []string
		for _, r := range data.Result {
			if len(r.Value) == 2 && r.Value[1] == "1" {
				up = append(up, r.Metric["instance"])
			}
		}
		if len(up) != n {
			return fmt.Errorf("%d of %d targets up: %s", len(up), n, strings.Join(up, ", "))
		}
		return nil
	})
}
