package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kube-zen/zen-watcher/internal/testenv"
)

// probeLog is what one replica's /healthz and /readyz answered while they were polled.
type probeLog struct {
	notLive  []string // when /healthz failed, and why
	unready  int      // polls /readyz failed
	lastBad  time.Time
	polls    int
	exitedAt time.Time
	done     chan struct{} // closed when polling has ended; read the fields only after
}

// poll asks r's probes every interval until stop closes, as a kubelet would.
func poll(r *replica, every time.Duration, stop <-chan struct{}) *probeLog {
	log := &probeLog{done: make(chan struct{})}
	client := &http.Client{Timeout: time.Second} // the chart's probes use the kubelet's default of 1 s
	get := func(path string) (int, error) {
		resp, err := client.Get("http://" + r.MetricsAddr + path)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	go func() {
		defer close(log.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-r.Exited():
				log.exitedAt = time.Now()
				return
			case <-tick.C:
			}
			log.polls++
			if code, err := get("/healthz"); code != http.StatusOK {
				log.notLive = append(log.notLive, fmt.Sprintf("%s: HTTP %d %v", time.Now().Format("15:04:05.0"), code, err))
			}
			if code, _ := get("/readyz"); code != http.StatusOK {
				log.unready++
				log.lastBad = time.Now()
			}
		}
	}()
	return log
}

// TestAPIServerAwayKeepsReplicasRunning pauses kube-apiserver (SIGSTOP: connections hang, nothing
// answers) for 45 s under two replicas with the chart's lease settings, while warnings keep being
// created. Liveness never fails — a restart would not bring the API server back, and restarting
// every replica at once would lose what they hold — readiness does while the member Lease cannot
// be renewed, and comes back after; every warning has exactly one Observation.
func TestAPIServerAwayKeepsReplicasRunning(t *testing.T) {
	cp, err := testenv.StartProcessCluster()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.ResumeAPIServer(); _ = cp.Stop() })
	redisSrv, err := testenv.StartRedis()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = redisSrv.Close() })
	ctx := context.Background()
	l := &load{kube: cp.Kube, cfg: cp.Config}
	for _, ns := range []string{"zen-away", "payments", "checkout", "frontend", "search", "identity", "billing"} {
		if _, err := cp.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
			metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if ns != "zen-away" {
			l.namespaces = append(l.namespaces, ns)
		}
	}
	// The chart's defaults: the member Lease lasts 15 s and is renewed every 5 s.
	var replicas []*replica
	for i := range 2 {
		id := fmt.Sprintf("away-%d", i)
		replicas = append(replicas, startReplica(t, id, "-kubeconfig", cp.Kubeconfig, "-namespace", "zen-away",
			"-member-id", id, "-redis-addr", redisSrv.Addr))
	}
	for _, r := range replicas {
		r.WaitReady(t, 60*time.Second)
	}
	l.run(t, 50*time.Millisecond)
	time.Sleep(2 * time.Second)

	stop := make(chan struct{})
	logs := make([]*probeLog, len(replicas))
	for i, r := range replicas {
		logs[i] = poll(r, 500*time.Millisecond, stop)
	}
	if err := cp.PauseAPIServer(); err != nil {
		t.Fatal(err)
	}
	const away = 45 * time.Second
	time.Sleep(away)
	if err := cp.ResumeAPIServer(); err != nil {
		t.Fatal(err)
	}
	resumed := time.Now()
	for _, r := range replicas {
		r.WaitReady(t, 60*time.Second)
	}
	t.Logf("ready again %s after the API server resumed", time.Since(resumed).Round(100*time.Millisecond))
	time.Sleep(3 * time.Second)
	close(stop)
	l.pause()

	for i, r := range replicas {
		log := logs[i]
		<-log.done
		if !log.exitedAt.IsZero() {
			t.Fatalf("%s exited while the API server was away: %v", r.Name, r.Err())
		}
		t.Logf("%s: %d polls, /readyz failed %d times, /healthz failed %d times", r.Name, log.polls, log.unready, len(log.notLive))
		if len(log.notLive) > 0 {
			t.Errorf("%s failed liveness %d times while the API server was away, first %v", r.Name, len(log.notLive),
				log.notLive[:min(3, len(log.notLive))])
		}
		if log.unready == 0 {
			t.Errorf("%s stayed ready through %s without renewing its member Lease", r.Name, away)
		}
		if log.lastBad.After(time.Now().Add(-2 * time.Second)) {
			t.Errorf("%s was still unready at the end", r.Name)
		}
	}
	exactlyOnce(t, l, "after the API server was away for "+away.String())
}

// TestRedisAvailableFollowsRedis: a replica with no dedup traffic at all reports Redis as it is —
// 0 when Redis is not there at its start, 1 once it answers, 0 when it is stopped, 1 when it is
// back — within a few seconds each, not only when a dedup request happens to fail.
func TestRedisAvailableFollowsRedis(t *testing.T) {
	redisSrv, err := testenv.StartRedis()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = redisSrv.Close() })
	if err := redisSrv.Stop(); err != nil { // not there when the replica starts
		t.Fatal(err)
	}
	ensureNamespace(t, "zen-gauge")
	r := startReplica(t, "gauge", "-namespace", "zen-gauge", "-release", "gauge", "-member-id", "gauge",
		"-redis-addr", redisSrv.Addr)
	r.WaitReady(t, 60*time.Second)
	redisAvailable(t, r, 0, "Redis not there at the start")
	for _, step := range []struct {
		name string
		do   func() error
		want float64
	}{
		{"Redis started", redisSrv.Start, 1},
		{"Redis stopped", redisSrv.Stop, 0},
		{"Redis back", redisSrv.Start, 1},
	} {
		if err := step.do(); err != nil {
			t.Fatal(err)
		}
		redisAvailable(t, r, step.want, step.name)
	}
	// An outage is logged once each way by what uses Redis; go-redis's own line for each failed
	// dial (in the standard logger's format, not the replica's JSON) stays at Debug.
	if out := r.Out.String(); strings.Contains(out, "failed to dial") {
		t.Errorf("go-redis's dial errors reach the log at the default level:\n%s", out)
	}
}

// TestRefusingRedisNamed: a Redis that refuses the replica's connections — protected mode, which
// serves loopback alone while no password is set — is named in the replica's log with the
// server's own reason, not as a bare "broken pipe"; redis_available is 0 while it refuses and 1
// once it accepts, with no restart.
func TestRefusingRedisNamed(t *testing.T) {
	host := testenv.NonLoopbackIPv4(t)
	redisSrv, err := testenv.StartRedisOn(host, "--protected-mode", "yes")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = redisSrv.Close() })
	ensureNamespace(t, "zen-refused")
	r := startReplica(t, "refused", "-namespace", "zen-refused", "-release", "refused", "-member-id", "refused",
		"-redis-addr", redisSrv.Addr)
	r.WaitReady(t, 60*time.Second)
	redisAvailable(t, r, 0, "Redis refusing")
	const reason = "DENIED Redis is running in protected mode"
	if out := r.Out.String(); !strings.Contains(out, reason) {
		t.Errorf("the replica's log does not give Redis's reason %q:\n%s", reason, out)
	}

	// Protected mode can be turned off from loopback, as the server's own reason says.
	_, port, _ := net.SplitHostPort(redisSrv.Addr)
	admin := redis.NewClient(&redis.Options{Addr: net.JoinHostPort("127.0.0.1", port)})
	defer admin.Close()
	if err := admin.ConfigSet(context.Background(), "protected-mode", "no").Err(); err != nil {
		t.Fatal(err)
	}
	redisAvailable(t, r, 1, "Redis accepting")
}

// redisAvailable waits up to 15 s for r's zen_watcher_redis_available to be want.
func redisAvailable(t *testing.T, r *replica, want float64, phase string) {
	t.Helper()
	since := time.Now()
	for deadline := since.Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if r.metric("zen_watcher_redis_available") == want {
			t.Logf("%s: redis_available %v after %s", phase, want, time.Since(since).Round(100*time.Millisecond))
			return
		}
	}
	t.Fatalf("%s: redis_available is %v, want %v", phase, r.metric("zen_watcher_redis_available"), want)
}
