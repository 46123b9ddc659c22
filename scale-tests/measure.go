package main

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Result is one scenario's run, as written to JSON.
type Result struct {
	Scenario string `json:"scenario"`
	// Attempt counts the runs of the scenario this one ends (1 when it ran once); EarlierMisses
	// are what the runs before it missed (see -reruns), kept so a pass after a miss shows both.
	Attempt       int      `json:"attempt,omitempty"`
	EarlierMisses []string `json:"earlierMisses,omitempty"`
	// Aside are the absolute latency bounds this run missed that stood aside for the bounds over
	// the probe, because the probe itself was past them (see quantile.aside).
	Aside    []string  `json:"boundsAside,omitempty"`
	Started  time.Time `json:"started"`
	Machine  string    `json:"machine"`
	Replicas int       `json:"replicas"`

	RawCreatesPerSec float64 `json:"rawCreatesPerSecond"`
	ReadySeconds     float64 `json:"readySeconds"`
	LoadSeconds      float64 `json:"loadSeconds"`
	FindingsIn       int     `json:"findingsIn"`
	FindingsPerSec   float64 `json:"findingsPerSecond"`
	// Phases are the rates asked and sent of the steady phase and the burst, each on its own.
	Phases         []PhaseResult `json:"phases,omitempty"`
	Duplicates     int           `json:"duplicatesSent"`
	SendErrors     int           `json:"sendErrors"`
	FirstSendError string        `json:"firstSendError,omitempty"`
	Expected       int           `json:"observationsExpected"`
	Observations   int           `json:"observations"`
	ObsPerSec      float64       `json:"observationsPerSecond"`
	RatioOfRaw     float64       `json:"ratioOfRawCeiling"`
	Lost           int           `json:"lost"`
	LostSample     []string      `json:"lostSample,omitempty"`
	WrittenTwice   int           `json:"writtenTwice"`
	LatencyP10Ms   float64       `json:"latencyP10Ms"`
	LatencyP50Ms   float64       `json:"latencyP50Ms"`
	LatencyP95Ms   float64       `json:"latencyP95Ms"`
	LatencyP99Ms   float64       `json:"latencyP99Ms"`
	DrainSeconds   float64       `json:"drainSecondsAfterLoad"`
	// ProbeP10Ms, ProbeP50Ms and ProbeP99Ms are the latency of a plain client walking an
	// informer finding's path alongside the load (see probe), over ProbeSamples findings.
	ProbeSamples int     `json:"probeSamples,omitempty"`
	ProbeP10Ms   float64 `json:"probeP10Ms,omitempty"`
	ProbeP50Ms   float64 `json:"probeP50Ms,omitempty"`
	ProbeP99Ms   float64 `json:"probeP99Ms,omitempty"`
	// RawPath is the probe's path walked alone at the scenario's rate just before the load (see
	// Scenario.RawPath); P99OverRawPath and OutOverRawPath compare the product with it.
	RawPath        *walk   `json:"rawPath,omitempty"`
	P99OverRawPath float64 `json:"p99OverRawPath,omitempty"`
	OutOverRawPath float64 `json:"observationsPerSecondOverRawPath,omitempty"`
	// LatencyBySource is the latency of each source's findings (by the Observations' source
	// label), to set beside the raw path's walk of the same source.
	LatencyBySource map[string]spread `json:"latencyBySource,omitempty"`

	CPUSecondsPer1000 float64        `json:"cpuSecondsPer1000Findings"`
	PerReplica        []ReplicaUsage `json:"perReplica"`
	RedisOpsPerSec    float64        `json:"redisOpsPerSecond"`
	RedisMemoryBytes  int64          `json:"redisMemoryBytes"`
	APIRequestsPerSec float64        `json:"apiServerRequestsPerSecond"`
	// APIRequests are the API server's requests per second by verb and resource over the run.
	APIRequests map[string]float64 `json:"apiServerRequestsPerSecondBy,omitempty"`
	// APIServerMillicores and EtcdMillicores are the CPU the control plane used over the run.
	APIServerMillicores float64           `json:"apiServerMillicores"`
	EtcdMillicores      float64           `json:"etcdMillicores"`
	EtcdBytes           int64             `json:"etcdDatabaseBytes"`
	Pipeline            map[string]int64  `json:"pipeline"`
	Orders              map[string]string `json:"ordersInForce"`
	Killed              []Kill            `json:"killed,omitempty"`
	TakeoverSeconds     float64           `json:"takeoverSeconds,omitempty"`
	Extra               map[string]any    `json:"extra,omitempty"`

	Series Series `json:"series"`
}

// PhaseResult is one phase of the load: the rate it asked for and the rate the generator sent.
type PhaseResult struct {
	Name       string  `json:"name"`
	Rate       float64 `json:"rate"`
	SentPerSec float64 `json:"sentPerSecond"`
	Seconds    float64 `json:"seconds"`
}

// ReplicaUsage is one replica's cost over the run.
type ReplicaUsage struct {
	ID string `json:"id"`
	// CPUSeconds is the CPU the replica spent during the run; CPUMillicores is it over the run's time.
	CPUSeconds    float64 `json:"cpuSeconds"`
	CPUMillicores float64 `json:"cpuMillicores"`
	PeakRSSBytes  int64   `json:"peakRssBytes"`
	EndRSSBytes   int64   `json:"endRssBytes"`
	// The anonymous part of the resident memory (RssAnon) and the Go heap in use
	// (go_memstats_heap_inuse_bytes, read every few seconds): VmRSS is mostly the binary's pages.
	PeakRSSAnonBytes   int64 `json:"peakRssAnonBytes"`
	EndRSSAnonBytes    int64 `json:"endRssAnonBytes"`
	PeakHeapInuseBytes int64 `json:"peakHeapInuseBytes"`
	EndHeapInuseBytes  int64 `json:"endHeapInuseBytes"`
}

// Kill is a replica killed on purpose.
type Kill struct {
	Replica   string  `json:"replica"`
	Leader    bool    `json:"leader"`
	AtSeconds float64 `json:"atSeconds"`
}

// Series are the time series the report draws: one point a second.
type Series struct {
	InPerSec     []float64            `json:"findingsInPerSecond"`
	OutPerSec    []float64            `json:"observationsPerSecond"`
	P99Ms        []float64            `json:"latencyP99MsPerSecond"`
	RSSMiB       map[string][]float64 `json:"rssMiB"`
	CPUMilicores map[string][]float64 `json:"cpuMillicores"`
}

// sampler reads each replica's CPU and memory every second, those started during the run
// (added by a scale step) too, so that a replica stopped before the end is counted.
type sampler struct {
	mu    sync.Mutex
	reps  []*replica
	start time.Time
	cpu0  map[string]time.Duration
	last  map[string]time.Duration
	rss   map[string][]float64
	mcpu  map[string][]float64
	peak  map[string]use
	end   map[string]use
	n     int
	stop  chan struct{}
	done  chan struct{}
}

func startSampler(reps []*replica) *sampler {
	s := &sampler{start: time.Now(), cpu0: map[string]time.Duration{}, last: map[string]time.Duration{},
		rss: map[string][]float64{}, mcpu: map[string][]float64{}, peak: map[string]use{}, end: map[string]use{},
		reps: slices.Clone(reps), stop: make(chan struct{}), done: make(chan struct{})}
	for _, rep := range reps {
		if u, err := rep.usage(); err == nil {
			s.cpu0[rep.id], s.last[rep.id] = u.cpu, u.cpu
		}
	}
	go func() {
		defer close(s.done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
			s.sample()
		}
	}()
	return s
}

// add samples rep too from now on: all of its CPU is the run's, as it started during it.
func (s *sampler) add(rep *replica) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reps = append(s.reps, rep)
}

// heapEvery is how many samples apart the replicas' heap is read (a scrape of their metrics).
const heapEvery = 5

func (s *sampler) sample() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	for _, rep := range s.reps {
		if !rep.alive() {
			// Its CPU since the last sample is in the exit status, not in /proc any more.
			s.last[rep.id] = max(s.last[rep.id], rep.cpuAtExit())
			continue
		}
		u, err := rep.usage()
		if err != nil {
			continue
		}
		s.mcpu[rep.id] = append(s.mcpu[rep.id], float64((u.cpu - s.last[rep.id]).Milliseconds()))
		s.last[rep.id] = u.cpu
		s.rss[rep.id] = append(s.rss[rep.id], float64(u.rss)/(1<<20))
		p, e := s.peak[rep.id], s.end[rep.id]
		p.rss, p.anon = max(p.rss, u.rss), max(p.anon, u.anon)
		e.rss, e.anon = u.rss, u.anon
		if s.n%heapEvery == 1 {
			if m, err := rep.metrics(); err == nil {
				e.heap = int64(m["go_memstats_heap_inuse_bytes"])
				p.heap = max(p.heap, e.heap)
			}
		}
		s.peak[rep.id], s.end[rep.id] = p, e
	}
}

// finish stops sampling and fills the result's per-replica usage.
func (s *sampler) finish(res *Result) {
	close(s.stop)
	<-s.done
	s.n = 0 // the last sample reads the heap too
	s.sample()
	s.mu.Lock()
	defer s.mu.Unlock()
	elapsed := time.Since(s.start).Seconds()
	var total time.Duration
	for _, rep := range s.reps {
		used := s.last[rep.id] - s.cpu0[rep.id]
		total += used
		p, e := s.peak[rep.id], s.end[rep.id]
		res.PerReplica = append(res.PerReplica, ReplicaUsage{ID: rep.id, CPUSeconds: used.Seconds(), CPUMillicores: 1000 * used.Seconds() / elapsed,
			PeakRSSBytes: p.rss, EndRSSBytes: e.rss, PeakRSSAnonBytes: p.anon, EndRSSAnonBytes: e.anon,
			PeakHeapInuseBytes: p.heap, EndHeapInuseBytes: e.heap})
	}
	if res.FindingsIn > 0 {
		res.CPUSecondsPer1000 = total.Seconds() * 1000 / float64(res.FindingsIn)
	}
	res.Series.RSSMiB, res.Series.CPUMilicores = s.rss, s.mcpu
}

// counters are the shared parts' totals at a moment.
type counters struct {
	at          time.Time
	redisOps    int64
	apiRequests float64
	// refused is the Observation creates the API server refused as conflicts (409).
	refused float64
	// requests are the API server's requests by verb and resource ("POST observations").
	requests map[string]float64
	// apiCPU and etcdCPU are the CPU seconds the API server and etcd have used.
	apiCPU, etcdCPU float64
}

func (e *env) counters(ctx context.Context) counters {
	c := counters{at: time.Now(), etcdCPU: e.etcdMetrics()["process_cpu_seconds_total"]}
	rc := redis.NewClient(&redis.Options{Addr: e.redis.Addr})
	defer rc.Close()
	if info, err := rc.Info(ctx, "stats").Result(); err == nil {
		c.redisOps = infoInt(info, "total_commands_processed")
	}
	if raw, err := e.cluster.Kube.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx); err == nil {
		if m, err := parseMetrics(strings.NewReader(string(raw))); err == nil {
			c.apiRequests = m["apiserver_request_total"]
			c.refused = refusedCreates(m)
			c.requests = requestsBy(m)
			c.apiCPU = m["process_cpu_seconds_total"]
		}
	}
	return c
}

// requestsBy sums the API server's request counts by verb and resource.
func requestsBy(m map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for series, v := range m {
		labels, ok := strings.CutPrefix(series, "apiserver_request_total{")
		if !ok {
			continue
		}
		out[label(labels, "verb")+" "+label(labels, "resource")] += v
	}
	return out
}

// label reads one label's value from a series' labels as the text format writes them
// (name="value",name="value"}).
func label(labels, name string) string {
	for _, kv := range strings.Split(strings.TrimSuffix(labels, "}"), `",`) {
		if v, ok := strings.CutPrefix(kv, name+`="`); ok {
			return strings.TrimSuffix(v, `"`)
		}
	}
	return ""
}

// costs puts in res what the shared parts did between before and after: the API server's
// requests per second by verb and resource (those above one a second), and the CPU the API
// server and etcd used, in millicores.
func costs(before, after counters, res *Result) {
	secs := after.at.Sub(before.at).Seconds()
	if secs <= 0 {
		return
	}
	res.APIServerMillicores = 1000 * (after.apiCPU - before.apiCPU) / secs
	res.EtcdMillicores = 1000 * (after.etcdCPU - before.etcdCPU) / secs
	res.APIRequests = map[string]float64{}
	for k, v := range after.requests {
		if rate := (v - before.requests[k]) / secs; rate >= 1 {
			res.APIRequests[k] = math.Round(rate*10) / 10
		}
	}
}

func (e *env) redisMemory(ctx context.Context) int64 {
	rc := redis.NewClient(&redis.Options{Addr: e.redis.Addr})
	defer rc.Close()
	info, err := rc.Info(ctx, "memory").Result()
	if err != nil {
		return 0
	}
	return infoInt(info, "used_memory")
}

func (e *env) etcdBytes() int64 {
	return int64(e.etcdMetrics()["etcd_mvcc_db_total_size_in_bytes"])
}

// etcdMetrics reads etcd's metrics; nil when they cannot be read.
func (e *env) etcdMetrics() map[string]float64 {
	if e.cluster.EtcdURL == "" {
		return nil
	}
	resp, err := http.Get(e.cluster.EtcdURL + "/metrics")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	m, err := parseMetrics(resp.Body)
	if err != nil {
		return nil
	}
	return m
}

func infoInt(info, key string) int64 {
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			var n int64
			fmt.Sscan(v, &n)
			return n
		}
	}
	return 0
}

// pipelineTotals sums the replicas' pipeline counters, reads the orders in force, and puts the
// decomposition of the findings' time (zen_watcher_finding_stage_seconds) in the result's extra
// as P50 and P99 per stage, in ms, read off the histograms' buckets summed over the replicas.
func pipelineTotals(reps []*replica, res *Result) {
	res.Pipeline, res.Orders = map[string]int64{}, map[string]string{}
	stages := map[string]map[float64]float64{} // stage → bucket bound → count
	defer func() { stageQuantiles(stages, res) }()
	for _, rep := range reps {
		if !rep.alive() {
			continue
		}
		m, err := rep.metrics()
		if err != nil {
			continue
		}
		for _, name := range []string{"zen_watcher_optimization_source_events_processed_total", "zen_watcher_observations_created_total",
			"zen_watcher_observations_filtered_total", "zen_watcher_observations_deduplicated_total",
			"zen_watcher_observations_failed_total", "zen_watcher_webhook_queue_claimed_total"} {
			res.Pipeline[strings.TrimPrefix(name, "zen_watcher_")] += int64(m[name])
		}
		addStageBuckets(m, stages)
		for series, v := range m {
			// zen_watcher_optimization_order{order="filter_first",source="trivy"} 1
			if rest, ok := strings.CutPrefix(series, `zen_watcher_optimization_order{order="`); ok && v == 1 {
				order, rest, _ := strings.Cut(rest, `"`)
				src, _, _ := strings.Cut(strings.TrimPrefix(rest, `,source="`), `"`)
				res.Orders[src] = order
			}
		}
	}
}

// summarize turns the run's observations into the result's figures and series.
func (r *run) summarize(loadEnd time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	res := r.res
	res.FindingsPerSec = float64(res.FindingsIn) / res.LoadSeconds
	res.Observations = len(r.seen)
	res.Lost = len(r.pending)
	for k := range r.pending {
		if len(res.LostSample) == 10 {
			break
		}
		res.LostSample = append(res.LostSample, k)
	}
	res.Expected = r.want
	res.WrittenTwice = r.twice
	if len(r.outAt) > 0 && len(r.inAt) > 0 {
		sort.Slice(r.outAt, func(i, j int) bool { return r.outAt[i].Before(r.outAt[j]) })
		sort.Slice(r.inAt, func(i, j int) bool { return r.inAt[i].Before(r.inAt[j]) })
		res.ObsPerSec = float64(len(r.outAt)) / r.outAt[len(r.outAt)-1].Sub(r.inAt[0]).Seconds()
		res.DrainSeconds = max(0, r.outAt[len(r.outAt)-1].Sub(loadEnd).Seconds())
	}
	if res.RawCreatesPerSec > 0 {
		res.RatioOfRaw = res.ObsPerSec / res.RawCreatesPerSec
	}
	lat := append([]time.Duration(nil), r.latency...)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	res.LatencyBySource = spreads(r.latBySource)
	res.LatencyP10Ms, res.LatencyP50Ms, res.LatencyP95Ms, res.LatencyP99Ms = pct(lat, .10), pct(lat, .50), pct(lat, .95), pct(lat, .99)
	if raw := res.RawPath; raw != nil && raw.P99Ms > 0 && raw.PerSec > 0 {
		res.P99OverRawPath, res.OutOverRawPath = res.LatencyP99Ms/raw.P99Ms, res.ObsPerSec/raw.PerSec
	}
	if len(r.inAt) > 0 {
		t0 := r.inAt[0]
		res.Series.InPerSec = perSecond(t0, r.inAt)
		res.Series.OutPerSec = perSecond(t0, r.outAt)
		res.Series.P99Ms = p99PerSecond(t0, r.latAt, r.latency)
	}
}

// spread is the median and tail of a set of latencies.
type spread struct {
	Samples int     `json:"samples"`
	P50Ms   float64 `json:"p50Ms"`
	P99Ms   float64 `json:"p99Ms"`
}

// spreads returns the spread of each set of latencies; nil when there is none.
func spreads(by map[string][]time.Duration) map[string]spread {
	if len(by) == 0 {
		return nil
	}
	out := make(map[string]spread, len(by))
	for k, lat := range by {
		lat = slices.Sorted(slices.Values(lat))
		out[k] = spread{Samples: len(lat), P50Ms: pct(lat, .50), P99Ms: pct(lat, .99)}
	}
	return out
}

func pct(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	return float64(sorted[int(p*float64(len(sorted)-1))].Microseconds()) / 1000
}

func perSecond(t0 time.Time, ts []time.Time) []float64 {
	var out []float64
	for _, t := range ts {
		i := int(t.Sub(t0).Seconds())
		if i < 0 {
			continue
		}
		for len(out) <= i {
			out = append(out, 0)
		}
		out[i]++
	}
	return out
}

// p99PerSecond is the P99 latency of the Observations that appeared in each second.
func p99PerSecond(t0 time.Time, at []time.Time, lat []time.Duration) []float64 {
	var buckets [][]time.Duration
	for i, t := range at {
		b := int(t.Sub(t0).Seconds())
		if b < 0 {
			continue
		}
		for len(buckets) <= b {
			buckets = append(buckets, nil)
		}
		buckets[b] = append(buckets[b], lat[i])
	}
	out := make([]float64, len(buckets))
	for i, b := range buckets {
		sort.Slice(b, func(x, y int) bool { return b[x] < b[y] })
		out[i] = pct(b, .99)
	}
	return out
}

// addStageBuckets adds the stage histogram's buckets of one replica's metrics to stages.
func addStageBuckets(m map[string]float64, stages map[string]map[float64]float64) {
	for series, v := range m {
		// zen_watcher_finding_stage_seconds_bucket{stage="queue",le="0.005"} 12
		rest, ok := strings.CutPrefix(series, `zen_watcher_finding_stage_seconds_bucket{stage="`)
		if !ok {
			continue
		}
		stage, rest, _ := strings.Cut(rest, `"`)
		le, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimPrefix(rest, `,le="`), `"}`), 64)
		if err != nil {
			continue
		}
		if stages[stage] == nil {
			stages[stage] = map[float64]float64{}
		}
		stages[stage][le] += v
	}
}

// stageQuantiles records each stage's P50 and P99: the upper bound of the first bucket holding
// the quantile (a bound, not an interpolation); -1 beyond the last finite bucket.
func stageQuantiles(stages map[string]map[float64]float64, res *Result) {
	p50, p99 := map[string]float64{}, map[string]float64{}
	for stage, buckets := range stages {
		bounds := make([]float64, 0, len(buckets))
		for le := range buckets {
			bounds = append(bounds, le)
		}
		sort.Float64s(bounds)
		total := buckets[math.Inf(1)]
		if total == 0 {
			continue
		}
		at := func(q float64) float64 {
			for _, le := range bounds {
				if buckets[le] >= q*total && !math.IsInf(le, 1) {
					return le * 1000
				}
			}
			return -1
		}
		p50[stage], p99[stage] = at(0.5), at(0.99)
	}
	if len(p50) > 0 {
		res.Extra["stageP50Ms"], res.Extra["stageP99Ms"] = p50, p99
	}
}

// idleSettle is how long the replicas idle before their CPU counts as idling: a start's lists of
// what earlier scenarios left in the cluster, and the leader's first cleanup pass, are not.
const idleSettle = 10 * time.Second

// idle leaves the replicas alone for d, and records as extra idleMillicores the most CPU any of
// them used once settled; it is left out when a replica could not be measured.
func (r *run) idle(d time.Duration) {
	r.res.LoadSeconds = d.Seconds()
	settle := min(idleSettle, d/2)
	time.Sleep(settle)
	start := time.Now()
	before := make([]time.Duration, len(r.replicas))
	for i, rep := range r.replicas {
		u, err := rep.usage()
		if err != nil {
			time.Sleep(d - settle)
			return
		}
		before[i] = u.cpu
	}
	time.Sleep(d - settle)
	secs := time.Since(start).Seconds()
	most := 0.0
	for i, rep := range r.replicas {
		u, err := rep.usage()
		if err != nil {
			return
		}
		most = max(most, 1000*(u.cpu-before[i]).Seconds()/secs)
	}
	r.res.Extra["idleMillicores"] = most
}
