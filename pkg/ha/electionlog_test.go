package ha

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// TestContentionLevels: a lost race, and any error once the election is ending, go out at Debug;
// other errors stay errors.
func TestContentionLevels(t *testing.T) {
	ended, end := context.WithCancel(context.Background())
	end()
	lost := apierrors.NewAlreadyExists(schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"}, "zw-leader")
	for name, tc := range map[string]struct {
		ending context.Context
		err    error
		want   string
	}{
		"lost race":                     {context.Background(), lost, "level=DEBUG"},
		"other error":                   {context.Background(), errors.New("connection refused"), "level=ERROR"},
		"error while the election ends": {ended, context.DeadlineExceeded, "level=DEBUG"},
	} {
		var out bytes.Buffer
		log := slog.New(contention{slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}), tc.ending})
		log.Error("Error retrieving lease lock", "err", tc.err)
		if !strings.Contains(out.String(), tc.want) {
			t.Errorf("%s: logged %q, want %s", name, out.String(), tc.want)
		}
	}
}
