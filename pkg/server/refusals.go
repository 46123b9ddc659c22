package server

import (
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"
	utilcache "k8s.io/apimachinery/pkg/util/cache"
)

// Bounds of the refusal budgets: the client addresses remembered, and for how long after their last
// refusal. An address forgotten starts with a full budget again.
const (
	refusalClients = 10_000
	refusalMemory  = 10 * time.Minute
)

// refusalBudget limits how often one client address may be refused before its requests are
// answered 429 unread. A flood of wrong credentials or unknown paths from one address then costs a
// look-up per request, and cannot crowd out the senders on other addresses.
//
// Only what a genuine sender would not do spends from it: failing authentication, an unknown path
// or method, a body too slow, too large or not JSON. A finding that cannot be written or a body that
// does not parse are a sender's content, and must not silence its other alerts.
type refusalBudget struct {
	limit rate.Limit
	burst int

	mu       sync.Mutex
	byClient *utilcache.LRUExpireCache // address → *rate.Limiter
}

// newRefusalBudget returns a budget of perSecond refusals and a burst of burst per client address,
// or nil (no budget) when perSecond is not positive.
func newRefusalBudget(perSecond float64, burst int) *refusalBudget {
	if perSecond <= 0 {
		return nil
	}
	return &refusalBudget{limit: rate.Limit(perSecond), burst: max(burst, 1), byClient: utilcache.NewLRUExpireCache(refusalClients)}
}

// exhausted tells whether client has no refusal left now, and when it will have one.
func (b *refusalBudget) exhausted(client string) (time.Duration, bool) {
	if b == nil {
		return 0, false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	v, ok := b.byClient.Get(client)
	if !ok {
		return 0, false
	}
	l := v.(*rate.Limiter)
	if l.Tokens() >= 1 {
		return 0, false
	}
	return time.Duration((1 - l.Tokens()) / float64(b.limit) * float64(time.Second)), true
}

// spend charges one refusal to client.
func (b *refusalBudget) spend(client string) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	v, ok := b.byClient.Get(client)
	if !ok {
		v = rate.NewLimiter(b.limit, b.burst)
	}
	v.(*rate.Limiter).Allow()
	b.byClient.Add(client, v, refusalMemory)
}

// spends tells whether an answer with code is one a genuine sender would not earn.
func spends(code int) bool {
	switch code {
	case http.StatusUnauthorized, http.StatusNotFound, http.StatusMethodNotAllowed, http.StatusRequestTimeout,
		http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType:
		return true
	}
	return false
}

// statusWriter remembers the status code written through it.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (s *statusWriter) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the connection (the body's read deadlines).
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
