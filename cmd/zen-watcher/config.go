package main

import (
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/kube-zen/zen-watcher/pkg/pipeline"
	"github.com/kube-zen/zen-watcher/pkg/shard"
)

// config is everything the daemon is told at start.
type config struct {
	kubeconfig     string
	namespace      string
	metricsAddr    string
	webhookAddr    string
	defaultSources bool
	kubeQPS        float64
	kubeBurst      int
	kubeCompress   bool
	writerWorkers  int
	writerQueue    int
	connectTimeout time.Duration
	logLevel       string
	release        string
	ownerDeploy    string
	redisAddr      string
	redisPassword  string // from REDIS_PASSWORD only: a flag would show it in the process list
	redisMaster    string
	redisWait      int
	redisTLS       bool
	redisTLSCA     string
	dedupWindow    time.Duration
	dedupMaxSize   int
	dedupStrategy  string
	maxPerWindow   int
	order          string
	minSeverity    string
	tuneInterval   time.Duration
	memberID       string
	sharding       bool
	chunks         int
	recutAt        float64
	loadRecutEvery time.Duration
	memberLease    time.Duration
	memberRenew    time.Duration
	leaderElection bool
	leaderLease    time.Duration
	leaderRenew    time.Duration
	leaderRetry    time.Duration
	haOptimization bool
	haWindowLow    time.Duration
	haWindowHigh   time.Duration
	haCacheMin     int
	haCacheMax     int
	// memoryLimit is the -memory-limit value; memoryBytes what it, or the cgroup, comes to at start.
	memoryLimit   string
	memoryBytes   int64
	syncInterval  time.Duration
	shutdownDelay time.Duration
	ttlSeconds    int64
	cleanup       bool
	cleanupEvery  time.Duration
	cleanupCron   string
	cleanupDryRun bool
	cleanupRate   float64
	webhook       webhookConfig
	enablePprof   bool
	pprofPort     int
}

// webhookConfig is the webhook server's part of the configuration.
type webhookConfig struct {
	durable      bool
	queueMaxLen  int64
	queueMaxAge  time.Duration
	claimIdle    time.Duration
	rate         float64
	burst        int
	maxInFlight  int
	writeTimeout time.Duration
	// The listener's own bounds: its connections, and how slowly a request may arrive.
	maxConns          int
	maxConnsPerClient int
	readHeaderTimeout time.Duration
	readTimeout       time.Duration
	idleTimeout       time.Duration
	minBodyRate       float64
	refusalRate       float64
	refusalBurst      int
	// While Redis cannot judge replays: refuse signed requests, or accept recent ones checked locally.
	replayStrict          bool
	replayUncheckedWindow time.Duration
	tlsCertFile           string
	tlsKeyFile            string
	secretRefresh         time.Duration
}

// envFlags maps each flag to its environment variable. The chart sets env and `make run` passes
// flags; a flag on the command line wins over its variable.
func envFlags() map[string]string {
	return map[string]string{
		"kubeconfig":                         "KUBECONFIG",
		"namespace":                          "POD_NAMESPACE",
		"metrics-addr":                       "METRICS_ADDR",
		"webhook-addr":                       "WEBHOOK_ADDR",
		"default-sources":                    "DEFAULT_SOURCES",
		"kube-qps":                           "KUBE_QPS",
		"kube-burst":                         "KUBE_BURST",
		"kube-compression":                   "KUBE_COMPRESSION",
		"writer-workers":                     "WRITER_WORKERS",
		"writer-queue":                       "WRITER_QUEUE_SIZE",
		"connect-timeout":                    "CONNECT_TIMEOUT",
		"log-level":                          "LOG_LEVEL",
		"release":                            "RELEASE_NAME",
		"owner-deployment":                   "OWNER_DEPLOYMENT",
		"redis-addr":                         "REDIS_ADDR",
		"redis-master-name":                  "REDIS_MASTER_NAME",
		"redis-wait-replicas":                "REDIS_WAIT_REPLICAS",
		"redis-tls":                          "REDIS_TLS",
		"redis-tls-ca-file":                  "REDIS_TLS_CA_FILE",
		"dedup-window":                       "DEDUP_WINDOW",
		"dedup-max-size":                     "DEDUP_MAX_SIZE",
		"dedup-strategy":                     "DEDUP_STRATEGY",
		"dedup-max-per-window":               "DEDUP_MAX_EVENTS_PER_WINDOW",
		"processing-order":                   "PROCESSING_ORDER",
		"min-severity":                       "FILTER_MIN_SEVERITY",
		"member-id":                          "POD_NAME",
		"sharding":                           "SHARDING_ENABLED",
		"shard-chunks":                       "SHARD_CHUNKS",
		"shard-recut-threshold":              "SHARD_RECUT_THRESHOLD",
		"shard-load-recut-interval":          "SHARD_LOAD_RECUT_INTERVAL",
		"member-lease-duration":              "MEMBER_LEASE_DURATION",
		"member-renew-interval":              "MEMBER_RENEW_INTERVAL",
		"shutdown-delay":                     "SHUTDOWN_DELAY",
		"leader-election":                    "LEADER_ELECTION_ENABLED",
		"leader-lease-duration":              "LEADER_LEASE_DURATION",
		"leader-renew-deadline":              "LEADER_RENEW_DEADLINE",
		"leader-retry-period":                "LEADER_RETRY_PERIOD",
		"ha-optimization":                    "HA_OPTIMIZATION_ENABLED",
		"coordination-interval":              "COORDINATION_INTERVAL",
		"ha-window-low-traffic":              "HA_WINDOW_LOW_TRAFFIC",
		"ha-window-high-traffic":             "HA_WINDOW_HIGH_TRAFFIC",
		"ha-cache-min":                       "HA_CACHE_MIN",
		"ha-cache-max":                       "HA_CACHE_MAX",
		"memory-limit":                       "MEMORY_LIMIT",
		"observation-ttl-seconds":            "OBSERVATION_TTL_SECONDS",
		"cleanup":                            "CLEANUP_ENABLED",
		"cleanup-interval":                   "CLEANUP_INTERVAL",
		"cleanup-schedule":                   "CLEANUP_SCHEDULE",
		"cleanup-dry-run":                    "CLEANUP_DRY_RUN",
		"cleanup-deletes-per-second":         "CLEANUP_DELETES_PER_SECOND",
		"order-tune-interval":                "ORDER_TUNE_INTERVAL",
		"webhook-durable":                    "WEBHOOK_DURABLE",
		"webhook-queue-max-length":           "WEBHOOK_QUEUE_MAX_LENGTH",
		"webhook-queue-max-age":              "WEBHOOK_QUEUE_MAX_AGE",
		"webhook-claim-idle":                 "WEBHOOK_CLAIM_IDLE",
		"webhook-rate":                       "WEBHOOK_RATE_LIMIT",
		"webhook-burst":                      "WEBHOOK_RATE_BURST",
		"webhook-max-in-flight":              "WEBHOOK_MAX_IN_FLIGHT",
		"webhook-write-timeout":              "WEBHOOK_WRITE_TIMEOUT",
		"webhook-max-connections":            "WEBHOOK_MAX_CONNECTIONS",
		"webhook-max-connections-per-client": "WEBHOOK_MAX_CONNECTIONS_PER_CLIENT",
		"webhook-read-header-timeout":        "WEBHOOK_READ_HEADER_TIMEOUT",
		"webhook-read-timeout":               "WEBHOOK_READ_TIMEOUT",
		"webhook-idle-timeout":               "WEBHOOK_IDLE_TIMEOUT",
		"webhook-client-refusal-rate":        "WEBHOOK_CLIENT_REFUSAL_RATE",
		"webhook-client-refusal-burst":       "WEBHOOK_CLIENT_REFUSAL_BURST",
		"webhook-min-body-rate":              "WEBHOOK_MIN_BODY_RATE",
		"webhook-replay-strict":              "WEBHOOK_REPLAY_STRICT",
		"webhook-replay-unchecked-window":    "WEBHOOK_REPLAY_UNCHECKED_WINDOW",
		"webhook-tls-cert-file":              "WEBHOOK_TLS_CERT_FILE",
		"webhook-tls-key-file":               "WEBHOOK_TLS_KEY_FILE",
		"webhook-secret-refresh":             "WEBHOOK_SECRET_REFRESH",
		"enable-pprof":                       "ENABLE_PPROF",
		"pprof-port":                         "PPROF_PORT",
	}
}

func newFlagSet(c *config) *flag.FlagSet {
	fs := flag.NewFlagSet("zen-watcher", flag.ContinueOnError)
	fs.StringVar(&c.kubeconfig, "kubeconfig", "", "kubeconfig file; empty means the in-cluster configuration")
	fs.StringVar(&c.namespace, "namespace", "default",
		"namespace of the release: Observations of cluster-scoped findings go here")
	fs.StringVar(&c.metricsAddr, "metrics-addr", ":9090", "address of /metrics, /healthz and /readyz")
	fs.StringVar(&c.webhookAddr, "webhook-addr", ":8080", "address of the webhooks that Ingesters declare")
	fs.BoolVar(&c.defaultSources, "default-sources", true,
		"run the trivy, kyverno, k8sevents and certmanager sources, each unless an Ingester reads the same tool")
	fs.Float64Var(&c.kubeQPS, "kube-qps", -1, "client-side request rate limit towards the API server; "+
		"negative means none (the server's priority and fairness protects it)")
	fs.IntVar(&c.kubeBurst, "kube-burst", 1000, "client-side burst when -kube-qps is positive")
	fs.BoolVar(&c.kubeCompress, "kube-compression", false, "ask the API server to gzip its answers: large lists, "+
		"and the watches that stream their initial objects, every event of them; off, that CPU is spared on both sides")
	fs.IntVar(&c.writerWorkers, "writer-workers", pipeline.DefaultWorkers, "concurrent Observation creates")
	fs.IntVar(&c.writerQueue, "writer-queue", 4096,
		"findings waiting for a writer before the sources are slowed down")
	fs.DurationVar(&c.connectTimeout, "connect-timeout", 10*time.Second,
		"how long to wait for the API server at start before giving up")
	fs.StringVar(&c.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.release, "release", "zen-watcher",
		"name of the installation; prefixes its keys in Redis (zw:<release>:) so releases can share one")
	fs.StringVar(&c.ownerDeploy, "owner-deployment", "",
		"Deployment in -namespace that owns the Leases and shard table the replicas create, so that deleting it deletes them; empty: none")
	fs.StringVar(&c.redisAddr, "redis-addr", "",
		"Redis host:port for state shared by replicas; several, comma-separated, for Redis Cluster or the "+
			"Sentinels with -redis-master-name; empty keeps dedup state in this process only (password from env REDIS_PASSWORD)")
	fs.StringVar(&c.redisMaster, "redis-master-name", "", "Sentinel master name: -redis-addr lists the Sentinels")
	fs.IntVar(&c.redisWait, "redis-wait-replicas", 0, "replicas of the Redis primary that must hold each durable "+
		"webhook entry (WAIT) before its request is answered \"queued\"; else the findings are processed before the "+
		"answer. 1 with Sentinel keeps every queued finding through a failover; 0 trusts the primary alone")
	fs.BoolVar(&c.redisTLS, "redis-tls", false, "connect to Redis over TLS")
	fs.StringVar(&c.redisTLSCA, "redis-tls-ca-file", "", "CA bundle (PEM) that Redis's certificate must chain to; "+
		"empty means the system's")
	fs.DurationVar(&c.dedupWindow, "dedup-window", 60*time.Second,
		"how long a finding is remembered by sources that set no window of their own")
	fs.IntVar(&c.dedupMaxSize, "dedup-max-size", 10000, "keys held by the in-process dedup tier")
	fs.StringVar(&c.dedupStrategy, "dedup-strategy", "fingerprint",
		"dedup strategy of sources that set none: fingerprint, event-stream or key")
	fs.IntVar(&c.maxPerWindow, "dedup-max-per-window", 10,
		"findings per fingerprint per window that event-stream dedup lets through")
	fs.StringVar(&c.order, "processing-order", "auto",
		"order of filter and dedup for sources that set none: filter_first, dedup_first or auto")
	fs.StringVar(&c.minSeverity, "min-severity", "",
		"drop findings below this severity for sources that set no filter (critical, high, medium, low, info)")
	fs.DurationVar(&c.tuneInterval, "order-tune-interval", 30*time.Second,
		"how often the automatic order is reconsidered (by the leader, from every replica's statistics)")
	fs.StringVar(&c.memberID, "member-id", defaultMemberID(), "this replica's name among the members (the pod name)")
	fs.BoolVar(&c.sharding, "sharding", true, "divide namespaces between the replicas that are running")
	fs.IntVar(&c.chunks, "shard-chunks", shard.DefaultChunks,
		"chunks the namespace hash space is cut into, where the namespaces are (the leader assigns them to the replicas)")
	fs.Float64Var(&c.recutAt, "shard-recut-threshold", 1.15,
		"the leader cuts the table again when the busiest replica owns more than this times the average")
	fs.DurationVar(&c.loadRecutEvery, "shard-load-recut-interval", 2*time.Minute,
		"the least time between two re-cuts for the namespaces' measured load alone (new namespaces are cut in within 20s)")
	fs.DurationVar(&c.memberLease, "member-lease-duration", 15*time.Second,
		"how long a replica counts as a member without renewing its Lease")
	fs.DurationVar(&c.memberRenew, "member-renew-interval", 5*time.Second, "how often a replica renews its member Lease")
	fs.BoolVar(&c.leaderElection, "leader-election", true, "elect one replica for the leader's work")
	fs.DurationVar(&c.leaderLease, "leader-lease-duration", 15*time.Second, "leader Lease duration")
	fs.DurationVar(&c.leaderRenew, "leader-renew-deadline", 10*time.Second, "how long the leader tries to renew before it gives up")
	fs.DurationVar(&c.leaderRetry, "leader-retry-period", 2*time.Second, "how often candidates try for the leader Lease")
	fs.BoolVar(&c.haOptimization, "ha-optimization", false,
		"let the leader set the dedup window and local cache size from the global rate (needs Redis)")
	fs.DurationVar(&c.haWindowLow, "ha-window-low-traffic", 300*time.Second, "dedup window HA optimization sets at low traffic")
	fs.DurationVar(&c.haWindowHigh, "ha-window-high-traffic", 60*time.Second, "dedup window HA optimization sets at high traffic")
	fs.IntVar(&c.haCacheMin, "ha-cache-min", 5000, "smallest local cache HA optimization sets")
	fs.IntVar(&c.haCacheMax, "ha-cache-max", 50000, "largest local cache HA optimization sets (and never past 10% of the memory limit)")
	fs.StringVar(&c.memoryLimit, "memory-limit", "", "the container's memory limit (bytes or a quantity such as 256Mi); "+
		"empty means the cgroup's. GOMEMLIMIT is set to 90% of it unless given")
	fs.Int64Var(&c.ttlSeconds, "observation-ttl-seconds", 7*24*3600,
		"lifetime of Observations without a TTL of their own or their source's, in [60, 31536000]")
	fs.BoolVar(&c.cleanup, "cleanup", true, "delete expired Observations (on the leader)")
	fs.DurationVar(&c.cleanupEvery, "cleanup-interval", time.Minute, "pause between continuous cleanup runs")
	fs.StringVar(&c.cleanupCron, "cleanup-schedule", "", "extra cleanup runs on a cron schedule, such as \"0 3 * * *\"")
	fs.BoolVar(&c.cleanupDryRun, "cleanup-dry-run", false, "count expired Observations, delete none")
	fs.Float64Var(&c.cleanupRate, "cleanup-deletes-per-second", 1000, "ceiling on cleanup's deletes per second")
	fs.DurationVar(&c.shutdownDelay, "shutdown-delay", 0,
		"on SIGTERM, fail readiness at once and keep serving this long before stopping, so that a load balancer stops sending first "+
			"(in Kubernetes the chart's preStop sleep does this)")
	fs.DurationVar(&c.syncInterval, "coordination-interval", 2*time.Second,
		"how often a replica publishes its statistics and applies the leader's decisions")
	addWebhookFlags(fs, &c.webhook)
	fs.BoolVar(&c.enablePprof, "enable-pprof", false, "serve net/http/pprof on 127.0.0.1:-pprof-port (never on other interfaces)")
	fs.IntVar(&c.pprofPort, "pprof-port", 6060, "loopback port of pprof when -enable-pprof is set")
	fs.VisitAll(func(f *flag.Flag) {
		f.Usage += fmt.Sprintf(" (env %s)", envFlags()[f.Name])
	})
	return fs
}

func addWebhookFlags(fs *flag.FlagSet, w *webhookConfig) {
	fs.BoolVar(&w.durable, "webhook-durable", true, "with Redis, answer a webhook once its findings are in a Redis "+
		"stream that any replica drains (without Redis, or while it is away, answer once they are written)")
	fs.Int64Var(&w.queueMaxLen, "webhook-queue-max-length", 100_000,
		"entries a source's stream may hold; past it webhooks are answered once their findings are written")
	fs.DurationVar(&w.queueMaxAge, "webhook-queue-max-age", time.Hour,
		"how long an entry may wait unprocessed before it is removed and counted as lost")
	fs.DurationVar(&w.claimIdle, "webhook-claim-idle", 30*time.Second,
		"how long a replica may hold a stream entry unfinished before another takes it over")
	fs.Float64Var(&w.rate, "webhook-rate", 1000, "requests per second each webhook source accepts (429 beyond)")
	fs.IntVar(&w.burst, "webhook-burst", 2000, "burst of requests above -webhook-rate")
	fs.IntVar(&w.maxInFlight, "webhook-max-in-flight", 1024, "webhook requests served at once (503 beyond)")
	fs.DurationVar(&w.writeTimeout, "webhook-write-timeout", 10*time.Second,
		"how long a request waits for its findings to be written when they are not queued")
	fs.IntVar(&w.maxConns, "webhook-max-connections", 1024,
		"open connections the webhook listener keeps; one more is closed unread (0: no limit)")
	fs.IntVar(&w.maxConnsPerClient, "webhook-max-connections-per-client", 256,
		"open connections of one client address; behind a proxy every sender has its address, so raise it or set 0 (no limit)")
	fs.DurationVar(&w.readHeaderTimeout, "webhook-read-header-timeout", 5*time.Second,
		"how long a request's headers may take to arrive")
	fs.DurationVar(&w.readTimeout, "webhook-read-timeout", 30*time.Second,
		"how long a whole request, headers and body, may take to arrive")
	fs.DurationVar(&w.idleTimeout, "webhook-idle-timeout", 60*time.Second,
		"how long a kept-alive connection may wait for its next request")
	fs.Float64Var(&w.minBodyRate, "webhook-min-body-rate", 4096,
		"bytes a second a request body must keep up: t seconds into it, at least (t - 2s) times this many have arrived (408 otherwise; 0: any rate)")
	fs.Float64Var(&w.refusalRate, "webhook-client-refusal-rate", 20,
		"refused requests a second one client address may earn (failed authentication, unknown paths, bodies too slow, large or not JSON) "+
			"before it is answered 429 unread; behind a proxy every sender shares its address, so raise it or set 0 (no budget)")
	fs.IntVar(&w.refusalBurst, "webhook-client-refusal-burst", 100, "burst above -webhook-client-refusal-rate")
	fs.BoolVar(&w.replayStrict, "webhook-replay-strict", false,
		"while Redis cannot tell whether it saw a signature (away, or restarted empty since it was made), answer signed requests 503 "+
			"instead of accepting recent ones on this replica's own memory")
	fs.DurationVar(&w.replayUncheckedWindow, "webhook-replay-unchecked-window", 30*time.Second,
		"without -webhook-replay-strict, how old a signature accepted while Redis cannot judge it may be (older: 503)")
	fs.StringVar(&w.tlsCertFile, "webhook-tls-cert-file", "", "serve webhooks over TLS with this certificate "+
		"(PEM, reread when it changes); needed for mTLS webhooks")
	fs.StringVar(&w.tlsKeyFile, "webhook-tls-key-file", "", "private key of -webhook-tls-cert-file")
	fs.DurationVar(&w.secretRefresh, "webhook-secret-refresh", 30*time.Second,
		"how often webhook credentials are read again from their Secrets, and Ingesters that could not be applied are tried again")
}

// parseConfig reads the environment, then the command line. A malformed value in either is an
// error naming the variable or flag: starting with a silently different value is worse.
func parseConfig(args []string, getenv func(string) string) (*config, error) {
	c := &config{}
	fs := newFlagSet(c)
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		env := envFlags()[f.Name]
		if v := getenv(env); v != "" && err == nil {
			if serr := fs.Set(f.Name, v); serr != nil {
				err = fmt.Errorf("environment variable %s=%q: %w", env, v, serr)
			}
		}
	})
	if err != nil {
		return nil, err
	}
	c.redisPassword = getenv("REDIS_PASSWORD")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// rule is one condition the configuration must meet, named by the flag it is about.
type rule struct {
	flag  string
	value any
	ok    bool
	want  string
}

// validate checks every value against what the daemon can run with and refuses the configuration
// with all of its faults at once, each naming the flag, the value and the rule. A configuration
// that starts but cannot work (a leader that can never renew, a zero interval that panics a ticker,
// a TTL under a minute that cleanup would act on) is worse than one refused at start.
func (c *config) validate() error {
	w := &c.webhook
	rules := []rule{
		{"writer-workers", c.writerWorkers, c.writerWorkers >= 1, "at least 1"},
		{"writer-queue", c.writerQueue, c.writerQueue >= 1, "at least 1"},
		{"connect-timeout", c.connectTimeout, c.connectTimeout > 0, "positive"},
		{"kube-burst", c.kubeBurst, c.kubeQPS <= 0 || c.kubeBurst >= 1, "at least 1 when -kube-qps is positive"},
		{"dedup-max-size", c.dedupMaxSize, c.dedupMaxSize >= 1, "at least 1"},
		{"dedup-max-per-window", c.maxPerWindow, c.maxPerWindow >= 1, "at least 1"},
		{"dedup-window", c.dedupWindow, c.dedupWindow > 0, "positive"},
		{"order-tune-interval", c.tuneInterval, c.tuneInterval > 0, "positive"},
		{"shard-chunks", c.chunks, c.chunks >= 1 && c.chunks <= 4096, "between 1 and 4096"},
		{"shard-recut-threshold", c.recutAt, c.recutAt > 1, "above 1"},
		{"shard-load-recut-interval", c.loadRecutEvery, c.loadRecutEvery > 0, "positive"},
		{"member-lease-duration", c.memberLease, c.memberLease > 0, "positive"},
		{"member-renew-interval", c.memberRenew, c.memberRenew > 0 && c.memberRenew < c.memberLease,
			fmt.Sprintf("positive and shorter than -member-lease-duration (%v)", c.memberLease)},
		{"leader-lease-duration", c.leaderLease, !c.leaderElection || c.leaderLease > 0, "positive"},
		{"leader-renew-deadline", c.leaderRenew, !c.leaderElection || c.leaderRenew > 0 && c.leaderRenew < c.leaderLease,
			fmt.Sprintf("positive and shorter than -leader-lease-duration (%v)", c.leaderLease)},
		// client-go's leader election jitters its retries by 1.2: a renew deadline within that of
		// the retry period makes it return at once, and no replica would ever lead.
		{"leader-retry-period", c.leaderRetry, !c.leaderElection || c.leaderRetry > 0 && 6*c.leaderRetry < 5*c.leaderRenew,
			fmt.Sprintf("positive and under -leader-renew-deadline / 1.2 (%v)", c.leaderRenew*5/6)},
		{"coordination-interval", c.syncInterval, c.syncInterval > 0, "positive"},
		{"shutdown-delay", c.shutdownDelay, c.shutdownDelay >= 0, "0 or more"},
		{"ha-window-low-traffic", c.haWindowLow, c.haWindowLow > 0, "positive"},
		{"ha-window-high-traffic", c.haWindowHigh, c.haWindowHigh > 0, "positive"},
		{"ha-cache-min", c.haCacheMin, c.haCacheMin >= 1, "at least 1"},
		{"ha-cache-max", c.haCacheMax, c.haCacheMax >= c.haCacheMin, fmt.Sprintf("at least -ha-cache-min (%d)", c.haCacheMin)},
		{"observation-ttl-seconds", c.ttlSeconds, c.ttlSeconds >= 60 && c.ttlSeconds <= 365*24*3600,
			"from 60 (a minute) to 31536000 (a year)"},
		{"cleanup-interval", c.cleanupEvery, !c.cleanup || c.cleanupEvery > 0, "positive"},
		{"cleanup-deletes-per-second", c.cleanupRate, !c.cleanup || c.cleanupRate > 0, "positive"},
		{"webhook-rate", w.rate, w.rate > 0, "positive"},
		{"webhook-burst", w.burst, w.burst >= 1, "at least 1"},
		{"webhook-max-in-flight", w.maxInFlight, w.maxInFlight >= 1, "at least 1"},
		{"webhook-queue-max-length", w.queueMaxLen, w.queueMaxLen >= 1, "at least 1"},
		{"webhook-queue-max-age", w.queueMaxAge, w.queueMaxAge > 0, "positive"},
		{"webhook-claim-idle", w.claimIdle, w.claimIdle > 0, "positive"},
		{"webhook-write-timeout", w.writeTimeout, w.writeTimeout > 0, "positive"},
		{"webhook-secret-refresh", w.secretRefresh, w.secretRefresh > 0, "positive"},
		{"webhook-max-connections", w.maxConns, w.maxConns >= 0, "0 or more"},
		{"webhook-max-connections-per-client", w.maxConnsPerClient, w.maxConnsPerClient >= 0, "0 or more"},
		{"webhook-read-header-timeout", w.readHeaderTimeout, w.readHeaderTimeout > 0, "positive"},
		{"webhook-read-timeout", w.readTimeout, w.readTimeout >= w.readHeaderTimeout,
			fmt.Sprintf("at least -webhook-read-header-timeout (%v)", w.readHeaderTimeout)},
		{"webhook-idle-timeout", w.idleTimeout, w.idleTimeout > 0, "positive"},
		{"webhook-min-body-rate", w.minBodyRate, w.minBodyRate >= 0, "0 or more"},
		{"webhook-client-refusal-rate", w.refusalRate, w.refusalRate >= 0, "0 or more"},
		{"webhook-client-refusal-burst", w.refusalBurst, w.refusalBurst >= 1, "at least 1"},
		{"webhook-replay-unchecked-window", w.replayUncheckedWindow, w.replayUncheckedWindow > 0, "positive"},
		{"webhook-tls-key-file", w.tlsKeyFile, (w.tlsCertFile == "") == (w.tlsKeyFile == ""),
			"set together with -webhook-tls-cert-file"},
		{"redis-wait-replicas", c.redisWait, c.redisWait >= 0 && (c.redisWait == 0 || c.redisMaster != "" || !strings.Contains(c.redisAddr, ",")),
			"0 or more, and 0 with a Redis Cluster (several -redis-addr without -redis-master-name)"},
		{"pprof-port", c.pprofPort, c.pprofPort >= 1 && c.pprofPort <= 65535, "1-65535"},
	}
	var faults []string
	for _, r := range rules {
		if !r.ok {
			faults = append(faults, fmt.Sprintf("-%s (env %s) = %v: must be %s", r.flag, envFlags()[r.flag], r.value, r.want))
		}
	}
	if len(faults) > 0 {
		return fmt.Errorf("invalid configuration:\n  %s", strings.Join(faults, "\n  "))
	}
	return nil
}
