package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strconv"
	"sync"
	"time"
)

// ServeOptions tunes a listener. The timeouts end slow senders: headers or a body that trickle in
// are cut off, not held forever.
type ServeOptions struct {
	// TLS, when set, makes the listener serve TLS.
	TLS *tls.Config
	// ReadHeaderTimeout (default 5s), ReadTimeout (30s, the whole request with its body),
	// WriteTimeout (30s) and IdleTimeout (90s) are http.Server's.
	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// Limits bounds the open connections, counted below TLS.
	Limits ConnLimits
}

func (o ServeOptions) server(h http.Handler) *http.Server {
	or := func(d, def time.Duration) time.Duration {
		if d > 0 {
			return d
		}
		return def
	}
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: or(o.ReadHeaderTimeout, 5*time.Second),
		ReadTimeout:       or(o.ReadTimeout, 30*time.Second),
		WriteTimeout:      or(o.WriteTimeout, 30*time.Second),
		IdleTimeout:       or(o.IdleTimeout, 90*time.Second),
		MaxHeaderBytes:    64 << 10,
	}
}

// Serve serves handler on addr until ctx ends, then shuts down within a few seconds.
func Serve(ctx context.Context, addr string, handler http.Handler, opts ServeOptions, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", addr, err)
	}
	// Below TLS: a connection over a limit is closed before its handshake costs anything, and the
	// server still sees the *tls.Conn it needs for client certificates.
	ln = LimitListener(ln, opts.Limits)
	if opts.TLS != nil {
		ln = tls.NewListener(ln, opts.TLS)
	}
	return ServeListener(ctx, ln, handler, opts, log)
}

// ServeListener is Serve on a listener the caller opened, which applies opts.TLS and opts.Limits
// itself.
func ServeListener(ctx context.Context, ln net.Listener, handler http.Handler, opts ServeOptions, log *slog.Logger) error {
	srv := opts.server(handler)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("serving", "address", ln.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("serving on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("shutting down %s: %w", ln.Addr(), err)
	}
	return nil
}

// ServePprof serves net/http/pprof on 127.0.0.1:port only: profiles show memory contents and
// must not be reachable from the network.
func ServePprof(ctx context.Context, port int, log *slog.Logger) error {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return Serve(ctx, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), mux, ServeOptions{WriteTimeout: 2 * time.Minute}, log)
}

// certCheckInterval is how often the certificate files are looked at for a change.
const certCheckInterval = 10 * time.Second

// CertReloader serves a certificate from PEM files and reads them again when they change, so that
// a renewed certificate (cert-manager rotating the Secret) is used without a restart.
type CertReloader struct {
	certFile, keyFile string

	mu      sync.Mutex
	cert    *tls.Certificate
	modTime time.Time
	checked time.Time
}

// NewCertReloader loads the certificate once; an unreadable pair is an error at start.
func NewCertReloader(certFile, keyFile string) (*CertReloader, error) {
	r := &CertReloader{certFile: certFile, keyFile: keyFile}
	if err := r.load(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *CertReloader) load() error {
	st, err := os.Stat(r.certFile)
	if err != nil {
		return fmt.Errorf("webhook TLS certificate: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("webhook TLS certificate %s and key %s: %w", r.certFile, r.keyFile, err)
	}
	r.cert, r.modTime, r.checked = &cert, st.ModTime(), time.Now()
	return nil
}

// GetCertificate is tls.Config's GetCertificate. A pair that fails to load keeps the old one in
// use: a half-written renewal must not take the listener down.
func (r *CertReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.checked) >= certCheckInterval {
		r.checked = time.Now()
		if st, err := os.Stat(r.certFile); err == nil && !st.ModTime().Equal(r.modTime) {
			_ = r.load()
		}
	}
	return r.cert, nil
}

// TLSConfig is the webhook listener's TLS: the reloaded certificate, and a client certificate
// asked for but judged by each webhook's own CA, not at the handshake.
func (r *CertReloader) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: r.GetCertificate,
		ClientAuth:     tls.RequestClientCert,
	}
}
