// Package shard divides namespaces between zen-watcher replicas. The shard key is the namespace;
// its hash is FNV-1a 64, the hash the API server's shard selector uses, so a replica's share is a
// set of hash ranges that the API server can filter by. The 64-bit space is cut into chunks where
// the cluster's namespaces are (a Table), and the leader assigns the chunks to the members.
package shard

import (
	"fmt"
	"hash/fnv"
	"sort"
	"strconv"
	"strings"
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

// String writes r as the API server's shard selector writes a range's bounds.
func (r Range) String() string {
	end := fmt.Sprintf("0x%016x", r.End)
	if r.End == 0 {
		end = "0x10000000000000000"
	}
	return fmt.Sprintf("[0x%016x, %s)", r.Start, end)
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

// Minus is the part of rs that other does not cover: where a replica whose informers read other
// reads anew when its share becomes rs.
func (rs Ranges) Minus(other Ranges) Ranges {
	var out Ranges
	for _, r := range rs {
		from, covered := r.Start, false
		for _, o := range other {
			if !below(o.Start, r.End) {
				break // o and what follows start at or past r's end
			}
			if o.End != 0 && o.End <= from {
				continue // o ends before what is left of r
			}
			if o.Start > from {
				out = out.add(Range{Start: from, End: o.Start})
			}
			if o.End == 0 || (r.End != 0 && o.End >= r.End) {
				covered = true // o runs to r's end or past it
				break
			}
			from = o.End
		}
		if !covered && below(from, r.End) {
			out = out.add(Range{Start: from, End: r.End})
		}
	}
	return out
}

// Intersect is the part of rs that other covers too.
func (rs Ranges) Intersect(other Ranges) Ranges { return rs.Minus(rs.Minus(other)) }

// below reports whether h is below end, an exclusive bound where 0 stands for 2^64.
func below(h, end uint64) bool { return end == 0 || h < end }

// Whole reports whether the share is the whole hash space (a table of one member).
func (rs Ranges) Whole() bool { return len(rs) == 1 && rs[0].Start == 0 && rs[0].End == 0 }

// Encode writes the share for an annotation: comma-separated "start-end" pairs of hex bounds,
// end 0 standing for 2^64 as in Range; "" is the empty share. ParseRanges reads it back.
func (rs Ranges) Encode() string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = strconv.FormatUint(r.Start, 16) + "-" + strconv.FormatUint(r.End, 16)
	}
	return strings.Join(parts, ",")
}

// ParseRanges reads a share Encode wrote.
func ParseRanges(s string) (Ranges, error) {
	if s == "" {
		return Ranges{}, nil
	}
	parts := strings.Split(s, ",")
	rs := make(Ranges, 0, len(parts))
	for _, p := range parts {
		start, end, ok := strings.Cut(p, "-")
		if !ok {
			return nil, fmt.Errorf("range %q: want start-end", p)
		}
		a, err := strconv.ParseUint(start, 16, 64)
		if err != nil {
			return nil, fmt.Errorf("range %q: %w", p, err)
		}
		b, err := strconv.ParseUint(end, 16, 64)
		if err != nil {
			return nil, fmt.Errorf("range %q: %w", p, err)
		}
		if b != 0 && b <= a {
			return nil, fmt.Errorf("range %q is empty", p)
		}
		if n := len(rs); n > 0 && (rs[n-1].End == 0 || a < rs[n-1].End) {
			return nil, fmt.Errorf("range %q overlaps or precedes the one before it", p)
		}
		rs = append(rs, Range{Start: a, End: b})
	}
	return rs, nil
}
