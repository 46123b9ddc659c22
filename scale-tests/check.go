package main

import (
	"fmt"
	"sort"
)

// Pass is what a run of a scenario must show for -check (and so CI) to pass. Every bound is set
// from measurements on the project's 2-core machines with a margin for their noise, and written in
// the scenario's file, so that a regression of a few tens of percent fails. Whatever a scenario
// measures, these always hold: nothing failed to send, nothing was lost, nothing was written twice
// (unless dedup is off), and exactly the expected Observations were written — a finding the filter
// should have dropped counts as written in excess.
type Pass struct {
	// MinSendRatio: every phase (the steady one and the burst, each on its own) sent at least this
	// fraction of the rate it asked for; below it the generator, not zen-watcher, was measured.
	MinSendRatio float64 `json:"minSendRatio,omitempty"`
	// MinBurstSendRatio is MinSendRatio for the burst phase, whose rate the generator on the same
	// cores may not reach; it defaults to MinSendRatio.
	MinBurstSendRatio float64 `json:"minBurstSendRatio,omitempty"`
	// MinRatioOfRaw: Observations/s out, from the first finding in to the last Observation, at least
	// this fraction of the raw create ceiling measured just before the scenario in the same run.
	MinRatioOfRaw float64 `json:"minRatioOfRaw,omitempty"`
	// MaxP10Ms, MaxP50Ms and MaxP99Ms bound the latency from a finding's send to its
	// Observation's watch event. The fastest tenth waits in no queue, so it moves least with the
	// machine's noise and by all of any delay added to the path: it is what catches a slower path.
	// The median and P99 catch queues and stalls. Each was set from this machine at its usual
	// speeds, so where the probe in the same seconds was itself past one (a plain client could
	// not meet it: the machine, not zen-watcher, is measured) it stands aside for the bound over
	// the probe on the same quantile, when one is stated; see quantile.aside.
	MaxP10Ms float64 `json:"maxP10Ms,omitempty"`
	MaxP50Ms float64 `json:"maxP50Ms,omitempty"`
	MaxP99Ms float64 `json:"maxP99Ms,omitempty"`
	// MaxP10OverProbe and MaxP50OverProbe bound the latency's fastest tenth and median as
	// multiples of the probe's in the same seconds: a plain client walking an informer finding's
	// path alongside the load (see probe). The machine's slow states slow both alike, so these
	// hold tight through states that no absolute bound allows for; they are what catches a
	// zen-watcher path made slower by a few tens of percent.
	MaxP10OverProbe float64 `json:"maxP10OverProbe,omitempty"`
	MaxP50OverProbe float64 `json:"maxP50OverProbe,omitempty"`
	// MaxP99OverProbe bounds the P99 as a multiple of the probe's in the same seconds: the raw
	// path's tail at the moment of the load (the raw path walked alone a minute before meets a
	// different state of the machine; see docs/PERFORMANCE.md).
	MaxP99OverProbe float64 `json:"maxP99OverProbe,omitempty"`
	// MinOutOverRawPath: Observations/s out at least this fraction of the raw path's, walked at the
	// same rate just before the load (Scenario.RawPath). The P99 over the raw path's is reported,
	// not bounded: a minute apart, the two meet different states of this machine (measured 0.3–4.8×
	// at 50 findings/s); MaxP99OverProbe bounds the tail against a plain client in the same seconds.
	MinOutOverRawPath float64 `json:"minOutOverRawPath,omitempty"`
	// MaxDrainSeconds bounds the time from the last finding sent (the end of the burst, when
	// there is one) to the last Observation.
	MaxDrainSeconds float64 `json:"maxDrainSeconds,omitempty"`
	// MaxPeakRSSMiB bounds the peak resident memory of every replica.
	MaxPeakRSSMiB float64 `json:"maxPeakRssMiB,omitempty"`
	// MaxPeakRSSAnonMiB and MaxPeakHeapInuseMiB bound the peak anonymous resident memory
	// (RssAnon) and Go heap in use of every replica: what the replica holds, without the binary's
	// own pages that most of VmRSS is.
	MaxPeakRSSAnonMiB   float64 `json:"maxPeakRssAnonMiB,omitempty"`
	MaxPeakHeapInuseMiB float64 `json:"maxPeakHeapInuseMiB,omitempty"`
	// MaxTakeoverSeconds bounds the time from a kill until another replica leads, or the
	// survivors count one member fewer.
	MaxTakeoverSeconds float64 `json:"maxTakeoverSeconds,omitempty"`
	// MaxExtra bounds figures of the scenario's own measurement by their name in the result's
	// extra (syncSeconds, cleanupSeconds, listWholeSeconds, ...).
	MaxExtra map[string]float64 `json:"maxExtra,omitempty"`
}

// validate refuses a Pass that would check less than its scenario measures.
func (p *Pass) validate(s *Scenario) error {
	if p == nil {
		return fmt.Errorf("no pass conditions: every scenario states what a run of it must show")
	}
	if len(s.Sources) > 0 && s.SyncObjects == 0 {
		if p.MinSendRatio <= 0 || p.MinRatioOfRaw <= 0 || p.MaxP50Ms <= 0 || p.MaxP50OverProbe <= 0 || p.MaxP99Ms <= 0 ||
			p.MaxPeakRSSMiB <= 0 {
			return fmt.Errorf("pass: a scenario with load needs minSendRatio, minRatioOfRaw, maxP50Ms, maxP50OverProbe, maxP99Ms and maxPeakRssMiB")
		}
	}
	if p.MinOutOverRawPath > 0 && !s.RawPath {
		return fmt.Errorf("pass: a bound over the raw path needs rawPath")
	}
	if s.Burst != nil && p.MaxDrainSeconds <= 0 {
		return fmt.Errorf("pass: a burst scenario needs maxDrainSeconds")
	}
	if _, ok := p.MaxExtra["refusedPerRelisted"]; len(s.Scale) > 0 && !ok {
		return fmt.Errorf("pass: a scale scenario needs maxExtra.refusedPerRelisted")
	}
	if (s.KillLeaderAfter > 0 || s.KillMemberAfter > 0) && p.MaxTakeoverSeconds <= 0 {
		return fmt.Errorf("pass: a kill scenario needs maxTakeoverSeconds")
	}
	if (s.Idle > 0 || s.CleanupObservations > 0 || s.ListObservations > 0 || s.SyncObjects > 0) &&
		p.MaxPeakRSSMiB <= 0 && p.MaxPeakRSSAnonMiB <= 0 && p.MaxPeakHeapInuseMiB <= 0 && len(p.MaxExtra) == 0 {
		return fmt.Errorf("pass: state a bound on what the scenario measures (maxPeakRssMiB or maxExtra)")
	}
	return nil
}

// check returns every way res falls short of sc's pass conditions, each as one line: what it
// broke, then what it missed.
func check(sc Scenario, res *Result) []string {
	return append(broken(sc, res), missed(sc, res)...)
}

// broken returns the ways res was wrong rather than slow: a finding not sent, lost, written twice
// or written though it should not have been, a live Observation deleted. No machine's noise
// explains these, so a run that shows one fails however often the scenario is run again.
func broken(sc Scenario, res *Result) []string {
	var out []string
	fail := func(format string, args ...any) { out = append(out, sc.Name+": "+fmt.Sprintf(format, args...)) }
	if res.SendErrors > 0 {
		fail("%d findings could not be sent (%s)", res.SendErrors, res.FirstSendError)
	}
	if res.Lost > 0 {
		fail("%d findings lost (e.g. %v)", res.Lost, res.LostSample)
	}
	if res.WrittenTwice > 0 && !sc.NoDedup {
		fail("%d findings written twice", res.WrittenTwice)
	}
	// Written = expected - lost + unexpected: what is left over was written though it should not
	// have been (a finding below the filter's severity, say).
	if extra := res.Observations - (res.Expected - res.Lost); len(sc.Sources) > 0 && extra != 0 {
		fail("%d Observations written, %d expected: %d not expected", res.Observations, res.Expected, extra)
	}
	if n, ok := res.Extra["liveDeletedWrongly"]; ok {
		fail("%v live Observations deleted by cleanup", n)
	}
	return out
}

// missed returns the bounds res measured beyond: rates, latencies, memory, times. A shared
// machine's slow state can push one of these past its bound in a single run (see retried), where
// a slower zen-watcher pushes it past in every run.
func missed(sc Scenario, res *Result) []string {
	var out []string
	fail := func(format string, args ...any) { out = append(out, sc.Name+": "+fmt.Sprintf(format, args...)) }
	p := sc.Pass
	if p == nil {
		p = &Pass{}
	}
	for _, ph := range res.Phases {
		ratio := p.MinSendRatio
		if ph.Name == "burst" && p.MinBurstSendRatio > 0 {
			ratio = p.MinBurstSendRatio
		}
		if ratio > 0 && ph.SentPerSec < ratio*ph.Rate {
			fail("the %s phase sent %.0f findings/s, asked for %.0f (at least %.0f%%)", ph.Name, ph.SentPerSec, ph.Rate, 100*ratio)
		}
	}
	// Out can be no faster than in: a run whose Observations kept pace with the findings offered
	// measured the load, not a ceiling, however fast the raw client was in the same minute.
	keptPace := res.LoadSeconds > 0 && res.ObsPerSec >= 0.95*float64(res.Expected)/res.LoadSeconds
	if p.MinRatioOfRaw > 0 && res.RatioOfRaw < p.MinRatioOfRaw && !keptPace {
		fail("Observations/s out %.0f is %.2f of the raw ceiling (%.0f/s), bound %.2f", res.ObsPerSec, res.RatioOfRaw,
			res.RawCreatesPerSec, p.MinRatioOfRaw)
	}
	for _, q := range quantiles(p, res) {
		if q.missed() && !q.aside() {
			fail("%s %.1f ms, bound %.1f ms", q.name, q.got, q.bound)
		}
		switch {
		case q.overIt <= 0:
		case q.probe <= 0:
			fail("the probe measured no %s (a bound over it is stated)", q.name)
		case q.got > q.overIt*q.probe:
			fail("%s %.1f ms is %.2f× the probe's %.1f ms, bound %.2f×", q.name, q.got, q.got/q.probe, q.probe, q.overIt)
		}
	}
	out = append(out, overRawPath(sc.Name, p, res)...)
	if p.MaxDrainSeconds > 0 && res.DrainSeconds > p.MaxDrainSeconds {
		fail("drained %.1f s after the load, bound %.1f s", res.DrainSeconds, p.MaxDrainSeconds)
	}
	for _, u := range res.PerReplica {
		for _, m := range []struct {
			what  string
			bound float64
			peak  int64
		}{{"resident", p.MaxPeakRSSMiB, u.PeakRSSBytes}, {"anonymous resident (RssAnon)", p.MaxPeakRSSAnonMiB, u.PeakRSSAnonBytes},
			{"Go heap in use", p.MaxPeakHeapInuseMiB, u.PeakHeapInuseBytes}} {
			if mib := float64(m.peak) / (1 << 20); m.bound > 0 && (mib > m.bound || m.peak == 0) {
				fail("replica %s peaked at %.1f MiB %s (0: not measured), bound %.0f MiB", u.ID, mib, m.what, m.bound)
			}
		}
	}
	if p.MaxTakeoverSeconds > 0 && len(res.Killed) > 0 && (res.TakeoverSeconds == 0 || res.TakeoverSeconds > p.MaxTakeoverSeconds) {
		fail("taken over after %.2f s (0: not within a minute), bound %.2f s", res.TakeoverSeconds, p.MaxTakeoverSeconds)
	}
	names := make([]string, 0, len(p.MaxExtra))
	for k := range p.MaxExtra {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		v, ok := res.Extra[k].(float64)
		switch {
		case !ok:
			fail("%s was not measured (a bound on it is stated)", k)
		case v > p.MaxExtra[k]:
			fail("%s %.2f, bound %.2f", k, v, p.MaxExtra[k])
		}
	}
	return out
}

// quantile is one latency quantile of a run: its bound in milliseconds, what the run and the
// probe measured, and its bound over the probe's.
type quantile struct {
	name                      string
	bound, got, probe, overIt float64
}

// quantiles lists the bounded latency quantiles of p with res's figures.
func quantiles(p *Pass, res *Result) []quantile {
	return []quantile{
		{"P10", p.MaxP10Ms, res.LatencyP10Ms, res.ProbeP10Ms, p.MaxP10OverProbe},
		{"P50", p.MaxP50Ms, res.LatencyP50Ms, res.ProbeP50Ms, p.MaxP50OverProbe},
		{"P99", p.MaxP99Ms, res.LatencyP99Ms, res.ProbeP99Ms, p.MaxP99OverProbe},
	}
}

// missed tells whether the run measured past the bound in milliseconds.
func (q quantile) missed() bool { return q.bound > 0 && q.got > q.bound }

// aside tells whether the bound in milliseconds stands aside: the probe, a plain client on the same path in the
// same seconds, was itself past it, and a bound over the probe's quantile judges the run instead
// (missed checks it). No zen-watcher can be faster than the API server answers; a slower one
// still fails that bound. The runs of 2026-12-07 needed it: the probe's P10 was 88–187 ms where
// cpu-1-replica's bound is 37 ms, set when it was 4–12.
func (q quantile) aside() bool { return q.missed() && q.overIt > 0 && q.probe > q.bound }

// asides returns a line for each absolute bound that res missed and that stood aside, for the
// report: a bound not applied is said, never silently skipped.
func asides(sc Scenario, res *Result) []string {
	p := sc.Pass
	if p == nil {
		return nil
	}
	var out []string
	for _, q := range quantiles(p, res) {
		if q.aside() {
			out = append(out, fmt.Sprintf("%s: %s %.1f ms, bound %.1f ms, stood aside: the probe's own %s was %.1f ms; %.2f× it, bound %.2f×",
				sc.Name, q.name, q.got, q.bound, q.name, q.probe, q.got/q.probe, q.overIt))
		}
	}
	return out
}

// overRawPath returns the bound over the raw path that res missed.
func overRawPath(name string, p *Pass, res *Result) []string {
	if p.MinOutOverRawPath <= 0 {
		return nil
	}
	raw := res.RawPath
	if raw == nil || raw.PerSec <= 0 {
		return []string{name + ": the raw path was not measured (a bound over it is stated)"}
	}
	if res.OutOverRawPath < p.MinOutOverRawPath {
		return []string{fmt.Sprintf("%s: Observations/s out %.0f is %.2f of the raw path's %.0f/s, bound %.2f", name,
			res.ObsPerSec, res.OutOverRawPath, raw.PerSec, p.MinOutOverRawPath)}
	}
	return nil
}
