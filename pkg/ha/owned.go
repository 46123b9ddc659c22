package ha

import (
	"context"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
)

// ownedLeases gives the Leases client-go's election creates their owners: its LeaseLock names a
// new Lease by its name and labels alone, and a Lease nobody owns outlives the release.
type ownedLeases struct {
	coordinationv1client.LeasesGetter
	owners []metav1.OwnerReference
}

func (o ownedLeases) Leases(namespace string) coordinationv1client.LeaseInterface {
	return ownedLeaseClient{LeaseInterface: o.LeasesGetter.Leases(namespace), owners: o.owners}
}

type ownedLeaseClient struct {
	coordinationv1client.LeaseInterface
	owners []metav1.OwnerReference
}

func (c ownedLeaseClient) Create(ctx context.Context, l *coordinationv1.Lease, opts metav1.CreateOptions) (*coordinationv1.Lease, error) {
	return c.LeaseInterface.Create(ctx, c.own(l), opts)
}

// Update gives a Lease created before it had owners (by an earlier version) its owners.
func (c ownedLeaseClient) Update(ctx context.Context, l *coordinationv1.Lease, opts metav1.UpdateOptions) (*coordinationv1.Lease, error) {
	return c.LeaseInterface.Update(ctx, c.own(l), opts)
}

func (c ownedLeaseClient) own(l *coordinationv1.Lease) *coordinationv1.Lease {
	if len(c.owners) == 0 || len(l.OwnerReferences) > 0 {
		return l
	}
	l = l.DeepCopy()
	l.OwnerReferences = c.owners
	return l
}
