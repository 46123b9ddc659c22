package main

import (
	"fmt"
	"sort"
	"time"

	"github.com/spf13/cobra"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kube-zen/zen-watcher/pkg/shard"
)

// Shards is how a release's replicas share the work.
type Shards struct {
	Release    string   `json:"release"`
	Leader     string   `json:"leader"`
	Partitions int      `json:"partitions"`
	Members    []Member `json:"members"`
}

// Member is one live replica and its share.
type Member struct {
	Name       string    `json:"name"`
	Leader     bool      `json:"leader"`
	Partitions int       `json:"partitions"`
	Namespaces []string  `json:"namespaces"`
	RenewedAt  time.Time `json:"renewedAt"`
}

func newShardsCmd(o *options) *cobra.Command {
	release, partitions, hash := "zen-watcher", shard.DefaultPartitions, "fnv"
	cmd := &cobra.Command{
		Use:   "shards",
		Short: "Show a release's members, its leader, and the partitions and namespaces each replica owns",
		Long: "Reads the member and leader Leases in the release's namespace (-n) and computes the ring every " +
			"replica computes, with the same partitions and hash the replicas were started with.",
		Example: `  obsctl shards -n zen-system --release zen-watcher`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if hash != "fnv" && hash != "balanced" {
				return fmt.Errorf("--shard-hash %q: want fnv or balanced", hash)
			}
			ns, err := o.scope()
			if err != nil {
				return err
			}
			if ns == "" {
				return fmt.Errorf("shards needs the release's namespace (-n), not -A")
			}
			k, err := o.kube()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			leases, err := k.CoordinationV1().Leases(ns).List(ctx, metav1.ListOptions{LabelSelector: shard.LabelMember + "=" + release})
			if err != nil {
				return fmt.Errorf("listing member Leases: %w", err)
			}
			st := Shards{Release: release, Partitions: partitions}
			if l, err := k.CoordinationV1().Leases(ns).Get(ctx, release+"-leader", metav1.GetOptions{}); err == nil && l.Spec.HolderIdentity != nil {
				st.Leader = *l.Spec.HolderIdentity
			} else if err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("reading the leader Lease: %w", err)
			}
			nss, err := k.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
			if err != nil {
				return fmt.Errorf("listing namespaces: %w", err)
			}
			ptrs := make([]*coordinationv1.Lease, len(leases.Items))
			renewed := map[string]time.Time{}
			for i := range leases.Items {
				l := &leases.Items[i]
				ptrs[i] = l
				if l.Spec.HolderIdentity != nil && l.Spec.RenewTime != nil {
					renewed[*l.Spec.HolderIdentity] = l.Spec.RenewTime.Time
				}
			}
			members := shard.LiveMembers(ptrs, time.Now())
			owned, parts := map[string][]string{}, map[string]int{}
			if len(members) > 0 {
				ring := shard.NewRing(members, partitions)
				if hash == "balanced" {
					ring = shard.NewRingWithHash(members, partitions, shard.Balanced)
				}
				for _, n := range nss.Items {
					owner := ring.Owner(n.Name)
					owned[owner] = append(owned[owner], n.Name)
				}
				parts = ring.Partitions()
			}
			for _, m := range members {
				sort.Strings(owned[m])
				st.Members = append(st.Members, Member{Name: m, Leader: m == st.Leader, Partitions: parts[m],
					Namespaces: owned[m], RenewedAt: renewed[m]})
			}
			if done, err := printStructured(o.out, o.output, st); done {
				return err
			}
			return printShards(o, &st)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&release, "release", release, "release name (the replicas' -release)")
	fl.IntVar(&partitions, "partitions", partitions, "partitions of the hash space (the replicas' -shard-partitions)")
	fl.StringVar(&hash, "shard-hash", hash, "fnv or balanced (the replicas' -shard-hash)")
	return cmd
}

func printShards(o *options, st *Shards) error {
	leader := st.Leader
	if leader == "" {
		leader = "<none>"
	}
	fmt.Fprintf(o.out, "Release %s: %d members, leader %s\n\n", st.Release, len(st.Members), leader)
	t := newTable(o.out, "MEMBER", "LEADER", "PARTITIONS", "NAMESPACES", "RENEWED")
	for _, m := range st.Members {
		t.row(m.Name, fmt.Sprint(m.Leader), fmt.Sprintf("%d/%d", m.Partitions, st.Partitions),
			fmt.Sprint(len(m.Namespaces)), age(m.RenewedAt)+" ago")
	}
	return t.flush()
}
