package shard

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func memberLease(id string) *coordinationv1.Lease {
	now := metav1.NewMicroTime(time.Now())
	return &coordinationv1.Lease{Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(id),
		RenewTime: &now, LeaseDurationSeconds: ptr.To(int32(15))}}
}

// TestMembersPublishTheNewestSet: recompute runs from the informer's handlers and a ticker at
// once while the Leases change under it. Whatever the interleaving, the set last published is the
// set last read — a stale set never arrives last, which would leave a dead member's share unowned.
func TestMembersPublishTheNewestSet(t *testing.T) {
	for round := range 200 {
		m := NewMembers(MembersConfig{ID: "a"})
		var state atomic.Int64
		sets := [][]*coordinationv1.Lease{
			{memberLease("a"), memberLease("b"), memberLease("c")},
			{memberLease("a"), memberLease("c")},
			{memberLease("a")},
		}
		m.lister = func() ([]*coordinationv1.Lease, error) { return sets[state.Load()], nil }
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Go(func() {
				for i := range 50 {
					if g == 0 && i%10 == 9 && state.Load() < 2 {
						state.Add(1)
					}
					m.recompute()
				}
			})
		}
		wg.Wait()
		var last []string
		select {
		case last = <-m.Changes():
		default:
			t.Fatalf("round %d: nothing published", round)
		}
		if want := m.Current(); !equal(last, want) || len(want) != 1 {
			t.Fatalf("round %d: last published %v, current %v, want [a]", round, last, want)
		}
	}
}
