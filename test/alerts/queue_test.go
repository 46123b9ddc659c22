package alerts

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"

	"github.com/kube-zen/zen-watcher/internal/testenv"
	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/obsclient"
)

const (
	queueNS    = "zen-alerts-q" // a release whose webhook queue backs up
	alertedNS  = "alerts-queue" // where its Falco alerts' Observations go
	queueAlert = "ZenWatcherWebhookQueueLag"
	// backlog is what is posted: the replica takes 512 entries into processing (its in-flight
	// bound), and the alert's threshold is 1,000 more that no replica has taken.
	backlog = 1800
)

// TestWebhookQueueLagAlert: a replica whose writes the API server takes at 2 a second (its client
// rate limit, -kube-qps) receives 1,800 Falco alerts at once. They are queued in Redis, the
// replica takes what its in-flight bound allows, and the rest waits: ZenWatcherWebhookQueueLag
// goes pending (its 10 minutes to firing are promtool's to test). A replica that writes at full
// speed then takes the queue over, every alert becomes exactly one Observation, and the alert
// goes back to inactive.
func TestWebhookQueueLagAlert(t *testing.T) {
	ctx := context.Background()
	createNamespace(t, queueNS)
	createNamespace(t, alertedNS)
	dir := t.TempDir()
	rules, _ := renderRules(t, dir, queueNS, "replicaCount=1")
	redis, err := testenv.StartRedis()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = redis.Close() })
	falcoIngester(t)

	args := []string{"-namespace", queueNS, "-release", "zwq", "-default-sources=false", "-redis-addr", redis.Addr,
		"-sharding=false", "-coordination-interval", "1s"}
	slow := startReplica(t, "zwq-slow", append(args, "-kube-qps", "2", "-kube-burst", "50")...)
	slow.WaitReady(t, 60*time.Second)
	fastAddr := testenv.FreeAddr(t) // scraped from the start; the replica behind it comes later
	prom := startPrometheus(t, dir, []string{rules}, []target{{slow.MetricsAddr, queueNS}, {fastAddr, queueNS}})
	prom.scraped(t, 1)
	waitRoute(t, slow)

	posted := time.Now()
	for i := range backlog {
		body := fmt.Sprintf(`{"output":"queue test %d","priority":"Warning","rule":"Queue test","time":%q,`+
			`"hostname":"node-1","output_fields":{"k8s.ns.name":%q,"k8s.pod.name":"pod-%d"}}`,
			i, time.Now().UTC().Format(time.RFC3339Nano), alertedNS, i)
		resp, err := http.Post("http://"+slow.WebhookAddr+"/falco", "application/json", bytes.NewBufferString(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("alert %d answered %s", i, resp.Status)
		}
	}
	t.Logf("%d alerts posted in %s", backlog, time.Since(posted).Round(time.Millisecond))
	prom.await(t, queueAlert, queueNS, "pending", posted, 60*time.Second)
	for _, a := range mustAlerts(t, prom) {
		if a.Labels["alertname"] == queueAlert {
			if v, err := strconv.ParseFloat(a.Value, 64); err != nil || v <= 1000 {
				t.Errorf("%s is %s on a lag of %s, want over 1000", queueAlert, a.State, a.Value)
			}
		}
	}

	slow.Stop() // hands back the entries it holds
	fast := startReplicaOn(t, "zwq-fast", fastAddr, args...)
	fast.WaitReady(t, 60*time.Second)
	obs, err := obsclient.New(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, func() error {
		list, err := obs.ListObservations(ctx, alertedNS, "")
		if err != nil {
			return err
		}
		if len(list.Items) != backlog {
			return fmt.Errorf("%d Observations for %d alerts answered 202", len(list.Items), backlog)
		}
		return nil
	})
	// Drained, as the new replica measures it: the alert is inactive on a lag of 0, not for want
	// of data as it was while no replica ran.
	drained := time.Now()
	eventually(t, 30*time.Second, func() error {
		var data struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		}
		q := `max(zen_watcher_webhook_stream_lag{namespace="` + queueNS + `"})`
		if err := prom.get("/api/v1/query?query="+url.QueryEscape(q), &data); err != nil {
			return err
		}
		if len(data.Result) != 1 || data.Result[0].Value[1] != "0" {
			return fmt.Errorf("%s = %v, want 0", q, data.Result)
		}
		return nil
	})
	prom.await(t, queueAlert, queueNS, "", drained, 30*time.Second)
}

// falcoIngester creates the Falco webhook Ingester the queue test posts to, and deletes it after.
func falcoIngester(t *testing.T) {
	t.Helper()
	spec := v1alpha1.IngesterSpec{Source: "falco", Adapter: v1alpha1.AdapterFalco,
		Webhook: &v1alpha1.WebhookSource{Path: "/falco", Auth: v1alpha1.WebhookAuth{Type: v1alpha1.WebhookAuthNone}}}
	if err := testenv.CreateIngester(context.Background(), cluster.Config, queueNS, "falco", spec); err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = dyn.Resource(v1alpha1.IngesterResource).Namespace(queueNS).Delete(context.Background(), "falco", metav1.DeleteOptions{})
	})
}

// waitRoute waits until the replica serves the Falco webhook (before, it answers 404 or 503).
func waitRoute(t *testing.T, r *replica) {
	t.Helper()
	eventually(t, 30*time.Second, func() error {
		resp, err := http.Post("http://"+r.WebhookAddr+"/falco", "application/json", bytes.NewBufferString("{"))
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			return fmt.Errorf("the route answers %d to a broken body", resp.StatusCode)
		}
		return nil
	})
}

func mustAlerts(t *testing.T, p *prometheus) []alert {
	t.Helper()
	all, err := p.alerts()
	if err != nil {
		t.Fatal(err)
	}
	return all
}
