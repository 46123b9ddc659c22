package alerts

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/utils/ptr"

	"github.com/kube-zen/zen-watcher/internal/testenv"
	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/obsclient"
)

const (
	releaseNS = "zen-alerts"   // two replicas, Redis, every source
	otherNS   = "zen-alerts-b" // another release of one replica, killed outright
	okNS      = "alerts-ok"    // Warning Events that become Observations
	lockedNS  = "alerts-locked"
	doomedNS  = "alerts-doomed"
	// lockLabel on a namespace refuses the creation of Observations in it; on an Observation, its
	// deletion.
	lockLabel = "alerts.zen-watcher.test/locked"
)

// steadyFor is how long the healthy steady state is watched (ZW_ALERTS_STEADY, default 3m).
func steadyFor(t *testing.T) time.Duration {
	d := 3 * time.Minute
	if v := os.Getenv("ZW_ALERTS_STEADY"); v != "" {
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			t.Fatalf("ZW_ALERTS_STEADY: %v", err)
		}
	}
	return d
}

// TestAlertsFollowFaults: two releases scraped by a real Prometheus with the chart's rules as
// rendered for each. Healthy for several minutes, no alert fires. Then, at once: one
// release loses its only replica, the other loses one of two replicas and Redis, the API server
// refuses its Observations in one namespace, and cleanup's deletes are refused. Each matching
// alert goes pending within seconds; ZenWatcherRedisDown and ZenWatcherDown fire after their
// two minutes, and ZenWatcherRedisDown resolves once Redis is back.
func TestAlertsFollowFaults(t *testing.T) {
	ctx := context.Background()
	for _, ns := range []string{releaseNS, otherNS, okNS, lockedNS, doomedNS} {
		createNamespace(t, ns)
	}
	dir := t.TempDir()
	rulesA, alertsA := renderRules(t, dir, releaseNS, "replicaCount=2")
	rulesB, alertsB := renderRules(t, dir, otherNS, "replicaCount=1")

	redis, err := testenv.StartRedis()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = redis.Close() })
	fast := []string{"-redis-addr", redis.Addr, "-member-lease-duration", "4s", "-member-renew-interval", "1s",
		"-leader-lease-duration", "4s", "-leader-renew-deadline", "3s", "-leader-retry-period", "500ms",
		"-coordination-interval", "1s", "-cleanup-interval", "1s"}
	a0 := startReplica(t, "zw-0", append([]string{"-namespace", releaseNS, "-release", "zw"}, fast...)...)
	a1 := startReplica(t, "zw-1", append([]string{"-namespace", releaseNS, "-release", "zw"}, fast...)...)
	b0 := startReplica(t, "zwb-0", append([]string{"-namespace", otherNS, "-release", "zwb", "-default-sources=false"}, fast...)...)
	for _, r := range []*replica{a0, a1, b0} {
		r.WaitReady(t, 60*time.Second)
	}
	prom := startPrometheus(t, dir, []string{rulesA, rulesB},
		[]target{{a0.MetricsAddr, releaseNS}, {a1.MetricsAddr, releaseNS}, {b0.MetricsAddr, otherNS}})
	prom.scraped(t, 3)
	eventually(t, 30*time.Second, func() error {
		loaded, unhealthy, err := prom.ruleHealth()
		switch {
		case err != nil:
			return err
		case len(loaded) != len(alertsA)+len(alertsB):
			return fmt.Errorf("prometheus loaded %d alerting rules, the chart rendered %d", len(loaded), len(alertsA)+len(alertsB))
		case len(unhealthy) > 0:
			return fmt.Errorf("rules that do not evaluate: %s", strings.Join(unhealthy, "; "))
		}
		return nil
	})

	load := startLoad(t, okNS, 200*time.Millisecond)
	steady(t, prom, steadyFor(t))
	load.stop()
	obs, err := obsclient.New(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() error {
		list, err := obs.ListObservations(ctx, okNS, "")
		if err != nil {
			return err
		}
		if len(list.Items) != load.sent() {
			return fmt.Errorf("%d Observations in %s for %d Warning Events", len(list.Items), okNS, load.sent())
		}
		return nil
	})
	t.Logf("steady state: %d Warning Events, as many Observations", load.sent())

	lock(t, obs)
	fault := time.Now()
	b0.Kill()
	a1.Kill()
	if err := redis.Stop(); err != nil {
		t.Fatal(err)
	}
	doomed(t, obs, 20)
	refused := startLoad(t, lockedNS, 100*time.Millisecond)
	defer refused.stop()

	prom.await(t, "ZenWatcherDown", otherNS, "pending", fault, 30*time.Second)
	prom.await(t, "ZenWatcherRedisDown", releaseNS, "pending", fault, 30*time.Second)
	prom.await(t, "ZenWatcherMembersBelowReplicas", releaseNS, "pending", fault, 30*time.Second)
	prom.await(t, "ZenWatcherCleanupFailing", releaseNS, "pending", fault, 60*time.Second)
	prom.await(t, "ZenWatcherWriteErrors", releaseNS, "pending", fault, 90*time.Second)
	checkWriteErrorLabels(t, prom)
	if s, err := prom.state("ZenWatcherDown", releaseNS); err != nil || s != "" {
		t.Errorf("ZenWatcherDown of %s, which still has a replica: %q (%v)", releaseNS, s, err)
	}
	// The two-minute alerts fire at two minutes, give or take the scrape and evaluation seconds.
	for _, name := range []struct{ alert, ns string }{{"ZenWatcherRedisDown", releaseNS}, {"ZenWatcherDown", otherNS}} {
		if d := prom.await(t, name.alert, name.ns, "firing", fault, 3*time.Minute); d > 2*time.Minute+30*time.Second {
			t.Errorf("%s fired %s after the fault; its for: is 2m", name.alert, d)
		}
	}
	refused.stop()
	back := time.Now()
	if err := redis.Start(); err != nil {
		t.Fatal(err)
	}
	prom.await(t, "ZenWatcherRedisDown", releaseNS, "", back, 30*time.Second)
}

// checkWriteErrorLabels: the write-errors alert names the source and the API server's reason.
func checkWriteErrorLabels(t *testing.T, prom *prometheus) {
	t.Helper()
	all, err := prom.alerts()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range all {
		if a.Labels["alertname"] == "ZenWatcherWriteErrors" && (a.Labels["source"] != "k8sevents" || a.Labels["reason"] != "forbidden") {
			t.Errorf("ZenWatcherWriteErrors with labels %v, want source k8sevents and reason forbidden", a.Labels)
		}
	}
}

// steady watches Prometheus's alerts for d and fails on any that fires. It first waits for
// start-up's pending ones to clear: Redis not yet answered, members not yet seen.
func steady(t *testing.T, prom *prometheus, d time.Duration) {
	t.Helper()
	eventually(t, 60*time.Second, func() error {
		all, err := prom.alerts()
		if err != nil {
			return err
		}
		if len(all) > 0 {
			return fmt.Errorf("alerts after start-up: %v", all)
		}
		return nil
	})
	end := time.Now().Add(d)
	polls, pending := 0, map[string]bool{}
	for time.Now().Before(end) {
		all, err := prom.alerts()
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range all {
			if a.State == "firing" {
				t.Fatalf("in a healthy steady state, after %s: %v", d-time.Until(end).Round(time.Second), all)
			}
			pending[a.String()] = true // a blip on a loaded machine; logged, not a fault
		}
		polls++
		time.Sleep(2 * time.Second)
	}
	for a := range pending {
		t.Logf("pending for a while in the steady state: %s", a)
	}
	_, unhealthy, err := prom.ruleHealth()
	if err != nil || len(unhealthy) > 0 {
		t.Fatalf("rules that do not evaluate: %v %v", unhealthy, err)
	}
	t.Logf("healthy for %s: no alert fired in %d polls", d, polls)
}

// lock makes the API server refuse, by ValidatingAdmissionPolicy, the creation of Observations in
// lockedNS and the deletion of Observations carrying lockLabel, and waits until it does.
func lock(t *testing.T, obs *obsclient.Client) {
	t.Helper()
	ctx := context.Background()
	adm := cluster.Kube.AdmissionregistrationV1()
	rule := func(op admissionv1.OperationType) []admissionv1.NamedRuleWithOperations {
		return []admissionv1.NamedRuleWithOperations{{RuleWithOperations: admissionv1.RuleWithOperations{
			Operations: []admissionv1.OperationType{op},
			Rule: admissionv1.Rule{APIGroups: []string{v1alpha1.GroupName}, APIVersions: []string{"*"},
				Resources: []string{"observations"}},
		}}}
	}
	selector := &metav1.LabelSelector{MatchLabels: map[string]string{lockLabel: "true"}}
	for name, match := range map[string]*admissionv1.MatchResources{
		"alerts-no-create": {NamespaceSelector: selector, ResourceRules: rule(admissionv1.Create)},
		"alerts-no-delete": {ObjectSelector: selector, ResourceRules: rule(admissionv1.Delete)},
	} {
		if _, err := adm.ValidatingAdmissionPolicies().Create(ctx, &admissionv1.ValidatingAdmissionPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: admissionv1.ValidatingAdmissionPolicySpec{
				FailurePolicy: ptr.To(admissionv1.Fail), MatchConstraints: match,
				Validations: []admissionv1.Validation{{Expression: "false", Message: "locked by the alerts test",
					Reason: ptr.To(metav1.StatusReasonForbidden)}},
			},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := adm.ValidatingAdmissionPolicyBindings().Create(ctx, &admissionv1.ValidatingAdmissionPolicyBinding{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: admissionv1.ValidatingAdmissionPolicyBindingSpec{PolicyName: name,
				ValidationActions: []admissionv1.ValidationAction{admissionv1.Deny}},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = adm.ValidatingAdmissionPolicyBindings().Delete(ctx, name, metav1.DeleteOptions{})
			_ = adm.ValidatingAdmissionPolicies().Delete(ctx, name, metav1.DeleteOptions{})
		})
	}
	if _, err := cluster.Kube.CoreV1().Namespaces().Patch(ctx, lockedNS, types.MergePatchType,
		[]byte(`{"metadata":{"labels":{"`+lockLabel+`":"true"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	probe := observation(doomedNS, "probe", time.Now().Add(time.Hour))
	if err := obs.Create(ctx, probe); err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() error {
		err := obs.Create(ctx, observation(lockedNS, "probe", time.Now().Add(time.Hour)))
		if !apierrors.IsForbidden(err) {
			return fmt.Errorf("creating an Observation in %s: %v, want forbidden", lockedNS, err)
		}
		err = dyn.Resource(v1alpha1.ObservationResource).Namespace(doomedNS).Delete(ctx, "probe", metav1.DeleteOptions{})
		if !apierrors.IsForbidden(err) {
			return fmt.Errorf("deleting a locked Observation: %v, want forbidden", err)
		}
		return nil
	})
}

// doomed creates n Observations that expired an hour ago and that the API server will not let
// cleanup delete.
func doomed(t *testing.T, obs *obsclient.Client, n int) {
	t.Helper()
	for i := range n {
		if err := obs.Create(context.Background(), observation(doomedNS, fmt.Sprint("expired-", i), time.Now().Add(-time.Hour))); err != nil {
			t.Fatal(err)
		}
	}
}

func observation(ns, name string, expires time.Time) *v1alpha1.Observation {
	ttl := int64(3600)
	return &v1alpha1.Observation{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{
			v1alpha1.LabelSource: "alerts-test", v1alpha1.LabelExpiresAt: strconv.FormatInt(expires.Unix(), 10), lockLabel: "true"}},
		Spec: v1alpha1.ObservationSpec{Source: "alerts-test", Category: "operations", Severity: "info",
			EventType: "test", TTLSecondsAfterCreation: &ttl},
	}
}

// load creates distinct Warning Events in a namespace at an interval until stopped. A create under
// way when stop is called finishes, and counts if it succeeded: cancelling it could leave an Event
// the API server stored but the load did not count.
type load struct {
	stopc chan struct{}
	once  sync.Once
	done  chan struct{}
	mu    sync.Mutex
	n     int
}

func startLoad(t *testing.T, ns string, every time.Duration) *load {
	l := &load{stopc: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-l.stopc:
				return
			case <-tick.C:
			}
			now := metav1.NewTime(time.Now())
			pod := fmt.Sprintf("web-%d", i)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			_, err := cluster.Kube.CoreV1().Events(ns).Create(ctx, &corev1.Event{
				ObjectMeta:     metav1.ObjectMeta{Name: fmt.Sprintf("%s.%d", pod, i), Namespace: ns},
				InvolvedObject: corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: ns, Name: pod, UID: types.UID("uid-" + pod)},
				Reason:         "BackOff", Message: "Back-off restarting failed container " + pod, Type: corev1.EventTypeWarning,
				Count: 1, FirstTimestamp: now, LastTimestamp: now, Source: corev1.EventSource{Component: "kubelet"},
			}, metav1.CreateOptions{})
			cancel()
			if err != nil {
				t.Errorf("creating a Warning Event: %v", err)
				return
			}
			l.mu.Lock()
			l.n++
			l.mu.Unlock()
		}
	}()
	return l
}

// stop ends the load and waits for its last create; it may be called more than once.
func (l *load) stop() {
	l.once.Do(func() { close(l.stopc) })
	<-l.done
}

func (l *load) sent() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

func createNamespace(t *testing.T, name string) {
	t.Helper()
	if _, err := cluster.Kube.CoreV1().Namespaces().Create(context.Background(),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
}
