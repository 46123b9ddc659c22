package server

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestHealthProbes(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "zen_watcher_test_total", Help: "test"})
	reg.MustRegister(c)
	h := NewHealth(reg)
	h.AddLiveness("process", func(context.Context) error { return nil })
	ready := errors.New("informer not synced")
	h.AddReadiness("k8sevents", func(context.Context) error { return ready })
	srv := httptest.NewServer(h.Handler())
	defer srv.Close()

	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	cases := []struct {
		path     string
		setup    func()
		wantCode int
		wantBody string
	}{
		{"/healthz", nil, 200, "ok"},
		{"/readyz", nil, 503, "k8sevents: informer not synced"},
		{"/readyz", func() { h.AddReadiness("k8sevents", func(context.Context) error { return nil }) }, 200, "ok"},
		{"/metrics", nil, 200, "zen_watcher_test_total 0"},
		{"/nope", nil, 404, ""},
	}
	for _, tc := range cases {
		if tc.setup != nil {
			tc.setup()
		}
		code, body := get(tc.path)
		if code != tc.wantCode || !strings.Contains(body, tc.wantBody) {
			t.Errorf("GET %s = %d %q, want %d containing %q", tc.path, code, body, tc.wantCode, tc.wantBody)
		}
	}
}
