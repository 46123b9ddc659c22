package shard

import (
	"io"
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kube-zen/zen-watcher/pkg/metrics"
)

// TestSharderFailsClosed: a replica whose member set is empty, or holds only others, owns no
// namespace, cluster-scoped objects (the empty namespace) included.
func TestSharderFailsClosed(t *testing.T) {
	for name, members := range map[string][]string{"no members": nil, "only others": {"zw-1", "zw-2"}} {
		for _, balanced := range []bool{false, true} {
			s := NewSharder("zw-0", 0, balanced, metrics.New(prometheus.NewRegistry()), slog.New(slog.NewTextHandler(io.Discard, nil)))
			if !s.Update(members) {
				t.Errorf("%s: the share did not change from the whole space", name)
			}
			for _, ns := range []string{"default", "kube-system", "team-1", ""} {
				if s.Owns(ns) {
					t.Errorf("%s (balanced %v): owns %q", name, balanced, ns)
				}
			}
			if len(s.Share()) != 0 || s.Joined() {
				t.Errorf("%s (balanced %v): share %v, joined %v", name, balanced, s.Share(), s.Joined())
			}
		}
	}
}
