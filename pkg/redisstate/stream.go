package redisstate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/kube-zen/zen-watcher/internal/outage"
	"github.com/kube-zen/zen-watcher/pkg/metrics"
	"github.com/kube-zen/zen-watcher/pkg/pipeline"
)

// Handler processes findings; the pipeline is one. Handle returns an error when it did not take
// the finding, and otherwise calls the finding's Done exactly once.
type Handler interface {
	Handle(ctx context.Context, ev *pipeline.Event) error
}

// StreamOptions tunes a Stream. Zero values take the defaults named.
type StreamOptions struct {
	// Release names the installation; a source's stream is zw:{<release>}:wh:<source>. The braces
	// keep a release's streams in one Redis Cluster slot, so one read serves them all.
	Release string
	// Consumer is this replica's unique name in the consumer group (required).
	Consumer string
	// MaxLen bounds each stream's entries (default 100,000); past it appends are refused and the
	// webhook server processes the findings before answering instead.
	MaxLen int64
	// MaxAge bounds how long an entry waits to be processed (default 1h); older ones are removed
	// unprocessed and counted as lost.
	MaxAge time.Duration
	// ClaimIdle is how long an entry may sit with a consumer that does not finish it before another
	// replica takes it over (default 30s).
	ClaimIdle time.Duration
	// MaxInFlight bounds the entries this replica processes at once (default 512).
	MaxInFlight int
	// Block is how long a read waits for new entries (default 1s).
	Block time.Duration
	// Timeout bounds one round trip of appends (default 1s).
	Timeout time.Duration
	// StatsInterval is how often depth and lag are measured and processed entries trimmed (5s).
	StatsInterval time.Duration
	// WaitReplicas, when positive, holds each batch of appends until this many of the primary's
	// replicas have it (WAIT), else the appends count as failed and their findings are processed
	// before the answer. Redis replicates asynchronously: without it, a Sentinel failover can
	// promote a replica that never received entries already answered "queued". One primary (or
	// Sentinel) only: a Redis Cluster client cannot send a keyless WAIT to the right node.
	WaitReplicas int
}

func (o *StreamOptions) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if o.MaxLen <= 0 {
		o.MaxLen = 100_000
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = 512
	}
	def(&o.MaxAge, time.Hour)
	def(&o.ClaimIdle, 30*time.Second)
	def(&o.Block, time.Second)
	def(&o.Timeout, time.Second)
	def(&o.StatsInterval, 5*time.Second)
}

// group is the consumer group every replica of a release reads in.
const group = "zen-watcher"

// appendBatch bounds the appends sent in one round trip.
const appendBatch = 256

// appendScript appends one entry unless the stream is at its bound (trimming to make room would
// drop findings already acknowledged to their senders) or the append arrives after its deadline
// (ARGV[3], milliseconds on Redis's clock). The deadline is what makes an append whose answer
// never came safe to give up on: the replica processes those findings itself, and an append that
// sat in a paused or overloaded Redis's socket meanwhile must not queue them a second time. It
// answers the entry's ID ("" when full) and Redis's clock.
var appendScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if now > tonumber(ARGV[3]) then return redis.error_reply('STALE append past its deadline') end
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[2]) then return {'', now} end
return {redis.call('XADD', KEYS[1], '*', 'f', ARGV[1]), now}`)

// Sources are the webhook sources whose streams a replica reads; the webhook server is one.
type Sources interface {
	// Sources lists them, in no particular order.
	Sources() []string
	// SourcesChanged is closed once the list may have changed after the call.
	SourcesChanged() <-chan struct{}
}

// Stream is the durable queue of webhook findings: one Redis stream per source, appended to by the
// replica that answers the request and drained by a consumer group across all replicas. An entry
// is acknowledged only when each of its findings is written, filtered or recognized as a
// duplicate; entries of a replica that died are claimed by another after ClaimIdle. How much
// survives a crash of Redis itself is Redis's persistence setting (appendfsync).
type Stream struct {
	client  redis.UniversalClient
	opts    StreamOptions
	prefix  string
	metrics *metrics.Metrics
	log     *slog.Logger
	outages *outage.Log // the failing calls to Redis, logged once each way

	appends   chan *appendReq
	acks      chan ack
	slots     chan struct{}
	freed     chan struct{} // a slot was released since the reader last looked (capacity 1)
	downUntil atomic.Int64  // Unix nanoseconds before which appends are refused at once
	// redisAhead is how far Redis's clock is at least ahead of this replica's, in milliseconds
	// (negative when behind), from the last answer that carried Redis's time; valid once clockKnown.
	redisAhead atomic.Int64
	clockKnown atomic.Bool
	closing    atomic.Bool // Run's context has ended
	groups     sync.Map    // stream key → struct{}, groups known to exist
	read       sync.Map    // stream key → struct{}, streams this consumer took entries from
	inflight   sync.Map    // stream key + "\x00" + entry id → struct{}
}

type appendReq struct {
	key     string
	payload []byte
	done    chan error
}

type ack struct {
	key, id, source string
	result          string
}

// fullError is the refusal of a stream at its bound; the webhook server counts it apart.
type fullError struct{ key string }

func (e fullError) Error() string { return "webhook queue " + e.key + " is full" }

// Full marks the error as the queue's bound rather than an outage.
func (fullError) Full() bool { return true }

// errUnavailable is returned at once while Redis has recently failed.
var errUnavailable = errors.New("webhook queue unavailable: Redis did not answer")

// stoppingError refuses appends once the queue has begun to stop.
type stoppingError struct{}

func (stoppingError) Error() string { return "webhook queue stopping with this replica" }

// Stopping marks the refusal: the webhook server answers 503 rather than process the findings on
// a replica whose pipeline is stopping too.
func (stoppingError) Stopping() bool { return true }

// NewStream returns a Stream; call Run before Append.
func NewStream(client redis.UniversalClient, opts StreamOptions, m *metrics.Metrics, log *slog.Logger) (*Stream, error) {
	if opts.Consumer == "" {
		return nil, errors.New("webhook queue: a consumer name is required")
	}
	opts.setDefaults()
	return &Stream{
		client:  client,
		opts:    opts,
		prefix:  "zw:{" + opts.Release + "}:wh:",
		metrics: m,
		log:     log.With("component", "webhook-queue"),
		outages: outage.New(log.With("component", "webhook-queue")),
		appends: make(chan *appendReq, appendBatch),
		acks:    make(chan ack, opts.MaxInFlight),
		slots:   make(chan struct{}, opts.MaxInFlight),
		freed:   make(chan struct{}, 1),
	}, nil
}

// Key is the stream of source.
func (s *Stream) Key(source string) string { return s.prefix + source }

// Append stores findings of source. It returns nil only when Redis holds them.
func (s *Stream) Append(ctx context.Context, source string, findings []*pipeline.Event) error {
	if len(findings) == 0 {
		return nil // an entry of nothing would only be read back as undecodable
	}
	if s.closing.Load() {
		return stoppingError{}
	}
	if time.Now().UnixNano() < s.downUntil.Load() {
		return errUnavailable
	}
	payload, err := json.Marshal(findings)
	if err != nil {
		return fmt.Errorf("encoding findings of %s: %w", source, err)
	}
	req := &appendReq{key: s.Key(source), payload: payload, done: make(chan error, 1)}
	select {
	case s.appends <- req:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-req.done:
		if err != nil && s.closing.Load() {
			return stoppingError{} // the append was cut short by the stop
		}
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run appends, consumes, claims, acknowledges and measures until ctx ends. sources lists the
// sources whose streams this replica reads (the webhooks it serves). Trimming and expiry are the
// leader's (Maintain).
func (s *Stream) Run(ctx context.Context, h Handler, sources Sources) {
	var wg sync.WaitGroup
	for range 2 {
		// Two appenders: one batch is in flight while the next gathers.
		wg.Go(func() { s.appendLoop(ctx) })
	}
	wg.Go(func() { s.ackLoop(ctx) })
	wg.Go(func() { s.consumeLoop(ctx, h, sources) })
	wg.Go(func() { s.claimLoop(ctx, h, sources) })
	wg.Go(func() { s.statsLoop(ctx, sources) })
	<-ctx.Done()
	s.closing.Store(true)
	wg.Wait()
	s.refuseAppends()
	s.handBack()
}

// refuseAppends answers the appends left waiting when the appenders stopped, and those racing the
// stop for a moment after.
func (s *Stream) refuseAppends() {
	for {
		select {
		case r := <-s.appends:
			r.done <- stoppingError{}
		case <-time.After(100 * time.Millisecond):
			return
		}
	}
}

// handBack marks every entry this consumer still holds as idle for ClaimIdle already, so that
// another replica's next claim takes it over instead of waiting for it to age: a replica that
// stops (a rolling restart) leaves nothing waiting on it. What it was writing when it stopped may
// still be written; the replica that takes the entry over writes it under the same names, once.
//
// It goes by the streams this consumer took entries from: at a stop the webhooks' routes, and so
// the sources, may be gone already.
func (s *Stream) handBack() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var keys []string
	s.read.Range(func(k, _ any) bool { keys = append(keys, k.(string)); return true })
	for _, key := range keys {
		pending, err := s.client.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: key, Group: group, Start: "-", End: "+",
			Count: int64(s.opts.MaxInFlight), Consumer: s.opts.Consumer}).Result()
		if err != nil || len(pending) == 0 {
			continue
		}
		// XCLAIM to itself: the owner stays, the idle time is set (go-redis has no IDLE option).
		args := []any{"XCLAIM", key, group, s.opts.Consumer, 0}
		for _, p := range pending {
			args = append(args, p.ID)
		}
		args = append(args, "IDLE", s.opts.ClaimIdle.Milliseconds(), "JUSTID")
		if err := s.client.Do(ctx, args...).Err(); err != nil {
			s.log.Warn("handing back webhook queue entries", "stream", key, "entries", len(pending), "error", err)
			continue
		}
		s.log.Info("handed back webhook queue entries", "stream", key, "entries", len(pending))
	}
}

func (s *Stream) appendLoop(ctx context.Context) {
	batches(ctx, s.appends, appendBatch, func(batch []*appendReq) { s.appendAll(ctx, batch) })
}

// batches hands fn what waits on ch, up to size at a time, as soon as anything does: under load a
// batch fills, and a lone item goes at once, without waiting for company.
func batches[T any](ctx context.Context, ch <-chan T, size int, fn func([]T)) {
	batch := make([]T, 0, size)
	for {
		select {
		case <-ctx.Done():
			return
		case v := <-ch:
			batch = append(batch[:0], v)
		}
	gather:
		for len(batch) < size {
			select {
			case v := <-ch:
				batch = append(batch, v)
			default:
				break gather
			}
		}
		fn(batch)
	}
}

// appendAll sends a batch of appends in one round trip and answers each. Each append carries a
// deadline on Redis's clock a grace before this replica gives up waiting, so that an append
// Redis runs late is refused there rather than queued behind the sender's back.
func (s *Stream) appendAll(ctx context.Context, batch []*appendReq) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	deadline, err := s.appendDeadline(ctx)
	if err != nil {
		s.downUntil.Store(time.Now().Add(time.Second).UnixNano())
		for _, r := range batch {
			r.done <- fmt.Errorf("appending to %s: %w", r.key, err)
		}
		return
	}
	pipe := s.client.Pipeline()
	cmds := make([]*redis.Cmd, len(batch))
	for i, r := range batch {
		cmds[i] = appendScript.Eval(ctx, pipe, []string{r.key}, r.payload, s.opts.MaxLen, deadline)
	}
	var wait *redis.Cmd
	if s.opts.WaitReplicas > 0 {
		// WAIT counts the replicas that hold every write this connection sent before it: the
		// pipeline's appends, on the same connection.
		wait = pipe.Do(ctx, "WAIT", s.opts.WaitReplicas, (s.opts.Timeout / appendGrace / 2).Milliseconds())
	}
	_, _ = pipe.Exec(ctx)
	received := time.Now()
	unreplicated := s.replicated(wait)
	for i, r := range batch {
		err := s.appended(r.key, cmds[i], received)
		if err == nil && unreplicated != nil {
			err = fmt.Errorf("appending to %s: %w", r.key, unreplicated)
		}
		r.done <- err
	}
}

// replicated judges a WAIT's answer (nil: none was asked): an error unless enough replicas hold
// the batch. Entries a replica never received are answered as not queued, so their findings are
// processed at once; should they survive on the primary all the same, their names make the
// second processing write nothing.
func (s *Stream) replicated(wait *redis.Cmd) error {
	if wait == nil {
		return nil
	}
	n, err := wait.Int64()
	switch {
	case err != nil:
		return fmt.Errorf("waiting for %d Redis replicas: %w", s.opts.WaitReplicas, err)
	case n < int64(s.opts.WaitReplicas):
		// The replicas lag or are gone: refuse appends for a moment rather than have every
		// request wait out the WAIT.
		s.downUntil.Store(time.Now().Add(time.Second).UnixNano())
		return unreplicatedError{held: n, want: s.opts.WaitReplicas}
	}
	return nil
}

// unreplicatedError is a batch of appends fewer replicas hold than WaitReplicas asks.
type unreplicatedError struct {
	held int64
	want int
}

func (e unreplicatedError) Error() string {
	return fmt.Sprintf("%d of %d Redis replicas hold the appends", e.held, e.want)
}

// Unreplicated tells the webhook server why the queue did not take the findings.
func (unreplicatedError) Unreplicated() bool { return true }

// appended reads one append's answer, learning Redis's clock from it.
func (s *Stream) appended(key string, cmd *redis.Cmd, received time.Time) error {
	vals, err := cmd.Slice()
	if err == nil && len(vals) == 2 {
		id, _ := vals[0].(string)
		if now, ok := vals[1].(int64); ok {
			s.learnClock(now, received)
		}
		if id == "" {
			return fullError{key: key}
		}
		return nil
	}
	if err == nil {
		err = fmt.Errorf("unexpected answer %v", vals)
	}
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		// Redis is away: refuse appends for a moment rather than make each request wait.
		s.downUntil.Store(time.Now().Add(time.Second).UnixNano())
	}
	return fmt.Errorf("appending to %s: %w", key, err)
}

// appendGrace is the share of the append timeout left for an answer to travel back after the
// append's deadline on Redis's clock.
const appendGrace = 4

// appendDeadline is the deadline, on Redis's clock in milliseconds, of appends sent now: the
// timeout less its grace, moved by how far Redis's clock is at least ahead. Taking the least
// Redis can be ahead makes the deadline fall, by Redis's own clock, before this replica gives up.
func (s *Stream) appendDeadline(ctx context.Context) (int64, error) {
	if !s.clockKnown.Load() {
		if err := s.syncClock(ctx); err != nil {
			return 0, err
		}
	}
	budget := s.opts.Timeout - s.opts.Timeout/appendGrace
	return time.Now().Add(budget).UnixMilli() + s.redisAhead.Load(), nil
}

// syncClock asks Redis for its time.
func (s *Stream) syncClock(ctx context.Context) error {
	t, err := s.client.Time(ctx).Result()
	if err != nil {
		return fmt.Errorf("reading Redis's clock: %w", err)
	}
	s.learnClock(t.UnixMilli(), time.Now())
	return nil
}

// learnClock takes Redis's time now (milliseconds) from an answer received at received. Redis read
// its clock before the answer arrived, so the difference is the least Redis is ahead.
func (s *Stream) learnClock(now int64, received time.Time) {
	s.redisAhead.Store(now - received.UnixMilli())
	s.clockKnown.Store(true)
}

// consumeLoop reads new entries for this replica while there is room to process them.
func (s *Stream) consumeLoop(ctx context.Context, h Handler, sources Sources) {
	for ctx.Err() == nil {
		// Taken before the list, so that a change after the list is not missed.
		changed := sources.SourcesChanged()
		keys := s.keys(sources)
		if len(keys) == 0 {
			// No webhook is served: nothing to read until one is. Waiting, not asking again
			// every few milliseconds, is what keeps an idle replica idle.
			wait(ctx, changed)
			continue
		}
		free := cap(s.slots) - len(s.slots)
		if free == 0 {
			wait(ctx, s.freed)
			continue
		}
		err := s.ensureGroups(ctx, keys)
		if ctx.Err() == nil {
			s.outages.Report("creating the webhook queue's consumer groups", err)
		}
		if err != nil {
			sleep(ctx, time.Second)
			continue
		}
		streams := append(slices.Clone(keys), slices.Repeat([]string{">"}, len(keys))...)
		res, err := s.client.XReadGroup(ctx, &redis.XReadGroupArgs{
			Group: group, Consumer: s.opts.Consumer, Streams: streams,
			Count: int64(min(free, 128)), Block: s.opts.Block,
		}).Result()
		switch {
		case errors.Is(err, redis.Nil):
			s.outages.Report("reading the webhook queue", nil) // nothing new is an answer too
			continue
		case err != nil:
			if strings.HasPrefix(err.Error(), "NOGROUP") {
				// Redis lost the groups (restarted without persistence): create them again.
				s.groups.Clear()
			}
			if ctx.Err() == nil {
				s.outages.Report("reading the webhook queue", err)
				sleep(ctx, time.Second)
			}
			continue
		}
		s.outages.Report("reading the webhook queue", nil)
		for _, st := range res {
			for _, msg := range st.Messages {
				s.dispatch(ctx, h, st.Stream, msg, false)
			}
		}
	}
}

// claimLoop takes over entries that another replica (or this one, after a failed write) left
// unfinished for ClaimIdle.
func (s *Stream) claimLoop(ctx context.Context, h Handler, sources Sources) {
	// Every second at most, so that what a stopping replica hands back is taken over at once.
	t := time.NewTicker(min(max(s.opts.ClaimIdle/2, 100*time.Millisecond), time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, key := range s.keys(sources) {
			s.claim(ctx, h, key)
		}
	}
}

func (s *Stream) claim(ctx context.Context, h Handler, key string) {
	start := "0-0"
	for range 16 {
		free := cap(s.slots) - len(s.slots)
		if free == 0 {
			return
		}
		msgs, next, err := s.client.XAutoClaim(ctx, &redis.XAutoClaimArgs{
			Stream: key, Group: group, Consumer: s.opts.Consumer,
			MinIdle: s.opts.ClaimIdle, Start: start, Count: int64(min(free, 128)),
		}).Result()
		if err != nil {
			return
		}
		for _, msg := range msgs {
			if _, busy := s.inflight.Load(key + "\x00" + msg.ID); busy {
				continue
			}
			s.metrics.WebhookQueueClaimed.WithLabelValues(s.source(key)).Inc()
			s.dispatch(ctx, h, key, msg, true)
		}
		if next == "0-0" || next == "" {
			return
		}
		start = next
	}
}

// entry tracks the findings of one queue entry until each has its outcome.
type entry struct {
	s               *Stream
	key, id, source string
	left            atomic.Int64
	retry, rejected atomic.Bool
}

// done is each finding's Done: the entry is finished when the last one reports.
func (e *entry) done(o pipeline.Outcome, err error) {
	if o == pipeline.OutcomeFailed {
		if pipeline.Permanent(err) {
			e.rejected.Store(true)
		} else {
			e.retry.Store(true)
		}
	}
	if e.left.Add(-1) == 0 {
		e.s.finish(e)
	}
}

// dispatch hands an entry's findings to h. It blocks while this replica processes MaxInFlight
// entries already.
func (s *Stream) dispatch(ctx context.Context, h Handler, key string, msg redis.XMessage, redelivered bool) {
	id := key + "\x00" + msg.ID
	if _, busy := s.inflight.LoadOrStore(id, struct{}{}); busy {
		return
	}
	s.read.Store(key, struct{}{})
	select {
	case s.slots <- struct{}{}:
	case <-ctx.Done():
		s.inflight.Delete(id)
		return
	}
	e := &entry{s: s, key: key, id: msg.ID, source: s.source(key)}
	payload, _ := msg.Values["f"].(string)
	var findings []*pipeline.Event
	if err := json.Unmarshal([]byte(payload), &findings); err != nil || len(findings) == 0 {
		// Nothing in it can ever be processed; keeping it would only block the queue's trim.
		s.log.Error("dropping an undecodable webhook queue entry", "stream", key, "id", msg.ID, "error", err)
		s.acks <- ack{key: key, id: msg.ID, source: e.source, result: "undecodable"}
		return
	}
	e.left.Store(int64(len(findings)))
	for _, f := range findings {
		f.Source = e.source
		f.Redelivered = redelivered
		f.Done = e.done
		if err := h.Handle(ctx, f); err != nil {
			e.done(pipeline.OutcomeFailed, err)
		}
	}
}

// finish acknowledges an entry whose findings are safe, or leaves it pending to be claimed again.
func (s *Stream) finish(e *entry) {
	if e.retry.Load() {
		s.inflight.Delete(e.key + "\x00" + e.id)
		s.release()
		return
	}
	result := "done"
	if e.rejected.Load() {
		result = "rejected"
	}
	s.acks <- ack{key: e.key, id: e.id, source: e.source, result: result}
}

// ackLoop acknowledges finished entries in batches.
func (s *Stream) ackLoop(ctx context.Context) {
	batches(ctx, s.acks, 256, func(batch []ack) { s.ackAll(ctx, batch) })
}

func (s *Stream) ackAll(ctx context.Context, batch []ack) {
	byKey := map[string][]string{}
	for _, a := range batch {
		byKey[a.key] = append(byKey[a.key], a.id)
	}
	actx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	pipe := s.client.Pipeline()
	for key, ids := range byKey {
		pipe.XAck(actx, key, group, ids...)
	}
	// Unacknowledged entries are left pending: claimed again later, and written at most once
	// thanks to their names.
	if _, err := pipe.Exec(actx); ctx.Err() == nil {
		s.outages.Report("acknowledging webhook queue entries", err)
	}
	cancel()
	for _, a := range batch {
		s.metrics.WebhookQueueProcessed.WithLabelValues(a.source, a.result).Inc()
		s.inflight.Delete(a.key + "\x00" + a.id)
		s.release()
	}
}

func (s *Stream) keys(sources Sources) []string {
	srcs := sources.Sources()
	keys := make([]string, len(srcs))
	for i, src := range srcs {
		keys[i] = s.Key(src)
	}
	slices.Sort(keys)
	return keys
}

func (s *Stream) source(key string) string { return strings.TrimPrefix(key, s.prefix) }

// ensureGroups creates the consumer group of each stream that does not have it, reading from the
// stream's start so that entries appended before the group existed are processed too.
func (s *Stream) ensureGroups(ctx context.Context, keys []string) error {
	for _, key := range keys {
		if _, ok := s.groups.Load(key); ok {
			continue
		}
		err := s.client.XGroupCreateMkStream(ctx, key, group, "0").Err()
		if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
			return fmt.Errorf("creating consumer group of %s: %w", key, err)
		}
		s.groups.Store(key, struct{}{})
	}
	return nil
}

// statsLoop sets each stream's depth and lag gauges, on every replica.
func (s *Stream) statsLoop(ctx context.Context, sources Sources) {
	s.every(ctx, sources, "measuring the webhook queue", func(ctx context.Context, key string) error {
		_, err := s.measure(ctx, key)
		return err
	})
}

// Maintain trims what every replica has finished with, removes and counts entries past the age
// bound, and forgets long-gone consumers, every StatsInterval until ctx ends. Only the leader runs
// it (with ctx its leadership's): run by every replica, lost entries were counted once per replica.
func (s *Stream) Maintain(ctx context.Context, sources Sources) {
	s.every(ctx, sources, "maintaining the webhook queue", s.maintain)
}

// every runs fn on each stream every StatsInterval until ctx ends.
func (s *Stream) every(ctx context.Context, sources Sources, what string, fn func(context.Context, string) error) {
	t := time.NewTicker(s.opts.StatsInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, key := range s.keys(sources) {
			if err := fn(ctx, key); ctx.Err() == nil {
				s.outages.Report(what, err, "stream", key)
			}
		}
	}
}

// measure sets the depth and lag gauges of one stream and returns its consumer group's state
// (nil while the group does not exist).
func (s *Stream) measure(ctx context.Context, key string) (*redis.XInfoGroup, error) {
	src := s.source(key)
	groups, err := s.client.XInfoGroups(ctx, key).Result()
	if err != nil {
		return nil, fmt.Errorf("reading groups: %w", err)
	}
	i := slices.IndexFunc(groups, func(g redis.XInfoGroup) bool { return g.Name == group })
	if i < 0 {
		return nil, nil
	}
	g := groups[i]
	lag := g.Lag
	if lag < 0 {
		// Redis cannot tell after some deletions; the unacknowledged remainder is a close bound.
		n, err := s.client.XLen(ctx, key).Result()
		if err != nil {
			return nil, fmt.Errorf("reading length: %w", err)
		}
		lag = max(0, n-g.Pending)
	}
	s.metrics.WebhookStreamLag.WithLabelValues(src).Set(float64(lag))
	s.metrics.WebhookQueueDepth.WithLabelValues(src).Set(float64(lag + g.Pending))
	return &g, nil
}

// maintain measures one stream, trims the entries every replica has acknowledged, removes (and
// counts) entries past the age bound, and forgets idle consumers.
func (s *Stream) maintain(ctx context.Context, key string) error {
	g, err := s.measure(ctx, key)
	if err != nil || g == nil {
		return err
	}
	safe := g.LastDeliveredID
	if g.Pending > 0 {
		p, err := s.client.XPending(ctx, key, group).Result()
		if err != nil {
			return fmt.Errorf("reading pending entries: %w", err)
		}
		safe = p.Lower
	}
	if err := s.client.XTrimMinID(ctx, key, safe).Err(); err != nil {
		return fmt.Errorf("trimming processed entries: %w", err)
	}
	if err := s.expire(ctx, key, *g, safe); err != nil {
		return err
	}
	return s.forgetConsumers(ctx, key)
}

// expire removes entries older than MaxAge that are still unprocessed, counting them as lost: a
// queue that cannot drain (the API server refuses every write, say) must not grow without bound.
func (s *Stream) expire(ctx context.Context, key string, g redis.XInfoGroup, safe string) error {
	cutoffMs := time.Now().Add(-s.opts.MaxAge).UnixMilli()
	if idMillis(safe) >= cutoffMs {
		return nil
	}
	cutoff := strconv.FormatInt(cutoffMs, 10) + "-0"
	pending, err := s.client.XPendingExt(ctx, &redis.XPendingExtArgs{
		Stream: key, Group: group, Start: "-", End: "(" + cutoff, Count: s.opts.MaxLen,
	}).Result()
	if err != nil {
		return fmt.Errorf("reading expired pending entries: %w", err)
	}
	undelivered := int64(0)
	if idMillis(g.LastDeliveredID) < cutoffMs {
		// Counted inside Redis: the entries themselves (up to a MiB each) never cross the wire.
		undelivered, err = s.client.Eval(ctx, countRangeScript, []string{key}, "("+g.LastDeliveredID, "("+cutoff).Int64()
		if err != nil {
			return fmt.Errorf("counting expired undelivered entries: %w", err)
		}
	}
	ids := make([]string, len(pending))
	for i, p := range pending {
		ids[i] = p.ID
	}
	if len(ids) > 0 {
		if err := s.client.XAck(ctx, key, group, ids...).Err(); err != nil {
			return fmt.Errorf("dropping expired pending entries: %w", err)
		}
	}
	if err := s.client.XTrimMinID(ctx, key, cutoff).Err(); err != nil {
		return fmt.Errorf("trimming expired entries: %w", err)
	}
	lost := int64(len(ids)) + undelivered
	if lost > 0 {
		s.metrics.WebhookQueueLost.WithLabelValues(s.source(key)).Add(float64(lost))
		s.log.Error("webhook queue entries expired unprocessed", "stream", key, "entries", lost, "maxAge", s.opts.MaxAge)
	}
	return nil
}

// countRangeScript counts the entries of a stream between two IDs (exclusive forms allowed), a
// thousand at a time, and returns only the count.
const countRangeScript = `local n, start = 0, ARGV[1]
while true do
  local page = redis.call('XRANGE', KEYS[1], start, ARGV[2], 'COUNT', 1000)
  n = n + #page
  if #page < 1000 then return n end
  start = '(' .. page[#page][1]
end`

// forgetConsumers deletes consumers of replicas long gone that hold nothing.
func (s *Stream) forgetConsumers(ctx context.Context, key string) error {
	cs, err := s.client.XInfoConsumers(ctx, key, group).Result()
	if err != nil {
		return fmt.Errorf("reading consumers: %w", err)
	}
	idle := max(10*s.opts.ClaimIdle, 5*time.Minute)
	for _, c := range cs {
		if c.Name != s.opts.Consumer && c.Pending == 0 && c.Idle > idle {
			if err := s.client.XGroupDelConsumer(ctx, key, group, c.Name).Err(); err != nil {
				return fmt.Errorf("deleting consumer %s: %w", c.Name, err)
			}
		}
	}
	return nil
}

// idMillis is the time part of a stream entry ID.
func idMillis(id string) int64 {
	ms, _, _ := strings.Cut(id, "-")
	n, _ := strconv.ParseInt(ms, 10, 64)
	return n
}

// wait returns once c is ready or ctx has ended.
func wait(ctx context.Context, c <-chan struct{}) {
	select {
	case <-ctx.Done():
	case <-c:
	}
}

// release frees an entry's slot and wakes the reader if it waits for one.
func (s *Stream) release() {
	<-s.slots
	select {
	case s.freed <- struct{}{}:
	default: // it is told already
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
