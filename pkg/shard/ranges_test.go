package shard

import (
	"fmt"
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

func TestSelectorSyntax(t *testing.T) {
	rs := Ranges{{Start: 0, End: 0x4000000000000000}, {Start: 0xc000000000000000, End: 0}}
	want := "shardRange(object.metadata.namespace, '0x0000000000000000', '0x4000000000000000') || " +
		"shardRange(object.metadata.namespace, '0xc000000000000000', '0x10000000000000000')"
	if got := rs.Selector(); got != want {
		t.Errorf("selector\n%s\nwant\n%s", got, want)
	}
}

func TestRangesEncodeRoundTrip(t *testing.T) {
	for _, rs := range []Ranges{
		{},
		{{}},
		{{Start: 0, End: 0x4000000000000000}, {Start: 0xc000000000000000, End: 0}},
		{{Start: 1, End: 2}, {Start: 2, End: 0xffffffffffffffff}},
	} {
		enc := rs.Encode()
		got, err := ParseRanges(enc)
		if err != nil {
			t.Fatalf("ParseRanges(%q): %v", enc, err)
		}
		if !slices.Equal(got, rs) {
			t.Errorf("ParseRanges(%q) = %v, want %v", enc, got, rs)
		}
	}
}

func TestParseRangesRefuses(t *testing.T) {
	for _, s := range []string{"0", "x-1", "1-x", "5-5", "5-3", "0-10,5-20", "10-20,0-5", "0-0,1-2", ",", "1-2,"} {
		if rs, err := ParseRanges(s); err == nil {
			t.Errorf("ParseRanges(%q) = %v, want an error", s, rs)
		}
	}
}

// TestRangesMinus checks Minus, and Intersect on the same pairs.
func TestRangesMinus(t *testing.T) {
	const q = 0x4000000000000000 // a quarter of the space
	for _, tc := range []struct {
		name      string
		rs, other Ranges
		want      Ranges
	}{
		{"nothing from nothing", nil, nil, nil},
		{"nothing taken", Ranges{{0, q}}, nil, Ranges{{0, q}}},
		{"all taken", Ranges{{0, q}}, Ranges{{0, q}}, nil},
		{"whole minus whole", Ranges{{0, 0}}, Ranges{{0, 0}}, nil},
		{"whole minus a middle", Ranges{{0, 0}}, Ranges{{q, 2 * q}}, Ranges{{0, q}, {2 * q, 0}}},
		{"whole minus the top", Ranges{{0, 0}}, Ranges{{3 * q, 0}}, Ranges{{0, 3 * q}}},
		{"top minus a middle", Ranges{{2 * q, 0}}, Ranges{{0, 3 * q}}, Ranges{{3 * q, 0}}},
		{"disjoint", Ranges{{q, 2 * q}}, Ranges{{0, q}, {2 * q, 3 * q}}, Ranges{{q, 2 * q}}},
		{"holes", Ranges{{0, 3 * q}}, Ranges{{1, 2}, {q, q + 5}, {2 * q, 0}}, Ranges{{0, 1}, {2, q}, {q + 5, 2 * q}}},
		{"over two", Ranges{{0, q}, {2 * q, 3 * q}}, Ranges{{q / 2, 2*q + 1}}, Ranges{{0, q / 2}, {2*q + 1, 3 * q}}},
		{"grown at both ends", Ranges{{q, 3 * q}}, Ranges{{q + 1, 3*q - 1}}, Ranges{{q, q + 1}, {3*q - 1, 3 * q}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.rs.Minus(tc.other)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("%v minus %v = %v, want %v", tc.rs, tc.other, got, tc.want)
			}
			both := tc.rs.Intersect(tc.other)
			for _, h := range []uint64{0, 1, 2, q - 1, q, q + 4, q + 5, 2*q - 1, 2 * q, 2*q + 1, 3*q - 1, 3 * q, 1<<64 - 1} {
				if in := tc.rs.Contains(h) && !tc.other.Contains(h); got.Contains(h) != in {
					t.Errorf("%x: in the difference %v, in one and not the other %v", h, got.Contains(h), in)
				}
				if in := tc.rs.Contains(h) && tc.other.Contains(h); both.Contains(h) != in {
					t.Errorf("%x: in the intersection %v, in both %v", h, both.Contains(h), in)
				}
			}
		})
	}
}
