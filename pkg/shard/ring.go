// Package shard divides namespaces between zen-watcher replicas. The shard key is the namespace;
// its hash is FNV-1a 64, the hash the API server's shard selector uses, so a replica's share is a
// set of hash ranges that the API server can filter by. The 64-bit space is cut into contiguous
// partitions, and partitions are assigned to members by consistent hashing with bounded loads.
package shard

import (
	"fmt"
	"hash/fnv"
	"math/bits"
	"sort"
	"strings"

	"github.com/buraksezer/consistent"
	"github.com/cespare/xxhash/v2"
)

// Defaults of the ring. 256 partitions with a replication factor of 100 and a load bound of 1.10
// keep every member within about ±11% of the average share while a member's selector stays near 85
// ranges (about 10 KB on every LIST and WATCH).
const (
	DefaultPartitions        = 256
	DefaultReplicationFactor = 100
	DefaultLoad              = 1.10
)

// Hash is FNV-1a 64 of a namespace name, as the API server's shardRange hashes it.
func Hash(namespace string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(namespace))
	return h.Sum64()
}

// Range is a half-open range [Start, End) of the hash space; End 0 stands for 2^64.
type Range struct {
	Start, End uint64
}

// Contains reports whether h is in the range.
func (r Range) Contains(h uint64) bool {
	return h >= r.Start && (r.End == 0 || h < r.End)
}

// Ranges is a member's share: sorted, disjoint, adjacent ranges merged.
type Ranges []Range

// Contains reports whether the namespace hash h is in the share.
func (rs Ranges) Contains(h uint64) bool {
	i := sort.Search(len(rs), func(i int) bool { return rs[i].End == 0 || rs[i].End > h })
	return i < len(rs) && rs[i].Contains(h)
}

// Equal reports whether two shares are the same.
func (rs Ranges) Equal(o Ranges) bool {
	if len(rs) != len(o) {
		return false
	}
	for i := range rs {
		if rs[i] != o[i] {
			return false
		}
	}
	return true
}

// Selector is the share as the API server's shard selector. An empty share has no selector: callers
// must not list at all then.
func (rs Ranges) Selector() string {
	parts := make([]string, 0, len(rs))
	for _, r := range rs {
		end := fmt.Sprintf("0x%016x", r.End)
		if r.End == 0 {
			end = "0x10000000000000000"
		}
		parts = append(parts, fmt.Sprintf("shardRange(object.metadata.namespace, '0x%016x', '%s')", r.Start, end))
	}
	return strings.Join(parts, " || ")
}

// add appends r to rs, merged with the last range when it starts where that one ends; ranges are
// added in ascending order.
func (rs Ranges) add(r Range) Ranges {
	if n := len(rs); n > 0 && rs[n-1].End == r.Start {
		rs[n-1].End = r.End
		return rs
	}
	return append(rs, r)
}

// Whole reports whether the share is the whole hash space (a ring of one).
func (rs Ranges) Whole() bool { return len(rs) == 1 && rs[0].Start == 0 && rs[0].End == 0 }

// Hasher hashes a namespace onto the ring's space.
type Hasher func(namespace string) uint64

// Balanced is xxhash64 of the namespace. Unlike FNV-1a it spreads names that differ only in their
// last characters (team-1, team-2...), which FNV-1a keeps in one narrow range; but the API server
// cannot filter by it, so every replica lists everything and keeps its share client-side.
func Balanced(namespace string) uint64 { return xxhash.Sum64String(namespace) }

// Ring assigns partitions of the hash space to members. Every replica that builds a ring from the
// same member names gets the same assignment.
type Ring struct {
	partitions int
	owners     []string // by partition
	hash       Hasher
}

type member string

func (m member) String() string { return string(m) }

type xxHasher struct{}

func (xxHasher) Sum64(b []byte) uint64 { return xxhash.Sum64(b) }

// NewRing assigns partitions partitions among members (at least one partition, any order), on the
// FNV-1a space the API server's shard selector uses.
func NewRing(members []string, partitions int) *Ring {
	return NewRingWithHash(members, partitions, Hash)
}

// NewRingWithHash is NewRing on another hash of the namespace. With more members than
// partitions the partitions are raised to the member count: the consistent hash cannot place
// fewer partitions than members (it panics), and every replica, seeing the same members, raises
// them alike.
func NewRingWithHash(members []string, partitions int, hash Hasher) *Ring {
	if partitions <= 0 {
		partitions = DefaultPartitions
	}
	partitions = max(partitions, len(members))
	r := &Ring{partitions: partitions, owners: make([]string, partitions), hash: hash}
	if len(members) == 0 {
		return r
	}
	sorted := append([]string(nil), members...)
	sort.Strings(sorted)
	ms := make([]consistent.Member, 0, len(sorted))
	for _, m := range sorted {
		ms = append(ms, member(m))
	}
	c := consistent.New(ms, consistent.Config{
		PartitionCount: partitions, ReplicationFactor: DefaultReplicationFactor, Load: DefaultLoad, Hasher: xxHasher{},
	})
	for p := range partitions {
		r.owners[p] = c.GetPartitionOwner(p).String()
	}
	return r
}

// partitionOf is the partition whose range holds h: partition p covers [p·2^64/P, (p+1)·2^64/P).
func (r *Ring) partitionOf(h uint64) int {
	hi, _ := bits.Mul64(h, uint64(r.partitions))
	return int(hi)
}

// start is the first hash of partition p.
func (r *Ring) start(p int) uint64 {
	if p >= r.partitions {
		return 0 // 2^64
	}
	q, _ := bits.Div64(uint64(p), 0, uint64(r.partitions))
	// ceil(p·2^64/P): the smallest h with partitionOf(h) == p.
	if _, rem := bits.Div64(uint64(p), 0, uint64(r.partitions)); rem != 0 {
		q++
	}
	return q
}

// Owner is the member that owns a namespace, or "" on an empty ring.
func (r *Ring) Owner(namespace string) string {
	return r.owners[r.partitionOf(r.hash(namespace))]
}

// Ranges is a member's share of the hash space.
func (r *Ring) Ranges(m string) Ranges {
	var out Ranges
	for p := 0; p < r.partitions; p++ {
		if r.owners[p] != m {
			continue
		}
		out = out.add(Range{Start: r.start(p), End: r.start(p + 1)})
	}
	return out
}

// Partitions counts the partitions each member owns.
func (r *Ring) Partitions() map[string]int {
	out := map[string]int{}
	for _, o := range r.owners {
		if o != "" {
			out[o]++
		}
	}
	return out
}
