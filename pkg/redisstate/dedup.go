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
)

// ErrClosed is returned by a DedupStore after Close.
var ErrClosed = errors.New("redis dedup store closed")

// DedupStore is the shared tier of dedup state (pipeline.Store). Concurrent requests are gathered
// into pipelined batches: under load one round trip carries many decisions, and a lone request
// goes out at once, without waiting for company.
type DedupStore struct {
	client  redis.UniversalClient
	prefix  string
	timeout time.Duration
	reqs    chan *request
	pool    sync.Pool
	stop    chan struct{}
	wg      sync.WaitGroup
	closeMu sync.Once
}

// Options tunes a DedupStore.
type Options struct {
	// Release names the installation; keys are zw:<release>:d:<key>.
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
	op   op
	key  uint64
	ttl  time.Duration
	done chan result
}

type result struct {
	ok  bool
	n   int64
	err error
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

// Claim implements pipeline.Store with SET key 1 NX PX ttl.
func (s *DedupStore) Claim(ctx context.Context, key uint64, ttl time.Duration) (bool, error) {
	r, err := s.do(ctx, opClaim, key, ttl)
	return r.ok, err
}

// Incr implements pipeline.Store with INCR and PEXPIRE NX, so the window starts at the first one.
func (s *DedupStore) Incr(ctx context.Context, key uint64, window time.Duration) (int64, error) {
	r, err := s.do(ctx, opIncr, key, window)
	return r.n, err
}

// Release implements pipeline.Store: DEL for a claim, DECR for a count.
func (s *DedupStore) Release(ctx context.Context, key uint64, counted bool) error {
	o := opReleaseClaim
	if counted {
		o = opReleaseCount
	}
	_, err := s.do(ctx, o, key, 0)
	return err
}

func (s *DedupStore) do(ctx context.Context, o op, key uint64, ttl time.Duration) (result, error) {
	r, _ := s.pool.Get().(*request)
	if r == nil {
		r = &request{done: make(chan result, 1)}
	}
	r.op, r.key, r.ttl = o, key, ttl
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

// send runs one batch as a pipeline and answers every request in it.
func (s *DedupStore) send(batch []*request) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	pipe := s.client.Pipeline()
	cmds := make([]redis.Cmder, len(batch))
	for i, r := range batch {
		k := s.key(r.key)
		switch r.op {
		case opClaim:
			cmds[i] = pipe.SetNX(ctx, k, 1, r.ttl)
		case opIncr:
			cmds[i] = pipe.Incr(ctx, k)
			pipe.Do(ctx, "pexpire", k, r.ttl.Milliseconds(), "NX")
		case opReleaseClaim:
			cmds[i] = pipe.Del(ctx, k)
		case opReleaseCount:
			cmds[i] = pipe.Decr(ctx, k)
		}
	}
	_, err := pipe.Exec(ctx)
	for i, r := range batch {
		res := result{}
		if cerr := cmds[i].Err(); cerr != nil {
			res.err = fmt.Errorf("redis %s: %w", cmds[i].Name(), cerr)
		} else if err != nil && !errors.Is(err, redis.Nil) {
			res.err = fmt.Errorf("redis pipeline: %w", err)
		}
		switch c := cmds[i].(type) {
		case *redis.BoolCmd:
			res.ok = c.Val()
		case *redis.IntCmd:
			res.n = c.Val()
		}
		r.done <- res
	}
}

func (s *DedupStore) key(k uint64) string {
	var buf [64]byte
	b := append(buf[:0], s.prefix...)
	return string(strconv.AppendUint(b, k, 16))
}
