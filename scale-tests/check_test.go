package main

import (
	"strings"
	"testing"
	"time"

	"github.com/kube-zen/zen-watcher/internal/testenv"
)

// TestScenarioFilesHavePassConditions: every scenario file parses and states the bounds its kind
// of measurement needs, so that -check checks each one.
func TestScenarioFilesHavePassConditions(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	for _, profile := range []string{"quick", "full"} {
		scs, err := loadScenarios(root+"/scale-tests/scenarios", profile, "")
		if err != nil {
			t.Fatalf("profile %s: %v", profile, err)
		}
		for _, sc := range scs {
			if sc.Pass == nil {
				t.Errorf("%s: no pass block", sc.Name)
			}
		}
	}
}

// TestScenariosByName: -scenario runs the scenarios it names in its own order, whatever their
// profiles, and refuses a name without a file.
func TestScenariosByName(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := root + "/scale-tests/scenarios"
	scs, err := loadScenarios(dir, "quick", "scale-3-5-2,idle,burst-500")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, sc := range scs {
		got = append(got, sc.Name)
	}
	if want := "scale-3-5-2 idle burst-500"; strings.Join(got, " ") != want {
		t.Errorf("scenarios %v, want %s", got, want)
	}
	if _, err := loadScenarios(dir, "quick", "idle,no-such-scenario"); err == nil || !strings.Contains(err.Error(), "no-such-scenario") {
		t.Errorf("an unknown name: %v", err)
	}
}

func TestPassValidate(t *testing.T) {
	load := Scenario{Name: "load", Replicas: 1, Sources: []string{"falco"}, Rate: 10, Duration: Duration(time.Second)}
	full := &Pass{MinSendRatio: .9, MinRatioOfRaw: .1, MaxP50Ms: 20, MaxP50OverProbe: 1.2, MaxP99Ms: 100, MaxPeakRSSMiB: 100}
	burst := load
	burst.Burst = &Phase{Rate: 100, Duration: Duration(time.Second)}
	kill := load
	kill.KillLeaderAfter = Duration(time.Second)
	scale := load
	scale.Scale = []ScaleStep{{After: Duration(time.Second), Replicas: 3}, {After: Duration(2 * time.Second), Replicas: 2}}
	refusals := *full
	refusals.MaxExtra = map[string]float64{"refusedPerRelisted": .01}
	backwards := scale
	backwards.Scale = []ScaleStep{scale.Scale[1], scale.Scale[0]}
	for _, tc := range []struct {
		name string
		sc   Scenario
		pass *Pass
		ok   bool
	}{
		{"none", load, nil, false},
		{"load, all bounds", load, full, true},
		{"load without P99", load, &Pass{MinSendRatio: .9, MinRatioOfRaw: .1, MaxPeakRSSMiB: 100}, false},
		{"burst without drain", burst, full, false},
		{"burst with drain", burst, &Pass{MinSendRatio: .9, MinRatioOfRaw: .1, MaxP50Ms: 20, MaxP50OverProbe: 1.2, MaxP99Ms: 100, MaxPeakRSSMiB: 100,
			MaxDrainSeconds: 5}, true},
		{"load without a bound over the probe", load, &Pass{MinSendRatio: .9, MinRatioOfRaw: .1, MaxP50Ms: 20, MaxP99Ms: 100, MaxPeakRSSMiB: 100}, false},
		{"load without P50", load, &Pass{MinSendRatio: .9, MinRatioOfRaw: .1, MaxP99Ms: 100, MaxPeakRSSMiB: 100}, false},
		{"kill without takeover", kill, full, false},
		{"scale without a bound on refused creates", scale, full, false},
		{"scale with it", scale, &refusals, true},
		{"scale steps out of order", backwards, &refusals, false},
		{"bounds over a raw path not walked", load, &Pass{MinSendRatio: .9, MinRatioOfRaw: .1, MaxP50Ms: 20, MaxP50OverProbe: 1.2, MaxP99Ms: 100,
			MaxPeakRSSMiB: 100, MinOutOverRawPath: .9}, false},
		{"raw path without sources", Scenario{Name: "idle", Replicas: 1, Idle: Duration(time.Second), RawPath: true}, &Pass{MaxPeakRSSMiB: 80}, false},
		{"idle without a bound", Scenario{Name: "idle", Replicas: 1, Idle: Duration(time.Second)}, &Pass{}, false},
		{"idle with RSS", Scenario{Name: "idle", Replicas: 1, Idle: Duration(time.Second)}, &Pass{MaxPeakRSSMiB: 80}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sc := tc.sc
			sc.Pass = tc.pass
			if err := sc.validate(); (err == nil) != tc.ok {
				t.Errorf("validate: %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	sc := Scenario{Name: "s", Replicas: 1, Sources: []string{"falco"}, Rate: 100, Duration: Duration(10 * time.Second), RawPath: true,
		Pass: &Pass{MinOutOverRawPath: .9, MinSendRatio: .9, MinBurstSendRatio: .4, MinRatioOfRaw: .2, MaxP10Ms: 10, MaxP50Ms: 50, MaxP10OverProbe: 1.5, MaxP50OverProbe: 1.2, MaxP99OverProbe: 1.2, MaxP99Ms: 500, MaxDrainSeconds: 3, MaxPeakRSSMiB: 90, MaxPeakRSSAnonMiB: 30, MaxPeakHeapInuseMiB: 20,
			MaxTakeoverSeconds: 6, MaxExtra: map[string]float64{"syncSeconds": 5}}}
	good := func() *Result {
		return &Result{Expected: 1000, Observations: 1000, RawCreatesPerSec: 400, ObsPerSec: 100, RatioOfRaw: .25,
			LatencyP10Ms: 5, LatencyP50Ms: 30, LatencyP99Ms: 200, ProbeP10Ms: 4, ProbeP50Ms: 28, ProbeP99Ms: 250, DrainSeconds: 1, PerReplica: []ReplicaUsage{{ID: "a", PeakRSSBytes: 60 << 20, PeakRSSAnonBytes: 20 << 20, PeakHeapInuseBytes: 12 << 20}},
			Phases: []PhaseResult{{Name: "steady", Rate: 100, SentPerSec: 99}},
			Killed: []Kill{{Replica: "a"}}, TakeoverSeconds: 4,
			RawPath: &walk{Samples: 1000, PerSec: 100, P99Ms: 180}, P99OverRawPath: 200.0 / 180, OutOverRawPath: 1,
			Extra: map[string]any{"syncSeconds": 2.0}}
	}
	for _, tc := range []struct {
		name  string
		spoil func(*Result)
		want  string // a part of the one failure expected; "" for none
		final bool   // the failure is a broken run, which no rerun may pass
	}{
		{"all within bounds", func(*Result) {}, "", false},
		{"lost", func(r *Result) { r.Lost = 1; r.Observations = 999 }, "lost", true},
		{"written twice", func(r *Result) { r.WrittenTwice = 1 }, "twice", true},
		{"filtered finding written", func(r *Result) { r.Observations = 1001 }, "1001 Observations written, 1000 expected: 1 not expected", true},
		{"send errors", func(r *Result) { r.SendErrors = 3; r.FirstSendError = "refused" }, "could not be sent", true},
		{"generator behind", func(r *Result) { r.Phases[0].SentPerSec = 80 }, "steady phase sent 80", false},
		{"burst behind its own bound", func(r *Result) {
			r.Phases = append(r.Phases, PhaseResult{Name: "burst", Rate: 1000, SentPerSec: 390})
		}, "burst phase sent 390 findings/s, asked for 1000 (at least 40%)", false},
		{"burst within its own bound", func(r *Result) {
			r.Phases = append(r.Phases, PhaseResult{Name: "burst", Rate: 1000, SentPerSec: 410})
		}, "", false},
		{"slow out", func(r *Result) { r.RatioOfRaw, r.LoadSeconds, r.ObsPerSec = .15, 10, 80 }, "of the raw ceiling", false},
		{"slow against a fast raw client, but keeping pace", func(r *Result) { r.RatioOfRaw, r.LoadSeconds = .05, 10 }, "", false},
		{"P10", func(r *Result) { r.LatencyP10Ms, r.ProbeP10Ms = 13, 9 }, "P10 13.0 ms, bound 10.0 ms", false},
		{"P50", func(r *Result) { r.LatencyP50Ms, r.ProbeP50Ms = 55, 48 }, "P50 55.0 ms, bound 50.0 ms", false},
		{"P10 past its bound with the probe past it too", func(r *Result) { r.LatencyP10Ms, r.ProbeP10Ms = 13, 12 }, "", false},
		{"P50 past its bound with the probe past it too", func(r *Result) { r.LatencyP50Ms, r.ProbeP50Ms = 65, 60 }, "", false},
		{"P10 past its bound and the probe's", func(r *Result) { r.LatencyP10Ms, r.ProbeP10Ms = 19, 12 }, "P10 19.0 ms is 1.58× the probe's 12.0 ms", false},
		{"P10 over the probe's", func(r *Result) { r.ProbeP10Ms = 3 }, "P10 5.0 ms is 1.67× the probe's 3.0 ms, bound 1.50×", false},
		{"P50 over the probe's", func(r *Result) { r.LatencyP50Ms = 36 }, "P50 36.0 ms is 1.29× the probe's 28.0 ms, bound 1.20×", false},
		{"slow machine, both slower", func(r *Result) {
			r.LatencyP50Ms, r.ProbeP50Ms, r.LatencyP10Ms, r.ProbeP10Ms = 45, 44, 9, 8
		}, "", false},
		{"no probe", func(r *Result) { r.ProbeP50Ms = 0 }, "the probe measured no P50", false},
		{"P99 over the probe's", func(r *Result) { r.ProbeP99Ms = 160 }, "P99 200.0 ms is 1.25× the probe's 160.0 ms, bound 1.20×", false},
		{"P99 past its bound with the probe past it too", func(r *Result) { r.LatencyP99Ms, r.ProbeP99Ms = 650, 600 }, "", false},
		{"P99 with the probe within its bound", func(r *Result) { r.LatencyP99Ms, r.ProbeP99Ms = 550, 480 }, "P99 550.0 ms, bound 500.0 ms", false},
		{"P99 over the raw path's, reported only", func(r *Result) { r.P99OverRawPath = 4 }, "", false},
		{"slower than the raw path", func(r *Result) { r.OutOverRawPath = .8 }, "is 0.80 of the raw path's 100/s, bound 0.90", false},
		{"raw path not measured", func(r *Result) { r.RawPath = nil }, "the raw path was not measured", false},
		{"drain", func(r *Result) { r.DrainSeconds = 4 }, "drained 4.0 s", false},
		{"memory", func(r *Result) { r.PerReplica[0].PeakRSSBytes = 100 << 20 }, "peaked at 100.0 MiB resident", false},
		{"anonymous memory", func(r *Result) { r.PerReplica[0].PeakRSSAnonBytes = 31 << 20 }, "peaked at 31.0 MiB anonymous resident (RssAnon)", false},
		{"heap", func(r *Result) { r.PerReplica[0].PeakHeapInuseBytes = 21 << 20 }, "peaked at 21.0 MiB Go heap in use", false},
		{"heap not measured", func(r *Result) { r.PerReplica[0].PeakHeapInuseBytes = 0 }, "0: not measured", false},
		{"takeover slow", func(r *Result) { r.TakeoverSeconds = 7 }, "taken over after 7.00 s", false},
		{"takeover never", func(r *Result) { r.TakeoverSeconds = 0 }, "taken over after 0.00 s", false},
		{"extra over", func(r *Result) { r.Extra["syncSeconds"] = 9.0 }, "syncSeconds 9.00, bound 5.00", false},
		{"extra missing", func(r *Result) { delete(r.Extra, "syncSeconds") }, "syncSeconds was not measured", false},
		{"live deleted", func(r *Result) { r.Extra["liveDeletedWrongly"] = 3 }, "live Observations deleted", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := good()
			tc.spoil(res)
			got := check(sc, res)
			if tc.want == "" {
				if len(got) > 0 {
					t.Fatalf("failures %q, want none", got)
				}
				return
			}
			if len(got) != 1 || !strings.Contains(got[0], tc.want) {
				t.Fatalf("failures %q, want one containing %q", got, tc.want)
			}
			if b, m := broken(sc, res), missed(sc, res); tc.final && (len(b) != 1 || len(m) != 0) || !tc.final && (len(b) != 0 || len(m) != 1) {
				t.Errorf("broken %q, missed %q; want the failure in %s", b, m, map[bool]string{true: "broken", false: "missed"}[tc.final])
			}
		})
	}
}

// TestAbsoluteBoundsStandAside: an absolute latency bound that the probe itself missed stands
// aside only for a bound over the probe on the same quantile, and the report says so.
func TestAbsoluteBoundsStandAside(t *testing.T) {
	for _, tc := range []struct {
		name      string
		q         quantile
		fails     bool
		standsOut bool
	}{
		{"within", quantile{"P10", 37, 30, 25, 1.3}, false, false},
		{"past, probe within", quantile{"P10", 37, 40, 30, 1.3}, true, false},
		{"past, probe past too", quantile{"P10", 37, 172, 170, 1.3}, false, true},
		{"past, probe past, no bound over it", quantile{"P10", 37, 172, 170, 0}, true, false},
		{"no bound", quantile{"P10", 0, 172, 170, 1.3}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if fails := tc.q.missed() && !tc.q.aside(); fails != tc.fails {
				t.Errorf("fails %v, want %v", fails, tc.fails)
			}
			if tc.q.aside() != tc.standsOut {
				t.Errorf("aside %v, want %v", tc.q.aside(), tc.standsOut)
			}
		})
	}
	sc := Scenario{Name: "cpu", Pass: &Pass{MaxP10Ms: 37, MaxP10OverProbe: 1.3, MaxP50Ms: 317, MaxP50OverProbe: 2}}
	res := &Result{LatencyP10Ms: 172, ProbeP10Ms: 170, LatencyP50Ms: 250, ProbeP50Ms: 240}
	if got := missed(sc, res); len(got) != 0 {
		t.Errorf("missed %q, want none: the probe was past the P10 bound", got)
	}
	want := "cpu: P10 172.0 ms, bound 37.0 ms, stood aside: the probe's own P10 was 170.0 ms; 1.01× it, bound 1.30×"
	if got := asides(sc, res); len(got) != 1 || got[0] != want {
		t.Errorf("asides %q, want [%q]", got, want)
	}
	res.LatencyP10Ms = 230
	if got := missed(sc, res); len(got) != 1 || !strings.Contains(got[0], "1.35× the probe's") {
		t.Errorf("missed %q, want the bound over the probe", got)
	}
}

func TestRerun(t *testing.T) {
	slow, bad := []string{"s: P50 65.0 ms, bound 50.0 ms"}, []string{"s: 1 findings lost"}
	for _, tc := range []struct {
		name      string
		o         options
		attempt   int
		bad, slow []string
		want      bool
	}{
		{"passed", options{check: true, reruns: 1}, 1, nil, nil, false},
		{"missed once", options{check: true, reruns: 1}, 1, nil, slow, true},
		{"missed again", options{check: true, reruns: 1}, 2, nil, slow, false},
		{"missed, reruns off", options{check: true, reruns: 0}, 1, nil, slow, false},
		{"missed, not checking", options{reruns: 1}, 1, nil, slow, false},
		{"broke", options{check: true, reruns: 3}, 1, bad, nil, false},
		{"broke and missed", options{check: true, reruns: 3}, 1, bad, slow, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := rerun(tc.o, tc.attempt, tc.bad, tc.slow); got != tc.want {
				t.Errorf("rerun = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestStageQuantiles: the stage histograms' buckets of several replicas add up, and a quantile is
// the bound of the first bucket that holds it.
func TestStageQuantiles(t *testing.T) {
	stages := map[string]map[float64]float64{}
	for _, text := range []string{
		"zen_watcher_finding_stage_seconds_bucket{stage=\"queue\",le=\"0.001\"} 40\n" +
			"zen_watcher_finding_stage_seconds_bucket{stage=\"queue\",le=\"0.01\"} 49\n" +
			"zen_watcher_finding_stage_seconds_bucket{stage=\"queue\",le=\"+Inf\"} 50\n",
		"zen_watcher_finding_stage_seconds_bucket{stage=\"queue\",le=\"0.001\"} 10\n" +
			"zen_watcher_finding_stage_seconds_bucket{stage=\"queue\",le=\"0.01\"} 50\n" +
			"zen_watcher_finding_stage_seconds_bucket{stage=\"queue\",le=\"+Inf\"} 50\n",
	} {
		m, err := parseMetrics(strings.NewReader(text))
		if err != nil {
			t.Fatal(err)
		}
		addStageBuckets(m, stages)
	}
	res := &Result{Extra: map[string]any{}}
	stageQuantiles(stages, res)
	p50, p99 := res.Extra["stageP50Ms"].(map[string]float64), res.Extra["stageP99Ms"].(map[string]float64)
	// 100 in all: 50 within 1 ms, 99 within 10 ms, 1 beyond.
	if p50["queue"] != 1 || p99["queue"] != 10 {
		t.Errorf("queue P50 %v ms, P99 %v ms, want 1 and 10", p50["queue"], p99["queue"])
	}
}
