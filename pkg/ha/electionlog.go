package ha

import (
	"context"
	"log/slog"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// contention is the slog.Handler the leader elector logs through. client-go logs an error when a
// candidate loses the race for the Lease — another replica created it between this one's read
// and create, or updated it first — which is the election working as meant, not a fault: on a
// normal start of several replicas every follower printed "Error initially creating lease lock".
// Those records go out at Debug; so do the errors of requests cut off because the election itself
// is ending (ending is done: the replica stops); every other error stays an error.
type contention struct {
	slog.Handler
	ending context.Context
}

// Handle implements slog.Handler.
func (h contention) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError && (lostRace(r) || h.ending.Err() != nil) {
		quiet := slog.NewRecord(r.Time, slog.LevelDebug, r.Message, r.PC)
		r.Attrs(func(a slog.Attr) bool { quiet.AddAttrs(a); return true })
		if !h.Handler.Enabled(ctx, slog.LevelDebug) {
			return nil
		}
		r = quiet
	}
	return h.Handler.Handle(ctx, r)
}

// WithAttrs implements slog.Handler.
func (h contention) WithAttrs(attrs []slog.Attr) slog.Handler {
	return contention{h.Handler.WithAttrs(attrs), h.ending}
}

// WithGroup implements slog.Handler.
func (h contention) WithGroup(name string) slog.Handler {
	return contention{h.Handler.WithGroup(name), h.ending}
}

// lostRace reports whether r carries an error that says another writer got to the Lease first.
func lostRace(r slog.Record) bool {
	lost := false
	r.Attrs(func(a slog.Attr) bool {
		if err, ok := a.Value.Any().(error); ok && (apierrors.IsAlreadyExists(err) || apierrors.IsConflict(err)) {
			lost = true
		}
		return !lost
	})
	return lost
}
