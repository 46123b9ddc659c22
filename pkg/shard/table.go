package shard

import (
	"cmp"
	"slices"
	"sort"
	"time"
)

// Defaults of the shard table.
const (
	// DefaultChunks is how many chunks the space is cut into: enough that a member's share can be
	// evened out to within a chunk's weight (1.6% of the whole with 64), few enough that a member's
	// runs of chunks stay within MaxRanges.
	DefaultChunks = 64
	// MaxRanges bounds the ranges of one member's selector: the API server spends about 0.5 µs per
	// object and watcher at 16 ranges, 3.5 µs at 256.
	MaxRanges = 16
)

// Namespace is a namespace as the table weighs it: its FNV-1a hash and its weight (its objects
// or findings where they are measured, one otherwise).
type Namespace struct {
	Hash   uint64
	Weight float64
}

// Table assigns the FNV-1a space to members: chunks that tile it, cut where the namespaces are,
// each owned by one member. Every hash, a namespace's created later included, falls in exactly
// one chunk, so it has exactly one owner.
type Table struct {
	// Starts are the chunks' first hashes, ascending; Starts[0] is 0 and chunk i ends where chunk
	// i+1 starts (the last at 2^64).
	Starts []uint64
	// Weights are the chunks' weights when they were cut.
	Weights []float64
	// Owners are the chunks' members.
	Owners []string
	// Generation numbers the tables the leader publishes; zero for one computed locally.
	Generation uint64
	// PublishedBy and PublishedAt say who published the table and when, as read back.
	PublishedBy string
	PublishedAt time.Time
}

// Cut cuts the space into at most k chunks of about equal weight. A namespace is never split: a
// cut falls between two namespaces' hashes, halfway, so that one created later between them goes
// to either side alike. With fewer namespaces than k every namespace has a chunk of its own.
func Cut(namespaces []Namespace, k int) (starts []uint64, weights []float64) {
	ns := slices.Clone(namespaces)
	slices.SortFunc(ns, func(a, b Namespace) int { return cmp.Compare(a.Hash, b.Hash) })
	total := 0.0
	for _, n := range ns {
		total += n.Weight
	}
	starts, weights = []uint64{0}, []float64{0}
	if k < 1 {
		k = 1
	}
	// With no more namespaces than chunks, every namespace has a chunk: the finest cut there is.
	fine := len(slices.CompactFunc(slices.Clone(ns), func(a, b Namespace) bool { return a.Hash == b.Hash })) <= k
	next, acc := 1, 0.0 // the next cut's number, and the weight before namespace i
	target := func() float64 { return total * float64(next) / float64(k) }
	for i, n := range ns {
		// Cut before n when the next cut's target lies nearer before n than after it.
		if i > 0 && n.Hash != ns[i-1].Hash && (fine || next < k && acc+n.Weight/2 > target()) {
			prev := ns[i-1].Hash
			starts = append(starts, prev+(n.Hash-prev+1)/2)
			weights = append(weights, 0)
			for next < k && target() < acc+n.Weight/2 {
				next++
			}
		}
		weights[len(weights)-1] += n.Weight
		acc += n.Weight
	}
	return starts, weights
}

// chunkOf is the chunk of starts that holds h.
func chunkOf(starts []uint64, h uint64) int {
	return sort.Search(len(starts), func(i int) bool { return starts[i] > h }) - 1
}

// Owner is the member that owns hash h ("" in a table of no members).
func (t *Table) Owner(h uint64) string {
	if len(t.Owners) == 0 {
		return ""
	}
	return t.Owners[chunkOf(t.Starts, h)]
}

// Ranges is member m's share: its chunks, adjacent ones merged.
func (t *Table) Ranges(m string) Ranges {
	var out Ranges
	for i, o := range t.Owners {
		if o != m {
			continue
		}
		start, end := t.Starts[i], uint64(0)
		if i+1 < len(t.Starts) {
			end = t.Starts[i+1]
		}
		out = out.add(Range{Start: start, End: end})
	}
	return out
}

// Loads is the weight each member owns.
func (t *Table) Loads() map[string]float64 {
	out := map[string]float64{}
	for i, o := range t.Owners {
		out[o] += t.Weights[i]
	}
	return out
}

// NewTable cuts namespaces into k chunks and assigns them to members. Where prev is given, each
// chunk stays with the member that owned its first hash in prev if that member is still one, and
// only what evens the loads out moves: a membership change moves about the share of the member
// that came or went. Every member computes the same table from the same inputs.
func NewTable(namespaces []Namespace, members []string, k int, prev *Table) *Table {
	starts, weights := Cut(namespaces, k)
	return assign(starts, weights, members, prev)
}

// Adapt is t's chunks, uncut, assigned to members: those of a member that left go to the others,
// and a member that joined takes chunks from the edges of the others' runs. Every replica adapts
// the same published table to the same member set alike, so none waits for the leader to publish
// before the namespaces of a member that left are owned again.
func (t *Table) Adapt(members []string) *Table {
	a := assign(t.Starts, t.Weights, members, t)
	a.Generation = t.Generation
	return a
}

func assign(starts []uint64, weights []float64, members []string, prev *Table) *Table {
	t := &Table{Starts: slices.Clone(starts), Weights: slices.Clone(weights), Owners: make([]string, len(starts))}
	ms := slices.Clone(members)
	slices.Sort(ms)
	ms = slices.Compact(ms)
	if len(ms) == 0 {
		return t
	}
	if prev != nil && prev.keep(t, ms) {
		t.balance(ms)
		if t.runsWithin(MaxRanges) {
			return t
		}
		clear(t.Owners)
	}
	t.contiguous(ms)
	t.balance(ms)
	return t
}

// keep gives each chunk of t its owner in prev where that is still a member; it reports whether
// any chunk kept one.
func (prev *Table) keep(t *Table, members []string) bool {
	kept := false
	for i, s := range t.Starts {
		if o := prev.Owner(s); o != "" && slices.Contains(members, o) {
			t.Owners[i] = o
			kept = true
		}
	}
	return kept
}

// contiguous assigns the chunks in order, members in order, each member one run of about an
// equal share: the fewest ranges there can be, but it moves much when members change.
func (t *Table) contiguous(members []string) {
	total := 0.0
	for _, w := range t.Weights {
		total += w
	}
	j, acc := 0, 0.0
	for i, w := range t.Weights {
		left := len(t.Weights) - i // chunks left, this one included
		// Move on when this chunk would take the member past its share by more than it falls short
		// without it, or when the members left need every chunk left.
		if j < len(members)-1 && i > 0 && t.Owners[i-1] == members[j] &&
			(acc+w/2 > total*float64(j+1)/float64(len(members)) || left <= len(members)-1-j) {
			j++
		}
		t.Owners[i] = members[j]
		acc += w
	}
}

// balance gives unowned chunks an owner, then moves chunks from the edges of the runs of members
// over the ideal share to members under it while that brings both nearer.
func (t *Table) balance(members []string) {
	load := map[string]float64{}
	for _, m := range members {
		load[m] = 0
	}
	for i, o := range t.Owners {
		if o != "" {
			load[o] += t.Weights[i]
		}
	}
	for i, o := range t.Owners {
		if o == "" {
			t.Owners[i] = t.receiver(i, "", members, load, t.Weights[i])
			load[t.Owners[i]] += t.Weights[i]
		}
	}
	for range 4 * len(t.Owners) {
		if !t.move(members, load) {
			return
		}
	}
}

// move moves one edge chunk from a member over the ideal share to one under it, the largest
// chunk that leaves neither further from the ideal than half its weight; it reports whether
// there was one. Each move brings both members nearer the ideal, so nothing moves back and forth.
func (t *Table) move(members []string, load map[string]float64) bool {
	ideal := 0.0
	for _, m := range members {
		ideal += load[m]
	}
	ideal /= float64(len(members))
	givers := slices.Clone(members)
	slices.SortStableFunc(givers, func(a, b string) int { return cmp.Compare(load[b], load[a]) })
	for _, from := range givers {
		best, to := -1, ""
		for i, o := range t.Owners {
			w := t.Weights[i]
			if o != from || !t.edge(i) || w == 0 || load[from]-w/2 <= ideal || (best >= 0 && w <= t.Weights[best]) {
				continue
			}
			if r := t.receiver(i, from, members, load, w); load[r]+w/2 < ideal {
				best, to = i, r
			}
		}
		if best >= 0 {
			load[from] -= t.Weights[best]
			load[to] += t.Weights[best]
			t.Owners[best] = to
			return true
		}
	}
	return false
}

// edge reports whether chunk i ends a run (its neighbour on either side has another owner).
func (t *Table) edge(i int) bool {
	return i == 0 || i == len(t.Owners)-1 || t.Owners[i-1] != t.Owners[i] || t.Owners[i+1] != t.Owners[i]
}

// receiver is who should take chunk i (of weight w) from from: the lighter of its neighbours'
// owners when that one stays within the ideal share — the run grows and no range is added —
// otherwise the lightest member.
func (t *Table) receiver(i int, from string, members []string, load map[string]float64, w float64) string {
	ideal := 0.0
	for _, m := range members {
		ideal += load[m]
	}
	ideal /= float64(len(members))
	light := members[0]
	for _, m := range members {
		if m != from && (light == from || load[m] < load[light]) {
			light = m
		}
	}
	best := ""
	for _, j := range []int{i - 1, i + 1} {
		if j < 0 || j >= len(t.Owners) {
			continue
		}
		if o := t.Owners[j]; o != "" && o != from && (best == "" || load[o] < load[best]) {
			best = o
		}
	}
	if best != "" && load[best]+w <= ideal {
		return best
	}
	return light
}

// runsWithin reports whether every member's chunks form at most n runs.
func (t *Table) runsWithin(n int) bool {
	runs := map[string]int{}
	for i, o := range t.Owners {
		if i == 0 || t.Owners[i-1] != o {
			runs[o]++
			if runs[o] > n {
				return false
			}
		}
	}
	return true
}

// CountWeighted weighs each namespace one: the cut when nothing is measured.
func CountWeighted(names []string) []Namespace {
	out := make([]Namespace, len(names))
	for i, n := range names {
		out[i] = Namespace{Hash: Hash(n), Weight: 1}
	}
	return out
}

// Members are the members that own a chunk of t, sorted.
func (t *Table) Members() []string {
	ms := slices.Clone(t.Owners)
	slices.Sort(ms)
	return slices.DeleteFunc(slices.Compact(ms), func(m string) bool { return m == "" })
}

// Imbalance is max/avg of what t gives members of namespaces, weighed as given: how far the cut
// has drifted from the namespaces there are now (1 is even). A member that owns nothing counts.
func (t *Table) Imbalance(namespaces []Namespace, members []string) float64 {
	if len(members) == 0 {
		return 1
	}
	load := make(map[string]float64, len(members))
	total := 0.0
	for _, n := range namespaces {
		load[t.Owner(n.Hash)] += n.Weight
		total += n.Weight
	}
	if total == 0 {
		return 1
	}
	heaviest := 0.0
	for _, m := range members {
		heaviest = max(heaviest, load[m])
	}
	return heaviest / (total / float64(len(members)))
}
