package server

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/kube-zen/zen-watcher/pkg/metrics"
	"github.com/kube-zen/zen-watcher/pkg/sources"
)

// DefaultMaxBodyBytes bounds a webhook body unless a route sets its own.
const DefaultMaxBodyBytes = 1 << 20

// Authenticator decides whether a request may deliver findings; a non-nil error is the reason it
// may not, for the metric (never the credential itself).
type Authenticator interface {
	Authenticate(r *http.Request, body []byte) error
}

// NoAuth accepts every request; a webhook has it only when its Ingester says `auth: none`.
type NoAuth struct{}

// Authenticate implements Authenticator.
func (NoAuth) Authenticate(*http.Request, []byte) error { return nil }

// BearerAuth accepts requests whose Authorization header carries the token.
type BearerAuth struct {
	Token []byte
}

// Authenticate implements Authenticator with a constant-time comparison.
func (b BearerAuth) Authenticate(r *http.Request, _ []byte) error {
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		return errors.New("missing_token")
	}
	if len(b.Token) == 0 || subtle.ConstantTimeCompare([]byte(tok), b.Token) != 1 {
		return errors.New("wrong_token")
	}
	return nil
}

// Route is one webhook: the path it is served on, the source its findings carry, how its bodies
// are parsed and who may post them.
type Route struct {
	Path         string
	Source       string
	Parser       sources.PayloadParser
	Auth         Authenticator
	MaxBodyBytes int64
}

// Webhooks serves every webhook path on one listener. Routes are added and removed while it serves.
type Webhooks struct {
	handler sources.Handler
	metrics *metrics.Metrics
	log     *slog.Logger

	mu     sync.Mutex // serializes changes to routes
	routes atomic.Pointer[map[string]*Route]
	counts sync.Map // source → *atomic.Int64 of findings accepted
}

// NewWebhooks returns a webhook server that hands findings to h.
func NewWebhooks(h sources.Handler, m *metrics.Metrics, log *slog.Logger) *Webhooks {
	w := &Webhooks{handler: h, metrics: m, log: log}
	empty := map[string]*Route{}
	w.routes.Store(&empty)
	return w
}

// ErrPathTaken is returned when a path is served for another source already.
var ErrPathTaken = errors.New("webhook path already served")

// Register serves r. Registering a path again for the same source replaces the route; for another
// source it is an error wrapping ErrPathTaken.
func (w *Webhooks) Register(r Route) error {
	if !strings.HasPrefix(r.Path, "/") {
		return fmt.Errorf("webhook path %q must start with /", r.Path)
	}
	if r.Parser == nil || r.Auth == nil {
		return fmt.Errorf("webhook %s: a parser and an authenticator are required", r.Path)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	cur := *w.routes.Load()
	if old, ok := cur[r.Path]; ok && old.Source != r.Source {
		return fmt.Errorf("%w: %s serves source %s", ErrPathTaken, r.Path, old.Source)
	}
	next := maps.Clone(cur)
	next[r.Path] = &r
	w.routes.Store(&next)
	return nil
}

// Unregister stops serving path, if it belongs to source.
func (w *Webhooks) Unregister(path, source string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	cur := *w.routes.Load()
	if old, ok := cur[path]; !ok || old.Source != source {
		return
	}
	next := maps.Clone(cur)
	delete(next, path)
	w.routes.Store(&next)
}

// Accepted is the number of findings accepted for source.
func (w *Webhooks) Accepted(source string) int64 {
	if c, ok := w.counts.Load(source); ok {
		return c.(*atomic.Int64).Load()
	}
	return 0
}

// ServeHTTP implements http.Handler.
func (w *Webhooks) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	route, ok := (*w.routes.Load())[r.URL.Path]
	if !ok {
		w.reply(rw, "unknown", http.StatusNotFound, "no webhook at "+r.URL.Path)
		return
	}
	src := route.Source
	if r.Method != http.MethodPost {
		rw.Header().Set("Allow", http.MethodPost)
		w.reply(rw, src, http.StatusMethodNotAllowed, "use POST")
		return
	}
	if !jsonish(r.Header.Get("Content-Type")) {
		w.reject(rw, src, "content_type", http.StatusUnsupportedMediaType, "send application/json")
		return
	}
	body, status, err := w.read(rw, r, route)
	if err != nil {
		w.reject(rw, src, map[int]string{413: "too_large", 400: "read_error"}[status], status, err.Error())
		return
	}
	if err := route.Auth.Authenticate(r, body); err != nil {
		w.reject(rw, src, "auth_"+err.Error(), http.StatusUnauthorized, "not authenticated")
		return
	}
	findings, err := route.Parser.ParsePayload(body)
	if err != nil {
		w.metrics.SourceEventsIgnored.WithLabelValues(src, "malformed").Inc()
		w.reject(rw, src, "malformed", http.StatusBadRequest, err.Error())
		return
	}
	for i, f := range findings {
		f.Source = src
		if err := w.handler.Handle(r.Context(), f); err != nil {
			// The findings before i are on their way; the sender retries the whole body, and the
			// names derived from each occurrence make the retry write nothing twice.
			w.log.Warn("webhook finding not accepted", "source", src, "index", i, "error", err)
			rw.Header().Set("Retry-After", "1")
			w.reject(rw, src, "busy", http.StatusServiceUnavailable, "busy; retry")
			return
		}
	}
	c, _ := w.counts.LoadOrStore(src, new(atomic.Int64))
	c.(*atomic.Int64).Add(int64(len(findings)))
	w.replyJSON(rw, src, http.StatusAccepted, map[string]any{"accepted": len(findings)})
}

// read reads the body within the route's bound.
func (w *Webhooks) read(rw http.ResponseWriter, r *http.Request, route *Route) ([]byte, int, error) {
	limit := route.MaxBodyBytes
	if limit <= 0 {
		limit = DefaultMaxBodyBytes
	}
	if r.ContentLength > limit {
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("body of %d bytes, at most %d", r.ContentLength, limit)
	}
	body, err := io.ReadAll(http.MaxBytesReader(rw, r.Body, limit))
	w.metrics.WebhookBytes.WithLabelValues(route.Source).Add(float64(len(body)))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("body over %d bytes", limit)
	case err != nil:
		return nil, http.StatusBadRequest, fmt.Errorf("reading body: %w", err)
	}
	return body, 0, nil
}

// jsonish accepts JSON and JSON lines, and a missing content type (curl and some senders omit it).
func jsonish(ct string) bool {
	if ct == "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return mt == "application/json" || mt == "application/x-ndjson" || mt == "application/jsonl" ||
		mt == "text/plain" || strings.HasSuffix(mt, "+json")
}

func (w *Webhooks) reject(rw http.ResponseWriter, src, reason string, code int, msg string) {
	w.metrics.WebhookRejected.WithLabelValues(src, reason).Inc()
	w.reply(rw, src, code, msg)
}

func (w *Webhooks) reply(rw http.ResponseWriter, src string, code int, msg string) {
	w.replyJSON(rw, src, code, map[string]any{"error": msg})
}

func (w *Webhooks) replyJSON(rw http.ResponseWriter, src string, code int, v any) {
	w.metrics.WebhookRequests.WithLabelValues(src, strconv.Itoa(code)).Inc()
	rw.Header().Set("Content-Type", "application/json")
	rw.WriteHeader(code)
	_ = json.NewEncoder(rw).Encode(v)
}
