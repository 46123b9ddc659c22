// Package redisstate keeps the state zen-watcher replicas share in Redis. Every key it writes has
// the prefix zw:<release>: and a TTL, so several releases can share one Redis and its memory stays
// bounded.
package redisstate

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/kube-zen/zen-watcher/pkg/pipeline"
)

// ErrClosed is returned by a DedupStore after Close.
var ErrClosed = errors.New("redis dedup store closed")

// DedupStore is the shared tier of dedup state (pipeline.Store). Concurrent requests are gathered
// into pipelined batches: under load one round trip carries many decisions, and a lone request
// goes out at once, without waiting for company.
type DedupStore struct {
	client  redis.UniversalClient
	prefix  string // of claims: zw:<release>:d:<key>
	counts  string // of counts: zw:<release>:c:<key>
	timeout time.Duration
	reqs    chan *request
	pool    sync.Pool
	stop    chan struct{}
	wg      sync.WaitGroup
	closeMu sync.Once
}

// Options tunes a DedupStore.
type Options struct {
	// Release names the installation; claims are zw:<release>:d:<key>, counts zw:<release>:c:<key>.
	Release string
	// Workers is the number of batches in flight at once (default 4).
	Workers int
	// MaxBatch bounds the requests in one round trip (default 256).
	MaxBatch int
	// Timeout bounds one round trip (default 500 ms): past it the pipeline falls back to its local tier.
	Timeout time.Duration
}

type op uint8

const (
	opClaim op = iota
	opIncr
	opReleaseClaim
	opReleaseCount
)

type request struct {
	op    op
	key   uint64
	ttl   time.Duration
	token uint64
	done  chan result
}

type result struct {
	ok   bool
	n    int64
	hold pipeline.Hold
	err  error
}

// NewDedupStore starts the batching workers; Close stops them.
func NewDedupStore(client redis.UniversalClient, opts Options) *DedupStore {
	if opts.Workers <= 0 {
		opts.Workers = 4
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 256
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 500 * time.Millisecond
	}
	s := &DedupStore{
		client:  client,
		prefix:  "zw:" + opts.Release + ":d:",
		counts:  "zw:" + opts.Release + ":c:",
		timeout: opts.Timeout,
		reqs:    make(chan *request, opts.Workers*opts.MaxBatch),
		stop:    make(chan struct{}),
	}
	for range opts.Workers {
		s.wg.Go(func() { s.work(opts.MaxBatch) })
	}
	return s
}

// Close stops the workers; requests waiting then fail with ErrClosed.
func (s *DedupStore) Close() {
	s.closeMu.Do(func() {
		close(s.stop)
		s.wg.Wait()
	})
}

// Ping implements pipeline.Pinger: one round trip, bounded like the dedup requests are. A server
// that refuses the connection is named with its reason (ErrRefused).
func (s *DedupStore) Ping(ctx context.Context) error {
	pctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if err := s.client.Ping(pctx).Err(); err != nil {
		return fmt.Errorf("pinging Redis: %w", Explain(ctx, s.client, err))
	}
	return nil
}

// Claim implements pipeline.Store with SET key token NX PX ttl, then PTTL for the time left.
func (s *DedupStore) Claim(ctx context.Context, key uint64, ttl time.Duration, token uint64) (bool, pipeline.Hold, error) {
	r, err := s.do(ctx, opClaim, key, ttl, token)
	return r.ok, r.hold, err
}

// incrScript counts an occurrence and starts its window at the first one, in one atomic step: the
// expiry and the window's token are set only when the count is new, so later occurrences neither
// push the window out nor rename it. As a script it needs no PEXPIRE NX (Redis 7) and cannot leave
// a count without an expiry. It returns the count, the milliseconds left and the window's token.
const incrScript = `local n = redis.call('HINCRBY', KEYS[1], 'n', 1)
if n == 1 then
  redis.call('HSET', KEYS[1], 't', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return {n, redis.call('PTTL', KEYS[1]), redis.call('HGET', KEYS[1], 't')}`

// releaseClaimScript deletes a claim only while it is still the caller's.
const releaseClaimScript = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`

// releaseCountScript takes one occurrence back only while the window is still the caller's.
const releaseCountScript = `if redis.call('HGET', KEYS[1], 't') == ARGV[1] then return redis.call('HINCRBY', KEYS[1], 'n', -1) end
return 0`

// Incr implements pipeline.Store with incrScript.
func (s *DedupStore) Incr(ctx context.Context, key uint64, window time.Duration, token uint64) (int64, pipeline.Hold, error) {
	r, err := s.do(ctx, opIncr, key, window, token)
	return r.n, r.hold, err
}

// Release implements pipeline.Store: a compare-and-delete of the claim, or a compare-and-decrement
// of the count, by token.
func (s *DedupStore) Release(ctx context.Context, key uint64, counted bool, token uint64) error {
	o := opReleaseClaim
	if counted {
		o = opReleaseCount
	}
	_, err := s.do(ctx, o, key, 0, token)
	return err
}

func (s *DedupStore) do(ctx context.Context, o op, key uint64, ttl time.Duration, token uint64) (result, error) {
	r, _ := s.pool.Get().(*request)
	if r == nil {
		r = &request{done: make(chan result, 1)}
	}
	r.op, r.key, r.ttl, r.token = o, key, ttl, token
	select {
	case s.reqs <- r:
	case <-ctx.Done():
		s.pool.Put(r)
		return result{}, ctx.Err()
	case <-s.stop:
		s.pool.Put(r)
		return result{}, ErrClosed
	}
	select {
	case res := <-r.done:
		s.pool.Put(r)
		return res, res.err
	case <-ctx.Done():
		// The worker still holds r and will answer into its buffered channel: r is not reused.
		return result{}, ctx.Err()
	}
}

// work sends batches until Close. A batch is whatever is queued when the worker is free, up to max.
func (s *DedupStore) work(max int) {
	batch := make([]*request, 0, max)
	for {
		batch = batch[:0]
		select {
		case r := <-s.reqs:
			batch = append(batch, r)
		case <-s.stop:
			s.drain()
			return
		}
		// Yield once so that callers already running get their requests in: a batch of many costs
		// hardly more than a batch of one, and the lone request waits no longer than that.
		runtime.Gosched()
	fill:
		for len(batch) < max {
			select {
			case r := <-s.reqs:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		s.send(batch)
	}
}

func (s *DedupStore) drain() {
	for {
		select {
		case r := <-s.reqs:
			r.done <- result{err: ErrClosed}
		default:
			return
		}
	}
}

// send runs one batch as a pipeline and answers every request in it, each by its own command's
// result: one refused command does not fail the claims that succeeded beside it. (When the
// connection fails, go-redis sets the error on every command of the batch.)
func (s *DedupStore) send(batch []*request) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	pipe := s.client.Pipeline()
	cmds := make([]redis.Cmder, len(batch))
	ttls := make([]*redis.DurationCmd, len(batch))
	for i, r := range batch {
		tok := strconv.FormatUint(r.token, 10)
		switch r.op {
		case opClaim:
			k := s.key(s.prefix, r.key)
			cmds[i] = pipe.SetNX(ctx, k, tok, r.ttl)
			ttls[i] = pipe.PTTL(ctx, k)
		case opIncr:
			cmds[i] = pipe.Eval(ctx, incrScript, []string{s.key(s.counts, r.key)}, r.ttl.Milliseconds(), tok)
		case opReleaseClaim:
			cmds[i] = pipe.Eval(ctx, releaseClaimScript, []string{s.key(s.prefix, r.key)}, tok)
		case opReleaseCount:
			cmds[i] = pipe.Eval(ctx, releaseCountScript, []string{s.key(s.counts, r.key)}, tok)
		}
	}
	_, _ = pipe.Exec(ctx) // the commands carry their own errors
	for i, r := range batch {
		res := result{}
		if err := cmds[i].Err(); err != nil {
			res.err = fmt.Errorf("redis %s: %w", cmds[i].Name(), err)
		} else {
			switch r.op {
			case opClaim:
				res.ok = cmds[i].(*redis.BoolCmd).Val()
				res.hold = claimHold(ttls[i], r)
			case opIncr:
				res.n, res.hold, res.err = countResult(cmds[i].(*redis.Cmd))
			}
		}
		r.done <- res
	}
}

// claimHold reads the time left of a claim; when PTTL failed or found no expiry, the claim's own
// ttl is the best guess.
func claimHold(c *redis.DurationCmd, r *request) pipeline.Hold {
	h := pipeline.Hold{Left: r.ttl}
	switch left, err := c.Result(); {
	case err != nil || left == -1:
	case left < 0: // -2: gone already (expired between the two commands)
		h.Left = 0
	default:
		h.Left = left
	}
	return h
}

// countResult reads incrScript's answer: {count, milliseconds left, window token}.
func countResult(c *redis.Cmd) (int64, pipeline.Hold, error) {
	vals, err := c.Slice()
	if err != nil || len(vals) != 3 {
		return 0, pipeline.Hold{}, fmt.Errorf("redis count script: unexpected answer %v: %w", c.Val(), err)
	}
	n, _ := vals[0].(int64)
	ms, _ := vals[1].(int64)
	tok, _ := vals[2].(string)
	token, err := strconv.ParseUint(tok, 10, 64)
	if err != nil {
		return 0, pipeline.Hold{}, fmt.Errorf("redis count script: window token %q: %w", tok, err)
	}
	return n, pipeline.Hold{Token: token, Left: time.Duration(max(ms, 0)) * time.Millisecond}, nil
}

func (s *DedupStore) key(prefix string, k uint64) string {
	var buf [64]byte
	b := append(buf[:0], prefix...)
	return string(strconv.AppendUint(b, k, 16))
}
