package ha

import (
	"context"
	"errors"
	"net/http"
)

// Fence tells whether this replica may still act as the leader. Whoever acts for the leader asks
// it before each act (a delete, a write of shared state): a context's cancellation arrives too
// late for a process that was paused, since after it resumes its goroutines run in no set order.
type Fence interface {
	Held() bool
}

// Unfenced is the Fence of a replica that leads by configuration (leader election off).
var Unfenced Fence = unfenced{}

type unfenced struct{}

func (unfenced) Held() bool { return true }

// ErrDeposed refuses an act of a leader whose Fence no longer holds.
var ErrDeposed = errors.New("no longer the leader")

type fenceKey struct{}

// WithFence returns a context whose API requests, made through a client whose transport is wrapped
// by FenceTransport, are sent only while f holds.
func WithFence(ctx context.Context, f Fence) context.Context {
	return context.WithValue(ctx, fenceKey{}, f)
}

// FenceTransport wraps rt so that a request whose context carries a Fence (WithFence) is refused
// with ErrDeposed, and never sent, once the fence no longer holds. It is the last check a process
// can make before its request reaches the connection: asked any earlier, a pause of the process
// between the check and the send (building the request, client-go's throttle, a stream slot)
// lets a decision taken while leading go out after another replica leads.
func FenceTransport(rt http.RoundTripper) http.RoundTripper {
	return fencedTransport{rt}
}

type fencedTransport struct{ next http.RoundTripper }

// RoundTrip implements http.RoundTripper.
func (t fencedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if f, ok := req.Context().Value(fenceKey{}).(Fence); ok && !f.Held() {
		if req.Body != nil {
			_ = req.Body.Close() // a RoundTripper closes the body, even on error
		}
		return nil, ErrDeposed
	}
	return t.next.RoundTrip(req)
}

// WrappedRoundTripper lets client-go's transport utilities see through the fence.
func (t fencedTransport) WrappedRoundTripper() http.RoundTripper { return t.next }
