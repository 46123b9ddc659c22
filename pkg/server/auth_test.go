package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kube-zen/zen-watcher/internal/testenv"
	"github.com/kube-zen/zen-watcher/pkg/metrics"
	"github.com/kube-zen/zen-watcher/pkg/sources/falco"
)

func TestHMAC(t *testing.T) {
	key := []byte("s3cret")
	now := time.Unix(1_800_000_000, 0)
	w, m := newHooks(t, &countingHandler{})
	if err := w.Register(Route{Path: "/signed", Source: "signed", Parser: falco.Parser{},
		Auth: &HMACAuth{Key: key, Now: func() time.Time { return now }}}); err != nil {
		t.Fatal(err)
	}
	signed := func(ts time.Time, k []byte, body string) http.Header {
		h := http.Header{}
		h.Set(DefaultSignatureHeader, Sign(k, ts, []byte(body)))
		h.Set(DefaultTimestampHeader, strconv.FormatInt(ts.Unix(), 10))
		return h
	}
	replayed := signed(now, key, alert)
	respelled := func(f func(string) string) http.Header {
		h := replayed.Clone()
		h.Set(DefaultSignatureHeader, f(h.Get(DefaultSignatureHeader)))
		return h
	}
	cases := []struct {
		name    string
		headers http.Header
		body    string
		want    int
		reason  string
	}{
		{"right", replayed, alert, 202, ""},
		{"replayed", replayed, alert, 401, "replayed"},
		// The same MAC spelled otherwise is the same request again.
		{"replayed in upper case", respelled(func(v string) string { return "sha256=" + strings.ToUpper(v[7:]) }), alert, 401, "replayed"},
		{"replayed, one letter upper-cased", respelled(func(v string) string {
			i := strings.IndexAny(v[7:], "abcdef") + 7
			return v[:i] + strings.ToUpper(v[i:i+1]) + v[i+1:]
		}), alert, 401, "replayed"},
		{"replayed without the prefix", respelled(func(v string) string { return v[7:] }), alert, 401, "replayed"},
		{"wrong key", signed(now, []byte("other"), alert), alert, 401, "bad_signature"},
		{"body changed", signed(now.Add(time.Second), key, alert), alert + " ", 401, "bad_signature"},
		{"missing", http.Header{}, alert, 401, "missing_signature"},
		{"no timestamp", http.Header{DefaultSignatureHeader: {Sign(key, now, []byte(alert))}}, alert, 401, "missing_timestamp"},
		{"expired", signed(now.Add(-10*time.Minute), key, alert), alert, 401, "expired"},
		{"from the future", signed(now.Add(10*time.Minute), key, alert), alert, 401, "expired"},
		{"within the window", signed(now.Add(-4*time.Minute), key, alert), alert, 202, ""},
	}
	for _, tc := range cases {
		req := httptest.NewRequest("POST", "/signed", strings.NewReader(tc.body))
		req.Header = tc.headers.Clone()
		rec := httptest.NewRecorder()
		w.ServeHTTP(rec, req)
		if rec.Code != tc.want {
			t.Errorf("%s: HTTP %d, want %d", tc.name, rec.Code, tc.want)
		}
		if tc.reason != "" && testutil.ToFloat64(m.WebhookAuthFailures.WithLabelValues("signed", tc.reason)) == 0 {
			t.Errorf("%s: reason %s not counted", tc.name, tc.reason)
		}
	}
}

func TestReplayGuards(t *testing.T) {
	ctx := context.Background()
	g := &LocalReplayGuard{Max: 2}
	for i, want := range []bool{true, false} {
		if fresh, err := g.Remember(ctx, "a", time.Now(), time.Minute); fresh != want || err != nil {
			t.Errorf("remember a #%d: %v, %v", i, fresh, err)
		}
	}
	if fresh, _ := g.Remember(ctx, "b", time.Now(), time.Millisecond); !fresh {
		t.Error("b not fresh")
	}
	time.Sleep(5 * time.Millisecond)
	if fresh, _ := g.Remember(ctx, "b", time.Now(), time.Minute); !fresh {
		t.Error("b not fresh again after it expired")
	}
	// Full: the least recently seen key is forgotten, and a genuine new one is never refused.
	if fresh, err := g.Remember(ctx, "c", time.Now(), time.Minute); !fresh || err != nil {
		t.Errorf("a new key with the memory full: %v, %v", fresh, err)
	}
	if fresh, _ := g.Remember(ctx, "c", time.Now(), time.Minute); fresh {
		t.Error("c replayed: not caught")
	}

	tiered := TieredReplayGuard{Shared: failingGuard{}, Local: &LocalReplayGuard{}}
	if fresh, err := tiered.Remember(ctx, "x", time.Now(), time.Minute); !fresh || err != nil {
		t.Errorf("shared down, first: %v, %v", fresh, err)
	}
	if fresh, _ := tiered.Remember(ctx, "x", time.Now(), time.Minute); fresh {
		t.Error("shared down: the local tier did not catch the replay")
	}

	// While the shared tier answers it decides: a local memory that forgot, or holds a key the
	// shared tier has let go, changes nothing.
	shared := &LocalReplayGuard{}
	answering := TieredReplayGuard{Shared: shared, Local: &LocalReplayGuard{Max: 1}}
	for i := range 1000 {
		if fresh, err := answering.Remember(ctx, fmt.Sprint("genuine-", i), time.Now(), time.Minute); !fresh || err != nil {
			t.Fatalf("genuine request %d refused: %v, %v", i, fresh, err)
		}
	}
	if fresh, _ := answering.Remember(ctx, "genuine-0", time.Now(), time.Minute); fresh {
		t.Error("a replay the shared tier knows was accepted because the local tier forgot it")
	}
}

// TestUnverifiableIsRetried: a genuine signature the replay memory cannot judge is answered 503
// with Retry-After and counted under its reason.
func TestUnverifiableIsRetried(t *testing.T) {
	key := []byte("s3cret")
	w, m := newHooks(t, &countingHandler{})
	if err := w.Register(Route{Path: "/strict", Source: "strict", Parser: falco.Parser{}, Auth: &HMACAuth{Key: key,
		Replay: TieredReplayGuard{Shared: failingGuard{}, Local: &LocalReplayGuard{}, Strict: true}}}); err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("POST", "/strict", strings.NewReader(alert))
	req.Header.Set(DefaultSignatureHeader, Sign(key, time.Now(), []byte(alert)))
	req.Header.Set(DefaultTimestampHeader, strconv.FormatInt(time.Now().Unix(), 10))
	rec := httptest.NewRecorder()
	w.ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Errorf("HTTP %d, Retry-After %q; want 503 with Retry-After", rec.Code, rec.Header().Get("Retry-After"))
	}
	if n := testutil.ToFloat64(m.WebhookAuthFailures.WithLabelValues("strict", "replay_unverifiable")); n != 1 {
		t.Errorf("replay_unverifiable counted %v times", n)
	}
}

// TestUncheckedReplays: while the shared memory cannot judge a signature, strict mode refuses it
// as unverifiable; otherwise a recent one is judged by this replica's memory and an old one
// refused, and each decision is counted.
func TestUncheckedReplays(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	cases := []struct {
		name     string
		strict   bool
		signedAt time.Time
		seen     bool // this replica saw the signature before
		fresh    bool
		unverif  bool
		decision string
	}{
		{"recent", false, now.Add(-10 * time.Second), false, true, false, "accepted"},
		{"recent, seen here", false, now.Add(-10 * time.Second), true, false, false, ""},
		{"older than the unchecked window", false, now.Add(-2 * time.Minute), false, false, true, "refused_age"},
		{"from the future", false, now.Add(2 * time.Minute), false, false, true, "refused_age"},
		{"strict", true, now, false, false, true, "refused_strict"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := metrics.New(prometheus.NewRegistry())
			local := &LocalReplayGuard{}
			if tc.seen {
				_, _ = local.Remember(ctx, "k", tc.signedAt, time.Minute)
			}
			g := TieredReplayGuard{Shared: failingGuard{}, Local: local, Strict: tc.strict, Metrics: m,
				Now: func() time.Time { return now }}
			fresh, err := g.Remember(ctx, "k", tc.signedAt, 10*time.Minute)
			if fresh != tc.fresh || errors.Is(err, ErrUnverifiable) != tc.unverif {
				t.Errorf("fresh %v, error %v; want fresh %v, unverifiable %v", fresh, err, tc.fresh, tc.unverif)
			}
			for _, d := range []string{"accepted", "refused_strict", "refused_age"} {
				want := 0.0
				if d == tc.decision {
					want = 1
				}
				if got := testutil.ToFloat64(m.WebhookReplayUnchecked.WithLabelValues(d)); got != want {
					t.Errorf("%s counted %v, want %v", d, got, want)
				}
			}
		})
	}
}

type failingGuard struct{}

func (failingGuard) Remember(context.Context, string, time.Time, time.Duration) (bool, error) {
	return false, errors.New("down")
}

// TestMTLS serves a client-certificate webhook over real TLS and presents good, foreign, expired
// and no certificates.
func TestMTLS(t *testing.T) {
	ca := newCA(t, "zen-test-ca")
	other := newCA(t, "someone-else")
	roots := ca.Pool()

	w, m := newHooksWith(t, WebhookConfig{Acceptor: Direct{Handler: &countingHandler{}}, TLS: true})
	if err := w.Register(Route{Path: "/mtls", Source: "mtls", Parser: falco.Parser{}, Auth: &MTLSAuth{Roots: roots}}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(w)
	srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	defer srv.Close()

	now := time.Now()
	cases := []struct {
		name   string
		cert   *tls.Certificate
		want   int
		reason string
	}{
		{"right", leaf(t, ca, now.Add(time.Hour)), 202, ""},
		{"foreign CA", leaf(t, other, now.Add(time.Hour)), 401, "bad_certificate"},
		{"expired", leaf(t, ca, now.Add(-time.Minute)), 401, "expired_certificate"},
		{"none", nil, 401, "missing_certificate"},
	}
	for _, tc := range cases {
		tr := srv.Client().Transport.(*http.Transport).Clone()
		if tc.cert != nil {
			tr.TLSClientConfig.Certificates = []tls.Certificate{*tc.cert}
		}
		resp, err := (&http.Client{Transport: tr}).Post(srv.URL+"/mtls", "application/json", strings.NewReader(alert))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s: HTTP %d, want %d", tc.name, resp.StatusCode, tc.want)
		}
		if tc.reason != "" && testutil.ToFloat64(m.WebhookAuthFailures.WithLabelValues("mtls", tc.reason)) != 1 {
			t.Errorf("%s: reason %s not counted once", tc.name, tc.reason)
		}
	}

	plain, _ := newHooks(t, &countingHandler{})
	if err := plain.Register(Route{Path: "/mtls", Source: "mtls", Parser: falco.Parser{}, Auth: &MTLSAuth{Roots: roots}}); err == nil ||
		!strings.Contains(err.Error(), "does not serve TLS") {
		t.Errorf("mTLS webhook on a plain listener: %v", err)
	}
}

func newCA(t *testing.T, name string) *testenv.CA {
	t.Helper()
	ca, err := testenv.NewCA(name)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func leaf(t *testing.T, ca *testenv.CA, notAfter time.Time) *tls.Certificate {
	t.Helper()
	c, _, _, err := ca.Leaf("falcosidekick", notAfter, false)
	if err != nil {
		t.Fatal(err)
	}
	return &c
}
