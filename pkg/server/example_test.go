package server_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kube-zen/zen-watcher/pkg/metrics"
	"github.com/kube-zen/zen-watcher/pkg/pipeline"
	"github.com/kube-zen/zen-watcher/pkg/server"
	"github.com/kube-zen/zen-watcher/pkg/sources/falco"
)

// A sender signs "<timestamp>.<body>" with HMAC-SHA256 under the key of the Ingester's Secret, and
// sends the hex of the MAC and the timestamp it signed. Only the standard library is needed.
func ExampleHMACAuth() {
	key := []byte("the key of the Ingester's Secret")
	body := []byte(`{"output":"signed alert","priority":"Warning","rule":"Signed","time":"2026-12-01T10:00:00Z","hostname":"node-1"}`)

	// A webhook served as zen-watcher serves an hmac Ingester's path.
	hooks := server.NewWebhooks(server.WebhookConfig{Acceptor: server.Direct{Handler: discard{}},
		Metrics: metrics.New(prometheus.NewRegistry()), Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	_ = hooks.Register(server.Route{Path: "/falco", Source: "falco", Parser: falco.Parser{}, Auth: &server.HMACAuth{Key: key}})
	srv := httptest.NewServer(hooks)
	defer srv.Close()

	ts := strconv.FormatInt(time.Now().Unix(), 10)
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(ts + "."))
	mac.Write(body)
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/falco", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Zen-Timestamp", ts)
	req.Header.Set("X-Zen-Signature", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	fmt.Println(resp.Status)

	// The same request again is a replay.
	req.Body = io.NopCloser(bytes.NewReader(body))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	fmt.Println(resp.Status)
	// Output:
	// 202 Accepted
	// 401 Unauthorized
}

// discard stands for the pipeline: each finding is written at once.
type discard struct{}

func (discard) Handle(_ context.Context, ev *pipeline.Event) error {
	if ev.Done != nil {
		ev.Done(pipeline.OutcomeWritten, nil)
	}
	return nil
}
