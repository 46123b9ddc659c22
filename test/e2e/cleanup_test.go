package e2e

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/kube-zen/zen-watcher/internal/testenv"
	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/obsclient"
)

// TestCleanupSurvivesLeaderKill: the leader is killed in the middle of deleting expired
// Observations; the new leader finishes, and no live Observation is deleted.
func TestCleanupSurvivesLeaderKill(t *testing.T) {
	redisSrv, err := testenv.StartRedis()
	if err != nil {
		t.Fatal(err)
	}
	defer redisSrv.Close()
	ns := "cleanup-e2e"
	createNamespace(t, ns)
	ensureNamespace(t, haNamespace)
	c := unthrottledClient(t)
	ttlObservations(t, c, ns, "expired", 3000, time.Now().Add(-time.Hour).Unix())
	ttlObservations(t, c, ns, "live", 500, time.Now().Add(time.Hour).Unix())

	f := &fleet{t: t, redis: redisSrv.Addr, replicas: map[string]*replica{}}
	for _, id := range []string{"cl-0", "cl-1"} {
		r := startReplica(t, id, "-namespace", haNamespace, "-member-id", id, "-redis-addr", redisSrv.Addr, "-release", "cleanup",
			"-leader-lease-duration", "4s", "-leader-renew-deadline", "3s", "-leader-retry-period", "500ms",
			"-cleanup-interval", "1s", "-cleanup-deletes-per-second", "150", "-default-sources=false")
		f.replicas[id] = r
	}
	f.waitReady()
	var leader string
	eventually(t, 20*time.Second, func(context.Context) error {
		for id, r := range f.replicas {
			if r.metric("zen_watcher_leader") == 1 {
				leader = id
				return nil
			}
		}
		return fmt.Errorf("no leader")
	})
	// Let it delete for a while, then kill it mid-run.
	eventually(t, 30*time.Second, func(context.Context) error {
		if n := f.replicas[leader].metric(`zen_watcher_cleanup_deleted_total{reason="expired"}`); n > 0 {
			return nil
		}
		left, _ := c.ListObservations(context.Background(), ns, v1alpha1.LabelSource+"=ttl-test")
		if left != nil && len(left.Items) < 3300 {
			return nil
		}
		return fmt.Errorf("the leader has not started deleting")
	})
	f.kill(leader)
	mid, err := c.ListObservations(context.Background(), ns, v1alpha1.LabelSource+"=ttl-test")
	if err != nil {
		t.Fatal(err)
	}
	if len(mid.Items) <= 500 {
		t.Fatalf("the run finished before the kill (%d left); slow it down", len(mid.Items))
	}
	t.Logf("leader %s killed with %d Observations left", leader, len(mid.Items))
	eventually(t, 90*time.Second, func(ctx context.Context) error {
		list, err := c.ListObservations(ctx, ns, v1alpha1.LabelSource+"=ttl-test")
		if err != nil {
			return err
		}
		if len(list.Items) != 500 {
			return fmt.Errorf("%d Observations left, want the 500 live ones", len(list.Items))
		}
		for _, o := range list.Items {
			if o.Name[:4] != "live" {
				return fmt.Errorf("%s is still there", o.Name)
			}
		}
		return nil
	})
}

// ttlObservations creates n Observations named <prefix>-<i> in ns that expire at expiresAt.
func ttlObservations(t *testing.T, c *obsclient.Client, ns, prefix string, n int, expiresAt int64) {
	t.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(n); i = next.Add(1) - 1 {
				ttl := int64(3600)
				o := &v1alpha1.Observation{
					ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("%s-%d", prefix, i), Labels: map[string]string{
						v1alpha1.LabelSource: "ttl-test", v1alpha1.LabelExpiresAt: strconv.FormatInt(expiresAt, 10)}},
					Spec: v1alpha1.ObservationSpec{Source: "ttl-test", Category: "operations", Severity: "info",
						EventType: "test", TTLSecondsAfterCreation: &ttl},
				}
				if err := c.Create(context.Background(), o); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// unthrottledClient is an Observation client without client-go's rate limit, for set-ups that
// create thousands.
func unthrottledClient(t *testing.T) *obsclient.Client {
	t.Helper()
	rc := rest.CopyConfig(cluster.Config)
	rc.QPS, rc.Burst = -1, 1000
	c, err := obsclient.New(rc)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
