package server

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kube-zen/zen-watcher/pkg/sources/audit"
)

// auditBatch is an EventList of n Secret writes; the event numbered large carries a response
// object of that many bytes.
func auditBatch(n, large, size int) string {
	items := make([]string, n)
	for i := range items {
		resp := `{"kind":"Secret","metadata":{"name":"s"}}`
		if i == large {
			resp = `{"kind":"Secret","metadata":{"name":"s"},"data":{"k":"` + strings.Repeat("A", size) + `"}}`
		}
		items[i] = fmt.Sprintf(`{"kind":"Event","auditID":"id-%d","stage":"ResponseComplete","verb":"update",`+
			`"user":{"username":"bob"},"objectRef":{"resource":"secrets","namespace":"ns","name":"s%d","apiVersion":"v1"},`+
			`"responseStatus":{"code":200},"responseObject":%s}`, i, i, resp)
	}
	return `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[` + strings.Join(items, ",") + `]}`
}

// TestStreamedBodies: a body whose authentication is in its headers goes to a streaming parser as
// it arrives, bounded by its own limit; one oversize event is cut, not its batch. A signed body is
// still read whole, within the bound of a body read whole.
func TestStreamedBodies(t *testing.T) {
	h := &countingHandler{}
	w, m := newHooks(t, h)
	now := time.Unix(1_800_000_000, 0)
	key := []byte("k")
	routes := []Route{
		{Path: "/audit", Source: "audit", Parser: audit.Parser{}, Auth: BearerAuth{Token: []byte("tok")}},
		{Path: "/audit-small", Source: "audit-small", Parser: audit.Parser{}, Auth: NoAuth{}, MaxBodyBytes: 4096},
		{Path: "/audit-signed", Source: "audit-signed", Parser: audit.Parser{}, Auth: &HMACAuth{Key: key, Now: func() time.Time { return now }}},
	}
	for _, r := range routes {
		if err := w.Register(r); err != nil {
			t.Fatal(err)
		}
	}
	withLarge := auditBatch(5, 2, 3<<20) // 3 MiB in one event: over the 1 MiB of a body read whole
	cases := []struct {
		name, path, body string
		header           http.Header
		chunked          bool
		want             int
		findings         int64
	}{
		{"one event of a batch over its bound is cut, the batch kept", "/audit", withLarge, bearer("tok"), false, 202, 5},
		{"the same, sent chunked", "/audit", withLarge, bearer("tok"), true, 202, 5},
		{"a wrong token is refused before the body is read", "/audit", withLarge, bearer("nope"), false, 401, 0},
		{"a streamed body over its route's bound", "/audit-small", auditBatch(40, -1, 0), nil, false, 413, 0},
		{"the same, sent chunked", "/audit-small", auditBatch(40, -1, 0), nil, true, 413, 0},
		{"a streamed body broken off", "/audit", withLarge[:len(withLarge)/2], bearer("tok"), false, 400, 0},
		{"a signed body is read whole, within 1 MiB", "/audit-signed", withLarge, signedHeader(key, now, withLarge), false, 413, 0},
		{"a signed body within it", "/audit-signed", auditBatch(3, -1, 0), signedHeader(key, now, auditBatch(3, -1, 0)), false, 202, 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := h.n.Load()
			req := httptest.NewRequest("POST", tc.path, strings.NewReader(tc.body))
			if tc.chunked {
				req.ContentLength = -1
			}
			for k, v := range tc.header {
				req.Header[k] = v
			}
			rec := httptest.NewRecorder()
			w.ServeHTTP(rec, req)
			if rec.Code != tc.want || h.n.Load()-before != tc.findings {
				t.Errorf("HTTP %d with %d findings, want %d with %d (%s)", rec.Code, h.n.Load()-before, tc.want, tc.findings, rec.Body.String())
			}
		})
	}
	if got := testutil.ToFloat64(m.WebhookEventsCut.WithLabelValues("audit")); got != 2 {
		t.Errorf("%v events counted cut, want 2", got)
	}
	if got := testutil.ToFloat64(m.WebhookEvents.WithLabelValues("audit")); got != 10 {
		t.Errorf("%v events counted, want 10", got)
	}
	if got := testutil.ToFloat64(m.WebhookRejected.WithLabelValues("audit", "read_error")) +
		testutil.ToFloat64(m.WebhookRejected.WithLabelValues("audit", "malformed")); got != 1 {
		t.Errorf("the broken-off body counted %v times", got)
	}
}

// TestCutEventIsRecorded: the finding of a cut event names what was left out.
func TestCutEventIsRecorded(t *testing.T) {
	evs, tally, err := audit.Parser{MaxEventBytes: 64 << 10}.ParseStream(strings.NewReader(auditBatch(3, 1, 100<<10)))
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 3 || tally.Events != 3 || tally.Cut != 1 {
		t.Fatalf("%d findings of %d events, %d cut", len(evs), tally.Events, tally.Cut)
	}
	for i, e := range evs {
		want := ""
		if i == 1 {
			want = "responseObject"
		}
		if e.Details["cut"] != want || e.Resource.Name != "s"+strconv.Itoa(i) {
			t.Errorf("finding %d: cut %q, resource %+v", i, e.Details["cut"], e.Resource)
		}
	}
}

func bearer(tok string) http.Header {
	return http.Header{"Authorization": {"Bearer " + tok}}
}

func signedHeader(key []byte, ts time.Time, body string) http.Header {
	h := http.Header{}
	h.Set(DefaultSignatureHeader, Sign(key, ts, []byte(body)))
	h.Set(DefaultTimestampHeader, strconv.FormatInt(ts.Unix(), 10))
	return h
}
