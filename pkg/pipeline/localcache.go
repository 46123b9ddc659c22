package pipeline

import (
	"sync"
	"sync/atomic"
)

// LocalCache is the bounded, in-process tier of dedup state: a least-recently-used set of 64-bit
// keys, each with an expiry and a count. It allocates nothing per operation once warm (entries live
// in a slice and are linked by index), and is split into shards so concurrent sources rarely meet
// on one lock.
type LocalCache struct {
	shards    [cacheShards]cacheShard
	requested atomic.Int64 // the capacity asked for; shards hold it rounded up to a multiple of 16
}

const cacheShards = 16

type cacheEntry struct {
	key     uint64
	expires int64 // unix nanoseconds
	count   int64
	prev    int32
	next    int32
}

type cacheShard struct {
	mu       sync.Mutex
	idx      map[uint64]int32
	ents     []cacheEntry
	head     int32 // most recently used, or -1
	tail     int32 // least recently used, or -1
	freeHead int32 // first unused slot, linked through next, or -1
	capacity int
}

// NewLocalCache returns a cache holding at most capacity keys (at least one per shard).
func NewLocalCache(capacity int) *LocalCache {
	c := &LocalCache{}
	for i := range c.shards {
		s := &c.shards[i]
		s.idx = make(map[uint64]int32)
		s.head, s.tail, s.freeHead = -1, -1, -1
	}
	c.SetCapacity(capacity)
	return c
}

// shard picks by the key's top bits: keys are hashes, so they spread evenly.
func (c *LocalCache) shard(key uint64) *cacheShard {
	return &c.shards[key>>60]
}

// SetCapacity changes how many keys the cache holds, evicting the least recently used keys when it
// shrinks. It is safe while the cache is in use.
func (c *LocalCache) SetCapacity(capacity int) {
	c.requested.Store(int64(capacity))
	per := max((capacity+cacheShards-1)/cacheShards, 1)
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		s.capacity = per
		for len(s.idx) > per {
			s.remove(s.tail)
		}
		s.mu.Unlock()
	}
}

// Capacity is the number of keys the cache was asked to hold (it may hold up to 15 more).
func (c *LocalCache) Capacity() int { return int(c.requested.Load()) }

// Len is the number of keys held, expired ones included until they are evicted.
func (c *LocalCache) Len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n += len(s.idx)
		s.mu.Unlock()
	}
	return n
}

// Peek returns the count of key if it is held and not expired at now.
func (c *LocalCache) Peek(key uint64, now int64) (int64, bool) {
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.live(key, now)
	if !ok {
		return 0, false
	}
	s.touch(i)
	return s.ents[i].count, true
}

// Claim records key until expires unless it is already held; true means it was not.
func (c *LocalCache) Claim(key uint64, now, expires int64) bool {
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if i, ok := s.live(key, now); ok {
		s.touch(i)
		return false
	}
	s.set(key, expires, 1)
	return true
}

// Incr counts one more occurrence of key in a window that starts at its first occurrence and ends
// at expires, and returns the count.
func (c *LocalCache) Incr(key uint64, now, expires int64) int64 {
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if i, ok := s.live(key, now); ok {
		s.touch(i)
		s.ents[i].count++
		return s.ents[i].count
	}
	s.set(key, expires, 1)
	return 1
}

// Put records key with a count and expiry learned elsewhere (from the shared tier).
func (c *LocalCache) Put(key uint64, expires, count int64) {
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.set(key, expires, count)
}

// Delete forgets key.
func (c *LocalCache) Delete(key uint64) {
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if i, ok := s.idx[key]; ok {
		s.remove(i)
	}
}

// Decr takes one occurrence of key back, forgetting it at zero.
func (c *LocalCache) Decr(key uint64) {
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if i, ok := s.idx[key]; ok {
		if s.ents[i].count--; s.ents[i].count <= 0 {
			s.remove(i)
		}
	}
}

// live returns the slot of key if it is held and unexpired; an expired key is dropped.
func (s *cacheShard) live(key uint64, now int64) (int32, bool) {
	i, ok := s.idx[key]
	if !ok {
		return 0, false
	}
	if s.ents[i].expires <= now {
		s.remove(i)
		return 0, false
	}
	return i, true
}

// set inserts or overwrites key and makes it the most recently used.
func (s *cacheShard) set(key uint64, expires, count int64) {
	if i, ok := s.idx[key]; ok {
		s.ents[i].expires, s.ents[i].count = expires, count
		s.touch(i)
		return
	}
	if len(s.idx) >= s.capacity {
		s.remove(s.tail)
	}
	var i int32
	if s.freeHead >= 0 {
		i = s.freeHead
		s.freeHead = s.ents[i].next
	} else {
		s.ents = append(s.ents, cacheEntry{})
		i = int32(len(s.ents) - 1)
	}
	s.ents[i] = cacheEntry{key: key, expires: expires, count: count, prev: -1, next: s.head}
	if s.head >= 0 {
		s.ents[s.head].prev = i
	}
	s.head = i
	if s.tail < 0 {
		s.tail = i
	}
	s.idx[key] = i
}

func (s *cacheShard) touch(i int32) {
	if s.head == i {
		return
	}
	s.unlink(i)
	s.ents[i].prev, s.ents[i].next = -1, s.head
	if s.head >= 0 {
		s.ents[s.head].prev = i
	}
	s.head = i
	if s.tail < 0 {
		s.tail = i
	}
}

func (s *cacheShard) unlink(i int32) {
	e := &s.ents[i]
	if e.prev >= 0 {
		s.ents[e.prev].next = e.next
	} else {
		s.head = e.next
	}
	if e.next >= 0 {
		s.ents[e.next].prev = e.prev
	} else {
		s.tail = e.prev
	}
}

func (s *cacheShard) remove(i int32) {
	if i < 0 {
		return
	}
	s.unlink(i)
	delete(s.idx, s.ents[i].key)
	s.ents[i] = cacheEntry{next: s.freeHead}
	s.freeHead = i
}
