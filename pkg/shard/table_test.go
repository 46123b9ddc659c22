package shard

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// nameSets are namespace names as clusters name them: sequential ones, whose FNV-1a hashes bunch,
// a realistic mix, and random ones.
func nameSets() map[string][]string {
	r := rand.New(rand.NewPCG(1, 2))
	word := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = "abcdefghijklmnopqrstuvwxyz0123456789"[r.IntN(36)]
		}
		return string(b)
	}
	sets := map[string][]string{}
	for i := 1; i <= 50; i++ {
		sets["team-1..team-50"] = append(sets["team-1..team-50"], fmt.Sprintf("team-%d", i))
		sets["load-00..load-49"] = append(sets["load-00..load-49"], fmt.Sprintf("load-%02d", i-1))
	}
	for i := 1; i <= 500; i++ {
		sets["prod-001..prod-500"] = append(sets["prod-001..prod-500"], fmt.Sprintf("prod-%03d", i))
	}
	mix := []string{"default", "kube-system", "kube-public", "kube-node-lease", "monitoring", "cert-manager",
		"ingress-nginx", "logging", "istio-system", "argocd", "zen-system", "shop", "payments", "checkout", "search"}
	for c := 'a'; c <= 'z'; c++ {
		mix = append(mix, "team-"+string(c))
	}
	for i := range 120 {
		mix = append(mix, fmt.Sprintf("feature-%s-%d", word(5), i))
	}
	for len(mix) < 300 {
		mix = append(mix, "tenant-"+word(6))
	}
	sets["realistic mix of 300"] = mix
	for range 5000 {
		sets["5,000 random"] = append(sets["5,000 random"], word(4+r.IntN(12)))
	}
	return sets
}

// weigh gives each namespace a weight drawn from a lognormal distribution (median 20, σ 1): a few
// namespaces hold most objects, as in real clusters.
func weigh(names []string, seed uint64) []Namespace {
	r := rand.New(rand.NewPCG(seed, 7))
	out := make([]Namespace, len(names))
	for i, n := range names {
		out[i] = Namespace{Hash: Hash(n), Weight: math.Round(20 * math.Exp(r.NormFloat64()))}
	}
	return out
}

func members(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("zen-watcher-%d", i)
	}
	return out
}

// checkTable holds a table to what every table must be: every namespace owned by exactly one
// member through its ranges, no member over MaxRanges, and the loads even where the heaviest
// namespace allows it. It returns max/min of the loads.
func checkTable(t *testing.T, what string, tab *Table, ns []Namespace, ms []string) float64 {
	t.Helper()
	shares := map[string]Ranges{}
	for _, m := range ms {
		shares[m] = tab.Ranges(m)
		if len(shares[m]) > MaxRanges {
			t.Errorf("%s: %s has %d ranges", what, m, len(shares[m]))
		}
	}
	load := map[string]float64{}
	total, heaviest := 0.0, 0.0
	chunk := slices.Max(tab.Weights)
	for _, n := range ns {
		var owners []string
		for _, m := range ms {
			if shares[m].Contains(n.Hash) {
				owners = append(owners, m)
			}
		}
		if len(owners) != 1 || owners[0] != tab.Owner(n.Hash) {
			t.Fatalf("%s: hash %x owned by %v, the table says %s", what, n.Hash, owners, tab.Owner(n.Hash))
		}
		load[owners[0]] += n.Weight
		total += n.Weight
		heaviest = max(heaviest, n.Weight)
	}
	lo, hi := math.Inf(1), 0.0
	for _, m := range ms {
		lo, hi = min(lo, load[m]), max(hi, load[m])
	}
	ideal := total / float64(len(ms))
	// One namespace is not split: loads can be even only to within the heaviest one (in the sets of
	// 50 names one holds 80% of a member's ideal share at 5 members), and a member's load within
	// a chunk of the ideal.
	if heaviest < ideal/3 && hi/lo > 1.15 {
		t.Errorf("%s: loads %v, max/min %.3f", what, load, hi/lo)
	}
	if hi > ideal+chunk {
		t.Errorf("%s: the heaviest member holds %.0f, more than the ideal %.0f and the heaviest chunk %.0f", what, hi, ideal, chunk)
	}
	return hi / lo
}

// TestTableBalancesAnyNames: the table cut at weighted quantiles is even for every name set at 3
// and 5 members, where equal-width partitions put team-1..team-50 on one or two members.
func TestTableBalancesAnyNames(t *testing.T) {
	for name, names := range nameSets() {
		ns := weigh(names, 3)
		for _, n := range []int{3, 5} {
			ms := members(n)
			tab := NewTable(ns, ms, DefaultChunks, nil)
			ratio := checkTable(t, fmt.Sprintf("%s, %d members", name, n), tab, ns, ms)
			t.Logf("%-22s %d members: %2d chunks, max/min %.3f", name, n, len(tab.Starts), ratio)
		}
	}
}

// TestTableMovesLittle: through 3 → 4 → 5 → 4 (a middle member leaves) → 3, each step moves no
// more than 1.4 times the share that must move (the newcomer's, or the leaver's), and every table
// is even.
func TestTableMovesLittle(t *testing.T) {
	steps := [][]string{members(3), members(4), members(5),
		{"zen-watcher-0", "zen-watcher-1", "zen-watcher-3", "zen-watcher-4"}, {"zen-watcher-0", "zen-watcher-1", "zen-watcher-3"}}
	for name, names := range nameSets() {
		ns := weigh(names, 5)
		total := 0.0
		for _, n := range ns {
			total += n.Weight
		}
		tab := NewTable(ns, steps[0], DefaultChunks, nil)
		for i := 1; i < len(steps); i++ {
			prev, ms := tab, steps[i]
			tab = NewTable(ns, ms, DefaultChunks, prev)
			what := fmt.Sprintf("%s, %d → %d members", name, len(steps[i-1]), len(ms))
			ratio := checkTable(t, what, tab, ns, ms)
			moved := 0.0
			for _, n := range ns {
				if prev.Owner(n.Hash) != tab.Owner(n.Hash) {
					moved += n.Weight
				}
			}
			ideal := total / float64(max(len(ms), len(steps[i-1])))
			if moved > 1.4*ideal {
				t.Errorf("%s: moved %.1f%% of the weight, ideal %.1f%%", what, 100*moved/total, 100*ideal/total)
			}
			t.Logf("%-22s %-14s moved %4.1f%% (ideal %4.1f%%), max/min %.3f", name, fmt.Sprintf("%d → %d", len(steps[i-1]), len(ms)),
				100*moved/total, 100*ideal/total, ratio)
		}
	}
}

// TestTableIsTheSameForEveryMember: members computing the table from the same inputs, whatever
// order they list each other in, compute the same one.
func TestTableIsTheSameForEveryMember(t *testing.T) {
	ns := weigh(nameSets()["realistic mix of 300"], 9)
	ms := members(5)
	a := NewTable(ns, ms, DefaultChunks, nil)
	shuffled := slices.Clone(ms)
	slices.Reverse(shuffled)
	rev := slices.Clone(ns)
	slices.Reverse(rev)
	b := NewTable(rev, shuffled, DefaultChunks, nil)
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Error("two members computed different tables")
	}
	c, d := NewTable(ns, members(6), DefaultChunks, a), NewTable(rev, members(6), DefaultChunks, b)
	if fmt.Sprint(c) != fmt.Sprint(d) {
		t.Error("two members computed different tables from the same previous one")
	}
}

func TestCut(t *testing.T) {
	cases := []struct {
		name   string
		ns     []Namespace
		k      int
		starts []uint64
	}{
		{"no namespaces: one chunk", nil, 4, []uint64{0}},
		{"fewer namespaces than chunks: one each", []Namespace{{100, 1}, {200, 1}, {300, 1}}, 8, []uint64{0, 150, 250}},
		{"equal weights, two chunks", []Namespace{{100, 1}, {200, 1}, {300, 1}, {400, 1}}, 2, []uint64{0, 250}},
		{"a heavy namespace takes a chunk alone", []Namespace{{100, 1}, {200, 10}, {300, 1}}, 3, []uint64{0, 150, 250}},
		{"the same hash is never cut", []Namespace{{100, 1}, {100, 1}, {300, 1}}, 3, []uint64{0, 200}},
		{"a cut between adjacent hashes", []Namespace{{7, 1}, {8, 1}}, 2, []uint64{0, 8}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			starts, weights := Cut(tc.ns, tc.k)
			if fmt.Sprint(starts) != fmt.Sprint(tc.starts) {
				t.Errorf("starts %v, want %v (weights %v)", starts, tc.starts, weights)
			}
			sum, want := 0.0, 0.0
			for _, w := range weights {
				sum += w
			}
			for _, n := range tc.ns {
				want += n.Weight
			}
			if sum != want || len(weights) != len(starts) {
				t.Errorf("weights %v of %d chunks, want a sum of %v", weights, len(starts), want)
			}
		})
	}
}

// TestTableOfNoMembersOwnsNothing: with no members no one owns anything (failing closed).
func TestTableOfNoMembersOwnsNothing(t *testing.T) {
	tab := NewTable(weigh([]string{"a", "b"}, 1), nil, DefaultChunks, nil)
	if tab.Owner(Hash("a")) != "" || len(tab.Ranges("zen-watcher-0")) != 0 {
		t.Error("a table of no members gives a share")
	}
}
