package server

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kube-zen/zen-watcher/internal/outage"
	"github.com/kube-zen/zen-watcher/pkg/metrics"
	"github.com/kube-zen/zen-watcher/pkg/pipeline"
	"github.com/kube-zen/zen-watcher/pkg/sources/audit"
	"github.com/kube-zen/zen-watcher/pkg/sources/falco"
)

type fakeQueue struct {
	err      error
	appended int
}

func (q *fakeQueue) Append(context.Context, string, []*pipeline.Event) error {
	if q.err != nil {
		return q.err
	}
	q.appended++
	return nil
}

type stoppingErr struct{}

func (stoppingErr) Error() string  { return "stopping" }
func (stoppingErr) Stopping() bool { return true }

type fullErr struct{}

func (fullErr) Error() string { return "full" }
func (fullErr) Full() bool    { return true }

// outcomeHandler reports every finding with the given outcome, or never (hang).
type outcomeHandler struct {
	outcome pipeline.Outcome
	err     error
	hang    bool
}

func (h outcomeHandler) Handle(_ context.Context, ev *pipeline.Event) error {
	if !h.hang {
		ev.Done(h.outcome, h.err)
	}
	return nil
}

func TestDurableAcceptor(t *testing.T) {
	cases := []struct {
		name      string
		queueErr  error
		handler   outcomeHandler
		wantCode  int
		mode      string
		fallback  string
		wantQueue int
	}{
		{"queued", nil, outcomeHandler{hang: true}, 202, "queued", "", 1},
		{"redis down, written", errors.New("dial refused"), outcomeHandler{outcome: pipeline.OutcomeWritten}, 202, "written", "queue_unavailable", 0},
		{"redis down, duplicate", errors.New("dial refused"), outcomeHandler{outcome: pipeline.OutcomeDeduplicated}, 202, "written", "queue_unavailable", 0},
		{"queue full, written", fullErr{}, outcomeHandler{outcome: pipeline.OutcomeWritten}, 202, "written", "queue_full", 0},
		{"redis down, write failed", errors.New("dial refused"),
			outcomeHandler{outcome: pipeline.OutcomeFailed, err: errors.New("API server away")}, 503, "", "queue_unavailable", 0},
		{"redis down, write too slow", errors.New("dial refused"), outcomeHandler{hang: true}, 503, "", "queue_unavailable", 0},
		// A stopping replica does not process the findings itself, though its pipeline would say
		// written here: a claim it took and never wrote would make the sender's retry a duplicate.
		{"replica stopping", stoppingErr{}, outcomeHandler{outcome: pipeline.OutcomeWritten}, 503, "", "", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := metrics.New(prometheus.NewRegistry())
			q := &fakeQueue{err: tc.queueErr}
			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			acc := Durable{Queue: q, Fallback: Direct{Handler: tc.handler, Timeout: 50 * time.Millisecond}, Metrics: m, Outages: outage.New(log)}
			w, _ := newHooksWith(t, WebhookConfig{Acceptor: acc})
			w.metrics = m
			rec := httptest.NewRecorder()
			w.ServeHTTP(rec, httptest.NewRequest("POST", "/falco", strings.NewReader(alert+"\n"+alert)))
			if rec.Code != tc.wantCode {
				t.Fatalf("HTTP %d, want %d", rec.Code, tc.wantCode)
			}
			if tc.wantCode == 503 && rec.Header().Get("Retry-After") == "" {
				t.Error("503 without Retry-After")
			}
			if q.appended != tc.wantQueue {
				t.Errorf("appended %d, want %d", q.appended, tc.wantQueue)
			}
			if tc.mode != "" && testutil.ToFloat64(m.WebhookAccepted.WithLabelValues("falco", tc.mode)) != 1 {
				t.Errorf("mode %s not counted", tc.mode)
			}
			if tc.fallback != "" && testutil.ToFloat64(m.WebhookQueueFallbacks.WithLabelValues("falco", tc.fallback)) != 1 {
				t.Errorf("fallback %s not counted", tc.fallback)
			}
			if tc.fallback == "" && testutil.CollectAndCount(m.WebhookQueueFallbacks) != 0 {
				t.Error("a fallback was counted")
			}
			if tc.wantCode == 202 && testutil.ToFloat64(m.WebhookFindings.WithLabelValues("falco")) != 2 {
				t.Error("the two events of the body not counted")
			}
		})
	}
}

// TestQueueOutageIsLoggedOnceEachWay: while Redis refuses every append the replica says so once at
// WARN (an operator sees it at the default level), not once a request, and once at INFO when the
// queue takes findings again.
func TestQueueOutageIsLoggedOnceEachWay(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	q := &fakeQueue{err: errors.New("dial tcp 127.0.0.1:6379: connect: connection refused")}
	acc := Durable{Queue: q, Fallback: Direct{Handler: outcomeHandler{outcome: pipeline.OutcomeWritten}},
		Metrics: metrics.New(prometheus.NewRegistry()), Outages: outage.New(log)}
	w, _ := newHooksWith(t, WebhookConfig{Acceptor: acc})
	send := func() {
		rec := httptest.NewRecorder()
		w.ServeHTTP(rec, httptest.NewRequest("POST", "/falco", strings.NewReader(alert)))
		if rec.Code != http.StatusAccepted {
			t.Fatalf("HTTP %d, want 202", rec.Code)
		}
	}
	for range 5 {
		send()
	}
	q.err = nil
	send()
	send()
	out := buf.String()
	warn := strings.Count(out, "level=WARN msg=\"queueing webhook findings failing; retrying\"")
	info := strings.Count(out, "level=INFO msg=\"queueing webhook findings works again\"")
	if warn != 1 || info != 1 || !strings.Contains(out, "connection refused (queue_unavailable") {
		t.Errorf("%d warnings and %d recoveries logged, want 1 and 1 with the cause:\n%s", warn, info, out)
	}
}

func TestRateLimit(t *testing.T) {
	w, m := newHooksWith(t, WebhookConfig{Acceptor: Direct{Handler: &countingHandler{}}, RatePerSource: 1, BurstPerSource: 3})
	codes := map[int]int{}
	var retryAfter string
	for range 5 {
		rec := httptest.NewRecorder()
		w.ServeHTTP(rec, httptest.NewRequest("POST", "/falco", strings.NewReader(alert)))
		codes[rec.Code]++
		if rec.Code == http.StatusTooManyRequests {
			retryAfter = rec.Header().Get("Retry-After")
		}
	}
	if codes[202] != 3 || codes[429] != 2 || retryAfter != "1" {
		t.Errorf("answers %v, Retry-After %q", codes, retryAfter)
	}
	if testutil.ToFloat64(m.WebhookRateLimited.WithLabelValues("falco")) != 2 {
		t.Error("rate-limited requests not counted")
	}
	// Another source has its own bucket.
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("POST", "/secure", strings.NewReader(alert))
	req.Header.Set("Authorization", "Bearer tok")
	w.ServeHTTP(rec, req)
	if rec.Code != 202 {
		t.Errorf("other source: HTTP %d", rec.Code)
	}
}

func TestInFlightBound(t *testing.T) {
	release := make(chan struct{})
	h := blockingHandler{release: release}
	w, m := newHooksWith(t, WebhookConfig{Acceptor: Direct{Handler: h, Timeout: 5 * time.Second}, MaxInFlight: 1})
	done := make(chan int)
	go func() {
		rec := httptest.NewRecorder()
		w.ServeHTTP(rec, httptest.NewRequest("POST", "/falco", strings.NewReader(alert)))
		done <- rec.Code
	}()
	deadline := time.Now().Add(5 * time.Second)
	for len(w.inFlight) == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	rec := httptest.NewRecorder()
	w.ServeHTTP(rec, httptest.NewRequest("POST", "/falco", strings.NewReader(alert)))
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Errorf("second request while one is in flight: HTTP %d", rec.Code)
	}
	close(release)
	if code := <-done; code != 202 {
		t.Errorf("first request: HTTP %d", code)
	}
	if testutil.ToFloat64(m.WebhookRejected.WithLabelValues("falco", "overloaded")) != 1 {
		t.Error("overload not counted")
	}
}

type blockingHandler struct{ release chan struct{} }

func (b blockingHandler) Handle(_ context.Context, ev *pipeline.Event) error {
	go func() {
		<-b.release
		ev.Done(pipeline.OutcomeWritten, nil)
	}()
	return nil
}

// TestUnauthenticatedLoadTakesNoRateOrSlot: a flood of wrong tokens, and of HMAC requests without
// a signature, is refused from the headers: it takes none of the source's rate limit and no
// in-flight slot, so the genuine requests after it are accepted.
func TestUnauthenticatedLoadTakesNoRateOrSlot(t *testing.T) {
	w, m := newHooksWith(t, WebhookConfig{Acceptor: Direct{Handler: &countingHandler{}}, RatePerSource: 1, BurstPerSource: 2,
		MaxInFlight: 1})
	if err := w.Register(Route{Path: "/signed", Source: "signed", Parser: falco.Parser{}, Auth: &HMACAuth{Key: []byte("k")}}); err != nil {
		t.Fatal(err)
	}
	w.inFlight <- struct{}{} // the one slot is taken: anything that asks for it gets 503
	post := func(path, auth string) int {
		req := httptest.NewRequest("POST", path, strings.NewReader(alert))
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		rec := httptest.NewRecorder()
		w.ServeHTTP(rec, req)
		return rec.Code
	}
	for range 200 {
		if code := post("/secure", "Bearer wrong"); code != http.StatusUnauthorized {
			t.Fatalf("a wrong token: HTTP %d, want 401 before any slot or rate is taken", code)
		}
		if code := post("/signed", ""); code != http.StatusUnauthorized {
			t.Fatalf("an unsigned request: HTTP %d, want 401", code)
		}
	}
	<-w.inFlight
	for i := range 2 {
		if code := post("/secure", "Bearer tok"); code != http.StatusAccepted {
			t.Fatalf("genuine request %d after the flood: HTTP %d, want 202", i, code)
		}
	}
	if n := testutil.ToFloat64(m.WebhookRateLimited.WithLabelValues("secure")); n != 0 {
		t.Errorf("%v requests rate limited, want 0", n)
	}
	if n := testutil.ToFloat64(m.WebhookAuthFailures.WithLabelValues("secure", "wrong_token")); n != 200 {
		t.Errorf("%v wrong tokens counted, want 200", n)
	}
}

// TestBodyWithoutFindingsQueuesNothing: a body whose events are no findings (an audit batch of
// reads) is answered at once and counted; nothing goes to the queue, which would otherwise hold
// an empty entry to be read back as undecodable.
func TestBodyWithoutFindingsQueuesNothing(t *testing.T) {
	m := metrics.New(prometheus.NewRegistry())
	q := &fakeQueue{}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	w, _ := newHooksWith(t, WebhookConfig{Acceptor: Durable{Queue: q, Fallback: Direct{Handler: outcomeHandler{hang: true}}, Metrics: m, Outages: outage.New(log)}})
	w.metrics = m
	if err := w.Register(Route{Path: "/audit", Source: "audit", Parser: audit.Parser{}, Auth: NoAuth{}}); err != nil {
		t.Fatal(err)
	}
	reads := `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[` +
		`{"kind":"Event","auditID":"r1","stage":"ResponseComplete","verb":"get","objectRef":{"resource":"pods"},"responseStatus":{"code":200},"user":{"username":"bob"}},` +
		`{"kind":"Event","auditID":"r2","stage":"ResponseComplete","verb":"list","objectRef":{"resource":"secrets"},"responseStatus":{"code":200},"user":{"username":"bob"}}]}`
	rec := httptest.NewRecorder()
	w.ServeHTTP(rec, httptest.NewRequest("POST", "/audit", strings.NewReader(reads)))
	if rec.Code != http.StatusAccepted || !strings.Contains(rec.Body.String(), `"accepted":0`) {
		t.Fatalf("HTTP %d %s, want 202 accepting 0", rec.Code, rec.Body)
	}
	if q.appended != 0 {
		t.Errorf("%d queue entries for a body without findings", q.appended)
	}
	if n := testutil.ToFloat64(m.WebhookRequestsWithoutFindings.WithLabelValues("audit")); n != 1 {
		t.Errorf("counted %v requests without findings, want 1", n)
	}
}
