package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kube-zen/zen-watcher/pkg/metrics"
	"github.com/kube-zen/zen-watcher/pkg/pipeline"
	"github.com/kube-zen/zen-watcher/pkg/sources"
	"github.com/kube-zen/zen-watcher/pkg/sources/audit"
	"github.com/kube-zen/zen-watcher/pkg/sources/falco"
)

// countingHandler stands in for the pipeline: it counts findings and reports each written, or
// refuses them all with err.
type countingHandler struct {
	n   atomic.Int64
	err error
}

func (c *countingHandler) Handle(_ context.Context, ev *pipeline.Event) error {
	if c.err != nil {
		return c.err
	}
	c.n.Add(1)
	if ev.Done != nil {
		ev.Done(pipeline.OutcomeWritten, nil)
	}
	return nil
}

func newHooks(t testing.TB, h sources.Handler) (*Webhooks, *metrics.Metrics) {
	return newHooksWith(t, WebhookConfig{Acceptor: Direct{Handler: h}})
}

func newHooksWith(t testing.TB, cfg WebhookConfig) (*Webhooks, *metrics.Metrics) {
	m := metrics.New(prometheus.NewRegistry())
	cfg.Metrics, cfg.Log = m, slog.New(slog.NewTextHandler(io.Discard, nil))
	w := NewWebhooks(cfg)
	if err := w.Register(Route{Path: "/falco", Source: "falco", Parser: falco.Parser{}, Auth: NoAuth{}, MaxBodyBytes: 1024}); err != nil {
		t.Fatal(err)
	}
	if err := w.Register(Route{Path: "/secure", Source: "secure", Parser: falco.Parser{}, Auth: BearerAuth{Token: []byte("tok")}}); err != nil {
		t.Fatal(err)
	}
	return w, m
}

const alert = `{"output":"o","priority":"Warning","rule":"r","time":"2026-01-01T00:00:00Z","hostname":"h"}`

func TestWebhookAnswers(t *testing.T) {
	h := &countingHandler{}
	w, m := newHooks(t, h)
	cases := []struct {
		name, method, path, ctype, auth, body string
		want                                  int
	}{
		{"accepted", "POST", "/falco", "application/json", "", alert, 202},
		{"json lines", "POST", "/falco", "application/x-ndjson", "", alert + "\n" + alert, 202},
		{"no content type", "POST", "/falco", "", "", alert, 202},
		{"bad json", "POST", "/falco", "application/json", "", "{", 400},
		{"too large", "POST", "/falco", "application/json", "", strings.Repeat(" ", 2048), 413},
		{"wrong method", "PUT", "/falco", "application/json", "", alert, 405},
		{"wrong type", "POST", "/falco", "text/html", "", alert, 415},
		{"unknown path", "POST", "/x", "application/json", "", alert, 404},
		{"bearer ok", "POST", "/secure", "application/json", "Bearer tok", alert, 202},
		{"bearer wrong", "POST", "/secure", "application/json", "Bearer nope", "", 401},
		{"bearer scheme in lower case", "POST", "/secure", "application/json", "bearer tok", alert, 202},
		{"bearer scheme in upper case, two spaces", "POST", "/secure", "application/json", "BEARER  tok", alert, 202},
		{"bearer without a token", "POST", "/secure", "application/json", "Bearer ", "", 401},
		{"basic scheme", "POST", "/secure", "application/json", "Basic dG9r", "", 401},
		{"bearer missing", "POST", "/secure", "application/json", "", alert, 401},
	}
	for _, tc := range cases {
		req := httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body))
		if tc.ctype != "" {
			req.Header.Set("Content-Type", tc.ctype)
		}
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		rec := httptest.NewRecorder()
		w.ServeHTTP(rec, req)
		if rec.Code != tc.want {
			t.Errorf("%s: HTTP %d, want %d (%s)", tc.name, rec.Code, tc.want, rec.Body.String())
		}
	}
	// Five, and the two bearer alerts whose scheme is spelled otherwise.
	if h.n.Load() != 7 || w.Accepted("falco") != 4 {
		t.Errorf("handled %d, accepted %d", h.n.Load(), w.Accepted("falco"))
	}
	if testutil.ToFloat64(m.WebhookRejected.WithLabelValues("falco", "malformed")) != 1 ||
		testutil.ToFloat64(m.WebhookRequests.WithLabelValues("falco", "413")) != 1 {
		t.Error("rejections not counted")
	}
}

func TestWebhookBusyAnswers503(t *testing.T) {
	w, _ := newHooks(t, &countingHandler{err: errors.New("queue full")})
	rec := httptest.NewRecorder()
	w.ServeHTTP(rec, httptest.NewRequest("POST", "/falco", strings.NewReader(alert)))
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Errorf("HTTP %d, Retry-After %q", rec.Code, rec.Header().Get("Retry-After"))
	}
}

func TestRoutes(t *testing.T) {
	w, _ := newHooks(t, &countingHandler{})
	if err := w.Register(Route{Path: "/falco", Source: "other", Parser: falco.Parser{}, Auth: NoAuth{}}); !errors.Is(err, ErrPathTaken) {
		t.Errorf("second source on a path: %v", err)
	}
	if err := w.Register(Route{Path: "falco", Source: "x", Parser: falco.Parser{}, Auth: NoAuth{}}); err == nil {
		t.Error("path without a slash accepted")
	}
	w.Unregister("/falco", "other") // not its owner: no effect
	rec := httptest.NewRecorder()
	w.ServeHTTP(rec, httptest.NewRequest("POST", "/falco", strings.NewReader(alert)))
	if rec.Code != 202 {
		t.Errorf("route removed by a stranger: HTTP %d", rec.Code)
	}
	w.Unregister("/falco", "falco")
	rec = httptest.NewRecorder()
	w.ServeHTTP(rec, httptest.NewRequest("POST", "/falco", strings.NewReader(alert)))
	if rec.Code != 404 {
		t.Errorf("after unregister: HTTP %d", rec.Code)
	}
}

// SourcesChanged tells the webhook queue's reader when there may be a stream more or less to read.
func TestSourcesChanged(t *testing.T) {
	w, _ := newHooks(t, &countingHandler{})
	route := func(path, source string) Route {
		return Route{Path: path, Source: source, Parser: falco.Parser{}, Auth: NoAuth{}}
	}
	for _, c := range []struct {
		name    string
		change  func() error
		changed bool
		sources []string
	}{
		{"a path registered", func() error { return w.Register(route("/audit", "audit")) }, true, []string{"audit", "falco", "secure"}},
		{"a path refused", func() error { _ = w.Register(route("/audit", "other")); return nil }, false, []string{"audit", "falco", "secure"}},
		{"a stranger's unregister", func() error { w.Unregister("/audit", "falco"); return nil }, false, []string{"audit", "falco", "secure"}},
		{"a path unregistered", func() error { w.Unregister("/audit", "audit"); return nil }, true, []string{"falco", "secure"}},
		{"an unknown path unregistered", func() error { w.Unregister("/nowhere", "audit"); return nil }, false, []string{"falco", "secure"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ch := w.SourcesChanged()
			if err := c.change(); err != nil {
				t.Fatal(err)
			}
			select {
			case <-ch:
				if !c.changed {
					t.Error("closed, but nothing changed")
				}
			default:
				if c.changed {
					t.Error("not closed")
				}
			}
			if got := slices.Sorted(slices.Values(w.Sources())); !slices.Equal(got, c.sources) {
				t.Errorf("sources %v, want %v", got, c.sources)
			}
		})
	}
}

// TestBadRequestsLeakNothing sends 10,000 bad requests through a real listener and checks that
// goroutines and heap come back to where they were.
func TestBadRequestsLeakNothing(t *testing.T) {
	w, _ := newHooks(t, &countingHandler{})
	srv := httptest.NewServer(w)
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	bodies := []string{"{", strings.Repeat("x", 4096), `{"a":1}`, ""}
	send := func(i int) {
		req, _ := http.NewRequest("POST", srv.URL+[]string{"/falco", "/secure", "/nope"}[i%3], bytes.NewReader([]byte(bodies[i%len(bodies)])))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	for i := range 200 {
		send(i)
	}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	goroutines := runtime.NumGoroutine()
	for i := range 10000 {
		send(i)
	}
	client.CloseIdleConnections()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > goroutines+2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > goroutines+2 {
		t.Errorf("%d goroutines after 10,000 bad requests, %d before", n, goroutines)
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); grown > 4<<20 {
		t.Errorf("heap grew by %d bytes over 10,000 bad requests", grown)
	}
}

func FuzzWebhook(f *testing.F) {
	f.Add("POST", "application/json", []byte(alert))
	f.Add("POST", "application/x-ndjson", []byte("{}\n{"))
	f.Add("GET", "text/plain", []byte(nil))
	w, _ := newHooks(f, &countingHandler{})
	f.Fuzz(func(t *testing.T, method, ctype string, body []byte) {
		if !validMethod(method) {
			return
		}
		req := httptest.NewRequest(method, "/falco", bytes.NewReader(body))
		req.Header.Set("Content-Type", ctype)
		rec := httptest.NewRecorder()
		w.ServeHTTP(rec, req)
		if rec.Code < 200 || rec.Code >= 600 {
			t.Fatalf("HTTP %d", rec.Code)
		}
	})
}

func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for _, c := range m {
		if c < 'A' || c > 'Z' {
			return false
		}
	}
	return true
}

// TestSlowBodyIsCutOff trickles a body in a byte at a time: the read timeout, or sooner the
// minimum body rate, ends the request with a 408, it is counted, and nothing of it stays behind.
func TestSlowBodyIsCutOff(t *testing.T) {
	for _, tc := range []struct {
		name        string
		source      string // falco's bodies are read whole, audit's streamed to its parser
		readTimeout time.Duration
		minRate     float64
		within      time.Duration // the answer comes before this
	}{
		{"read timeout", "falco", 300 * time.Millisecond, 0, 2 * time.Second},
		{"minimum rate after the grace", "falco", 30 * time.Second, 100, bodyGrace + 2*time.Second},
		{"read timeout, streamed", "audit", 300 * time.Millisecond, 0, 2 * time.Second},
		{"minimum rate after the grace, streamed", "audit", 30 * time.Second, 100, bodyGrace + 2*time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, m := newHooksWith(t, WebhookConfig{Acceptor: Direct{Handler: &countingHandler{}}, MinBodyRate: tc.minRate,
				ReadTimeout: tc.readTimeout})
			if err := w.Register(Route{Path: "/audit", Source: "audit", Parser: audit.Parser{}, Auth: NoAuth{}}); err != nil {
				t.Fatal(err)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			goroutines := runtime.NumGoroutine()
			ctx, cancel := context.WithCancel(context.Background())
			served := make(chan error, 1)
			go func() {
				served <- ServeListener(ctx, ln, w, ServeOptions{ReadTimeout: tc.readTimeout}, slog.New(slog.NewTextHandler(io.Discard, nil)))
			}()
			conn, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			start := time.Now()
			fmt.Fprintf(conn, "POST /%s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n", tc.source)
			answer := make(chan string, 1)
			go func() {
				b, _ := io.ReadAll(io.LimitReader(conn, 4096))
				answer <- string(b)
			}()
			var got string
		trickle:
			for time.Since(start) < 10*time.Second {
				select {
				case got = <-answer:
					break trickle
				case <-time.After(50 * time.Millisecond):
					_, _ = conn.Write([]byte(" ")) // 20 bytes a second
				}
			}
			took := time.Since(start)
			if !strings.HasPrefix(got, "HTTP/1.1 408") || took > tc.within {
				t.Fatalf("after %v the answer was %q; want a 408 within %v", took.Round(time.Millisecond), got, tc.within)
			}
			if tc.minRate > 0 && took < bodyGrace {
				t.Errorf("cut off after %v, before the grace of %v", took, bodyGrace)
			}
			if got := testutil.ToFloat64(m.WebhookRejected.WithLabelValues(tc.source, "slow_body")); got != 1 {
				t.Errorf("slow body counted %v times, want 1", got)
			}
			conn.Close()
			cancel()
			if err := <-served; err != nil {
				t.Error(err)
			}
			deadline := time.Now().Add(5 * time.Second)
			for runtime.NumGoroutine() > goroutines && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if n := runtime.NumGoroutine(); n > goroutines {
				t.Errorf("%d goroutines after the slow request and shutdown, %d before", n, goroutines)
			}
		})
	}
}

// TestBodyAtTheMinimumRateIsRead: a sender that keeps to the minimum rate, however long its body
// takes, is read whole and answered 202.
func TestBodyAtTheMinimumRateIsRead(t *testing.T) {
	w, _ := newHooksWith(t, WebhookConfig{Acceptor: Direct{Handler: &countingHandler{}}, MinBodyRate: 200, ReadTimeout: 30 * time.Second})
	srv := httptest.NewServer(w)
	defer srv.Close()
	body := strings.Replace(alert, `"output":"o"`, `"output":"`+strings.Repeat("o", 1500)+`"`, 1)
	pr, pw := io.Pipe()
	go func() {
		// 400 bytes a second, twice the minimum: about four seconds, well past the grace.
		for i := 0; i < len(body); i += 20 {
			_, _ = pw.Write([]byte(body[i:min(i+20, len(body))]))
			time.Sleep(50 * time.Millisecond)
		}
		_ = pw.Close()
	}()
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/secure", pr)
	req.ContentLength = int64(len(body))
	req.Header.Set("Authorization", "Bearer tok")
	start := time.Now()
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if took := time.Since(start); took < bodyGrace {
		t.Fatalf("the body took %v, within the grace: the test proves nothing", took)
	}
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("HTTP %d, want 202", resp.StatusCode)
	}
}

// TestUnknownPathWhileRoutesLoad: with AwaitRoutes, a path not (yet) served is 503 with
// Retry-After until the routes are loaded, and 404 after.
func TestUnknownPathWhileRoutesLoad(t *testing.T) {
	w, _ := newHooksWith(t, WebhookConfig{Acceptor: Direct{Handler: &countingHandler{}}, AwaitRoutes: true})
	post := func() *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		w.ServeHTTP(rec, httptest.NewRequest("POST", "/not-yet", strings.NewReader(alert)))
		return rec
	}
	if rec := post(); rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("before the routes are loaded: HTTP %d, Retry-After %q; want 503 with Retry-After", rec.Code, rec.Header().Get("Retry-After"))
	}
	w.RoutesLoaded()
	if rec := post(); rec.Code != http.StatusNotFound {
		t.Errorf("after: HTTP %d, want 404", rec.Code)
	}
}
