package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kube-zen/zen-watcher/internal/testenv"
	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
)

// TestIngesterStatusSpeaksForEveryReplica: three replicas share a Falco webhook, each receiving a
// third of the alerts. The Ingester's status counts every alert and every Observation, whichever
// replica took it or wrote it, and only the leader writes it: the API traffic of each replica, read
// at its proxy, holds no status write from a time it did not lead, so the status does not flip
// between partial counts.
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
	// Leadership may move under load (a renewal that misses its deadline); a write is the leader's
	// if its replica was leading when it arrived, by the replica's own log (an arrival up to a
	// second after it stopped leading is a request it sent while it led).
	total := 0
	for id, p := range proxies {
		spans := leadingSpans(rs[id].Out.String())
		var outside []string
		writes := p.times(http.MethodPut, "/ingesters/"+name+"/status")
		for _, at := range writes {
			if !spans.cover(at, time.Second) {
				outside = append(outside, at.Format("15:04:05.000"))
			}
		}
		total += len(writes)
		t.Logf("%s led %d times and wrote the status %d times, %d of them while it did not lead", id, len(spans),
			len(writes), len(outside))
		if len(outside) > 0 {
			t.Errorf("%s wrote the status while it did not lead, at %v", id, outside)
		}
	}
	if total == 0 {
		t.Error("nobody wrote the status")
	}
}

// span is a time a replica led, from its "leading" log line to its "not leading" one (zero: it
// still leads).
type span struct{ from, to time.Time }

type spans []span

// leadingSpans reads, from a replica's log, when it led.
func leadingSpans(out string) spans {
	var ss spans
	for _, line := range strings.Split(out, "\n") {
		var e struct {
			Time time.Time `json:"time"`
			Msg  string    `json:"msg"`
		}
		if json.Unmarshal([]byte(line), &e) != nil {
			continue
		}
		switch {
		case e.Msg == "leading":
			ss = append(ss, span{from: e.Time})
		case e.Msg == "not leading" && len(ss) > 0 && ss[len(ss)-1].to.IsZero():
			ss[len(ss)-1].to = e.Time
		}
	}
	return ss
}

// cover reports whether at falls in one of the spans, or up to grace after its end.
func (ss spans) cover(at time.Time, grace time.Duration) bool {
	for _, s := range ss {
		if !at.Before(s.from) && (s.to.IsZero() || at.Before(s.to.Add(grace))) {
			return true
		}
	}
	return false
}
