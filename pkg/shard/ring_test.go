package shard

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/sharding"
)

// TestHashMatchesTheAPIServer: our namespace hash is the one the API server's shardRange uses.
func TestHashMatchesTheAPIServer(t *testing.T) {
	for _, ns := range []string{"", "default", "kube-system", "a", "team-42", "ü-namespace"} {
		if got, want := fmt.Sprintf("%016x", Hash(ns)), sharding.HashField(ns); got != want {
			t.Errorf("Hash(%q) = %s, the API server's %s", ns, got, want)
		}
	}
}

func TestRingIsDeterministicAndCovering(t *testing.T) {
	a := NewRing([]string{"zw-0", "zw-1", "zw-2"}, 0)
	b := NewRing([]string{"zw-2", "zw-0", "zw-1"}, 0)
	for p := range a.owners {
		if a.owners[p] != b.owners[p] {
			t.Fatalf("partition %d: %s vs %s for the same members in another order", p, a.owners[p], b.owners[p])
		}
	}
	// Every namespace has exactly one owner, and it is the member whose ranges contain its hash.
	rs := map[string]Ranges{}
	for _, m := range []string{"zw-0", "zw-1", "zw-2"} {
		rs[m] = a.Ranges(m)
	}
	for i := range 20000 {
		ns := fmt.Sprintf("ns-%d", i)
		h := Hash(ns)
		owners := 0
		for m, r := range rs {
			if r.Contains(h) {
				owners++
				if a.Owner(ns) != m {
					t.Fatalf("%s: ranges of %s contain it, Owner says %s", ns, m, a.Owner(ns))
				}
			}
		}
		if owners != 1 {
			t.Fatalf("%s has %d owners", ns, owners)
		}
	}
	// Edges of the hash space.
	for _, h := range []uint64{0, 1, 1<<63 - 1, 1 << 63, ^uint64(0)} {
		owners := 0
		for _, r := range rs {
			if r.Contains(h) {
				owners++
			}
		}
		if owners != 1 {
			t.Errorf("hash %#x has %d owners", h, owners)
		}
	}
}

// TestBalance measures how evenly partitions and namespaces spread (the figures go to the docs).
func TestBalance(t *testing.T) {
	for _, n := range []int{2, 3, 5} {
		var members []string
		for i := range n {
			members = append(members, fmt.Sprintf("zen-watcher-%d", i))
		}
		r := NewRing(members, 0)
		avg := float64(DefaultPartitions) / float64(n)
		for m, c := range r.Partitions() {
			if ratio := float64(c) / avg; ratio < 0.8 || ratio > DefaultLoad+0.02 {
				t.Errorf("%d members: %s owns %d partitions (%.2f of the average)", n, m, c, ratio)
			}
		}
		counts := map[string]int{}
		for i := range 5000 {
			counts[r.Owner(fmt.Sprintf("ns-%d", rand.IntN(1<<30)+i))]++
		}
		for m, c := range counts {
			if share := float64(c) / 5000; share < 0.6/float64(n) || share > 1.5/float64(n) {
				t.Errorf("%d members: %s owns %.1f%% of namespaces", n, m, 100*share)
			}
		}
	}
}

func TestRingOfOneIsWhole(t *testing.T) {
	if rs := NewRing([]string{"solo"}, 0).Ranges("solo"); !rs.Whole() {
		t.Errorf("ranges %v", rs)
	}
	if NewRing(nil, 0).Owner("x") != "" {
		t.Error("an empty ring has an owner")
	}
}

func TestSelectorSyntax(t *testing.T) {
	rs := Ranges{{Start: 0, End: 0x4000000000000000}, {Start: 0xc000000000000000, End: 0}}
	want := "shardRange(object.metadata.namespace, '0x0000000000000000', '0x4000000000000000') || " +
		"shardRange(object.metadata.namespace, '0xc000000000000000', '0x10000000000000000')"
	if got := rs.Selector(); got != want {
		t.Errorf("selector\n%s\nwant\n%s", got, want)
	}
}

// TestBalanceOfRealisticNames measures, without asserting, how namespaces named as clusters name them
// spread over three members. FNV-1a 64 (the API server's hash) barely moves the high bits when
// names differ only in their last characters, and partitions are ranges of the high bits, so such
// names cluster: this is the limit of namespace sharding with server-side ranges.
func TestBalanceOfRealisticNames(t *testing.T) {
	members := []string{"zen-watcher-0", "zen-watcher-1", "zen-watcher-2"}
	rings := map[string]*Ring{"fnv": NewRing(members, 0), "balanced": NewRingWithHash(members, 0, Balanced)}
	patterns := map[string]func(i int) string{
		"team-%d":           func(i int) string { return fmt.Sprintf("team-%d", i) },
		"load-%02d":         func(i int) string { return fmt.Sprintf("load-%02d", i) },
		"%02d-shop":         func(i int) string { return fmt.Sprintf("%02d-shop", i) },
		"app-%d-production": func(i int) string { return fmt.Sprintf("app-%d-production", i) },
		"random words": func(i int) string {
			words := []string{"payments", "checkout", "search", "billing", "auth", "catalog", "orders", "mail", "ledger", "media"}
			return words[i%10] + "-" + words[(i/10)%10]
		},
	}
	for hash, r := range rings {
		for name, gen := range patterns {
			counts := map[string]int{}
			for i := range 50 {
				counts[r.Owner(gen(i))]++
			}
			t.Logf("%-8s %-18s 50 namespaces over 3 members: %v", hash, name, counts)
			if hash == "balanced" {
				for m, c := range counts {
					if c < 8 || c > 27 {
						t.Errorf("balanced hash, %s: %s owns %d of 50", name, m, c)
					}
				}
			}
		}
	}
}

// TestMoreMembersThanPartitions: a ring with fewer partitions than members (a small
// -shard-partitions and a scale-up) does not panic; every namespace has one owner, and every
// member computes the same ring.
func TestMoreMembersThanPartitions(t *testing.T) {
	for _, tc := range []struct{ members, partitions int }{{3, 2}, {5, 3}, {10, 1}, {3, 3}} {
		var ms []string
		for i := range tc.members {
			ms = append(ms, fmt.Sprintf("zw-%d", i))
		}
		rev := slices.Clone(ms)
		slices.Reverse(rev)
		a, b := NewRing(ms, tc.partitions), NewRing(rev, tc.partitions)
		for _, ns := range []string{"payments", "checkout", "kube-system", "team-1", "team-2"} {
			owner := a.Owner(ns)
			if !slices.Contains(ms, owner) || b.Owner(ns) != owner {
				t.Errorf("%d members, %d partitions: %s owned by %q and %q", tc.members, tc.partitions, ns, owner, b.Owner(ns))
			}
		}
	}
}
