package sources

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kube-zen/zen-watcher/pkg/metrics"
	"github.com/kube-zen/zen-watcher/pkg/pipeline"
)

func TestRetryBackoff(t *testing.T) {
	for _, tc := range []struct {
		n    int
		want time.Duration
	}{
		{0, 2 * time.Second}, {1, 4 * time.Second}, {4, 32 * time.Second}, {5, time.Minute}, {60, time.Minute},
	} {
		if got := retryBackoff(tc.n); got != tc.want {
			t.Errorf("retryBackoff(%d) = %s, want %s", tc.n, got, tc.want)
		}
	}
	r := newRetries()
	if d, ok := r.schedule("ns/a"); !ok || d != firstRetry {
		t.Fatalf("first schedule: %s %v", d, ok)
	}
	if _, ok := r.schedule("ns/a"); ok {
		t.Error("a second failure while a retry waits scheduled another")
	}
	r.fired("ns/a")
	if d, _ := r.schedule("ns/a"); d != 2*firstRetry {
		t.Errorf("after one retry the wait is %s, want %s", d, 2*firstRetry)
	}
	r.fired("ns/a")
	r.reset(&parsed{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "a"}})
	if n := r.failing.Load(); n != 0 {
		t.Errorf("%d objects failing after the only one was written", n)
	}
	if d, _ := r.schedule("ns/a"); d != firstRetry {
		t.Errorf("after a write the wait is %s, want %s", d, firstRetry)
	}
}

// outcomes is a Handler that reports each finding's outcome at once: the first of each rule in
// fail fails with its error, everything else is written.
type outcomes struct {
	mu   sync.Mutex
	fail map[string]error
	got  map[string][]bool // rule → Relisted of each time it was handed on
}

func (o *outcomes) Handle(_ context.Context, ev *pipeline.Event) error {
	o.mu.Lock()
	o.got[ev.Rule] = append(o.got[ev.Rule], ev.Relisted)
	err, failing := o.fail[ev.Rule]
	delete(o.fail, ev.Rule)
	o.mu.Unlock()
	if failing {
		ev.Done(pipeline.OutcomeFailed, err)
	} else {
		ev.Done(pipeline.OutcomeWritten, nil)
	}
	return nil
}

func (o *outcomes) times(rule string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.got[rule])
}

// TestInformerRetriesFailedWritesBeforeTheResync: a finding whose write failed for a reason that
// may pass is handed on again within seconds, as a re-listed one (the Observations known written are
// asked about it), and nothing written is handed on again with it; one the API server judged
// invalid, or one failed because the writer stopped, waits for the resync.
func TestInformerRetriesFailedWritesBeforeTheResync(t *testing.T) {
	t.Setenv("KUBE_FEATURE_WatchListClient", "false")
	gr := schema.GroupResource{Group: "zen.kube-zen.io", Resource: "observations"}
	// One object per failure: a retry hands on again every finding of its object not written.
	client, disc := configMapClients(configMap("ci", "a", "u1", "timeout", "fine"), configMap("ci", "b", "u2", "invalid"),
		configMap("ci", "c", "u3", "stopped"))
	m := metrics.New(prometheus.NewRegistry())
	inf := NewInformer(InformerConfig{Source: "test", GVR: configMapsGVR}, client, disc, oneFindingPerKey, nil, m,
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	h := &outcomes{got: map[string][]bool{}, fail: map[string]error{
		"timeout": apierrors.NewServerTimeout(gr, "create", 1),
		"invalid": apierrors.NewInvalid(schema.GroupKind{Group: gr.Group, Kind: "Observation"}, "x", nil),
		"stopped": errors.Join(errors.New("writing"), pipeline.ErrStopped),
	}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = inf.Run(ctx, h) }()

	deadline := time.Now().Add(firstRetry + 5*time.Second)
	for h.times("timeout") < 2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // anything else handed on with it would be here by now
	h.mu.Lock()
	defer h.mu.Unlock()
	if got := h.got["timeout"]; len(got) != 2 || !got[1] {
		t.Errorf("the timed-out finding was handed on %d times (relisted %v), want twice, the second as re-listed", len(got), got)
	}
	for _, rule := range []string{"invalid", "stopped", "fine"} {
		if n := len(h.got[rule]); n != 1 {
			t.Errorf("%s was handed on %d times, want once", rule, n)
		}
	}
	if n := testutil.ToFloat64(m.FindingsRetried.WithLabelValues("test")); n != 1 {
		t.Errorf("findings_retried_total = %v, want 1", n)
	}
}
