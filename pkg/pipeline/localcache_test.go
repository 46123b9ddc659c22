package pipeline

import (
	"testing"
)

// keyInShard returns distinct keys that all land in shard 0, to exercise one shard's LRU.
func keyInShard(i int) uint64 { return uint64(i) + 1 }

func TestLocalCache(t *testing.T) {
	const sec = int64(1e9)
	cases := []struct {
		name string
		run  func(t *testing.T, c *LocalCache)
	}{
		{"claim is new once", func(t *testing.T, c *LocalCache) {
			if !c.Claim(1, 0, 10*sec) || c.Claim(1, 5*sec, 15*sec) {
				t.Error("second claim within the window was new")
			}
		}},
		{"claim expires", func(t *testing.T, c *LocalCache) {
			c.Claim(1, 0, 10*sec)
			if !c.Claim(1, 10*sec, 20*sec) {
				t.Error("claim after expiry was not new")
			}
		}},
		{"incr counts within the window and restarts after it", func(t *testing.T, c *LocalCache) {
			for want := int64(1); want <= 3; want++ {
				if n := c.Incr(7, want, 10*sec); n != want {
					t.Fatalf("count %d, want %d", n, want)
				}
			}
			if n := c.Incr(7, 11*sec, 21*sec); n != 1 {
				t.Errorf("count after window %d, want 1", n)
			}
		}},
		{"least recently used is evicted", func(t *testing.T, c *LocalCache) {
			// capacity 32 over 16 shards: 2 per shard. Keys 1..3 share shard 0.
			c.Claim(keyInShard(0), 0, 100*sec)
			c.Claim(keyInShard(1), 0, 100*sec)
			c.Peek(keyInShard(0), 1) // 0 is now more recent than 1
			c.Claim(keyInShard(2), 0, 100*sec)
			if _, ok := c.Peek(keyInShard(1), 2); ok {
				t.Error("least recently used key survived")
			}
			if _, ok := c.Peek(keyInShard(0), 2); !ok {
				t.Error("recently used key was evicted")
			}
		}},
		{"delete and decr", func(t *testing.T, c *LocalCache) {
			c.Claim(1, 0, 10*sec)
			c.Delete(1)
			if !c.Claim(1, 1, 10*sec) {
				t.Error("deleted key still held")
			}
			c.Incr(2, 0, 10*sec)
			c.Incr(2, 0, 10*sec)
			c.Decr(2)
			if n, _ := c.Peek(2, 1); n != 1 {
				t.Errorf("count after decr %d, want 1", n)
			}
			c.Decr(2)
			if _, ok := c.Peek(2, 1); ok {
				t.Error("key at zero still held")
			}
		}},
		{"shrinking evicts down to the new capacity", func(t *testing.T, c *LocalCache) {
			for i := range 1000 {
				c.Claim(mix(uint64(i)), 0, 100*sec)
			}
			if c.Len() > 32 {
				t.Fatalf("len %d over capacity 32", c.Len())
			}
			c.SetCapacity(16)
			if c.Len() > 16 || c.Capacity() != 16 {
				t.Errorf("len %d capacity %d after shrink to 16", c.Len(), c.Capacity())
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, NewLocalCache(32)) })
	}
}
