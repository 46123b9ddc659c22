package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/metadata"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kube-zen/zen-watcher/internal/testenv"
	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/pipeline"
	"github.com/kube-zen/zen-watcher/pkg/sources/falco"
)

const durableNamespace = "zen-durable"

// durableAlert is the Falco alert number n, distinct from every other in its output.
func durableAlert(n int) []byte {
	return fmt.Appendf(nil, `{"output":"durable alert %d","priority":"Warning","rule":"Durable test","time":"2026-11-26T00:00:00.%09dZ","hostname":"node-%d","source":"syscall"}`,
		n, n, n%50)
}

// expectedName is the Observation name an alert must get in namespace ns: derived from its
// occurrence, so that a redelivery writes nothing twice.
func expectedName(t *testing.T, ns string, body []byte) string {
	evs, err := falco.Parser{}.ParsePayload(body)
	if err != nil || len(evs) != 1 {
		t.Fatalf("parsing %s: %v", body, err)
	}
	ev := evs[0]
	ev.Source = "falcod"
	ev.FP = pipeline.Fingerprint(ev)
	return pipeline.BuildObservation(ev, ns).Name
}

// poster sends alerts to the replicas, round robin, each until some replica answers 2xx.
type poster struct {
	t  *testing.T
	ns string // where the replicas write the Observations

	mu       sync.Mutex
	targets  []*replica
	answered map[int]string // alert → durability of its 2xx answer
	refused  atomic.Int64   // 503 and connection failures, each retried
	client   *http.Client
}

func (p *poster) setTargets(rs ...*replica) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.targets = rs
}

// post delivers alert n; it returns the durability of the answer. onWritten, when set, runs at once
// for answers that say the Observation is written.
func (p *poster) post(n int, onWritten func(n int)) {
	body := durableAlert(n)
	for attempt := 0; ; attempt++ {
		p.mu.Lock()
		r := p.targets[(n+attempt)%len(p.targets)]
		p.mu.Unlock()
		resp, err := p.client.Post("http://"+r.WebhookAddr+"/falcod", "application/json", bytes.NewReader(body))
		if err != nil {
			p.refused.Add(1)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		var answer struct {
			Durability string `json:"durability"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&answer)
		resp.Body.Close()
		if resp.StatusCode == http.StatusAccepted {
			if answer.Durability == "written" && onWritten != nil {
				onWritten(n)
			}
			p.mu.Lock()
			p.answered[n] = answer.Durability
			p.mu.Unlock()
			return
		}
		if resp.StatusCode != http.StatusServiceUnavailable && resp.StatusCode != http.StatusTooManyRequests {
			p.t.Errorf("alert %d: HTTP %d", n, resp.StatusCode)
			return
		}
		p.refused.Add(1)
		time.Sleep(100 * time.Millisecond)
	}
}

// postRange posts alerts [from, to) with workers in parallel; at is called with each count done.
func (p *poster) postRange(from, to, workers int, onWritten func(int), at func(done int)) {
	next := atomic.Int64{}
	next.Store(int64(from))
	done := atomic.Int64{}
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				n := int(next.Add(1) - 1)
				if n >= to {
					return
				}
				p.post(n, onWritten)
				if at != nil {
					at(int(done.Add(1)))
				}
			}
		})
	}
	wg.Wait()
}

// TestDurableWebhooks posts Falco alerts across three replicas that share a durable queue in Redis,
// kills one replica with SIGKILL mid-stream, then stops Redis during posting. Every alert answered
// 2xx must end with exactly one Observation; while Redis is away, a 2xx must mean written already.
func TestDurableWebhooks(t *testing.T) {
	total := testenv.PositiveIntFromEnv(t, "ZW_DURABLE_ALERTS", 20_000)
	redis, err := testenv.StartRedisPersistent()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = redis.Close() })
	ensureNamespace(t, durableNamespace)
	ingester(t, "falco-durable", v1alpha1.IngesterSpec{Source: "falcod", Adapter: v1alpha1.AdapterFalco,
		Webhook: &v1alpha1.WebhookSource{Path: "/falcod", Auth: v1alpha1.WebhookAuth{Type: v1alpha1.WebhookAuthNone}}})
	start := func(id string) *replica {
		return startReplica(t, id, "-namespace", durableNamespace, "-release", "durable", "-member-id", id,
			"-redis-addr", redis.Addr, "-webhook-claim-idle", "3s", "-webhook-rate", "100000",
			"-member-lease-duration", "4s", "-member-renew-interval", "1s")
	}
	a, b, c := start("dur-a"), start("dur-b"), start("dur-c")
	for _, r := range []*replica{a, b, c} {
		r.WaitReady(t, 60*time.Second)
		waitRoute(t, r, "/falcod")
	}
	p := &poster{t: t, ns: durableNamespace, targets: []*replica{a, b, c}, answered: map[int]string{},
		client: &http.Client{Timeout: 30 * time.Second}}

	// Phase 1: kill -9 one replica when 40% of the alerts are answered.
	killAt := total * 2 / 5
	var killed sync.Once
	began := time.Now()
	p.postRange(0, total, 16, nil, func(done int) {
		if done == killAt {
			killed.Do(func() {
				_ = c.Cmd.Process.Kill()
				<-c.Exited()
				p.setTargets(a, b)
				t.Logf("killed %s after %d answers", c.Name, done)
			})
		}
	})
	t.Logf("%d alerts answered in %s (%d refusals retried)", total, time.Since(began).Round(time.Millisecond), p.refused.Load())
	waitNames(t, p, 0, total, 8*time.Minute)
	t.Logf("queue entries claimed from the killed replica: %v", a.metric(`zen_watcher_webhook_queue_claimed_total{source="falcod"}`)+
		b.metric(`zen_watcher_webhook_queue_claimed_total{source="falcod"}`))

	// Phase 2: Redis stopped while alerts arrive. A 2xx that says "written" must have its
	// Observation already when the answer arrives; the others are in Redis's append-only file.
	mc := metadataClient(t)
	var missing atomic.Int64
	checkWritten := func(n int) {
		name := expectedName(t, durableNamespace, durableAlert(n))
		_, err := mc.Resource(v1alpha1.SchemeGroupVersion.WithResource("observations")).Namespace(durableNamespace).
			Get(context.Background(), name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			missing.Add(1)
		}
	}
	const outage = 1_000
	stopped := make(chan struct{})
	go func() {
		time.Sleep(200 * time.Millisecond)
		_ = redis.Stop()
		close(stopped)
		time.Sleep(10 * time.Second)
		if err := redis.Start(); err != nil {
			t.Error(err)
		}
	}()
	p.postRange(total, total+outage, 8, checkWritten, nil)
	<-stopped
	written := 0
	for n := total; n < total+outage; n++ {
		if p.answered[n] == "written" {
			written++
		}
	}
	if written == 0 {
		t.Error("no request was answered while Redis was away")
	}
	if missing.Load() > 0 {
		t.Errorf("%d alerts answered \"written\" had no Observation at the answer", missing.Load())
	}
	t.Logf("Redis outage: %d of %d alerts answered after being written, %d refusals retried", written, outage, p.refused.Load())
	waitNames(t, p, total, total+outage, 3*time.Minute)

	// Phase 3: a graceful stop (SIGTERM, as in a rolling restart) mid-stream. What b held, it
	// hands back; a takes it over at its next claim, and nothing is lost or written twice.
	const rolling = 2_000
	from := total + outage
	var stoppedB sync.Once
	p.postRange(from, from+rolling, 8, nil, func(done int) {
		if done == rolling/2 {
			stoppedB.Do(func() {
				p.setTargets(a)
				b.Stop()
				t.Logf("stopped %s gracefully after %d answers", b.Name, done)
			})
		}
	})
	waitNames(t, p, from, from+rolling, 3*time.Minute)
	for line := range strings.SplitSeq(b.Out.String(), "\n") {
		if strings.Contains(line, "back webhook queue entries") {
			t.Logf("%s: %s", b.Name, line)
		}
	}

	// Phase 4: Redis paused (SIGSTOP) for 20 s while alerts arrive. The appends that waited in its
	// sockets run when it resumes, past their deadline: they queue nothing, so the stream took
	// exactly one entry for each alert answered "queued" — none for one already written directly.
	// Redis is paused between two bursts, with no request in flight: an append Redis ran just
	// before the pause, whose answer the pause then held back, would be queued and written both,
	// and nothing can tell that from a late one.
	pausedFrom := from + rolling
	pausedTo := pausedFrom + 1_500
	rdb := goredis.NewClient(&goredis.Options{Addr: redis.Addr})
	defer rdb.Close()
	added := func() int64 {
		info, err := rdb.XInfoStream(context.Background(), "zw:{durable}:wh:falcod").Result()
		if err != nil {
			t.Fatalf("reading the stream's entries-added: %v", err)
		}
		return info.EntriesAdded
	}
	before := added()
	p.postRange(pausedFrom, pausedFrom+300, 8, nil, nil)
	if err := redis.Pause(); err != nil {
		t.Fatal(err)
	}
	resumed := make(chan struct{})
	go func() {
		defer close(resumed)
		time.Sleep(20 * time.Second)
		if err := redis.Resume(); err != nil {
			t.Error(err)
		}
	}()
	p.postRange(pausedFrom+300, pausedTo, 8, nil, nil)
	<-resumed
	waitNames(t, p, pausedFrom, pausedTo, 3*time.Minute)
	queued, written := 0, 0
	for n := pausedFrom; n < pausedTo; n++ {
		switch p.answered[n] {
		case "queued":
			queued++
		case "written":
			written++
		}
	}
	if got := added() - before; got != int64(queued) {
		t.Errorf("Redis paused: the stream took %d entries for %d alerts answered queued (%d answered written)", got, queued, written)
	}
	if written == 0 {
		t.Error("no alert was answered written while Redis was paused: the pause proves nothing")
	}
	t.Logf("Redis paused 20 s: %d alerts answered queued, %d written, %d entries added", queued, written, added()-before)
}

// waitNames waits until every alert in [from, to) has its Observation, and checks that no other
// Observation of the source exists for them (none written twice under another name).
func waitNames(t *testing.T, p *poster, from, to int, timeout time.Duration) {
	t.Helper()
	want := map[string]int{}
	for n := from; n < to; n++ {
		if _, ok := p.answered[n]; !ok {
			t.Fatalf("alert %d was never answered 2xx", n)
		}
		want[expectedName(t, p.ns, durableAlert(n))] = n
	}
	mc := metadataClient(t)
	started := time.Now()
	var have map[string]bool
	eventually(t, timeout, func(ctx context.Context) error {
		var err error
		have, err = observationNames(ctx, mc, p.ns)
		if err != nil {
			return err
		}
		var lost []string
		for name, n := range want {
			if !have[name] {
				lost = append(lost, fmt.Sprintf("%d (%s, answered %s)", n, name, p.answered[n]))
			}
		}
		if len(lost) > 0 {
			if len(lost) > 5 {
				lost = lost[:5]
			}
			return fmt.Errorf("%d of %d alerts have no Observation yet: %v", len(lost), len(want), lost)
		}
		return nil
	})
	if len(have) != to {
		t.Errorf("%d Observations for %d alerts: some written twice", len(have), to)
	}
	t.Logf("alerts %d-%d: every one has its Observation, %s after posting ended", from, to-1, time.Since(started).Round(time.Second))
}

func metadataClient(t *testing.T) metadata.Interface {
	t.Helper()
	mc, err := metadata.NewForConfig(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	return mc
}

// observationNames lists the names of the durable queue's Observations in ns, a page at a time.
func observationNames(ctx context.Context, mc metadata.Interface, ns string) (map[string]bool, error) {
	names := map[string]bool{}
	opts := metav1.ListOptions{LabelSelector: v1alpha1.LabelSource + "=falcod", Limit: 5000}
	for {
		list, err := mc.Resource(v1alpha1.SchemeGroupVersion.WithResource("observations")).Namespace(ns).List(ctx, opts)
		if err != nil {
			return nil, err
		}
		for _, o := range list.Items {
			names[o.Name] = true
		}
		if list.Continue == "" {
			return names, nil
		}
		opts.Continue = list.Continue
	}
}
