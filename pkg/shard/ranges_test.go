package shard

import (
	"fmt"
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
