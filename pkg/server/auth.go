package server

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	utilcache "k8s.io/apimachinery/pkg/util/cache"

	"github.com/kube-zen/zen-watcher/pkg/metrics"
)

// Authenticator decides whether a request may deliver findings. A non-nil error is the reason it
// may not, a short word for the metric and the log (never the credential itself).
type Authenticator interface {
	Authenticate(r *http.Request, body []byte) error
}

// HeaderAuthenticator is an Authenticator that can refuse a request from its headers (and TLS
// state) alone. The webhook server asks it before the request takes an in-flight slot or any of
// its source's rate limit and before the body is read, so that unauthenticated load cannot crowd
// out genuine senders.
type HeaderAuthenticator interface {
	AuthenticateHeaders(r *http.Request) error
}

// authError is a refusal reason; its text is a metric label.
type authError string

func (e authError) Error() string { return string(e) }

// The reasons a request is refused, as metric labels.
const (
	errMissingToken       = authError("missing_token")
	errWrongToken         = authError("wrong_token")
	errMissingSignature   = authError("missing_signature")
	errBadSignature       = authError("bad_signature")
	errMissingTimestamp   = authError("missing_timestamp")
	errExpired            = authError("expired")
	errReplayed           = authError("replayed")
	errReplayCheck        = authError("replay_check_failed")
	errReplayUnverifiable = authError("replay_unverifiable")
	errNoTLS              = authError("no_tls")
	errMissingCertificate = authError("missing_certificate")
	errExpiredCertificate = authError("expired_certificate")
	errBadCertificate     = authError("bad_certificate")
)

// NoAuth accepts every request; a webhook has it only when its Ingester says `auth: none`.
type NoAuth struct{}

// Authenticate implements Authenticator.
func (NoAuth) Authenticate(*http.Request, []byte) error { return nil }

// BearerAuth accepts requests whose Authorization header carries the token.
type BearerAuth struct {
	Token []byte
}

// AuthenticateHeaders implements HeaderAuthenticator: a bearer token is all in the headers.
func (b BearerAuth) AuthenticateHeaders(r *http.Request) error { return b.Authenticate(r, nil) }

// Authenticate implements Authenticator with a constant-time comparison. The scheme is matched
// without regard to case, as HTTP's authentication schemes are (RFC 9110, 11.1).
func (b BearerAuth) Authenticate(r *http.Request, _ []byte) error {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	tok = strings.TrimLeft(tok, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return errMissingToken
	}
	if len(b.Token) == 0 || subtle.ConstantTimeCompare([]byte(tok), b.Token) != 1 {
		return errWrongToken
	}
	return nil
}

// Default HMAC headers and replay window.
const (
	DefaultSignatureHeader = "X-Zen-Signature"
	DefaultTimestampHeader = "X-Zen-Timestamp"
	DefaultReplayWindow    = 5 * time.Minute
)

// ReplayGuard remembers signatures for a while, so that a captured request cannot be sent again.
type ReplayGuard interface {
	// Remember records key, a signature made at signedAt, for ttl and reports whether it was new.
	// An error wrapping ErrUnverifiable says the memory cannot tell.
	Remember(ctx context.Context, key string, signedAt time.Time, ttl time.Duration) (bool, error)
}

// ErrUnverifiable is a replay memory's answer when it cannot tell whether it saw a signature:
// the shared memory is away, or lost what it held since the signature was made. The request is
// answered 503 with Retry-After: it is genuine, and a retry once the memory answers again is
// judged properly.
var ErrUnverifiable = errors.New("the replay memory cannot tell whether it saw this signature")

// HMACAuth accepts requests signed with a shared key: the signature header carries
// hex(HMAC-SHA256(key, timestamp + "." + body)), optionally prefixed "sha256=", and the timestamp
// header the Unix time in seconds at which the sender signed. A request outside the replay window,
// or one whose signature was seen before, is refused.
type HMACAuth struct {
	Key []byte
	// SignatureHeader and TimestampHeader default to X-Zen-Signature and X-Zen-Timestamp.
	SignatureHeader string
	TimestampHeader string
	// Window is how far the timestamp may be from now (default 5 minutes).
	Window time.Duration
	// Replay remembers the signatures seen within the window; the webhook server supplies its own
	// when it is nil.
	Replay ReplayGuard
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Sign returns the signature header value of body signed at ts, as senders compute it.
func Sign(key []byte, ts time.Time, body []byte) string {
	mac := hmac.New(sha256.New, key)
	_, _ = mac.Write([]byte(strconv.FormatInt(ts.Unix(), 10)))
	_, _ = mac.Write([]byte{'.'})
	_, _ = mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// AuthenticateHeaders implements HeaderAuthenticator: a request without a signature and a
// timestamp in the form the sender must use is refused before its body is read. The signature
// itself needs the body.
func (h *HMACAuth) AuthenticateHeaders(r *http.Request) error {
	sigHex, _ := strings.CutPrefix(r.Header.Get(orDefault(h.SignatureHeader, DefaultSignatureHeader)), "sha256=")
	if sigHex == "" {
		return errMissingSignature
	}
	if _, err := strconv.ParseInt(r.Header.Get(orDefault(h.TimestampHeader, DefaultTimestampHeader)), 10, 64); err != nil {
		return errMissingTimestamp
	}
	if len(sigHex) != 2*sha256.Size {
		return errBadSignature
	}
	return nil
}

// Authenticate implements Authenticator.
func (h *HMACAuth) Authenticate(r *http.Request, body []byte) error {
	sigHex, _ := strings.CutPrefix(r.Header.Get(orDefault(h.SignatureHeader, DefaultSignatureHeader)), "sha256=")
	if sigHex == "" {
		return errMissingSignature
	}
	tsText := r.Header.Get(orDefault(h.TimestampHeader, DefaultTimestampHeader))
	ts, err := strconv.ParseInt(tsText, 10, 64)
	if err != nil {
		return errMissingTimestamp
	}
	sig, err := hex.DecodeString(sigHex)
	if err != nil || len(h.Key) == 0 {
		return errBadSignature
	}
	mac := hmac.New(sha256.New, h.Key)
	_, _ = mac.Write([]byte(tsText))
	_, _ = mac.Write([]byte{'.'})
	_, _ = mac.Write(body)
	if !hmac.Equal(sig, mac.Sum(nil)) {
		return errBadSignature
	}
	// The signature is checked before the clock, so that an unsigned request learns nothing and
	// only genuine signatures enter the replay memory.
	window := h.Window
	if window <= 0 {
		window = DefaultReplayWindow
	}
	now := time.Now
	if h.Now != nil {
		now = h.Now
	}
	if d := now().Sub(time.Unix(ts, 0)); d > window || d < -window {
		return errExpired
	}
	if h.Replay == nil {
		return nil
	}
	// The replay memory keys on the MAC itself, not on how the header spelled it: the same
	// signature in upper case, or without "sha256=", is the same request again.
	fresh, err := h.Replay.Remember(r.Context(), hex.EncodeToString(sig), time.Unix(ts, 0), 2*window)
	switch {
	case errors.Is(err, ErrUnverifiable):
		return errReplayUnverifiable
	case err != nil:
		return errReplayCheck
	case !fresh:
		return errReplayed
	}
	return nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// MTLSAuth accepts requests whose TLS client certificate chains to one of Roots and is valid for
// client authentication. The listener asks for a certificate without judging it, because each
// webhook trusts its own CA.
type MTLSAuth struct {
	Roots *x509.CertPool
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// AuthenticateHeaders implements HeaderAuthenticator: the client certificate is all in the TLS state.
func (m *MTLSAuth) AuthenticateHeaders(r *http.Request) error { return m.Authenticate(r, nil) }

// Authenticate implements Authenticator.
func (m *MTLSAuth) Authenticate(r *http.Request, _ []byte) error {
	if r.TLS == nil {
		return errNoTLS
	}
	certs := r.TLS.PeerCertificates
	if len(certs) == 0 {
		return errMissingCertificate
	}
	opts := x509.VerifyOptions{
		Roots:         m.Roots,
		Intermediates: x509.NewCertPool(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if m.Now != nil {
		opts.CurrentTime = m.Now()
	}
	for _, c := range certs[1:] {
		opts.Intermediates.AddCert(c)
	}
	if _, err := certs[0].Verify(opts); err != nil {
		var inv x509.CertificateInvalidError
		if errors.As(err, &inv) && inv.Reason == x509.Expired {
			return errExpiredCertificate
		}
		return errBadCertificate
	}
	return nil
}

// LocalReplayGuard is a ReplayGuard in this process's memory: a bounded, expiring LRU. With
// several replicas the shared one in Redis decides (TieredReplayGuard), so that a replay to another
// replica is caught; this one decides alone only without Redis or while it is away.
type LocalReplayGuard struct {
	// Max bounds the remembered keys (default 100,000). Past it the least recently seen key is
	// forgotten: refusing genuine requests once the memory is full would be worse than the
	// chance that a signature older than the last Max is replayed within its window.
	Max int

	once  sync.Once
	mu    sync.Mutex // makes the look-up and the insert one step
	cache *utilcache.LRUExpireCache
}

// Remember implements ReplayGuard.
func (g *LocalReplayGuard) Remember(_ context.Context, key string, _ time.Time, ttl time.Duration) (bool, error) {
	g.once.Do(func() {
		limit := g.Max
		if limit <= 0 {
			limit = 100_000
		}
		g.cache = utilcache.NewLRUExpireCache(limit)
	})
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, seen := g.cache.Get(key); seen {
		return false, nil
	}
	g.cache.Add(key, struct{}{}, ttl)
	return true, nil
}

// TieredReplayGuard remembers in Shared (Redis, seen by every replica) and in Local. While Shared
// answers it decides alone — Local only records, for an outage to come. While Shared cannot tell
// (Redis away, or restarted empty since the signature was made) the request is unchecked across
// replicas: in Strict mode it is refused as unverifiable; otherwise Local decides, but only for
// a signature made within UncheckedWindow, so that a replay to another replica has that long at
// most. Each unchecked request is counted, accepted or refused.
type TieredReplayGuard struct {
	Shared ReplayGuard
	Local  ReplayGuard
	Strict bool
	// UncheckedWindow bounds the age of a signature accepted unchecked (DefaultUncheckedWindow
	// when zero).
	UncheckedWindow time.Duration
	Metrics         *metrics.Metrics
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// DefaultUncheckedWindow is how old a signature accepted while the shared replay memory cannot
// tell may be.
const DefaultUncheckedWindow = 30 * time.Second

// Remember implements ReplayGuard.
func (t TieredReplayGuard) Remember(ctx context.Context, key string, signedAt time.Time, ttl time.Duration) (bool, error) {
	local, lerr := t.Local.Remember(ctx, key, signedAt, ttl)
	shared, serr := t.Shared.Remember(ctx, key, signedAt, ttl)
	if serr == nil {
		return shared, nil
	}
	now := time.Now
	if t.Now != nil {
		now = t.Now
	}
	window := t.UncheckedWindow
	if window <= 0 {
		window = DefaultUncheckedWindow
	}
	age := now().Sub(signedAt)
	switch {
	case t.Strict:
		t.count("refused_strict")
		return false, fmt.Errorf("%w: %w", ErrUnverifiable, serr)
	case age > window || age < -window:
		t.count("refused_age")
		return false, fmt.Errorf("%w: signed %s ago, over the %s allowed unchecked: %w", ErrUnverifiable,
			age.Round(time.Second), window, serr)
	case lerr != nil:
		return false, lerr
	case !local:
		return false, nil // this replica saw it: a replay
	}
	t.count("accepted")
	return true, nil
}

func (t TieredReplayGuard) count(decision string) {
	if t.Metrics != nil {
		t.Metrics.WebhookReplayUnchecked.WithLabelValues(decision).Inc()
	}
}
