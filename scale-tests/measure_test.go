package main

import (
	"fmt"
	"maps"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestRequestsBy(t *testing.T) {
	text := `# HELP apiserver_request_total Counter of apiserver requests
apiserver_request_total{code="201",component="apiserver",dry_run="",group="zen.kube-zen.io",resource="observations",scope="resource",subresource="",verb="POST",version="v1alpha1"} 120
apiserver_request_total{code="409",component="apiserver",dry_run="",group="zen.kube-zen.io",resource="observations",scope="resource",subresource="",verb="POST",version="v1alpha1"} 3
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="status",verb="PATCH",version="v1"} 7
process_cpu_seconds_total 12.5
`
	m, err := parseMetrics(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"POST observations": 123, "PATCH pods": 7}
	if got := requestsBy(m); !maps.Equal(got, want) {
		t.Errorf("requestsBy = %v, want %v", got, want)
	}
	for _, tc := range []struct{ labels, name, want string }{
		{`resource="pods",subresource="status",verb="PATCH"}`, "resource", "pods"},
		{`subresource="status",resource="pods"}`, "resource", "pods"},
		{`subresource="status",resource="pods"}`, "subresource", "status"},
		{`verb="GET"}`, "code", ""},
	} {
		if got := label(tc.labels, tc.name); got != tc.want {
			t.Errorf("label(%s, %s) = %q, want %q", tc.labels, tc.name, got, tc.want)
		}
	}
}

// busy starts a process that spins until killed, as a replica the sampler can read.
func busy(t *testing.T, id string) *replica {
	t.Helper()
	rep := &replica{id: id, cmd: exec.Command("sh", "-c", "while :; do :; done"), exited: make(chan struct{})}
	if err := rep.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = rep.cmd.Wait(); close(rep.exited) }()
	t.Cleanup(rep.kill)
	return rep
}

// TestSamplerCountsReplicasAddedAndStopped: a replica added after the sampler started and stopped
// before it finished is in the result, with the CPU it spent up to its exit.
func TestSamplerCountsReplicasAddedAndStopped(t *testing.T) {
	first := busy(t, "first")
	s := startSampler([]*replica{first})
	added := busy(t, "added")
	s.add(added)
	time.Sleep(2500 * time.Millisecond)
	added.kill()
	atExit := added.cpuAtExit()
	if atExit <= 0 {
		t.Fatalf("the stopped replica's CPU at exit reads %s", atExit)
	}
	res := &Result{}
	s.finish(res)
	got := map[string]ReplicaUsage{}
	for _, u := range res.PerReplica {
		got[u.ID] = u
	}
	for _, id := range []string{"first", "added"} {
		u, ok := got[id]
		switch {
		case !ok:
			t.Errorf("replica %s is not in the result: %+v", id, res.PerReplica)
		case u.CPUMillicores <= 0 || u.PeakRSSBytes <= 0:
			t.Errorf("replica %s: %.0f millicores, peak RSS %d bytes; want both measured", id, u.CPUMillicores, u.PeakRSSBytes)
		}
	}
	// Every CPU second of the stopped replica counts, the part after its last sample too.
	if u := got["added"]; math.Abs(u.CPUSeconds-atExit.Seconds()) > 0.01 {
		t.Errorf("the stopped replica counts %.3f CPU seconds; it spent %.3f", u.CPUSeconds, atExit.Seconds())
	}
}

// TestLogTail: a replica that exits before it is ready is reported with the end of its output.
func TestLogTail(t *testing.T) {
	dir := t.TempDir()
	lines := func(from, to int) string {
		var b strings.Builder
		for i := from; i <= to; i++ {
			fmt.Fprintf(&b, "line %d\n", i)
		}
		return b.String()
	}
	for name, tc := range map[string]struct {
		output string // "" for no file at all
		want   string
	}{
		"long":    {lines(1, 30), strings.TrimSuffix(lines(11, 30), "\n")},
		"short":   {lines(1, 3), strings.TrimSuffix(lines(1, 3), "\n")},
		"missing": {"", "(reading "},
	} {
		rep := &replica{log: filepath.Join(dir, name+".log")}
		if tc.output != "" {
			if err := os.WriteFile(rep.log, []byte(tc.output), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if got := rep.logTail(20); !strings.HasPrefix(got, tc.want) || tc.output != "" && got != tc.want {
			t.Errorf("%s: logTail(20) = %q, want %q", name, got, tc.want)
		}
	}
}

func TestSpreads(t *testing.T) {
	ms := func(ns ...int) []time.Duration {
		var out []time.Duration
		for _, n := range ns {
			out = append(out, time.Duration(n)*time.Millisecond)
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = 100 - i // unsorted: the spread sorts
	}
	tests := []struct {
		name string
		in   map[string][]time.Duration
		want map[string]spread
	}{
		{"nothing measured", nil, nil},
		{"one finding", map[string][]time.Duration{"falco": ms(7)}, map[string]spread{"falco": {Samples: 1, P50Ms: 7, P99Ms: 7}}},
		{"sources apart", map[string][]time.Duration{"trivy": ms(hundred...), "audit": ms(3, 1, 2)},
			map[string]spread{"trivy": {Samples: 100, P50Ms: 50, P99Ms: 99}, "audit": {Samples: 3, P50Ms: 2, P99Ms: 2}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before map[string][]time.Duration
			if tt.in != nil {
				before = map[string][]time.Duration{}
				for k, v := range tt.in {
					before[k] = slices.Clone(v)
				}
			}
			if got := spreads(tt.in); !maps.Equal(got, tt.want) {
				t.Errorf("spreads = %v, want %v", got, tt.want)
			}
			for k, v := range before {
				if !slices.Equal(tt.in[k], v) {
					t.Errorf("spreads reordered the latencies of %s", k)
				}
			}
		})
	}
}

func TestRawPathsBySource(t *testing.T) {
	results := []*Result{
		{Scenario: "five", RawPath: &walk{P99Ms: 10, BySource: map[string]spread{
			"falco": {Samples: 10, P50Ms: 1, P99Ms: 2}, "trivy": {Samples: 10, P50Ms: 3, P99Ms: 8}}},
			LatencyBySource: map[string]spread{"trivy": {Samples: 12, P50Ms: 4, P99Ms: 12}, "falco": {Samples: 11, P50Ms: 2, P99Ms: 5},
				"kyverno": {Samples: 9, P50Ms: 4, P99Ms: 9}}},
		{Scenario: "no raw path", LatencyBySource: map[string]spread{"trivy": {Samples: 1, P50Ms: 1, P99Ms: 1}}},
	}
	var b strings.Builder
	writeRawPathsBySource(&b, results)
	got := b.String()
	for _, want := range []string{"| five | falco | 1.0 / 2.0 | 2.0 / 5.0 | 2.50 | 11 |\n| five | trivy | 3.0 / 8.0 | 4.0 / 12.0 | 1.50 | 12 |\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("the table lacks\n%s\ngot\n%s", want, got)
		}
	}
	for _, not := range []string{"kyverno", "no raw path"} {
		if strings.Contains(got, not) {
			t.Errorf("the table has %q, which the raw path did not walk:\n%s", not, got)
		}
	}
}
