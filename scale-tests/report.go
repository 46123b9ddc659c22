package main

import (
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// writeReport writes report.md and its SVG charts next to the JSON results, and returns its path.
func writeReport(dir, profile string, results []*Result) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "# zen-watcher scale test, profile %s\n\n", profile)
	if len(results) > 0 {
		fmt.Fprintf(&b, "Run %s on %s. Every figure is measured in this run through the real binary, API server\n",
			results[0].Started.Format("2006-01-02 15:04 MST"), results[0].Machine)
		b.WriteString("and Redis; the raw ceiling is a plain client's create rate on the same server, measured just before each scenario; the probe is a plain client walking an informer finding's path (object created, watched, Observation created, watched) at 20/s alongside the load.\n\n")
	}
	b.WriteString("| scenario | replicas | findings/s in | Observations/s out | of raw ceiling | expected / written | lost | twice | P10 ms | P50 ms | P95 ms | P99 ms | probe P10 / P50 ms | drain s | CPU s per 1k | peak RSS MiB | Redis ops/s | API req/s |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range results {
		peak := int64(0)
		for _, u := range r.PerReplica {
			peak = max(peak, u.PeakRSSBytes)
		}
		fmt.Fprintf(&b, "| %s | %d | %.0f | %.0f | %.2f | %d / %d | %d | %d | %.1f | %.1f | %.1f | %.1f | %.1f / %.1f | %.1f | %.3f | %.1f | %.0f | %.0f |\n",
			r.Scenario, r.Replicas, r.FindingsPerSec, r.ObsPerSec, r.RatioOfRaw, r.Expected, r.Observations, r.Lost,
			r.WrittenTwice, r.LatencyP10Ms, r.LatencyP50Ms, r.LatencyP95Ms, r.LatencyP99Ms, r.ProbeP10Ms, r.ProbeP50Ms, r.DrainSeconds, r.CPUSecondsPer1000,
			float64(peak)/(1<<20), r.RedisOpsPerSec, r.APIRequestsPerSec)
	}
	b.WriteString("\n")
	for _, r := range results {
		if r.Attempt > 1 {
			fmt.Fprintf(&b, "**%s** ran %d times (-reruns); the figures above are the last run's. The runs before it missed:\n\n", r.Scenario, r.Attempt)
			for _, m := range r.EarlierMisses {
				fmt.Fprintf(&b, "- %s\n", m)
			}
			b.WriteString("\n")
		}
		if len(r.Aside) > 0 {
			fmt.Fprintf(&b, "**%s**: absolute latency bounds that stood aside, the probe in the same seconds being past them itself (the bounds over the probe applied):\n\n", r.Scenario)
			for _, m := range r.Aside {
				fmt.Fprintf(&b, "- %s\n", m)
			}
			b.WriteString("\n")
		}
	}
	writeCosts(&b, results)
	writeRawPaths(&b, results)
	writeMemory(&b, results)
	for _, r := range results {
		if len(r.Extra) > 0 || len(r.Killed) > 0 {
			fmt.Fprintf(&b, "**%s**:", r.Scenario)
			keys := make([]string, 0, len(r.Extra))
			for k := range r.Extra {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				fmt.Fprintf(&b, " %s %v;", k, fmtValue(r.Extra[k]))
			}
			for _, k := range r.Killed {
				fmt.Fprintf(&b, " killed %s (leader %v) at %.1f s, taken over after %.2f s;", k.Replica, k.Leader, k.AtSeconds, r.TakeoverSeconds)
			}
			fmt.Fprintf(&b, " pipeline %v; orders %v; API server %.0f millicores, etcd %.0f, requests/s %v\n\n", r.Pipeline, r.Orders,
				r.APIServerMillicores, r.EtcdMillicores, r.APIRequests)
		}
	}
	for _, r := range results {
		if len(r.Series.InPerSec) == 0 && len(r.Series.RSSMiB) == 0 {
			continue
		}
		fmt.Fprintf(&b, "## %s\n\n", r.Scenario)
		charts := []struct {
			file, title, unit string
			series            map[string][]float64
		}{
			{"throughput", "findings in and Observations out per second", "per second",
				map[string][]float64{"in": r.Series.InPerSec, "out": r.Series.OutPerSec}},
			{"latency", "P99 latency of the Observations of each second", "ms", map[string][]float64{"P99": r.Series.P99Ms}},
			{"memory", "resident memory per replica", "MiB", r.Series.RSSMiB},
			{"cpu", "CPU per replica", "millicores", r.Series.CPUMilicores},
		}
		for _, c := range charts {
			if empty(c.series) {
				continue
			}
			name := fmt.Sprintf("%s-%s.svg", r.Scenario, c.file)
			if err := os.WriteFile(filepath.Join(dir, name), []byte(lineChart(c.title, c.unit, c.series, r.Killed)), 0o644); err != nil {
				return "", err
			}
			fmt.Fprintf(&b, "![%s](%s)\n", c.title, name)
		}
		b.WriteString("\n")
	}
	path := filepath.Join(dir, "report.md")
	return path, os.WriteFile(path, []byte(b.String()), 0o644)
}

// writeCosts compares the CPU per finding of the sharding pair, when both ran.
func writeCosts(b *strings.Builder, results []*Result) {
	var one, three *Result
	for _, r := range results {
		switch r.Scenario {
		case "cpu-1-replica":
			one = r
		case "cpu-3-replicas":
			three = r
		}
	}
	if one != nil && three != nil && one.CPUSecondsPer1000 > 0 {
		fmt.Fprintf(b, "Sharding cost: %.3f CPU seconds per 1,000 findings with 3 replicas against %.3f with 1, on the same load: %.2f× (target at most 1.15×).\n\n",
			three.CPUSecondsPer1000, one.CPUSecondsPer1000, three.CPUSecondsPer1000/one.CPUSecondsPer1000)
	}
}

// writeRawPaths compares each scenario that walked the raw path with it (targets: P99 at most
// 1.2×, Observations/s at least 90%).
func writeRawPaths(b *strings.Builder, results []*Result) {
	header := false
	for _, r := range results {
		if r.RawPath == nil {
			continue
		}
		if !header {
			b.WriteString("Against the raw path (the probe's path walked alone at the scenario's rate just before its load):\n\n")
			b.WriteString("| scenario | rate | raw P50 / P99 ms | P50 / P99 ms | P99 over raw | raw Observations/s | Observations/s | out over raw | API server mCPU raw / load |\n")
			b.WriteString("|---|---|---|---|---|---|---|---|---|\n")
			header = true
		}
		fmt.Fprintf(b, "| %s | %.0f | %.1f / %.1f | %.1f / %.1f | %.2f | %.0f | %.0f | %.2f | %.0f / %.0f |\n", r.Scenario, r.FindingsPerSec,
			r.RawPath.P50Ms, r.RawPath.P99Ms, r.LatencyP50Ms, r.LatencyP99Ms, r.P99OverRawPath, r.RawPath.PerSec, r.ObsPerSec, r.OutOverRawPath,
			r.RawPath.APIServerMillicores, r.APIServerMillicores)
	}
	if header {
		b.WriteString("\n")
		writeRawPathsBySource(b, results)
	}
}

// writeRawPathsBySource sets each source's latency beside the raw path's walk of its findings:
// which source's path, not only which scenario, zen-watcher lengthens.
func writeRawPathsBySource(b *strings.Builder, results []*Result) {
	b.WriteString("The same by source (a webhook source's raw path is the Observation's create alone):\n\n")
	b.WriteString("| scenario | source | raw P50 / P99 ms | P50 / P99 ms | P99 over raw | findings |\n|---|---|---|---|---|---|\n")
	for _, r := range results {
		if r.RawPath == nil {
			continue
		}
		for _, src := range slices.Sorted(maps.Keys(r.LatencyBySource)) {
			raw, ok := r.RawPath.BySource[src]
			got := r.LatencyBySource[src]
			if !ok || raw.P99Ms == 0 {
				continue
			}
			fmt.Fprintf(b, "| %s | %s | %.1f / %.1f | %.1f / %.1f | %.2f | %d |\n", r.Scenario, src,
				raw.P50Ms, raw.P99Ms, got.P50Ms, got.P99Ms, got.P99Ms/raw.P99Ms, got.Samples)
		}
	}
	b.WriteString("\n")
}

// writeMemory lists each replica's memory three ways: all it holds resident (VmRSS, mostly the
// binary's own pages), the anonymous part (RssAnon), and the Go heap in use; and its CPU.
func writeMemory(b *strings.Builder, results []*Result) {
	b.WriteString("Memory per replica, MiB, peak / at the end: VmRSS (mostly the binary's own pages), RssAnon (heap, stacks, runtime), Go heap in use; and the replica's CPU over the run, millicores:\n\n")
	b.WriteString("| scenario | replica | VmRSS | RssAnon | heap in use | CPU |\n|---|---|---|---|---|---|\n")
	mib := func(n int64) float64 { return float64(n) / (1 << 20) }
	for _, r := range results {
		for _, u := range r.PerReplica {
			fmt.Fprintf(b, "| %s | %s | %.1f / %.1f | %.1f / %.1f | %.1f / %.1f | %.1f |\n", r.Scenario, u.ID, mib(u.PeakRSSBytes), mib(u.EndRSSBytes),
				mib(u.PeakRSSAnonBytes), mib(u.EndRSSAnonBytes), mib(u.PeakHeapInuseBytes), mib(u.EndHeapInuseBytes), u.CPUMillicores)
		}
	}
	b.WriteString("\n")
}

func fmtValue(v any) string {
	if f, ok := v.(float64); ok {
		return fmt.Sprintf("%.2f", f)
	}
	return fmt.Sprint(v)
}

func empty(series map[string][]float64) bool {
	for _, s := range series {
		if len(s) > 0 {
			return false
		}
	}
	return true
}

var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"}

// lineChart draws series sampled once a second as an SVG, with kills marked as vertical lines.
func lineChart(title, unit string, series map[string][]float64, kills []Kill) string {
	const w, h, left, right, top, bottom = 720.0, 260.0, 60.0, 20.0, 30.0, 40.0
	names := make([]string, 0, len(series))
	n, hi := 0, 0.0
	for name, s := range series {
		names = append(names, name)
		n = max(n, len(s))
		for _, v := range s {
			hi = max(hi, v)
		}
	}
	slices.Sort(names)
	if hi == 0 {
		hi = 1
	}
	hi = niceCeil(hi)
	x := func(i float64) float64 { return left + (w-left-right)*i/math.Max(1, float64(n-1)) }
	y := func(v float64) float64 { return top + (h-top-bottom)*(1-v/hi) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="11">`, w, h)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/><text x="%.0f" y="18" font-size="13">%s</text>`, left, esc(title))
	for i := 0; i <= 4; i++ {
		v := hi * float64(i) / 4
		fmt.Fprintf(&b, `<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#ddd"/><text x="%.0f" y="%.1f" text-anchor="end">%s</text>`,
			left, w-right, y(v), y(v), left-5, y(v)+4, short(v))
	}
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f">seconds (0–%d); %s</text>`, left, h-10, max(0, n-1), esc(unit))
	for _, k := range kills {
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.0f" y2="%.0f" stroke="black" stroke-dasharray="4"/><text x="%.1f" y="%.0f">kill %s</text>`,
			x(k.AtSeconds), x(k.AtSeconds), top, h-bottom, x(k.AtSeconds)+3, top+10, esc(k.Replica))
	}
	for i, name := range names {
		var pts []string
		for j, v := range series[name] {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(float64(j)), y(v)))
		}
		color := palette[i%len(palette)]
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`, color, strings.Join(pts, " "))
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" fill="%s">%s</text>`, w-right-120, top+12+14*float64(i), color, esc(name))
	}
	b.WriteString("</svg>\n")
	return b.String()
}

func niceCeil(v float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func short(v float64) string {
	if v >= 1000 {
		return fmt.Sprintf("%.1fk", v/1000)
	}
	return fmt.Sprintf("%.0f", v)
}

func esc(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
