package falco

import (
	"strings"
	"testing"

	"github.com/kube-zen/zen-watcher/internal/testenv"
	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/pipeline"
)

func TestFixtures(t *testing.T) {
	cases := []struct {
		path     string
		n        int
		rule     string
		sev      v1alpha1.Severity
		resource v1alpha1.ResourceRef
		detail   [2]string
	}{
		{"falco/falcosidekick_client_test_falcoTestInput.json", 1, "Test rule", v1alpha1.SeverityInfo,
			v1alpha1.ResourceRef{APIVersion: "v1", Kind: "Node", Name: "test-host"}, [2]string{"proc.tty", "1234"}},
		{"falco/falcosidekick_alertmanager_test_drop_event.json", 1, "Falco internal: syscall event drop", v1alpha1.SeverityInfo,
			v1alpha1.ResourceRef{APIVersion: "v1", Kind: "Node", Name: "host"}, [2]string{"n_drops", "815508"}},
		{"falco/single_rule_with_cat_write.json", 8, "open_from_cat", v1alpha1.SeverityMedium,
			v1alpha1.ResourceRef{APIVersion: "v1", Kind: "Node", Name: "test-falco-hostname"}, [2]string{"proc.cmdline", "cat /dev/null"}},
	}
	for _, tc := range cases {
		t.Run(tc.path, func(t *testing.T) {
			body, err := testenv.Fixture(tc.path)
			if err != nil {
				t.Fatal(err)
			}
			evs, err := Parser{}.ParsePayload(body)
			if err != nil {
				t.Fatal(err)
			}
			if len(evs) != tc.n {
				t.Fatalf("%d findings, want %d", len(evs), tc.n)
			}
			instances := map[string]bool{}
			for _, e := range evs {
				if e.Rule != tc.rule || e.Severity != tc.sev || e.Resource != tc.resource ||
					e.Category != v1alpha1.CategorySecurity || e.EventType != "runtime_alert" ||
					e.Details[tc.detail[0]] != tc.detail[1] || e.DetectedAt.IsZero() {
					t.Errorf("finding %+v", e)
				}
				instances[e.Instance] = true
			}
			if len(instances) != tc.n {
				t.Errorf("%d distinct instances for %d alerts", len(instances), tc.n)
			}
		})
	}
}

// TestRepeatedAlertIsOneFinding: the eight cat alerts differ only in their time, so they share a
// fingerprint (dedup sees one finding) while each keeps its own instance.
func TestRepeatedAlertIsOneFinding(t *testing.T) {
	body, err := testenv.Fixture("falco/single_rule_with_cat_write.json")
	if err != nil {
		t.Fatal(err)
	}
	evs, err := Parser{}.ParsePayload(body)
	if err != nil {
		t.Fatal(err)
	}
	fps := map[uint64]bool{}
	for _, e := range evs {
		e.Source = "falco"
		fps[pipeline.Fingerprint(e)] = true
		if e.Description != "An open was seen (command=cat /dev/null)" {
			t.Errorf("description %q", e.Description)
		}
	}
	if len(fps) != 1 {
		t.Errorf("%d fingerprints, want 1", len(fps))
	}
}

func TestKubernetesFieldsAndPriorities(t *testing.T) {
	cases := []struct {
		priority string
		want     v1alpha1.Severity
	}{
		{"Emergency", "critical"}, {"Alert", "critical"}, {"Critical", "critical"}, {"Error", "high"},
		{"Warning", "medium"}, {"Notice", "low"}, {"Informational", "info"}, {"Debug", "info"},
	}
	for _, tc := range cases {
		body := `{"output":"12:57:37.086240437: ` + tc.priority + ` Shell spawned (user=root)","priority":"` + tc.priority +
			`","rule":"Terminal shell in container","time":"2026-11-26T12:57:37.086240437Z","source":"syscall",` +
			`"hostname":"node-1","tags":["container","shell"],"output_fields":{"k8s.ns.name":"shop","k8s.pod.name":"web-0","container.id":"0f8d7e2a3296"}}`
		evs, err := Parser{}.ParsePayload([]byte(body))
		if err != nil || len(evs) != 1 {
			t.Fatalf("%s: %v", tc.priority, err)
		}
		e := evs[0]
		if e.Severity != tc.want || e.Resource != (v1alpha1.ResourceRef{APIVersion: "v1", Kind: "Pod", Namespace: "shop", Name: "web-0"}) ||
			e.Description != "Shell spawned (user=root)" || e.Details["tags"] != "container,shell" {
			t.Errorf("%s: %+v", tc.priority, e)
		}
	}
}

func TestBadPayloads(t *testing.T) {
	cases := map[string]string{
		"not JSON":        `rule=x`,
		"empty":           ``,
		"wrong shape":     `{"hello":"world"}`,
		"wrong types":     `{"rule":5,"output":"x","priority":"Warning"}`,
		"array of number": `[1,2]`,
		"truncated":       `{"rule":"x","output":"y"`,
		"a string":        `"alert"`,
	}
	for name, body := range cases {
		if _, err := (Parser{}).ParsePayload([]byte(body)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := (Parser{}).ParsePayload([]byte(`[{"rule":"r","output":"o","priority":"Warning"}]`)); err != nil {
		t.Errorf("array of alerts: %v", err)
	}
}

func FuzzParsePayload(f *testing.F) {
	for _, p := range []string{"falco/falcosidekick_client_test_falcoTestInput.json", "falco/single_rule_with_cat_write.json"} {
		if b, err := testenv.Fixture(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`[{"rule":"r","output":"o"}]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		evs, err := Parser{}.ParsePayload(body)
		if err != nil {
			return
		}
		for _, e := range evs {
			if e.Rule == "" || strings.TrimSpace(e.EventType) == "" {
				t.Fatalf("finding without rule or type from %q", body)
			}
		}
	})
}

// TestOutputFieldsKeepEveryDigit: output fields are rendered as sent — a nanosecond timestamp
// past float64's 53 bits keeps its last digits, "<NA>" and null are empty.
func TestOutputFieldsKeepEveryDigit(t *testing.T) {
	body := `{"output":"o","priority":"Warning","rule":"r","time":"2026-12-01T00:00:00Z","hostname":"h","output_fields":` +
		`{"evt.time":1764547200123456789,"proc.pid":4242,"proc.ratio":0.25,"user.name":"<NA>","container.image":null,` +
		`"fd.exists":true,"k8s.labels":{"app": "web"}}}`
	evs, err := Parser{}.ParsePayload([]byte(body))
	if err != nil || len(evs) != 1 {
		t.Fatalf("%v, %v", evs, err)
	}
	for key, want := range map[string]string{
		"evt.time": "1764547200123456789", "proc.pid": "4242", "proc.ratio": "0.25", "user.name": "",
		"container.image": "", "fd.exists": "true", "k8s.labels": `{"app":"web"}`,
	} {
		if got := evs[0].Details[key]; got != want {
			t.Errorf("%s: %q, want %q", key, got, want)
		}
	}
}
