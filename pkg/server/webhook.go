package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/kube-zen/zen-watcher/pkg/metrics"
	"github.com/kube-zen/zen-watcher/pkg/pipeline"
	"github.com/kube-zen/zen-watcher/pkg/sources"
)

// DefaultMaxBodyBytes bounds a webhook body that is read whole (to check its signature, or for a
// parser that takes it whole) unless a route sets its own.
const DefaultMaxBodyBytes = 1 << 20

// DefaultMaxStreamedBodyBytes bounds a body streamed to its parser unless a route sets its own.
// Such a parser keeps one event at a time, so the bound is on time and bytes, not memory: the API
// server's audit backend sends up to 400 events a batch, bounded in bytes only when it truncates.
const DefaultMaxStreamedBodyBytes = 256 << 20

// Route is one webhook: the path it is served on, the source its findings carry, how its bodies
// are parsed and who may post them.
type Route struct {
	Path   string
	Source string
	Parser sources.PayloadParser
	Auth   Authenticator
	// MaxBodyBytes bounds a body (413 beyond); zero takes DefaultMaxBodyBytes, or
	// DefaultMaxStreamedBodyBytes for a body streamed to its parser.
	MaxBodyBytes int64
}

// Default limits of the webhook server.
const (
	DefaultRatePerSource  = 1000
	DefaultBurstPerSource = 2000
	DefaultMaxInFlight    = 1024
)

// WebhookConfig holds what the webhook server needs. Zero limits take the defaults above.
type WebhookConfig struct {
	// Acceptor takes each request's findings; the answer is 202 only when it returns nil.
	Acceptor Acceptor
	// RatePerSource and BurstPerSource bound each source's requests (429 beyond).
	RatePerSource  float64
	BurstPerSource int
	// MaxInFlight bounds the requests served at once (503 beyond).
	MaxInFlight int
	// TLS says the listener serves TLS; webhooks that authenticate by client certificate need it.
	TLS bool
	// MinBodyRate, in bytes a second, ends a body that arrives slower once its first two seconds
	// have passed (408); zero reads at any rate. ReadTimeout, the listener's, bounds the whole body.
	MinBodyRate float64
	ReadTimeout time.Duration
	// RefusalsPerClient and RefusalBurstPerClient are each client address's budget of refused
	// requests (failed authentication, unknown paths, bodies too slow, too large or not JSON);
	// past it the address is answered 429 unread. Zero: no budget.
	RefusalsPerClient     float64
	RefusalBurstPerClient int
	// Replay is the HMAC webhooks' replay memory (a local one when nil).
	Replay ReplayGuard
	// AwaitRoutes answers an unknown path 503 with Retry-After, instead of 404, until
	// RoutesLoaded is called: the listener opens before the Ingesters are read, and a sender
	// such as the API server's audit backend does not retry a 404.
	AwaitRoutes bool
	Metrics     *metrics.Metrics
	Log         *slog.Logger
}

// Webhooks serves every webhook path on one listener. Routes are added and removed while it serves.
type Webhooks struct {
	cfg      WebhookConfig
	metrics  *metrics.Metrics
	log      *slog.Logger
	inFlight chan struct{}

	mu       sync.Mutex // serializes changes to routes
	routes   atomic.Pointer[map[string]*Route]
	changed  chan struct{} // closed, under mu, when routes next change (nil: none asked yet)
	counts   sync.Map      // source → *atomic.Int64 of findings accepted
	limiters sync.Map      // source → *rate.Limiter
	// refusalLog bounds the log lines of refused requests: a flood of them must not flood the log.
	refusalLog *rate.Limiter
	// refusals is each client address's budget of refused requests (nil: none).
	refusals *refusalBudget
	loaded   atomic.Bool // every route of the Ingesters that existed at start is registered
}

// RoutesLoaded says every Ingester that existed at start has been read: from now on an unknown
// path is 404.
func (w *Webhooks) RoutesLoaded() { w.loaded.Store(true) }

// NewWebhooks returns a webhook server.
func NewWebhooks(cfg WebhookConfig) *Webhooks {
	if cfg.RatePerSource <= 0 {
		cfg.RatePerSource = DefaultRatePerSource
	}
	if cfg.BurstPerSource <= 0 {
		cfg.BurstPerSource = DefaultBurstPerSource
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	if cfg.Replay == nil {
		cfg.Replay = &LocalReplayGuard{}
	}
	w := &Webhooks{cfg: cfg, metrics: cfg.Metrics, log: cfg.Log, inFlight: make(chan struct{}, cfg.MaxInFlight),
		refusalLog: rate.NewLimiter(1, 10), refusals: newRefusalBudget(cfg.RefusalsPerClient, cfg.RefusalBurstPerClient)}
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
	switch a := r.Auth.(type) {
	case *MTLSAuth:
		if !w.cfg.TLS {
			return fmt.Errorf("webhook %s authenticates by client certificate, but the webhook listener does not serve TLS "+
				"(set -webhook-tls-cert-file and -webhook-tls-key-file)", r.Path)
		}
	case *HMACAuth:
		if a.Replay == nil {
			a.Replay = w.cfg.Replay
		}
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
	w.notifyLocked()
	w.metrics.InitWebhookSource(r.Source)
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
	w.notifyLocked()
}

// SourcesChanged is closed once the routes, and so possibly Sources, change after the call: a
// reader of the webhook queue waits on it instead of asking Sources again and again.
func (w *Webhooks) SourcesChanged() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.changed == nil {
		w.changed = make(chan struct{})
	}
	return w.changed
}

// notifyLocked wakes whoever waits on SourcesChanged; w.mu is held.
func (w *Webhooks) notifyLocked() {
	if w.changed != nil {
		close(w.changed)
		w.changed = nil
	}
}

// Sources lists the sources served, in no particular order.
func (w *Webhooks) Sources() []string {
	routes := *w.routes.Load()
	seen := make(map[string]bool, len(routes))
	out := make([]string, 0, len(routes))
	for _, r := range routes {
		if !seen[r.Source] {
			seen[r.Source] = true
			out = append(out, r.Source)
		}
	}
	return out
}

// Accepted is the number of findings accepted for source.
func (w *Webhooks) Accepted(source string) int64 {
	if c, ok := w.counts.Load(source); ok {
		return c.(*atomic.Int64).Load()
	}
	return 0
}

// ServeHTTP implements http.Handler. A client address that has spent its refusal budget is
// answered 429 before anything else is looked at.
func (w *Webhooks) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	if w.refusals == nil {
		w.handle(rw, r)
		return
	}
	client := remoteHost(r.RemoteAddr)
	if wait, out := w.refusals.exhausted(client); out {
		src := "unknown"
		if route, ok := (*w.routes.Load())[r.URL.Path]; ok {
			src = route.Source
		}
		rw.Header().Set("Retry-After", retryAfter(wait))
		w.reject(rw, src, "client_refused", http.StatusTooManyRequests, "too many refused requests from this address; retry later")
		return
	}
	sw := &statusWriter{ResponseWriter: rw}
	w.handle(sw, r)
	if spends(sw.code) {
		w.refusals.spend(client)
	}
}

// handle serves one request. The cheap refusals (path, method, content type, what the
// headers show of authentication) come before a request takes an in-flight slot or any of its
// source's rate limit; load and rate before the body is read; full authentication before it is
// parsed.
func (w *Webhooks) handle(rw http.ResponseWriter, r *http.Request) {
	route, ok := (*w.routes.Load())[r.URL.Path]
	if !ok {
		if w.cfg.AwaitRoutes && !w.loaded.Load() {
			rw.Header().Set("Retry-After", "1")
			w.reply(rw, "unknown", http.StatusServiceUnavailable, "webhook routes are being loaded; retry")
			return
		}
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
	if ha, ok := route.Auth.(HeaderAuthenticator); ok {
		if err := ha.AuthenticateHeaders(r); err != nil {
			w.refuseAuth(rw, r, src, err)
			return
		}
	}
	select {
	case w.inFlight <- struct{}{}:
		defer func() { <-w.inFlight }()
	default:
		rw.Header().Set("Retry-After", "1")
		w.reject(rw, src, "overloaded", http.StatusServiceUnavailable, "too many requests in flight; retry")
		return
	}
	if wait, ok := w.admit(src); !ok {
		w.metrics.WebhookRateLimited.WithLabelValues(src).Inc()
		rw.Header().Set("Retry-After", retryAfter(wait))
		w.reject(rw, src, "rate_limited", http.StatusTooManyRequests, "rate limit of this webhook reached; retry later")
		return
	}
	w.serve(rw, r, route)
}

// serve reads, authenticates, parses and accepts one request.
func (w *Webhooks) serve(rw http.ResponseWriter, r *http.Request, route *Route) {
	src := route.Source
	findings, ok := w.receive(rw, r, route)
	if !ok {
		return
	}
	for i, f := range findings {
		f.Source = src
		// Refused now, with the reason, rather than acknowledged and then refused by the API server.
		if err := pipeline.Writable(f); err != nil {
			w.metrics.SourceEventsIgnored.WithLabelValues(src, "unwritable").Inc()
			w.rejectLogged(rw, r, src, "unwritable", http.StatusUnprocessableEntity,
				fmt.Sprintf("finding %d of %d cannot be written: %v", i+1, len(findings), err))
			return
		}
	}
	if len(findings) == 0 {
		// A body of events none of which is a finding (an audit batch of reads, say): nothing to
		// queue or write, and nothing the sender needs to send again.
		w.metrics.WebhookRequestsWithoutFindings.WithLabelValues(src).Inc()
		w.replyJSON(rw, src, http.StatusAccepted, map[string]any{"accepted": 0, "durability": Written})
		return
	}
	how, err := w.cfg.Acceptor.Accept(r.Context(), src, findings)
	if err != nil {
		// Nothing is acknowledged that is not safe. What was handed on before the failure may yet
		// be written; the sender's retry writes nothing twice, names derive from each occurrence.
		w.log.Warn("webhook findings not accepted", "source", src, "findings", len(findings), "error", err)
		rw.Header().Set("Retry-After", "1")
		w.reject(rw, src, "unavailable", http.StatusServiceUnavailable, "findings could not be stored; retry")
		return
	}
	w.metrics.WebhookFindings.WithLabelValues(src).Add(float64(len(findings)))
	c, _ := w.counts.LoadOrStore(src, new(atomic.Int64))
	c.(*atomic.Int64).Add(int64(len(findings)))
	w.replyJSON(rw, src, http.StatusAccepted, map[string]any{"accepted": len(findings), "durability": how})
}

// receive authenticates a request and parses its body into findings, or answers it and says so.
// A body whose authentication does not depend on it goes to a streaming parser as it arrives;
// any other is read whole, within its bound, then authenticated, then parsed.
func (w *Webhooks) receive(rw http.ResponseWriter, r *http.Request, route *Route) ([]*pipeline.Event, bool) {
	src := route.Source
	if sp, ok := route.Parser.(sources.StreamingParser); ok && !needsBody(route.Auth) {
		if err := route.Auth.Authenticate(r, nil); err != nil {
			w.refuseAuth(rw, r, src, err)
			return nil, false
		}
		body := w.body(rw, r, route, DefaultMaxStreamedBodyBytes)
		findings, tally, err := sp.ParseStream(body)
		w.metrics.WebhookBytes.WithLabelValues(src).Add(float64(body.n))
		if err != nil {
			w.refuseBody(rw, r, src, body, err)
			return nil, false
		}
		w.count(r, src, tally)
		return findings, true
	}
	body := w.body(rw, r, route, DefaultMaxBodyBytes)
	raw, err := io.ReadAll(body)
	w.metrics.WebhookBytes.WithLabelValues(src).Add(float64(body.n))
	if err != nil {
		w.refuseBody(rw, r, src, body, err)
		return nil, false
	}
	if err := route.Auth.Authenticate(r, raw); err != nil {
		w.refuseAuth(rw, r, src, err)
		return nil, false
	}
	findings, err := w.parse(r, src, route.Parser, raw)
	if err != nil {
		w.metrics.SourceEventsIgnored.WithLabelValues(src, "malformed").Inc()
		w.reject(rw, src, "malformed", http.StatusBadRequest, err.Error())
		return nil, false
	}
	return findings, true
}

// needsBody says whether a's verdict depends on the body (a signature over it): such a body is
// read whole and authenticated before any of it is parsed. An Authenticator not known here is
// taken to need it.
func needsBody(a Authenticator) bool {
	switch a.(type) {
	case NoAuth, BearerAuth, *MTLSAuth:
		return false
	}
	return true
}

// parse reads a body's findings, counting its events and those that are none where the parser
// tallies them.
func (w *Webhooks) parse(r *http.Request, src string, p sources.PayloadParser, body []byte) ([]*pipeline.Event, error) {
	tp, ok := p.(sources.TallyingParser)
	if !ok {
		return p.ParsePayload(body)
	}
	findings, tally, err := tp.ParseTallied(body)
	if err != nil {
		return nil, err
	}
	w.count(r, src, tally)
	return findings, nil
}

// count records what a parser tallied of a body: its events, those that are no findings by
// reason, and those that were cut to their bound.
func (w *Webhooks) count(r *http.Request, src string, tally sources.Tally) {
	w.metrics.WebhookEvents.WithLabelValues(src).Add(float64(tally.Events))
	for reason, n := range tally.Ignored {
		w.metrics.SourceEventsIgnored.WithLabelValues(src, reason).Add(float64(n))
	}
	if tally.Cut > 0 {
		w.metrics.WebhookEventsCut.WithLabelValues(src).Add(float64(tally.Cut))
		if w.refusalLog.Allow() {
			w.log.Warn("webhook events over the size bound were judged without their largest members",
				"source", src, "path", r.URL.Path, "client", r.RemoteAddr, "events", tally.Cut)
		}
	}
}

// admit takes a token of the source's rate limit, or says how long until one is free.
func (w *Webhooks) admit(src string) (time.Duration, bool) {
	l, ok := w.limiters.Load(src)
	if !ok {
		l, _ = w.limiters.LoadOrStore(src, rate.NewLimiter(rate.Limit(w.cfg.RatePerSource), w.cfg.BurstPerSource))
	}
	res := l.(*rate.Limiter).Reserve()
	if d := res.Delay(); d > 0 {
		res.Cancel()
		return d, false
	}
	return 0, true
}

// retryAfter is a Retry-After header's whole seconds for a wait, at least one.
func retryAfter(wait time.Duration) string {
	return strconv.Itoa(int(max(1, (wait+time.Second-1)/time.Second)))
}

// remoteHost is a request's client address without its port.
func remoteHost(remoteAddr string) string {
	if host, _, err := net.SplitHostPort(remoteAddr); err == nil {
		return host
	}
	return remoteAddr
}

// countingReader counts the bytes read through it and keeps the error that ended them, so that a
// body that could not be read is told from one that does not parse.
type countingReader struct {
	r   io.Reader
	n   int64
	err error
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err != nil && !errors.Is(err, io.EOF) {
		c.err = err
	}
	return n, err
}

// body is a request's body within the route's bound (def when it sets none) and the minimum rate.
func (w *Webhooks) body(rw http.ResponseWriter, r *http.Request, route *Route, def int64) *countingReader {
	limit := route.MaxBodyBytes
	if limit <= 0 {
		limit = def
	}
	if r.ContentLength > limit {
		// Refused before a byte is read: the reader fails at once with the bound it broke.
		return &countingReader{r: errReader{&http.MaxBytesError{Limit: limit}}}
	}
	paced := newMinRateReader(rw, r.Body, w.cfg.MinBodyRate, w.cfg.ReadTimeout)
	return &countingReader{r: http.MaxBytesReader(rw, io.NopCloser(paced), limit)}
}

// errReader fails every read with its error.
type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// refuseBody answers a body that could not be read (too large, too slow, broken off) or, when it
// was read but does not parse, 400 malformed.
func (w *Webhooks) refuseBody(rw http.ResponseWriter, r *http.Request, src string, body *countingReader, err error) {
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(body.err, &tooLarge):
		w.rejectLogged(rw, r, src, "too_large", http.StatusRequestEntityTooLarge, fmt.Sprintf("body over %d bytes", tooLarge.Limit))
	case timedOut(body.err):
		w.rejectLogged(rw, r, src, "slow_body", http.StatusRequestTimeout,
			fmt.Sprintf("body of %d bytes so far arrived too slowly: %v", body.n, body.err))
	case body.err != nil:
		w.rejectLogged(rw, r, src, "read_error", http.StatusBadRequest, fmt.Sprintf("reading body: %v", body.err))
	default:
		w.metrics.SourceEventsIgnored.WithLabelValues(src, "malformed").Inc()
		w.reject(rw, src, "malformed", http.StatusBadRequest, err.Error())
	}
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

// refuseAuth answers 401, counting the reason; the log line (rate-limited) names the client. A
// genuine signature the replay memory cannot judge now is answered 503, to be retried.
func (w *Webhooks) refuseAuth(rw http.ResponseWriter, r *http.Request, src string, err error) {
	w.metrics.WebhookAuthFailures.WithLabelValues(src, err.Error()).Inc()
	if errors.Is(err, errReplayUnverifiable) {
		w.logRefusal(r, src, http.StatusServiceUnavailable, err.Error())
		rw.Header().Set("Retry-After", "5")
		w.reject(rw, src, "replay_unverifiable", http.StatusServiceUnavailable,
			"the replay memory is unavailable; retry later")
		return
	}
	w.logRefusal(r, src, http.StatusUnauthorized, err.Error())
	w.reject(rw, src, "auth", http.StatusUnauthorized, "not authenticated")
}

// rejectLogged is reject with a log line.
func (w *Webhooks) rejectLogged(rw http.ResponseWriter, r *http.Request, src, reason string, code int, msg string) {
	w.logRefusal(r, src, code, msg)
	w.reject(rw, src, reason, code, msg)
}

// logRefusal names the client, the path and the reason of a refusal, at most a line a second
// (bursts of ten) across all sources, so that a flood cannot fill the log; the metrics count
// every one.
func (w *Webhooks) logRefusal(r *http.Request, src string, code int, reason string) {
	if w.refusalLog.Allow() {
		w.log.Warn("webhook request refused", "source", src, "path", r.URL.Path, "client", r.RemoteAddr,
			"code", code, "reason", reason)
	}
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
