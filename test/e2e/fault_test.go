package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/kube-zen/zen-watcher/internal/testenv"
	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
)

// apiProxy stands between one replica and the API server and records every request it passes
// on, with when it arrived: what a replica did is read here, not from its own metrics.
type apiProxy struct {
	kubeconfig string

	mu    sync.Mutex
	calls []apiCall
	// hold, when set, is how long to keep a request back before passing it on.
	hold func(*http.Request) time.Duration
}

type apiCall struct {
	at           time.Time
	method, path string
	query        url.Values
	// status is the API server's answer, once it came (a watch's when it began streaming).
	status *atomic.Int32
	// gzip is whether the request accepted a gzip answer; encoding is the answer's
	// Content-Encoding, once it came.
	gzip     bool
	encoding *atomic.Pointer[string]
}

// contentEncoding is the answer's Content-Encoding, empty before it came.
func (c apiCall) contentEncoding() string {
	if e := c.encoding.Load(); e != nil {
		return *e
	}
	return ""
}

// recordStatus passes a response on and keeps its status code in status and its Content-Encoding
// in encoding.
type recordStatus struct {
	http.ResponseWriter
	status   *atomic.Int32
	encoding *atomic.Pointer[string]
}

func (r *recordStatus) WriteHeader(code int) {
	e := r.Header().Get("Content-Encoding")
	r.encoding.Store(&e)
	r.status.Store(int32(code))
	r.ResponseWriter.WriteHeader(code)
}

// Unwrap lets the proxy flush the streaming of watches through to the replica.
func (r *recordStatus) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func startAPIProxy(t *testing.T) *apiProxy {
	t.Helper()
	target, err := url.Parse(cluster.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := rest.TransportFor(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	p := &apiProxy{}
	rp := &httputil.ReverseProxy{
		Rewrite:       func(r *httputil.ProxyRequest) { r.SetURL(target); r.Out.Host = target.Host },
		Transport:     tr,
		FlushInterval: -1,                         // watches stream
		ErrorLog:      log.New(io.Discard, "", 0), // a replica that stops cancels its watches
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		status, encoding := new(atomic.Int32), new(atomic.Pointer[string])
		p.mu.Lock()
		p.calls = append(p.calls, apiCall{at: time.Now(), method: r.Method, path: r.URL.Path, query: r.URL.Query(),
			status: status, gzip: strings.Contains(r.Header.Get("Accept-Encoding"), "gzip"), encoding: encoding})
		hold := p.hold
		p.mu.Unlock()
		if hold != nil {
			select {
			case <-time.After(hold(r)):
			case <-r.Context().Done():
				return
			}
		}
		rp.ServeHTTP(&recordStatus{ResponseWriter: w, status: status, encoding: encoding}, r)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	p.kubeconfig = filepath.Join(t.TempDir(), "kubeconfig")
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: proxy, cluster: {server: "http://%s"}}]
users: [{name: proxy, user: {}}]
contexts: [{name: proxy, context: {cluster: proxy, user: proxy}}]
current-context: proxy
`, ln.Addr())
	if err := os.WriteFile(p.kubeconfig, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// matching is the requests of method to a path containing part that arrived at or after since, in
// the order they arrived.
func (p *apiProxy) matching(since time.Time, method, part string) []apiCall {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []apiCall
	for _, c := range p.calls {
		if !c.at.Before(since) && c.method == method && strings.Contains(c.path, part) {
			out = append(out, c)
		}
	}
	return out
}

// first is when the first request of method to a path containing part arrived at or after since;
// zero if none did.
func (p *apiProxy) first(since time.Time, method, part string) time.Time {
	if calls := p.matching(since, method, part); len(calls) > 0 {
		return calls[0].at
	}
	return time.Time{}
}

// times is when each request of method to a path containing part arrived.
func (p *apiProxy) times(method, part string) []time.Time {
	var at []time.Time
	for _, c := range p.matching(time.Time{}, method, part) {
		at = append(at, c.at)
	}
	return at
}

// count is how many requests of method to a path containing part arrived at or after since.
func (p *apiProxy) count(since time.Time, method, part string) int {
	return len(p.matching(since, method, part))
}

// refused is how many creates of a path containing part arrived at or after since and were
// answered 409 Conflict (the object exists).
func (p *apiProxy) refused(since time.Time, part string) int {
	n := 0
	for _, c := range p.matching(since, http.MethodPost, part) {
		if c.status.Load() == http.StatusConflict {
			n++
		}
	}
	return n
}

// shardedLists is how many lists narrowed by a shard selector of a path containing part arrived
// at or after since: a list, or a watch that begins with the initial events (an informer's
// watch-list), not a watch that resumes.
func (p *apiProxy) shardedLists(since time.Time, part string) int {
	return len(p.shardSelectors(since, part))
}

// shardSelectors is the shard selectors of the lists shardedLists counts.
func (p *apiProxy) shardSelectors(since time.Time, part string) []string {
	var out []string
	for _, c := range p.matching(since, http.MethodGet, part) {
		lists := c.query.Get("watch") != "true" || c.query.Get("sendInitialEvents") == "true"
		if c.query.Has("shardSelector") && lists {
			out = append(out, c.query.Get("shardSelector"))
		}
	}
	return out
}

// redisMonitor records every command Redis runs (MONITOR), with Redis's time of it.
type redisMonitor struct {
	mu    sync.Mutex
	lines []string
}

func startRedisMonitor(t *testing.T, addr string) *redisMonitor {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	if _, err := conn.Write([]byte("MONITOR\r\n")); err != nil {
		t.Fatal(err)
	}
	m := &redisMonitor{}
	go func() {
		sc := bufio.NewScanner(conn)
		sc.Buffer(make([]byte, 1<<20), 1<<24)
		for sc.Scan() {
			m.mu.Lock()
			m.lines = append(m.lines, sc.Text())
			m.mu.Unlock()
		}
	}()
	return m
}

// fencedWrites counts the fenced writes of release's shared state Redis ran at or after since, by
// the term they carried.
func (m *redisMonitor) fencedWrites(release string, since time.Time) map[string]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	termKey := `"zw:{` + release + `}:term"`
	out := map[string]int{}
	for _, line := range m.lines {
		ts, rest, ok := strings.Cut(strings.TrimPrefix(line, "+"), " ")
		if !ok {
			continue
		}
		at, err := strconv.ParseFloat(ts, 64)
		if err != nil || at < float64(since.UnixMicro())/1e6 {
			continue
		}
		// EVAL(SHA) <script> 2 <term key> <hash key> <term> ...: the begin-term script has one key.
		_, after, found := strings.Cut(rest, termKey+` "zw:{`+release+`}:`)
		if !found {
			continue
		}
		fields := strings.Fields(after)
		if len(fields) >= 2 {
			out[strings.Trim(fields[1], `"`)]++
		}
	}
	return out
}

// faultNamespaces are 50 namespaces named as teams name them, for ten teams.
func faultNamespaces(t *testing.T, teams ...string) []string {
	t.Helper()
	var out []string
	for _, team := range teams {
		for _, env := range []string{"prod", "staging", "dev", "qa", "canary"} {
			ns := team + "-" + env
			createNamespace(t, ns)
			out = append(out, ns)
		}
	}
	return out
}

// gauges samples a metric of each replica every 200 ms until stop is called; a replica that does
// not answer (paused) reads -1.
type gauges struct {
	mu      sync.Mutex
	samples map[string][]sample
	stop    chan struct{}
	done    sync.WaitGroup
}

type sample struct {
	at            time.Time
	leader, cache float64
}

func sampleGauges(rs map[string]*replica) *gauges {
	g := &gauges{samples: map[string][]sample{}, stop: make(chan struct{})}
	client := &http.Client{Timeout: 150 * time.Millisecond}
	for id, r := range rs {
		g.done.Go(func() {
			tick := time.NewTicker(200 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-g.stop:
					return
				case <-tick.C:
				}
				s := sample{at: time.Now(), leader: r.metricWith(client, "zen_watcher_leader"),
					cache: r.metricWith(client, "zen_watcher_dedup_cache_size")}
				g.mu.Lock()
				g.samples[id] = append(g.samples[id], s)
				g.mu.Unlock()
			}
		})
	}
	return g
}

func (g *gauges) end() map[string][]sample {
	close(g.stop)
	g.done.Wait()
	return g.samples
}

// TestPausedLeaderStopsActing: the leader is paused (SIGSTOP) for three lease durations in the
// middle of a cleanup run, under a steady load of warnings in 50 namespaces. Another replica takes
// over; when the old leader resumes it decides no delete (what was already on its way to the API
// server when it was paused lands as it resumes, one request at most per cleanup worker), writes no
// tuning or order under its old term, and reports itself not leading, while no two replicas report leading at once and no
// replica's dedup cache shrinks by more than a quarter from one sample to the next. At the end
// every warning has exactly one Observation, every expired Observation is gone and every live one
// is there.
func TestPausedLeaderStopsActing(t *testing.T) {
	const cleanupWorkers = 32 // cleanup.Config's default
	redisSrv, err := testenv.StartRedis()
	if err != nil {
		t.Fatal(err)
	}
	defer redisSrv.Close()
	ensureNamespace(t, haNamespace)
	ns := "fault-cleanup"
	createNamespace(t, ns)
	c := unthrottledClient(t)
	ttlObservations(t, c, ns, "expired", 3000, time.Now().Add(-time.Hour).Unix())
	ttlObservations(t, c, ns, "live", 500, time.Now().Add(time.Hour).Unix())
	l := &load{namespaces: faultNamespaces(t, "payments", "checkout", "search", "identity", "billing", "ledger",
		"catalog", "media", "ads", "notify")}

	const release = "fault"
	rs, proxies := startProxied(t, release, redisSrv.Addr, []string{"fault-a", "fault-b", "fault-c"},
		"-coordination-interval", "1s", "-ha-optimization", "-cleanup-interval", "1s", "-cleanup-deletes-per-second", "100")
	l.run(t, 50*time.Millisecond)
	var old string
	eventually(t, 30*time.Second, func(context.Context) error {
		for id, r := range rs {
			if r.metric(`zen_watcher_cleanup_deleted_total{reason="expired"}`) > 0 {
				old = id
				return nil
			}
		}
		return fmt.Errorf("no leader has started deleting")
	})
	monitor := startRedisMonitor(t, redisSrv.Addr)
	rdb := redis.NewClient(&redis.Options{Addr: redisSrv.Addr})
	defer rdb.Close()
	oldTerm, err := rdb.HGet(context.Background(), "zw:{"+release+"}:term", "n").Result()
	if err != nil {
		t.Fatalf("reading the leader's term: %v", err)
	}
	time.Sleep(3 * time.Second) // the first tunings are in force
	g := sampleGauges(rs)

	if err := rs[old].Cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	paused := time.Now()
	eventually(t, 20*time.Second, func(context.Context) error {
		if h := leaseHolder(t, release+"-leader"); h == old || h == "" {
			return fmt.Errorf("the Lease is still %q's", h)
		}
		return nil
	})
	t.Logf("a new leader holds the Lease %s after the pause began", time.Since(paused).Round(10*time.Millisecond))
	time.Sleep(time.Until(paused.Add(12 * time.Second)))
	if err := rs[old].Cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	resumed := time.Now()
	t.Logf("%s paused for %s; the Lease is %s's", old, resumed.Sub(paused).Round(time.Millisecond), leaseHolder(t, release+"-leader"))
	eventually(t, 5*time.Second, func(context.Context) error {
		if v := rs[old].metric("zen_watcher_leader"); v != 0 {
			return fmt.Errorf("the resumed replica's leader gauge reads %v", v)
		}
		return nil
	})
	time.Sleep(5 * time.Second) // what a stale leader would do, it does now
	samples := g.end()
	// A delete that passed the fence's last check, in the client's transport, before the pause
	// reaches the API server as the process resumes; anything later was decided after it.
	settled := resumed.Add(time.Second)
	deletes := func(since time.Time) int { return proxies[old].count(since, http.MethodDelete, "/observations/") }
	inFlight, late := deletes(resumed)-deletes(settled), deletes(settled)
	t.Logf("after the resume: %d deletes in flight and %d later from the deposed leader, fenced writes by term %v",
		inFlight, late, monitor.fencedWrites(release, resumed))
	if late != 0 {
		t.Errorf("the deposed leader sent %d deletes more than a second after it resumed", late)
	}
	if inFlight > cleanupWorkers {
		t.Errorf("%d deletes from the deposed leader as it resumed; at most %d (one per worker) can have been on their way", inFlight, cleanupWorkers)
	}
	writes := monitor.fencedWrites(release, resumed)
	if writes[oldTerm] != 0 {
		t.Errorf("Redis ran %d fenced writes under the deposed leader's term %s after it resumed", writes[oldTerm], oldTerm)
	}
	if len(writes) == 0 {
		t.Error("no fenced write at all after the resume: the new leader publishes nothing, or the monitor sees nothing")
	}
	if b := rs[old].metric("zen_watcher_cleanup_backlog"); b != 0 {
		t.Errorf("the deposed leader reports a cleanup backlog of %v", b)
	}
	checkGauges(t, samples, settled)

	l.pause()
	exactlyOnce(t, l, "after the leader's pause")
	eventually(t, 90*time.Second, func(ctx context.Context) error {
		list, err := c.ListObservations(ctx, ns, v1alpha1.LabelSource+"=ttl-test")
		if err != nil {
			return err
		}
		live := 0
		for _, o := range list.Items {
			if !strings.HasPrefix(o.Name, "live-") {
				return fmt.Errorf("%s is still there (%d left)", o.Name, len(list.Items))
			}
			live++
		}
		if live != 500 {
			return fmt.Errorf("%d live Observations, want 500", live)
		}
		return nil
	})
}

// checkGauges: from settled on, at most one replica reports leading in any round of samples, and
// no replica's cache shrinks by more than a quarter from one sample to the next.
func checkGauges(t *testing.T, samples map[string][]sample, settled time.Time) {
	t.Helper()
	leading := map[time.Duration]map[string]bool{} // 200 ms slot → replicas leading
	for id, ss := range samples {
		prev := -1.0
		for _, s := range ss {
			if s.cache < 0 {
				continue // paused
			}
			if prev > 0 && s.cache < prev*3/4 {
				t.Errorf("%s's dedup cache went from %v to %v at %s", id, prev, s.cache, s.at.Format("15:04:05.000"))
			}
			prev = s.cache
			if s.at.After(settled) && s.leader == 1 {
				slot := s.at.Sub(settled) / (200 * time.Millisecond)
				if leading[slot] == nil {
					leading[slot] = map[string]bool{}
				}
				leading[slot][id] = true
			}
		}
	}
	for slot, ids := range leading {
		if len(ids) > 1 {
			t.Errorf("%v report leading %s after the resume settled", keys(ids), slot*200*time.Millisecond)
		}
	}
}

// startProxied starts a replica of release for each id, each behind its own recording proxy, with
// leases of 4 s (extra flags come last), and waits until all are ready.
func startProxied(t *testing.T, release, redisAddr string, ids []string, extra ...string) (map[string]*replica, map[string]*apiProxy) {
	t.Helper()
	rs, proxies := map[string]*replica{}, map[string]*apiProxy{}
	for _, id := range ids {
		proxies[id] = startAPIProxy(t)
		rs[id] = startBehind(t, proxies[id], release, redisAddr, id, extra...)
	}
	for _, r := range rs {
		r.WaitReady(t, 60*time.Second)
	}
	return rs, proxies
}

// startBehind starts a replica of release behind p, with leases of 4 s (extra flags come last),
// and does not wait for it.
func startBehind(t *testing.T, p *apiProxy, release, redisAddr, id string, extra ...string) *replica {
	t.Helper()
	args := append([]string{"-namespace", haNamespace, "-member-id", id, "-redis-addr", redisAddr,
		"-release", release, "-kubeconfig", p.kubeconfig,
		"-member-lease-duration", "4s", "-member-renew-interval", "1s",
		"-leader-lease-duration", "4s", "-leader-renew-deadline", "3s", "-leader-retry-period", "500ms"}, extra...)
	return startReplica(t, id, args...)
}

func leaseHolder(t *testing.T, name string) string {
	t.Helper()
	l, err := cluster.Kube.CoordinationV1().Leases(haNamespace).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil || l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// TestPausedMemberWritesNothingItLost: a member that is not the leader is paused for three member
// lease durations while warnings keep arriving; the others take its namespaces over. When it
// resumes, its watches deliver what arrived meanwhile, and it writes none of it: it creates no
// Observation until it has renewed its Lease and read its share again. Every warning has exactly
// one Observation.
func TestPausedMemberWritesNothingItLost(t *testing.T) {
	redisSrv, err := testenv.StartRedis()
	if err != nil {
		t.Fatal(err)
	}
	defer redisSrv.Close()
	ensureNamespace(t, haNamespace)
	l := &load{namespaces: faultNamespaces(t, "orders", "inventory", "pricing", "auth", "profile", "reviews",
		"shipping", "gateway", "metrics", "mail")}
	const release = "member-fault"
	rs, proxies := startProxied(t, release, redisSrv.Addr, []string{"mf-a", "mf-b", "mf-c"})
	eventually(t, 20*time.Second, func(context.Context) error {
		for id, r := range rs {
			if r.metric("zen_watcher_shard_members") != 3 {
				return fmt.Errorf("%s does not see three members yet", id)
			}
		}
		return nil
	})
	leader := leaseHolder(t, release+"-leader")
	var paused string
	for id := range rs {
		if id != leader {
			paused = id
			break
		}
	}
	l.run(t, 50*time.Millisecond)
	time.Sleep(3 * time.Second)
	// Quiet for a moment, so that nothing the member decided before the pause is still on its way.
	l.pause()
	time.Sleep(time.Second)
	if err := rs[paused].Cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	l.run(t, 50*time.Millisecond)
	time.Sleep(12 * time.Second)
	// Taken before the signal: the resumed member may log its lapse before this goroutine runs
	// again, and a lapse logged before the resume time would not count. It creates nothing while
	// stopped, so the creates counted from here are still only the resumed member's.
	resumed := time.Now()
	if err := rs[paused].Cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	// Rejoined: the member has given its share up (the empty set) and taken the new one. The time
	// is the one the member logged: a poll notices the rejoin later, and creates the member rightly
	// made in between would count as made before it.
	var rejoined time.Time
	eventually(t, 30*time.Second, func(context.Context) error {
		var err error
		rejoined, err = rejoinedAt(rs[paused].Out.String(), resumed)
		return err
	})
	before := proxies[paused].count(resumed, http.MethodPost, "/observations") -
		proxies[paused].count(rejoined, http.MethodPost, "/observations")
	t.Logf("%s resumed; its share again after %s; %d creates in between", paused, rejoined.Sub(resumed).Round(time.Millisecond), before)
	if before != 0 {
		t.Errorf("the resumed member created %d Observations before it had its share again", before)
		proxies[paused].mu.Lock()
		for _, c := range proxies[paused].calls {
			if !c.at.Before(resumed) && c.at.Before(rejoined.Add(time.Second)) && c.method == http.MethodPost {
				t.Logf("%s %s %s", c.at.Format("15:04:05.000000"), c.method, c.path)
			}
		}
		proxies[paused].mu.Unlock()
		for _, line := range strings.Split(rs[paused].Out.String(), "\n") {
			if strings.Contains(line, "lease") || strings.Contains(line, "share") || strings.Contains(line, "source st") {
				t.Log(line)
			}
		}
	}
	time.Sleep(3 * time.Second)
	l.pause()
	exactlyOnce(t, l, "after a member's pause")
	if n := proxies[paused].count(rejoined, http.MethodPost, "/observations"); n == 0 {
		t.Error("the member created nothing after it rejoined: the check above proves nothing")
	}
}

// rejoinedAt finds, in a replica's log, when it took a share again after it resumed: the first
// share change after resumed to a non-empty share of three members, following one to the empty
// share (the lapse).
func rejoinedAt(out string, resumed time.Time) (time.Time, error) {
	lapsed := false
	for _, c := range shareChanges(out) {
		switch {
		case c.Time.Before(resumed):
		case c.Ranges == 0:
			lapsed = true
		case lapsed && c.Members == 3:
			return c.Time, nil
		}
	}
	if !lapsed {
		return time.Time{}, fmt.Errorf("no lapse logged since the resume")
	}
	return time.Time{}, fmt.Errorf("no share of three members logged since the lapse")
}

// shareChange is one "share changed" line of a replica's log.
type shareChange struct {
	Time       time.Time `json:"time"`
	Msg        string    `json:"msg"`
	Members    int       `json:"members"`
	Ranges     int       `json:"ranges"`
	Generation int       `json:"generation"`
}

// shareChanges are the share changes a replica logged, in order.
func shareChanges(out string) []shareChange {
	var changes []shareChange
	for _, line := range strings.Split(out, "\n") {
		var c shareChange
		if json.Unmarshal([]byte(line), &c) == nil && c.Msg == "share changed" {
			changes = append(changes, c)
		}
	}
	return changes
}
