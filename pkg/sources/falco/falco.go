// Package falco reads Falco's JSON alerts, as Falco's http_output or Falcosidekick's webhook output
// posts them: one alert per body, an array of alerts, or JSON lines.
package falco

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/pipeline"
	"github.com/kube-zen/zen-watcher/pkg/sources"
)

// alert is Falco's JSON output.
type alert struct {
	Output   string   `json:"output"`
	Priority string   `json:"priority"`
	Rule     string   `json:"rule"`
	Time     string   `json:"time"`
	Source   string   `json:"source"`
	Tags     []string `json:"tags"`
	Hostname string   `json:"hostname"`
	// OutputFields stay raw until rendered, so that a number keeps every digit: Falco's
	// evt.time, nanoseconds since the epoch, does not fit a float64.
	OutputFields map[string]json.RawMessage `json:"output_fields"`
}

// Parser parses Falco alerts.
type Parser struct{}

// ParsePayload implements sources.PayloadParser.
func (Parser) ParsePayload(body []byte) ([]*pipeline.Event, error) {
	var out []*pipeline.Event
	err := sources.DecodeItems(body, func(raw json.RawMessage) error {
		var a alert
		if err := json.Unmarshal(raw, &a); err != nil {
			return fmt.Errorf("not a Falco alert: %w", err)
		}
		ev, err := finding(&a)
		if err != nil {
			return err
		}
		out = append(out, ev)
		return nil
	})
	return out, err
}

// priority maps Falco's priorities; Falco spells them in several cases and lengths.
func priority(p string) (v1alpha1.Severity, bool) {
	switch strings.ToLower(p) {
	case "emergency", "alert", "critical":
		return v1alpha1.SeverityCritical, true
	case "error":
		return v1alpha1.SeverityHigh, true
	case "warning":
		return v1alpha1.SeverityMedium, true
	case "notice":
		return v1alpha1.SeverityLow, true
	case "informational", "info", "debug":
		return v1alpha1.SeverityInfo, true
	}
	return "", false
}

func finding(a *alert) (*pipeline.Event, error) {
	if a.Rule == "" || a.Output == "" {
		return nil, errors.New("not a Falco alert: rule and output are required")
	}
	sev, ok := priority(a.Priority)
	if !ok {
		sev = v1alpha1.Severity(strings.ToLower(a.Priority)) // counted and made info by the pipeline
	}
	detected, _ := time.Parse(time.RFC3339Nano, a.Time)
	ns, pod := field(a, "k8s.ns.name"), field(a, "k8s.pod.name")
	d := map[string]string{
		"rule": a.Rule, "priority": a.Priority, "output": a.Output, "falcoSource": a.Source,
		"hostname": a.Hostname, "time": a.Time, "tags": strings.Join(a.Tags, ","),
	}
	keys := make([]string, 0, len(a.OutputFields))
	for k := range a.OutputFields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if len(d) >= 56 {
			break
		}
		if _, taken := d[k]; !taken {
			d[k] = field(a, k)
		}
	}
	text := message(a.Output)
	return &pipeline.Event{
		Category: v1alpha1.CategorySecurity, Severity: sev, EventType: "runtime_alert",
		Resource: resource(a, ns, pod), Rule: a.Rule, Identity: text,
		Instance: a.Time + "\x00" + a.Hostname + "\x00" + a.Output,
		Title:    a.Rule, Description: text, Details: d, DetectedAt: detected,
	}, nil
}

// resource is the pod the alert is about, else its namespace, else the node that raised it.
func resource(a *alert, ns, pod string) v1alpha1.ResourceRef {
	switch {
	case pod != "":
		return v1alpha1.ResourceRef{APIVersion: "v1", Kind: "Pod", Namespace: ns, Name: pod}
	case ns != "":
		return v1alpha1.ResourceRef{APIVersion: "v1", Kind: "Namespace", Namespace: ns, Name: ns}
	case a.Hostname != "":
		return v1alpha1.ResourceRef{APIVersion: "v1", Kind: "Node", Name: a.Hostname}
	}
	return v1alpha1.ResourceRef{}
}

// field renders an output field as text; Falco sends strings, numbers and nulls ("<NA>"). A
// number is its JSON text, exactly as sent.
func field(a *alert, key string) string {
	raw := bytes.TrimSpace(a.OutputFields[key])
	switch {
	case len(raw) == 0 || string(raw) == "null":
		return ""
	case raw[0] == '"':
		var v string
		if json.Unmarshal(raw, &v) != nil || v == "<NA>" {
			return ""
		}
		return v
	default:
		var b bytes.Buffer
		if json.Compact(&b, raw) != nil {
			return string(raw)
		}
		return b.String()
	}
}

// message is the output without its leading "<time>: <Priority> ", which differs from one
// occurrence of the same alert to the next.
func message(out string) string {
	if i := strings.Index(out, ": "); i > 0 {
		if isTimestamp(out[:i]) {
			out = out[i+2:]
			if sp := strings.IndexByte(out, ' '); sp > 0 {
				if _, isPriority := priority(out[:sp]); isPriority {
					out = out[sp+1:]
				}
			}
		}
	}
	return out
}

func isTimestamp(s string) bool {
	for _, layout := range []string{"2006-01-02T15:04:05.999999999-0700", "15:04:05.999999999"} {
		if _, err := time.Parse(layout, s); err == nil {
			return true
		}
	}
	return false
}
