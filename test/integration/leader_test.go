package integration

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/utils/ptr"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kube-zen/zen-watcher/pkg/ha"
	"github.com/kube-zen/zen-watcher/pkg/metrics"
)

// TestLosingTheLeaseRaceIsNotAnError: when replicas start together, all but one find no Lease, try
// to create it and are refused because another did first. That is the election working; a
// follower's log says so at Debug, not as an ERROR an operator would chase. The race window is
// held open by answering the candidate's first reads "not found" while another replica's Lease
// exists in the API server, so the create reaches the API server and is refused by it.
func TestLosingTheLeaseRaceIsNotAnError(t *testing.T) {
	ctx := context.Background()
	ns := "lease-race"
	if _, err := cluster.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	now := metav1.NewMicroTime(time.Now())
	if _, err := cluster.Kube.CoordinationV1().Leases(ns).Create(ctx, &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: "zw-leader"},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("zw-0"), LeaseDurationSeconds: ptr.To[int32](60),
			AcquireTime: &now, RenewTime: &now},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	m := metrics.New(prometheus.NewRegistry())
	client := &lateLeases{Interface: cluster.Kube, blind: 3}
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	ha.RunLeaderElection(cctx, ha.LeaderConfig{Client: client, Namespace: ns, Name: "zw-leader", ID: "zw-1",
		LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 300 * time.Millisecond,
		Metrics: m, Log: slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))},
		func(context.Context, ha.Fence) { t.Error("zw-1 led while zw-0 holds the Lease") })
	log := out.String()
	if client.refused.Load() == 0 {
		t.Fatalf("no create of the Lease was refused as existing; the race was not run:\n%s", log)
	}
	if strings.Contains(log, "level=ERROR") {
		t.Errorf("losing the race for the Lease logged an error:\n%s", log)
	}
	if !strings.Contains(log, "level=DEBUG") || !strings.Contains(log, "already exists") {
		t.Errorf("the lost race is not in the debug log:\n%s", log)
	}
}

// lateLeases is a client whose first reads of a Lease answer "not found": what a replica sees when
// another creates the Lease just after its read.
type lateLeases struct {
	kubernetes.Interface
	blind   int32
	reads   atomic.Int32
	refused atomic.Int32
}

func (c *lateLeases) CoordinationV1() coordinationv1client.CoordinationV1Interface {
	return lateCoordination{c.Interface.CoordinationV1(), c}
}

type lateCoordination struct {
	coordinationv1client.CoordinationV1Interface
	c *lateLeases
}

func (l lateCoordination) Leases(ns string) coordinationv1client.LeaseInterface {
	return lateLease{l.CoordinationV1Interface.Leases(ns), l.c}
}

type lateLease struct {
	coordinationv1client.LeaseInterface
	c *lateLeases
}

func (l lateLease) Get(ctx context.Context, name string, opts metav1.GetOptions) (*coordinationv1.Lease, error) {
	if l.c.reads.Add(1) <= l.c.blind {
		return nil, apierrors.NewNotFound(coordinationv1.Resource("leases"), name)
	}
	return l.LeaseInterface.Get(ctx, name, opts)
}

func (l lateLease) Create(ctx context.Context, lease *coordinationv1.Lease, opts metav1.CreateOptions) (*coordinationv1.Lease, error) {
	out, err := l.LeaseInterface.Create(ctx, lease, opts)
	if apierrors.IsAlreadyExists(err) {
		l.c.refused.Add(1)
	}
	return out, err
}

// syncBuffer is a bytes.Buffer safe for the elector's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
