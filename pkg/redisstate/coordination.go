package redisstate

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/pipeline"
)

// Coordination is the state replicas share to act as one: each replica's pipeline statistics, the
// processing order the leader chose per source, and the dedup window and cache size of HA
// optimization. Every key expires, so a release that goes away leaves nothing behind.
type Coordination struct {
	client redis.UniversalClient
	prefix string
	stats  string
	now    func() time.Time
}

// NewCoordination returns the shared state of release.
func NewCoordination(client redis.UniversalClient, release string) *Coordination {
	// Every replica's statistics are fields of one hash, under a hash tag: one HGETALL reads them
	// all, also on a Redis Cluster, where a SCAN sees only the keys of the node it happens to ask.
	// The leader's term and what it writes share the tag too, so one script checks and writes.
	prefix := "zw:{" + release + "}:"
	return &Coordination{client: client, prefix: prefix, stats: prefix + "stats", now: time.Now}
}

// statsTTL outlives a few publishing rounds; a replica that stops publishing drops out.
const statsTTL = 30 * time.Second

// published is one replica's field of the statistics hash.
type published struct {
	AtMs    int64                          `json:"at"`
	Sources map[string]pipeline.OrderStats `json:"sources"`
}

// PublishStats stores one replica's cumulative statistics per source, stamped with when.
func (c *Coordination) PublishStats(ctx context.Context, member string, stats map[string]pipeline.OrderStats) error {
	if len(stats) == 0 {
		return nil
	}
	b, err := json.Marshal(published{AtMs: c.now().UnixMilli(), Sources: stats})
	if err != nil {
		return err
	}
	pipe := c.client.TxPipeline()
	pipe.HSet(ctx, c.stats, member, b)
	pipe.PExpire(ctx, c.stats, statsTTL)
	_, err = pipe.Exec(ctx)
	return err
}

// AllStats returns every live replica's statistics: member → source → statistics, and removes the
// fields of replicas that stopped publishing. Only the leader reads them all, so pruning here
// costs one read a round instead of one per replica and publish.
func (c *Coordination) AllStats(ctx context.Context) (map[string]map[string]pipeline.OrderStats, error) {
	live, stale, err := c.read(ctx)
	if err != nil || len(stale) == 0 {
		return live, err
	}
	// A replica that resumes between the read and the removal loses one round's figures; it
	// publishes again at its next tick.
	if err := c.client.HDel(ctx, c.stats, stale...).Err(); err != nil {
		return nil, fmt.Errorf("removing the statistics of stopped replicas %v: %w", stale, err)
	}
	return live, nil
}

// read splits the statistics hash into the live replicas' statistics and the stale members.
func (c *Coordination) read(ctx context.Context) (map[string]map[string]pipeline.OrderStats, []string, error) {
	vals, err := c.client.HGetAll(ctx, c.stats).Result()
	if err != nil {
		return nil, nil, err
	}
	cutoff := c.now().Add(-statsTTL).UnixMilli()
	out := map[string]map[string]pipeline.OrderStats{}
	var stale []string
	for member, v := range vals {
		var p published
		if err := json.Unmarshal([]byte(v), &p); err != nil {
			return nil, nil, fmt.Errorf("statistics of %s: %w", member, err)
		}
		if p.AtMs < cutoff {
			stale = append(stale, member)
			continue
		}
		out[member] = p.Sources
	}
	return out, stale, nil
}

// termTTL is how long the leader term outlives the last fenced write. A release with no leader
// writing for that long begins again at term 1, which no earlier command can hold any more.
const termTTL = 24 * time.Hour

// beginTermScript hands out the next term and names its leader.
var beginTermScript = redis.NewScript(`
local n = redis.call('HINCRBY', KEYS[1], 'n', 1)
redis.call('HSET', KEYS[1], 'leader', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return n`)

// fencedWriteScript sets fields of a hash only under the newest term: KEYS[1] is the term, KEYS[2]
// the hash; ARGV is the term, the hash's time to live in milliseconds, then fields and values.
// Every key of a release shares one hash tag, so the script runs on a Redis Cluster too.
var fencedWriteScript = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], 'n')
if not cur then return -1 end
if cur ~= ARGV[1] then return tonumber(cur) end
redis.call('HSET', KEYS[2], unpack(ARGV, 3))
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ` + strconv.FormatInt(termTTL.Milliseconds(), 10) + `)
return 0`)

// fencedError is a write refused for its term; the coordinator recognizes it by its Fenced method.
type fencedError struct {
	term, current int64 // current is -1 when the state holds no term
}

func (e fencedError) Error() string {
	if e.current < 0 {
		return fmt.Sprintf("shared state holds no leader term (term %d refused)", e.term)
	}
	return fmt.Sprintf("leader term %d refused: term %d holds the shared state", e.term, e.current)
}

// Fenced marks the refusal.
func (fencedError) Fenced() bool { return true }

// BeginTerm hands out a leader term greater than any before it; the writes of every earlier term
// are refused from now on.
func (c *Coordination) BeginTerm(ctx context.Context, leader string) (int64, error) {
	n, err := beginTermScript.Run(ctx, c.client, []string{c.prefix + "term"}, leader, termTTL.Milliseconds()).Int64()
	if err != nil {
		return 0, fmt.Errorf("beginning a leader term: %w", err)
	}
	return n, nil
}

// Term returns the newest leader term and its leader (0 and "" when there is none).
func (c *Coordination) Term(ctx context.Context) (int64, string, error) {
	vals, err := c.client.HMGet(ctx, c.prefix+"term", "n", "leader").Result()
	if err != nil || vals[0] == nil {
		return 0, "", err
	}
	n, err := strconv.ParseInt(fmt.Sprint(vals[0]), 10, 64)
	if err != nil {
		return 0, "", fmt.Errorf("malformed leader term %v", vals[0])
	}
	leader, _ := vals[1].(string)
	return n, leader, nil
}

// fencedWrite sets fields of key under term.
func (c *Coordination) fencedWrite(ctx context.Context, term int64, key string, ttl time.Duration, fields ...any) error {
	args := append([]any{term, ttl.Milliseconds()}, fields...)
	cur, err := fencedWriteScript.Run(ctx, c.client, []string{c.prefix + "term", key}, args...).Int64()
	switch {
	case err != nil:
		return err
	case cur != 0:
		return fencedError{term: term, current: cur}
	}
	return nil
}

// PublishOrders stores the order in force per source, under the leader's term.
func (c *Coordination) PublishOrders(ctx context.Context, term int64, orders map[string]v1alpha1.Order) error {
	if len(orders) == 0 {
		return nil
	}
	fields := make([]any, 0, 2*len(orders))
	for src, o := range orders {
		fields = append(fields, src, string(o))
	}
	if err := c.fencedWrite(ctx, term, c.prefix+"order", 24*time.Hour, fields...); err != nil {
		return fmt.Errorf("publishing orders: %w", err)
	}
	return nil
}

// Orders returns the orders the leader published.
func (c *Coordination) Orders(ctx context.Context) (map[string]v1alpha1.Order, error) {
	vals, err := c.client.HGetAll(ctx, c.prefix+"order").Result()
	if err != nil {
		return nil, err
	}
	out := make(map[string]v1alpha1.Order, len(vals))
	for src, v := range vals {
		out[src] = v1alpha1.Order(v)
	}
	return out, nil
}

// PublishTuning stores the dedup window and local cache size that HA optimization chose, under
// the leader's term.
func (c *Coordination) PublishTuning(ctx context.Context, term int64, window time.Duration, cacheSize int) error {
	if err := c.fencedWrite(ctx, term, c.prefix+"ha", 10*time.Minute, "windowMs", window.Milliseconds(), "cacheSize", cacheSize); err != nil {
		return fmt.Errorf("publishing tuning: %w", err)
	}
	return nil
}

// Tuning returns what HA optimization published; ok is false when nothing is in force.
func (c *Coordination) Tuning(ctx context.Context) (window time.Duration, cacheSize int, ok bool, err error) {
	vals, err := c.client.HGetAll(ctx, c.prefix+"ha").Result()
	if err != nil || len(vals) == 0 {
		return 0, 0, false, err
	}
	ms, err1 := strconv.ParseInt(vals["windowMs"], 10, 64)
	n, err2 := strconv.Atoi(vals["cacheSize"])
	if err1 != nil || err2 != nil {
		return 0, 0, false, fmt.Errorf("malformed tuning %v", vals)
	}
	return time.Duration(ms) * time.Millisecond, n, true, nil
}
