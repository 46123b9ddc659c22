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
