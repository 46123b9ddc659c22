package e2e

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/kube-zen/zen-watcher/internal/testenv"
	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
)

// TestIngesterStatusSpeaksForEveryReplica: three replicas share a Falco webhook, each receiving a
// third of the alerts. The Ingester's status counts every alert and every Observation, whichever
// replica took it or wrote it, and only the leader writes it: the followers' API traffic, read at
// their proxies, holds no status write, so the status does not flip between partial counts.
func TestIngesterStatusSpeaksForEveryReplica(t *testing.T) {
	redisSrv, err := testenv.StartRedis()
	if err != nil {
		t.Fatal(err)
	}
	defer redisSrv.Close()
	ensureNamespace(t, haNamespace)
	const name, path, source = "falco-status", "/falco-status", "falcostatus"
	ingester(t, name, v1alpha1.IngesterSpec{Source: source, Adapter: v1alpha1.AdapterFalco,
		Webhook: &v1alpha1.WebhookSource{Path: path, Auth: v1alpha1.WebhookAuth{Type: v1alpha1.WebhookAuthNone}}})
	ids := []string{"st-a", "st-b", "st-c"}
	rs, proxies := startProxied(t, "status-sum", redisSrv.Addr, ids, "-coordination-interval", "500ms",
		"-order-tune-interval", "1s")
	for _, r := range rs {
		waitRoute(t, r, path)
	}

	const alerts = 300
	for n := range alerts {
		r := rs[ids[n%len(ids)]]
		body := fmt.Appendf(nil, `{"output":"status alert %d","priority":"Critical","rule":"Status test","time":"2026-12-01T00:00:00.%09dZ","hostname":"node-%d"}`,
			n, n, n%7)
		if code := post(t, r, path, "", body); code != http.StatusAccepted {
			t.Fatalf("alert %d to %s: HTTP %d", n, r.Name, code)
		}
	}
	waitObservations(t, haNamespace, source, alerts)
	eventually(t, 30*time.Second, func(context.Context) error {
		if st := getIngester(t, name).Status; st.EventsSeen != alerts || st.ObservationsWritten != alerts {
			return fmt.Errorf("status counts %d seen, %d written; want %d of each", st.EventsSeen, st.ObservationsWritten, alerts)
		}
		return nil
	})
	// Two status intervals more: a replica writing its own third would show now.
	settled := time.Now()
	for time.Since(settled) < 11*time.Second {
		if st := getIngester(t, name).Status; st.EventsSeen != alerts || st.ObservationsWritten != alerts {
			t.Fatalf("status moved to %d seen, %d written after it counted all %d", st.EventsSeen, st.ObservationsWritten, alerts)
		}
		time.Sleep(500 * time.Millisecond)
	}
	leader := leaseHolder(t, "status-sum-leader")
	if _, ok := rs[leader]; !ok {
		t.Fatalf("leader %q is none of %v", leader, ids)
	}
	for id, p := range proxies {
		writes := p.count(time.Time{}, http.MethodPut, "/ingesters/"+name+"/status")
		t.Logf("%s (leader %v) wrote the status %d times", id, id == leader, writes)
		switch {
		case id == leader && writes == 0:
			t.Errorf("the leader %s never wrote the status", id)
		case id != leader && writes > 0:
			t.Errorf("follower %s wrote the status %d times", id, writes)
		}
	}
}
