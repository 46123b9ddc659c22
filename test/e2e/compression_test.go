package e2e

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/kube-zen/zen-watcher/internal/testenv"
)

// TestWatchesUncompressed: a replica asks for no gzip by default, so the API server compresses
// none of its answers — the informers' watch-lists, whose every event it would gzip, included —
// and with -kube-compression it asks, and they come compressed.
func TestWatchesUncompressed(t *testing.T) {
	redisSrv, err := testenv.StartRedis()
	if err != nil {
		t.Fatal(err)
	}
	defer redisSrv.Close()
	ensureNamespace(t, haNamespace)
	for _, tc := range []struct {
		name  string
		extra []string
		gzip  bool
	}{
		{name: "by default", gzip: false},
		{name: "with -kube-compression", extra: []string{"-kube-compression"}, gzip: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startAPIProxy(t)
			started := time.Now()
			r := startBehind(t, p, "gzip-"+fmt.Sprint(tc.gzip), redisSrv.Addr, "gz-a", tc.extra...)
			r.WaitReady(t, 60*time.Second)
			var lists []apiCall
			eventually(t, 20*time.Second, func(context.Context) error {
				lists = p.answeredWatchLists(started)
				if len(lists) == 0 {
					return fmt.Errorf("no watch-list answered yet")
				}
				return nil
			})
			for _, c := range lists {
				if got := c.contentEncoding() == "gzip"; got != tc.gzip {
					t.Errorf("the watch-list %s?%s was answered with Content-Encoding %q", c.path, c.query.Encode(), c.contentEncoding())
				}
			}
			if asked := p.askedGzip(started); (asked > 0) != tc.gzip {
				t.Errorf("%d requests asked for gzip", asked)
			}
			t.Logf("%d watch-lists answered, %d requests asked for gzip", len(lists), p.askedGzip(started))
		})
	}
}

// answeredWatchLists is the watches that began with their initial events (an informer's
// watch-list), arrived at or after since and were answered 200.
func (p *apiProxy) answeredWatchLists(since time.Time) []apiCall {
	var out []apiCall
	for _, c := range p.matching(since, http.MethodGet, "/") {
		if c.query.Get("watch") == "true" && c.query.Get("sendInitialEvents") == "true" && c.status.Load() == http.StatusOK {
			out = append(out, c)
		}
	}
	return out
}

// askedGzip is how many requests that arrived at or after since accepted a gzip answer.
func (p *apiProxy) askedGzip(since time.Time) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, c := range p.calls {
		if c.gzip && !c.at.Before(since) {
			n++
		}
	}
	return n
}
