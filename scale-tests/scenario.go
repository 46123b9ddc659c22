package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"
)

// Scenario is one row of the performance guide's table, as a file in scale-tests/scenarios.
type Scenario struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	// Profiles the scenario belongs to: quick (make scale-test, CI) and/or full.
	Profiles []string `json:"profiles"`
	Replicas int      `json:"replicas"`
	// Sources driven, round robin: warnings, trivy, kyverno, falco, audit.
	Sources []string `json:"sources"`
	// Rate is findings per second over all sources, for Duration.
	Rate     float64  `json:"rate"`
	Duration Duration `json:"duration"`
	// RawPath, when set, walks the raw path (see probe) at Rate for Duration just before the load,
	// and the product's latency and rate are compared with it.
	RawPath bool `json:"rawPath,omitempty"`
	// Burst, when set, follows the steady phase: Rate findings/s for Duration, then recovery.
	Burst *Phase `json:"burst,omitempty"`
	// SeverityMix weighs the severities of the findings whose severity a source carries
	// (trivy, kyverno, falco); empty means all medium.
	SeverityMix map[string]float64 `json:"severityMix,omitempty"`
	// DuplicateRate is the share of findings that repeat an earlier one (same fingerprint).
	DuplicateRate float64 `json:"duplicateRate,omitempty"`
	// MinSeverity turns the filter on: findings below it must not become Observations.
	MinSeverity string `json:"minSeverity,omitempty"`
	// NoDedup turns dedup off for every source.
	NoDedup bool `json:"noDedup,omitempty"`
	// FastLeases runs the replicas with 4 s leases renewed every second (failover scenarios), instead
	// of the defaults (15 s, renewed every 5 s).
	FastLeases bool `json:"fastLeases,omitempty"`
	// KillLeaderAfter kills the leader with SIGKILL this long into the load.
	KillLeaderAfter Duration `json:"killLeaderAfter,omitempty"`
	// KillMemberAfter kills a replica that does not lead this long into the load.
	KillMemberAfter Duration `json:"killMemberAfter,omitempty"`
	// Scale changes the number of replicas during the load: more are started, fewer stopped
	// gracefully (followers first, the leader last), each step once its moment has come.
	Scale []ScaleStep `json:"scale,omitempty"`
	// SyncObjects, when set, creates this many Trivy reports without findings before the replicas
	// start, and measures how long the replicas take to sync them (ready).
	SyncObjects int `json:"syncObjects,omitempty"`
	// ListObservations, when set, creates this many Observations and measures listing them, whole
	// and in pages of 500, and etcd's size per Observation.
	ListObservations int `json:"listObservations,omitempty"`
	// CleanupObservations, when set, creates this many expired Observations (and a tenth as many
	// live ones), then starts the replicas and measures how long the leader takes to delete them.
	CleanupObservations int `json:"cleanupObservations,omitempty"`
	// Idle measures the replicas' memory and idle CPU with no load for this long instead of driving any.
	Idle Duration `json:"idle,omitempty"`
	// Pass is what a run must show for -check to pass (required).
	Pass *Pass `json:"pass"`
}

// ScaleStep is a number of replicas to have from a moment of the load on.
type ScaleStep struct {
	After    Duration `json:"after"`
	Replicas int      `json:"replicas"`
}

// Phase is a rate held for a while.
type Phase struct {
	Rate     float64  `json:"rate"`
	Duration Duration `json:"duration"`
}

// Duration reads "30s" style durations from JSON.
type Duration time.Duration

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration: want a string such as \"30s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// loadScenarios reads the scenario files of a profile, or the one named.
func loadScenarios(dir, profile, only string) ([]Scenario, error) {
	var names []string // run in this order: a scenario's figures depend on what ran before it
	if only != "" {
		names = strings.Split(only, ",")
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	var out []Scenario
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var s Scenario
		dec := json.NewDecoder(bytesReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&s); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		if err := s.validate(); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		if (only == "" && slices.Contains(s.Profiles, profile)) || slices.Contains(names, s.Name) {
			out = append(out, s)
		}
	}
	if names != nil {
		for _, n := range names {
			if !slices.ContainsFunc(out, func(s Scenario) bool { return s.Name == n }) {
				return nil, fmt.Errorf("no scenario %q in %s", n, dir)
			}
		}
		slices.SortStableFunc(out, func(a, b Scenario) int { return slices.Index(names, a.Name) - slices.Index(names, b.Name) })
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no scenario in %s for profile %q / name %q", dir, profile, only)
	}
	return out, nil
}

func (s *Scenario) validate() error {
	if s.Name == "" || s.Replicas < 1 {
		return fmt.Errorf("a name and at least one replica are required")
	}
	for _, src := range s.Sources {
		if _, ok := drivers[src]; !ok {
			return fmt.Errorf("unknown source %q", src)
		}
	}
	if len(s.Sources) > 0 && (s.Rate <= 0 || s.Duration <= 0) {
		return fmt.Errorf("a rate and a duration are required with sources")
	}
	if s.RawPath && len(s.Sources) == 0 {
		return fmt.Errorf("rawPath: the raw path is walked beside a load of sources")
	}
	for i, st := range s.Scale {
		if st.Replicas < 1 || i > 0 && st.After <= s.Scale[i-1].After || len(s.Sources) == 0 {
			return fmt.Errorf("scale: steps of at least one replica, in time order, during a load")
		}
	}
	return s.Pass.validate(s)
}
