package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"

	"github.com/kube-zen/zen-watcher/pkg/ha"
	"github.com/kube-zen/zen-watcher/pkg/ha/cleanup"
	"github.com/kube-zen/zen-watcher/pkg/ingester"
	"github.com/kube-zen/zen-watcher/pkg/metrics"
	"github.com/kube-zen/zen-watcher/pkg/pipeline"
	"github.com/kube-zen/zen-watcher/pkg/redisstate"
	"github.com/kube-zen/zen-watcher/pkg/server"
	"github.com/kube-zen/zen-watcher/pkg/shard"
	"github.com/kube-zen/zen-watcher/pkg/sources"
)

// replicas wires what makes several replicas one: membership and sharding, leader election, and
// the coordination of processing order and HA optimization through Redis.
type replicas struct {
	cfg     *config
	kube    kubernetes.Interface
	metrics *metrics.Metrics
	log     *slog.Logger
	members *shard.Members
	sharder *shard.Sharder
	// namespaces are where the table is cut; tables is where the leader publishes it.
	namespaces *shard.Namespaces
	tables     *shard.ConfigMapTables
	// written is read again before informers (re)start on a share, so that their re-list costs
	// no create for what is written already.
	written *sources.WrittenObservations
	// reading is closed once the read of the Observations begun by the last hand-over, and every
	// one before it, is done; only the follow loop touches it.
	reading <-chan struct{}
	// releasing holds the share applied last until the releaser has let go of what it lost
	// (release); a newer one replaces it there.
	releasing chan appliedShare
	// watching is closed once the informers of the first share watch: a replica joining others
	// that run creates its member Lease only then (MembersConfig.JoinAfter).
	watching chan struct{}
	// settle returns once nothing is queued or being written outside the share in force
	// (Writer.Settle).
	settle func(context.Context) error
	// weights is where the replicas publish what their namespaces weigh, for the leader's cut; nil
	// without Redis, where every namespace weighs one.
	weights shard.WeightStore
	// owners own the Leases and the shard table this replica creates (see releaseOwners).
	owners []metav1.OwnerReference
}

// newReplicas wires membership and sharding around the writer; writerDone is closed when the
// writer has stopped, and a stopping replica leaves the member set only then.
func newReplicas(cfg *config, kube kubernetes.Interface, meta metadata.Interface, written *sources.WrittenObservations,
	writer *pipeline.Writer, writerDone <-chan struct{}, owners []metav1.OwnerReference, m *metrics.Metrics, log *slog.Logger) *replicas {
	r := &replicas{cfg: cfg, kube: kube, metrics: m, log: log.With("member", cfg.memberID), written: written,
		settle: writer.Settle, owners: owners, releasing: make(chan appliedShare, 1), watching: make(chan struct{})}
	if cfg.sharding {
		r.members = shard.NewMembers(shard.MembersConfig{
			Client: kube, Namespace: cfg.namespace, Release: cfg.release, ID: cfg.memberID,
			LeaseDuration: cfg.memberLease, RenewInterval: cfg.memberRenew, Log: r.log, LeaveAfter: writerDone,
			Owners: owners, JoinAfter: r.watching,
		})
		r.sharder = shard.NewSharder(cfg.memberID, cfg.chunks, m, r.log)
		r.sharder.UseTenure(r.members)
		r.namespaces = shard.NewNamespaces(meta)
		r.tables = &shard.ConfigMapTables{Client: kube, Namespace: cfg.namespace, Release: cfg.release, Self: cfg.memberID,
			Owners: owners}
	}
	return r
}

// owns tells whether this replica owns a namespace in its current share; nil without sharding,
// where nothing is ever resharded.
func (r *replicas) owns() func(namespace string) bool {
	if r.sharder == nil {
		return nil
	}
	return r.sharder.Owns
}

// wrap is the informers' ListerWatcher decorator: the replica's share, or nothing without sharding.
func (r *replicas) wrap() sources.WrapListerWatcher {
	if r.sharder == nil {
		return nil
	}
	return r.sharder.Wrap
}

// leaderWork is what the leader runs while it leads: the coordinator's decisions, cleanup, and the
// webhook queue's maintenance (maintain, nil without a durable queue). It returns when leadership
// (lctx) ends; the decisions and deletes also stop the moment fence no longer holds.
func (r *replicas) leaderWork(coord *ha.Coordinator, cleaner *cleanup.Cleaner, maintain func(context.Context)) func(lctx context.Context, fence ha.Fence) {
	return func(lctx context.Context, fence ha.Fence) {
		var wg sync.WaitGroup
		if coord != nil {
			wg.Go(func() { coord.Lead(lctx, r.cfg.tuneInterval, fence) })
		}
		if cleaner != nil {
			wg.Go(func() { cleaner.Run(lctx, fence) })
		}
		if maintain != nil {
			wg.Go(func() { maintain(lctx) })
		}
		if r.sharder != nil {
			wg.Go(func() {
				r.sharder.Lead(lctx, shard.LeadConfig{Publisher: r.tables, Held: fence.Held, Threshold: r.cfg.recutAt,
					Weights: r.weights, LoadInterval: r.cfg.loadRecutEvery})
			})
		}
		<-lctx.Done()
		wg.Wait()
	}
}

// coordinator returns what makes the replicas sharing Redis (rc) one: their statistics, the
// leader's decisions and the Ingesters' status counts; nil without Redis. seen is the Ingester
// manager's count of the findings each source produced here. The same shared state carries the
// namespaces' weights.
func (r *replicas) coordinator(pipe *pipeline.Pipeline, cache *pipeline.LocalCache, rc redis.UniversalClient,
	seen func(source string) int64) *ha.Coordinator {
	if rc == nil {
		return nil
	}
	state := redisstate.NewCoordination(rc, r.cfg.release)
	if r.sharder != nil {
		r.weights = state
	}
	return ha.NewCoordinator(ha.CoordinatorConfig{
		Self: r.cfg.memberID, State: state, Pipeline: pipe, Cache: cache,
		Optimize: r.cfg.haOptimization, Optimization: r.optimization(), Policy: pipeline.DefaultOrderPolicy(),
		Members: r.memberCount, Metrics: r.metrics, Log: r.log, Seen: seen,
	})
}

// start runs membership, the Ingester manager (once this replica knows its share), leader election
// and coordination in g.
func (r *replicas) start(ctx context.Context, g *errgroup.Group, health *server.Health, pipe *pipeline.Pipeline,
	coord *ha.Coordinator, ingesters *ingester.Manager, cleaner *cleanup.Cleaner, maintain func(context.Context)) {
	if r.members == nil {
		health.AddLiveness("process", func(context.Context) error { return nil })
		g.Go(func() error { r.loadWritten(ctx, nil); return ingesters.Run(ctx) })
	} else {
		// The API server away fails readiness only: a liveness tied to it would restart every
		// replica at once for what a restart cannot fix.
		health.AddLiveness("member-renewal", func(context.Context) error { return r.members.Alive() })
		health.AddReadiness("member-lease", func(context.Context) error { return r.members.Healthy() })
		health.AddReadiness("joined", func(context.Context) error {
			if !r.sharder.Joined() {
				return errors.New("not in the member set yet")
			}
			return nil
		})
		g.Go(func() error { return r.members.Run(ctx) })
		g.Go(func() error { return r.namespaces.Run(ctx) })
		tables := r.tables.Follow(ctx, func(t *shard.Table) { r.sharder.SetPublished(t) },
			func(err error) { r.log.Warn("ignoring the published shard table", "error", err) })
		g.Go(func() error { return r.follow(ctx, ingesters, tables) })
		if r.weights != nil {
			g.Go(func() error { r.sharder.ReportWeights(ctx, r.weights); return nil })
		}
	}
	if coord != nil {
		g.Go(func() error { coord.RunReplica(ctx, r.cfg.syncInterval); return nil })
	} else {
		// Without shared state every replica tunes the order of its own findings.
		tuner := pipeline.NewTuner(pipe, pipeline.DefaultOrderPolicy(), r.metrics, r.log)
		g.Go(func() error { tuner.Run(ctx, r.cfg.tuneInterval); return nil })
	}
	lead := r.leaderWork(coord, cleaner, maintain)
	if !r.cfg.leaderElection {
		// A single replica by configuration: it does the leader's work itself.
		g.Go(func() error { lead(ctx, ha.Unfenced); return nil })
		return
	}
	g.Go(func() error {
		ha.RunLeaderElection(ctx, ha.LeaderConfig{
			Client: r.kube, Namespace: r.cfg.namespace, Name: r.cfg.release + "-leader", ID: r.cfg.memberID,
			LeaseDuration: r.cfg.leaderLease, RenewDeadline: r.cfg.leaderRenew, RetryPeriod: r.cfg.leaderRetry,
			Metrics: r.metrics, Log: r.log, Owners: r.owners,
		}, lead)
		return nil
	})
}

// joinBridgeHold is how long after its Lease exists a joining replica's bridges hold what they
// watch for the others' release (holdBridges): they narrow as soon as they see the Lease, a watch
// event away, while the release they report follows their writer's settling and a Lease write.
const joinBridgeHold = 500 * time.Millisecond

// leaveBridgeHold is how long the bridges of a replica taking namespaces from one that leaves
// hold what they watch for its release (holdBridges): it lets go once it sees that the gainers
// watch — their informers start and their Leases report it — and then stops.
const leaveBridgeHold = 6 * time.Second

// departWait is how long a stopping replica goes on writing in its namespaces for the others to
// watch them (depart); past it, it stops all the same, and what is created there until they
// watch waits for their lists.
const departWait = 5 * time.Second

// memberQuiet is how long a member set must stand before the share follows it, and memberQuietMax
// how long the share waits for one at most (settledMembers): replicas scaled down or up together
// change their Leases within a moment of each other, and each set seen on the way was a share of
// its own — a list of what it gained, and a set of informers until the next restart lists the
// whole share (shard.MaxPieces). Scaling 5 → 2, the two left saw three sets in 110 ms.
const (
	memberQuiet    = 150 * time.Millisecond
	memberQuietMax = 500 * time.Millisecond
)

// settledMembers returns the newest member set from set on, once none newer has come on changes
// for quiet, or most after set; at once a set without this replica (self), which owns nothing
// from then on, and one seen as ctx ends.
func settledMembers(ctx context.Context, set []string, self string, changes <-chan []string,
	quiet, most time.Duration) []string {
	deadline := time.NewTimer(most)
	defer deadline.Stop()
	for slices.Contains(set, self) {
		t := time.NewTimer(quiet)
		select {
		case next := <-changes:
			set = next
		case <-t.C:
			return set
		case <-deadline.C:
			return set
		case <-ctx.Done():
			return set
		}
		t.Stop()
	}
	return set
}

// gainWatchWait is how long the report of a share that gained namespaces waits for the informers
// to watch them (release): a replica leaving lets go of them once the report says so.
const gainWatchWait = time.Second

// follow starts the Ingester manager once this replica knows its share — from the namespaces, the
// published table (tables is closed once it has been read) and the first member set — then
// has the informers read each share applied after (Sharder.Apply).
func (r *replicas) follow(ctx context.Context, ingesters *ingester.Manager, tables <-chan struct{}) error {
	for r.namespaces.Names() == nil {
		select {
		case <-ctx.Done():
			return nil
		case <-r.namespaces.Changes():
		}
	}
	r.sharder.SetNamespaces(r.namespaces.Names())
	select {
	case <-ctx.Done():
		return nil
	case <-tables:
	}
	select {
	case <-ctx.Done():
		return nil
	case set := <-r.members.Changes():
		r.sharder.SetMembers(set)
	}
	select {
	case <-r.sharder.Changes(): // the informers start on the share in force
	default:
	}
	go r.releaser(ctx, ingesters.Watching)
	r.handOver(ctx, ingesters) // the first share is a Restart: the informers start with Run
	errc := make(chan error, 1)
	go func() { errc <- ingesters.Run(ctx) }()
	go r.awaitWatching(ctx, ingesters)
	for {
		select {
		case <-ctx.Done():
			return <-errc
		case set := <-r.members.Changes():
			r.sharder.SetMembers(settledMembers(ctx, set, r.cfg.memberID, r.members.Changes(), memberQuiet, memberQuietMax))
		case <-r.namespaces.Changes():
			r.sharder.SetNamespaces(r.namespaces.Names())
		case <-r.sharder.Changes():
			r.handOver(ctx, ingesters)
		}
	}
}

// handOver applies the share in force: it starts the informers over the gained ranges at once,
// make before break — their bridges hand on what changes there from now on while the members that
// held those ranges may still be letting go, so that a finding created as the share moves waits
// for nothing — and has the releaser let go of the namespaces lost. What the informers list waits
// (Sharder.Within) for those members to have let go and for the read of the Observations written
// there, which run beside the loop: a member change meanwhile is applied at once. (Where it keeps,
// what its informers handed on before is not handed on again, and nothing is read; a share that
// only shrank needs no list.) What the bridges and the members letting go both hand on costs a
// create the API server refuses, as the Observation's name is the finding's; nothing is written
// twice.
func (r *replicas) handOver(ctx context.Context, ingesters *ingester.Manager) {
	share := r.sharder.Share()
	hashes, gained := r.sharder.Gained(), r.sharder.GainedRanges()
	var within sources.WrapListerWatcher
	if len(gained) > 0 {
		within = r.sharder.WrapRanges(gained)
	}
	step, ranges := r.sharder.Apply(share)
	read := make(chan struct{})
	var bridged <-chan struct{}
	switch {
	case r.members.Joining():
		bridged = r.holdBridges(ctx, read, within, r.members.JoinEnded(), joinBridgeHold)
	case len(hashes) > 0 && r.members.HeldByLeaving(hashes):
		bridged = r.holdBridges(ctx, read, within, nil, leaveBridgeHold)
	}
	switch step {
	case shard.Restart:
		ingesters.Reshard(r.sharder.Within(ranges, read, bridged))
	case shard.Extend:
		ingesters.Extend(r.sharder.Within(ranges, read, bridged))
	default:
		ingesters.Narrow()
	}
	next := appliedShare{share: share, gained: len(gained) > 0}
	select {
	case prev := <-r.releasing: // not let go of yet: share supersedes it, and what it gained
		next.gained = next.gained || prev.gained
	default:
	}
	r.releasing <- next
	go r.readGained(ctx, hashes, within, read, r.reading)
	r.reading = read
}

// holdBridges returns what the bridges of a share wait for before they hand on what they watch:
// read, the Observations of the share read once the members that held it let go. Those members
// hand on what they see there until then — the others until a joining replica's Lease exists and
// they narrow, one leaving until it sees the gainers watch — so without the wait each finding
// created meanwhile would be sent by both, and the second refused by the API server. hold after
// from is closed (nil: now) the bridges hand on what they hold all the same, once the
// Observations written within are read: a member slow to report its release delays new findings
// no more than that.
func (r *replicas) holdBridges(ctx context.Context, read <-chan struct{}, within sources.WrapListerWatcher,
	from <-chan struct{}, hold time.Duration) <-chan struct{} {
	c := make(chan struct{})
	go func() {
		defer close(c)
		if from != nil {
			select {
			case <-read:
				return
			case <-ctx.Done():
				return
			case <-from:
			}
		}
		t := time.NewTimer(hold)
		defer t.Stop()
		select {
		case <-read:
		case <-t.C:
			r.log.Info("handing on what the bridges watched before the members holding it let go", "held", hold)
			if within != nil {
				r.loadWritten(ctx, within)
			}
		case <-ctx.Done():
		}
	}()
	return c
}

// readGained waits for the members that held the namespaces gained (hashes) to let go of them,
// reads the Observations written there (within; nil: nothing gained), then closes read once prev,
// the read of the hand-over before, is done too: the informers started on this share may list
// what that one is for.
func (r *replicas) readGained(ctx context.Context, hashes []uint64, within sources.WrapListerWatcher,
	read chan<- struct{}, prev <-chan struct{}) {
	defer close(read)
	if len(hashes) > 0 {
		r.awaitReleased(ctx, hashes)
	}
	if within != nil {
		r.loadWritten(ctx, within)
	}
	if prev != nil {
		select {
		case <-prev:
		case <-ctx.Done():
		}
	}
}

// awaitWatching closes r.watching once the informers of the first share watch.
func (r *replicas) awaitWatching(ctx context.Context, ingesters *ingester.Manager) {
	if waitWatching(ctx, ingesters.Watching) {
		close(r.watching)
	}
}

// watchingPoll is how often a wait for the informers to watch asks them.
const watchingPoll = 20 * time.Millisecond

// waitWatching polls watching until it reports true (and returns true) or ctx ends.
func waitWatching(ctx context.Context, watching func() bool) bool {
	t := time.NewTicker(watchingPoll)
	defer t.Stop()
	for !watching() {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
	return true
}

// appliedShare is a share the replica applied, for the releaser.
type appliedShare struct {
	share shard.Ranges
	// gained is whether it holds namespaces the share applied before did not.
	gained bool
}

// releaser lets go of what each share applied lost (release), the newest first, beside the
// loop of hand-overs: a Lease write that is slow, or a writer slow to settle, holds no later
// hand-over back.
func (r *replicas) releaser(ctx context.Context, watching func() bool) {
	for {
		select {
		case <-ctx.Done():
			return
		case a := <-r.releasing:
			r.release(ctx, a, watching)
		}
	}
}

// release waits until nothing is queued or being written outside the share applied (the writer
// takes nothing new there), then reports it on the member Lease as all this replica may write in,
// so that whoever takes any of it next knows to wait. It comes after the informers have started
// on the namespaces new to the share: a slow Lease write must not hold their bridges back, and a
// member taking those namespaces before the report is written costs refused creates, nothing
// more. Past a lease duration it reports all the same, at the same cost. A share that gained is
// reported once the informers watch (gainWatchWait at most): a member leaving stops writing
// in the namespaces gained once the report says they are held.
func (r *replicas) release(ctx context.Context, a appliedShare, watching func() bool) {
	rctx, cancel := context.WithTimeout(ctx, r.cfg.memberLease)
	defer cancel()
	if a.gained {
		a = r.awaitGainWatched(rctx, a, watching)
	}
	if err := r.settle(rctx); err != nil && ctx.Err() == nil {
		r.log.Warn("letting namespaces go with creates still under way there", "error", err)
	}
	if err := r.members.Report(rctx, a.share); err != nil && ctx.Err() == nil {
		r.log.Warn("the members gaining this replica's namespaces will wait for its lease", "error", err)
	}
}

// awaitGainWatched waits until the informers watch the share a gained, gainWatchWait at most,
// and returns the share to report. A share applied meanwhile supersedes a and is waited for
// instead, within the same gainWatchWait: a scale-down by several replicas applies a share per
// member set seen, each restarting the informers' lists, and waiting for each in turn held the
// report back, and the members leaving with it, a second per share.
func (r *replicas) awaitGainWatched(ctx context.Context, a appliedShare, watching func() bool) appliedShare {
	wctx, cancel := context.WithTimeout(ctx, gainWatchWait)
	defer cancel()
	waitWatching(wctx, func() bool {
		select {
		case next := <-r.releasing:
			next.gained = true
			a = next
		default:
		}
		return watching()
	})
	return a
}

// depart hands this replica's namespaces over before it stops (departWait at most): its share
// stays as it is (Sharder.Freeze), its Lease says it leaves, the others take its share and watch
// it, and until they do it goes on writing there. Stopping at once left what was created between
// its stop and their watches to their lists of what they took — seconds with thousands of
// objects. A no-op without sharding.
func (r *replicas) depart(ctx context.Context) {
	if r.members == nil {
		return
	}
	began := time.Now()
	dctx, cancel := context.WithTimeout(ctx, departWait)
	defer cancel()
	r.sharder.Freeze()
	err := r.members.Depart(dctx)
	if err == nil {
		err = r.members.AwaitTakenOver(dctx, r.sharder.Owned())
	}
	if err != nil {
		r.log.Warn("stopping before the others watch this replica's namespaces; what is created there meanwhile waits for their lists",
			"error", err)
		return
	}
	r.log.Info("the others watch this replica's namespaces", "took", time.Since(began).Round(time.Millisecond))
}

// awaitReleased waits until no other member holds the namespaces this replica gains (hashes),
// at most a lease duration: by then a member that stopped answering has dropped out.
func (r *replicas) awaitReleased(ctx context.Context, hashes []uint64) {
	began := time.Now()
	wctx, cancel := context.WithTimeout(ctx, r.cfg.memberLease)
	defer cancel()
	err := r.members.AwaitReleased(wctx, hashes, r.sharder.OwnsHash)
	r.metrics.HandOverWait.Observe(time.Since(began).Seconds())
	if err != nil && ctx.Err() == nil {
		r.log.Warn("reading the namespaces gained before their last writer let go; what it still sends is refused as existing",
			"error", err)
	}
}

// loadWritten reads the Observations within narrows to (nil: all), before the informers hand on
// what they list there; if they cannot be read in time, the re-list costs refused creates, nothing
// more.
func (r *replicas) loadWritten(ctx context.Context, within sources.WrapListerWatcher) {
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := r.written.Load(lctx, within); err != nil && ctx.Err() == nil {
		r.log.Warn("reading the Observations written; re-listed findings will be sent again", "error", err)
	}
}

// releaseOwners are the owner references of what the replicas create in the release namespace:
// the release's Deployment (-owner-deployment), so that deleting the release deletes them through
// the garbage collector. helm uninstall deletes the replicas' Role with their Deployment, and a
// replica stopping then can no longer delete its Lease itself. Nil without the flag, or when the
// Deployment cannot be read (say so and go on: the objects are only left behind, as before).
func releaseOwners(ctx context.Context, kube kubernetes.Interface, cfg *config, log *slog.Logger) []metav1.OwnerReference {
	if cfg.ownerDeploy == "" {
		return nil
	}
	d, err := kube.AppsV1().Deployments(cfg.namespace).Get(ctx, cfg.ownerDeploy, metav1.GetOptions{})
	if err != nil {
		log.Warn("reading the owner Deployment; the Leases and shard table are left behind when the release is deleted",
			"deployment", cfg.ownerDeploy, "error", err)
		return nil
	}
	return []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: d.Name, UID: d.UID}}
}

func (r *replicas) memberCount() int {
	if r.members == nil {
		return 1
	}
	return max(len(r.members.Current()), 1)
}

// defaultMemberID names a replica: the pod's name in a cluster, else host and process.
func defaultMemberID() string {
	if p := os.Getenv("POD_NAME"); p != "" {
		return p
	}
	h, err := os.Hostname()
	if err != nil {
		h = "zen-watcher"
	}
	return fmt.Sprintf("%s-%d", h, os.Getpid())
}

// optimization is the guide's HA optimization with the configured bounds.
func (r *replicas) optimization() ha.Optimization {
	o := ha.DefaultOptimization()
	o.LowTrafficWindow, o.HighTrafficWindow = r.cfg.haWindowLow, r.cfg.haWindowHigh
	o.MinCache, o.MaxCache = r.cfg.haCacheMin, r.cfg.haCacheMax
	o.MemoryLimit = r.cfg.memoryBytes
	return o
}
