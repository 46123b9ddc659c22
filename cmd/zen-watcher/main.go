// Command zen-watcher collects findings from security, compliance and operations tools and writes
// them as Observation custom resources. This file wires the parts together; the parts live in pkg/.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/kube-zen/zen-watcher/internal/outage"
	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/dynwatch"
	"github.com/kube-zen/zen-watcher/pkg/ha/cleanup"
	"github.com/kube-zen/zen-watcher/pkg/ingester"
	"github.com/kube-zen/zen-watcher/pkg/metrics"
	"github.com/kube-zen/zen-watcher/pkg/obsclient"
	"github.com/kube-zen/zen-watcher/pkg/pipeline"
	"github.com/kube-zen/zen-watcher/pkg/redisstate"
	"github.com/kube-zen/zen-watcher/pkg/server"
	"github.com/kube-zen/zen-watcher/pkg/sources"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "zen-watcher:", err)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	cfg, err := parseConfig(args, getenv)
	if err != nil {
		return err
	}
	log, err := newLogger(cfg.logLevel, stderr)
	if err != nil {
		return err
	}
	klog.SetSlogLogger(log)
	if cfg.memoryBytes, err = memoryLimit(cfg.memoryLimit, os.ReadFile); err != nil {
		return err
	}
	applyMemoryLimit(cfg.memoryBytes, log)

	restCfg, err := restConfig(cfg)
	if err != nil {
		return err
	}
	if err := checkAPIServer(ctx, restCfg, cfg.connectTimeout); err != nil {
		return err
	}
	kube, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return fmt.Errorf("building Kubernetes client: %w", err)
	}
	self := whoAmI(ctx, kube, log)
	obs, err := obsclient.New(restCfg)
	if err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := metrics.New(reg)

	meta, err := metadata.NewForConfig(restCfg)
	if err != nil {
		return fmt.Errorf("building metadata client: %w", err)
	}
	written := &sources.WrittenObservations{Client: meta, Log: log}
	writer := pipeline.NewWriter(pipeline.WriterConfig{
		Workers: cfg.writerWorkers, QueueSize: cfg.writerQueue, Namespace: cfg.namespace, Written: written,
	}, obs, m, log)
	store, rc, closeStore, err := dedupStore(ctx, cfg, m, log)
	if err != nil {
		return err
	}
	defer closeStore()
	pipe, err := pipeline.New(pipeline.Config{
		Defaults:    processingDefaults(cfg),
		DedupWindow: cfg.dedupWindow,
	}, store, writer, m)
	if err != nil {
		return err
	}
	// The sources' informers watch through it: each event decoded in one pass (package dynwatch).
	dyn, err := dynwatch.NewForConfig(restCfg)
	if err != nil {
		return err
	}
	hooks, queue, err := newWebhooks(cfg, pipe, rc, m, log)
	if err != nil {
		return err
	}
	hooksTLS, err := webhookTLS(cfg)
	if err != nil {
		return err
	}
	writerDone := make(chan struct{})
	rep := newReplicas(cfg, kube, meta, written, writer, writerDone, releaseOwners(ctx, kube, cfg, log), m, log)
	// The coordinator publishes the manager's counts and the manager writes status with the
	// coordinator's sums; the coordinator reads the counts only once it runs, after both exist.
	var ingesters *ingester.Manager
	coord := rep.coordinator(pipe, store.Local(), rc, func(source string) int64 { return ingesters.Seen(source) })
	icfg := ingester.Config{
		Dynamic: dyn, Discovery: kube.Discovery(), Secrets: ingester.KubeSecrets{Client: kube},
		Pipeline: pipe, Webhooks: hooks, Defaults: processingDefaults(cfg), Metrics: m, Log: log,
		DisableDefaults: !cfg.defaultSources, Wrap: rep.wrap(), Owns: rep.owns(), SecretRefresh: cfg.webhook.secretRefresh,
		Self: self,
	}
	if coord != nil {
		icfg.Shared = coord
	}
	ingesters = ingester.NewManager(icfg)

	health := server.NewHealth(reg)
	health.AddReadiness("sources", func(context.Context) error { return ingesters.Ready() })
	var stopping atomic.Bool
	health.AddReadiness("stopping", func(context.Context) error {
		if stopping.Load() {
			return errors.New("stopping")
		}
		return nil
	})
	ctx, cancel := delayedStop(ctx, cfg.shutdownDelay, func(ctx context.Context) {
		stopping.Store(true)
		log.Info("stopping", "after", cfg.shutdownDelay)
		rep.depart(ctx)
	})
	defer cancel()

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { writer.Run(gctx); close(writerDone); return nil })
	g.Go(func() error { store.Watch(gctx, redisPingInterval); return nil })
	cleaner, err := newCleaner(cfg, restCfg, m, log)
	if err != nil {
		return err
	}
	var maintainQueue func(context.Context)
	if queue != nil {
		g.Go(func() error { queue.Run(gctx, pipe, hooks); return nil })
		maintainQueue = func(ctx context.Context) { queue.Maintain(ctx, hooks) }
	}
	rep.start(gctx, g, health, pipe, coord, ingesters, cleaner, maintainQueue)
	g.Go(func() error { return server.Serve(gctx, cfg.metricsAddr, health.Handler(), server.ServeOptions{}, log) })
	g.Go(func() error {
		return server.Serve(gctx, cfg.webhookAddr, hooks, webhookServeOptions(cfg, hooksTLS, m), log)
	})
	if cfg.enablePprof {
		g.Go(func() error { return server.ServePprof(gctx, cfg.pprofPort, log) })
	}
	log.Info("zen-watcher started", "namespace", cfg.namespace, "apiServer", restCfg.Host)
	err = g.Wait()
	log.Info("zen-watcher stopped")
	return err
}

// whoAmI is the user the API server knows this replica's requests as (a SelfSubjectReview), so
// that the audit source can leave zen-watcher's own requests out; "" when it cannot tell.
func whoAmI(ctx context.Context, kube kubernetes.Interface, log *slog.Logger) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	r, err := kube.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		log.Warn("cannot tell which user this replica's API requests are made as; the audit source will report them too", "error", err)
		return ""
	}
	log.Info("API requests are made as", "user", r.Status.UserInfo.Username)
	return r.Status.UserInfo.Username
}

// delayedStop returns a context that ends once parent has ended, delay has passed since, and
// stopping, called the moment parent ends with the returned context, has returned: a replica told
// to stop fails its readiness at once, hands its namespaces over, and goes on serving while the
// load balancer in front of it stops sending.
func delayedStop(parent context.Context, delay time.Duration, stopping func(context.Context)) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(parent))
	go func() {
		select {
		case <-parent.Done():
		case <-ctx.Done():
			return
		}
		stopped := make(chan struct{})
		go func() { defer close(stopped); stopping(ctx) }()
		t := time.NewTimer(delay)
		defer t.Stop()
		// Each wait is set to nil once over: a nil channel is never ready.
		delayed, done := t.C, (<-chan struct{})(stopped)
		for delayed != nil || done != nil {
			select {
			case <-delayed:
				delayed = nil
			case <-done:
				done = nil
			case <-ctx.Done():
				return
			}
		}
		cancel()
	}()
	return ctx, cancel
}

// webhookServeOptions is the webhook listener's timeouts and connection limits.
func webhookServeOptions(cfg *config, tlsCfg *tls.Config, m *metrics.Metrics) server.ServeOptions {
	w := cfg.webhook
	return server.ServeOptions{
		TLS: tlsCfg, ReadHeaderTimeout: w.readHeaderTimeout, ReadTimeout: w.readTimeout, IdleTimeout: w.idleTimeout,
		Limits: server.ConnLimits{
			Max: w.maxConns, PerClient: w.maxConnsPerClient,
			Refused: func(reason string) { m.WebhookConnectionsRefused.WithLabelValues(reason).Inc() },
			Opened:  func(n int) { m.WebhookConnections.Set(float64(n)) },
		},
	}
}

// newWebhooks builds the webhook server. With Redis, requests are answered once their findings are
// in the durable queue (returned, to be run), and replays are remembered across replicas; without
// it, once the findings are written.
func newWebhooks(cfg *config, pipe *pipeline.Pipeline, rc redis.UniversalClient, m *metrics.Metrics,
	log *slog.Logger) (*server.Webhooks, *redisstate.Stream, error) {
	direct := server.Direct{Handler: pipe, Timeout: cfg.webhook.writeTimeout}
	wc := server.WebhookConfig{
		Acceptor: direct, RatePerSource: cfg.webhook.rate, BurstPerSource: cfg.webhook.burst,
		MaxInFlight: cfg.webhook.maxInFlight, TLS: cfg.webhook.tlsCertFile != "", AwaitRoutes: true,
		MinBodyRate: cfg.webhook.minBodyRate, ReadTimeout: cfg.webhook.readTimeout,
		RefusalsPerClient: cfg.webhook.refusalRate, RefusalBurstPerClient: cfg.webhook.refusalBurst,
		Replay: &server.LocalReplayGuard{}, Metrics: m, Log: log,
	}
	var queue *redisstate.Stream
	if rc != nil {
		wc.Replay = server.TieredReplayGuard{Shared: redisstate.NewReplayGuard(rc, cfg.release, log), Local: wc.Replay,
			Strict: cfg.webhook.replayStrict, UncheckedWindow: cfg.webhook.replayUncheckedWindow, Metrics: m}
		if cfg.webhook.durable {
			var err error
			queue, err = redisstate.NewStream(rc, redisstate.StreamOptions{
				Release: cfg.release, Consumer: cfg.memberID, MaxLen: cfg.webhook.queueMaxLen,
				MaxAge: cfg.webhook.queueMaxAge, ClaimIdle: cfg.webhook.claimIdle, WaitReplicas: cfg.redisWait,
			}, m, log)
			if err != nil {
				return nil, nil, err
			}
			wc.Acceptor = server.Durable{Queue: queue, Fallback: direct, Metrics: m, Outages: outage.New(log.With("component", "webhook-queue"))}
		}
	}
	return server.NewWebhooks(wc), queue, nil
}

// webhookTLS is the webhook listener's TLS configuration, or nil to serve plain HTTP.
func webhookTLS(cfg *config) (*tls.Config, error) {
	if cfg.webhook.tlsCertFile == "" {
		return nil, nil
	}
	r, err := server.NewCertReloader(cfg.webhook.tlsCertFile, cfg.webhook.tlsKeyFile)
	if err != nil {
		return nil, err
	}
	return r.TLSConfig(), nil
}

// newCleaner builds the leader's cleanup of expired Observations, or nil when it is off.
func newCleaner(cfg *config, rc *rest.Config, m *metrics.Metrics, log *slog.Logger) (*cleanup.Cleaner, error) {
	if !cfg.cleanup {
		return nil, nil
	}
	mc, err := cleanup.NewClient(rc)
	if err != nil {
		return nil, err
	}
	return cleanup.New(cleanup.Config{
		Client: mc, TTL: time.Duration(cfg.ttlSeconds) * time.Second, Interval: cfg.cleanupEvery,
		Schedule: cfg.cleanupCron, DryRun: cfg.cleanupDryRun, DeletesPerSec: cfg.cleanupRate,
		Metrics: m, Log: log.With("component", "cleanup"),
	})
}

// processingDefaults is the processing of every source whose Ingester says nothing else.
func processingDefaults(cfg *config) pipeline.SourceConfig {
	sc := pipeline.SourceConfig{
		Order: v1alpha1.Order(cfg.order),
		Dedup: &pipeline.DedupConfig{
			Strategy:           v1alpha1.DedupStrategy(cfg.dedupStrategy),
			MaxEventsPerWindow: int64(cfg.maxPerWindow),
			Fields:             []string{"source", "kind", "namespace", "name", "rule"},
		},
	}
	if cfg.minSeverity != "" {
		sc.Filter = &pipeline.FilterConfig{MinSeverity: v1alpha1.Severity(cfg.minSeverity)}
	}
	return sc
}

// redisPingInterval is how often a replica asks Redis whether it answers, for redis_available and
// for dedup to go back to it, whatever the dedup traffic.
const redisPingInterval = 2 * time.Second

// dedupStore is the local dedup tier, in front of Redis when an address is given. Redis that does
// not answer at start is not fatal: dedup runs locally until it does. A Redis that answers but is
// older than redisstate.MinVersion is refused, since parts of the shared state would fail on it
// at every call. The Redis client is returned for the rest of the shared state (nil without Redis).
func dedupStore(ctx context.Context, cfg *config, m *metrics.Metrics, log *slog.Logger) (*pipeline.Tiered, redis.UniversalClient, func(), error) {
	local := pipeline.NewLocalCache(cfg.dedupMaxSize)
	m.DedupCacheSize.Set(float64(local.Capacity()))
	if cfg.redisAddr == "" {
		return pipeline.NewTiered(local, nil, m, log), nil, func() {}, nil
	}
	redis.SetLogger(redisClientLog{log.With("component", "redis-client")})
	client, err := redisClient(cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	vctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	version, err := redisstate.CheckVersion(vctx, client)
	cancel()
	switch {
	case errors.Is(err, redisstate.ErrTooOld):
		_ = client.Close()
		return nil, nil, nil, fmt.Errorf("-redis-addr %s: %w", cfg.redisAddr, err)
	case err != nil:
		log.Warn("Redis does not answer at start; dedup runs locally until it does", "addr", cfg.redisAddr, "err", err)
	default:
		log.Info("Redis answers", "addr", cfg.redisAddr, "version", version)
	}
	shared := redisstate.NewDedupStore(client, redisstate.Options{Release: cfg.release})
	return pipeline.NewTiered(local, shared, m, log), client, func() {
		shared.Close()
		_ = client.Close()
	}, nil
}

// redisClientLog takes go-redis's own lines (a failed dial, one per attempt, in the standard
// logger's format) into the replica's log at Debug: an outage of Redis is logged at WARN once when
// it begins and at INFO when it ends by the parts that use Redis.
type redisClientLog struct{ log *slog.Logger }

// Printf implements go-redis's Logging.
func (l redisClientLog) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, fmt.Sprintf(format, v...))
}

// redisClient connects to one Redis, a Redis Cluster (several addresses) or the master the
// Sentinels name (-redis-master-name).
func redisClient(cfg *config) (redis.UniversalClient, error) {
	opts := &redis.UniversalOptions{
		Addrs:        strings.Split(cfg.redisAddr, ","),
		MasterName:   cfg.redisMaster,
		Password:     cfg.redisPassword,
		DialTimeout:  500 * time.Millisecond,
		ReadTimeout:  500 * time.Millisecond,
		WriteTimeout: 500 * time.Millisecond,
		PoolSize:     16,
	}
	if cfg.redisTLS {
		opts.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		if cfg.redisTLSCA != "" {
			pem, err := os.ReadFile(cfg.redisTLSCA)
			if err != nil {
				return nil, fmt.Errorf("reading -redis-tls-ca-file: %w", err)
			}
			opts.TLSConfig.RootCAs = x509.NewCertPool()
			if !opts.TLSConfig.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("-redis-tls-ca-file %s holds no PEM certificate", cfg.redisTLSCA)
			}
		}
	}
	return redis.NewUniversalClient(opts), nil
}

func newLogger(level string, w io.Writer) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l})), nil
}

// restConfig loads the kubeconfig, or the in-cluster configuration when none is named.
func restConfig(cfg *config) (*rest.Config, error) {
	var (
		rc  *rest.Config
		err error
	)
	if cfg.kubeconfig != "" {
		if _, serr := os.Stat(cfg.kubeconfig); serr != nil {
			return nil, fmt.Errorf("kubeconfig: %w", serr)
		}
		rc, err = clientcmd.BuildConfigFromFlags("", cfg.kubeconfig)
	} else {
		rc, err = rest.InClusterConfig()
		if errors.Is(err, rest.ErrNotInCluster) {
			return nil, errors.New("no -kubeconfig (or KUBECONFIG) given and not running in a cluster")
		}
	}
	if err != nil {
		return nil, fmt.Errorf("loading Kubernetes client configuration: %w", err)
	}
	rc.QPS = float32(cfg.kubeQPS)
	rc.Burst = cfg.kubeBurst
	// The informers' watches stream their initial objects, and an API server that compresses such a
	// watch (WatchListCompression, on by default since 1.37) gzips each flush as a stream of its own,
	// every event after the initial ones, for each watcher apart: CPU on both sides to save a few
	// hundred bytes an event.
	if !cfg.kubeCompress {
		rc.DisableCompression = true
		if sentThroughDefaultTransport(rc) {
			rc.Wrap(func(rt http.RoundTripper) http.RoundTripper { return identityEncoding{rt} })
		}
	}
	rc.UserAgent = "zen-watcher"
	return rc, nil
}

// sentThroughDefaultTransport reports whether client-go sends rc's requests through Go's
// http.DefaultTransport, as it does for a host that needs no TLS settings, dialer or proxy of its
// own (a local proxy, say). That transport asks for gzip whatever DisableCompression says; every
// other transport client-go builds honours it.
func sentThroughDefaultTransport(rc *rest.Config) bool {
	tc, err := rest.TLSConfigFor(rc)
	return err == nil && tc == nil && rc.Dial == nil && rc.Proxy == nil
}

// identityEncoding asks for answers uncompressed where DisableCompression cannot: on Go's default
// transport (see sentThroughDefaultTransport). Requests that name an encoding keep it.
type identityEncoding struct{ next http.RoundTripper }

// RoundTrip implements http.RoundTripper.
func (t identityEncoding) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Header.Get("Accept-Encoding") == "" {
		req = req.Clone(req.Context())
		req.Header.Set("Accept-Encoding", "identity")
	}
	return t.next.RoundTrip(req)
}

// checkAPIServer fails fast, with a message that says what is wrong, when the API server does not
// answer or does not serve Observations: a daemon that hangs or crash-loops on a 404 helps nobody.
func checkAPIServer(ctx context.Context, rc *rest.Config, timeout time.Duration) error {
	c := rest.CopyConfig(rc)
	c.Timeout = timeout
	kube, err := kubernetes.NewForConfig(c)
	if err != nil {
		return fmt.Errorf("building Kubernetes client: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if _, err := kube.Discovery().ServerVersion(); err != nil {
		return fmt.Errorf("API server %s does not answer within %s: %w", rc.Host, timeout, err)
	}
	gv := v1alpha1.SchemeGroupVersion.String()
	if _, err := kube.Discovery().ServerResourcesForGroupVersion(gv); err != nil {
		return fmt.Errorf("API server %s does not serve %s (are the CRDs in charts/zen-watcher/crds installed?): %w",
			rc.Host, gv, err)
	}
	return ctx.Err()
}
