package e2e

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kube-zen/zen-watcher/internal/testenv"
	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
)

// TestSentinelFailoverUnderLoad: three replicas reach Redis through three real Sentinels, with
// -redis-wait-replicas 1. While Falco alerts arrive at the durable queue and Warning Events at
// the informers, the Sentinels fail the primary over to its replica (SENTINEL FAILOVER). Every
// alert answered 2xx has exactly one Observation, and so has every Warning. No replica stops, so
// the member Leases keep their default duration: the API server, busy writing the alerts, may take
// seconds to renew one, and a lease of a few seconds would lapse over and over beside the failover.
func TestSentinelFailoverUnderLoad(t *testing.T) {
	sen, err := testenv.StartRedisSentinel()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sen.Close() })
	const ns = "zen-sentinel"
	ensureNamespace(t, ns)
	ensureNamespace(t, durableNamespace)
	ingester(t, "falco-durable", v1alpha1.IngesterSpec{Source: "falcod", Adapter: v1alpha1.AdapterFalco,
		Webhook: &v1alpha1.WebhookSource{Path: "/falcod", Auth: v1alpha1.WebhookAuth{Type: v1alpha1.WebhookAuthNone}}})
	// With an Ingester in the cluster the default set does not run: the Warnings get their own.
	ingester(t, "warnings-sentinel", v1alpha1.IngesterSpec{Source: "k8sevents", Adapter: v1alpha1.AdapterK8sEvents,
		Informer: &v1alpha1.InformerSource{Version: "v1", Resource: "events", FieldSelector: "type=Warning"}})
	l := &load{namespaces: faultNamespaces(t, "harbor", "tenants", "quotas", "exports", "vaults")}
	var rs []*replica
	for _, id := range []string{"sen-a", "sen-b", "sen-c"} {
		rs = append(rs, startReplica(t, id, "-namespace", ns, "-release", "sentinel", "-member-id", id,
			"-redis-addr", strings.Join(sen.Sentinels, ","), "-redis-master-name", testenv.SentinelMaster,
			"-redis-wait-replicas", "1", "-webhook-claim-idle", "3s", "-webhook-rate", "100000"))
	}
	for _, r := range rs {
		r.WaitReady(t, 60*time.Second)
		waitRoute(t, r, "/falcod")
	}
	p := &poster{t: t, ns: ns, targets: rs, answered: map[int]string{}, client: &http.Client{Timeout: 30 * time.Second}}

	const alerts = 3_000
	var failedOver sync.Once
	var failoverErr error
	var took time.Duration
	l.run(t, 40*time.Millisecond)
	p.postRange(0, alerts, 8, nil, func(done int) {
		if done == alerts/3 {
			failedOver.Do(func() {
				began := time.Now()
				failoverErr = sen.Failover(60 * time.Second)
				took = time.Since(began)
			})
		}
	})
	l.pause()
	if failoverErr != nil {
		t.Fatal(failoverErr)
	}
	queued, written := 0, 0
	for _, how := range p.answered {
		switch how {
		case "queued":
			queued++
		case "written":
			written++
		}
	}
	t.Logf("SENTINEL FAILOVER under load: done in %s; %d alerts answered queued, %d written, %d refusals retried",
		took.Round(time.Millisecond), queued, written, p.refused.Load())
	if queued == 0 {
		t.Error("no alert was answered queued: the durable queue was never used")
	}
	waitNames(t, p, 0, alerts, 3*time.Minute)
	exactlyOnce(t, l, "through a Sentinel failover")
	fallbacks := 0.0
	for _, r := range rs {
		fallbacks += r.metric(`zen_watcher_webhook_queue_fallbacks_total{reason="queue_unreplicated",source="falcod"}`)
	}
	t.Logf("requests answered after writing because no replica held their entry: %.0f", fallbacks)
}
