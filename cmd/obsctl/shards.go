package main

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kube-zen/zen-watcher/pkg/shard"
)

// Shards is how a release's replicas share the work.
type Shards struct {
	Release string `json:"release"`
	Leader  string `json:"leader"`
	// Generation is the published table's (0: none published yet; the replicas cut their own).
	Generation  uint64   `json:"generation"`
	PublishedBy string   `json:"publishedBy,omitempty"`
	Members     []Member `json:"members"`
	// Leaving is the live replicas handing their namespaces over before they stop (their Leases'
	// zen.kube-zen.io/leaving): the others count them no more, and the table is without them.
	Leaving []string  `json:"leaving,omitempty"`
	Chunks  []Chunk   `json:"chunks"`
	ReadAt  time.Time `json:"readAt"`
}

// Member is one live replica and its share.
type Member struct {
	Name   string `json:"name"`
	Leader bool   `json:"leader"`
	Chunks int    `json:"chunks"`
	// Ranges are the member's chunks merged, as its shard selector names them.
	Ranges     []string  `json:"ranges"`
	Load       float64   `json:"load"`
	Share      float64   `json:"share"`
	Namespaces []string  `json:"namespaces"`
	RenewedAt  time.Time `json:"renewedAt"`
	// HandOver is whether the member writes exactly in its share: "settled" when the share it last
	// reported holding (its Lease's zen.kube-zen.io/holding) is its share in force, "pending" while
	// it is still letting namespaces go or taking them on, "unreported" before it reports any.
	HandOver string `json:"handOver"`
	// Watching is whether the member's sources watch its first share (its Lease's
	// zen.kube-zen.io/watching): a replica starting beside members that watch joins them only
	// once its own sources watch, one beside members that do not yet joins at once.
	Watching bool `json:"watching"`
}

// Chunk is one chunk of the table in force.
type Chunk struct {
	Start  string  `json:"start"`
	End    string  `json:"end"`
	Weight float64 `json:"weight"`
	Owner  string  `json:"owner"`
}

func newShardsCmd(o *options) *cobra.Command {
	release, chunks, showChunks := "zen-watcher", shard.DefaultChunks, false
	cmd := &cobra.Command{
		Use:   "shards",
		Short: "Show a release's shard table: its members, its leader, and the chunks and namespaces each replica owns",
		Long: "Reads the member and leader Leases and the shard table the leader published (the ConfigMap " +
			"<release>-shards) in the release's namespace (-n), and applies the table to the live members as " +
			"every replica does. Before a table is published the replicas cut their own from the namespaces, " +
			"with -shard-chunks chunks; --chunks is that number.",
		Example: `  obsctl shards -n zen-system --release zen-watcher
  obsctl shards -n zen-system --show-chunks`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ns, err := o.scope()
			if err != nil {
				return err
			}
			if ns == "" {
				return fmt.Errorf("shards needs the release's namespace (-n), not -A")
			}
			st, err := readShards(cmd, o, ns, release, chunks)
			if err != nil {
				return err
			}
			if done, err := printStructured(o.out, o.output, st); done {
				return err
			}
			return printShards(o, st, showChunks)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&release, "release", release, "release name (the replicas' -release)")
	fl.IntVar(&chunks, "chunks", chunks, "chunks of the replicas' own cut before a table is published (their -shard-chunks)")
	fl.BoolVar(&showChunks, "show-chunks", false, "list every chunk of the table with its range, weight and owner")
	return cmd
}

func readShards(cmd *cobra.Command, o *options, ns, release string, chunks int) (*Shards, error) {
	k, err := o.kube()
	if err != nil {
		return nil, err
	}
	ctx := cmd.Context()
	leases, err := k.CoordinationV1().Leases(ns).List(ctx, metav1.ListOptions{LabelSelector: shard.LabelMember + "=" + release})
	if err != nil {
		return nil, fmt.Errorf("listing member Leases: %w", err)
	}
	st := &Shards{Release: release, ReadAt: time.Now().UTC().Truncate(time.Second)}
	if l, err := k.CoordinationV1().Leases(ns).Get(ctx, release+"-leader", metav1.GetOptions{}); err == nil && l.Spec.HolderIdentity != nil {
		st.Leader = *l.Spec.HolderIdentity
	} else if err != nil && !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("reading the leader Lease: %w", err)
	}
	var published *shard.Table
	cm, err := k.CoreV1().ConfigMaps(ns).Get(ctx, shard.TableConfigMap(release), metav1.GetOptions{})
	switch {
	case err == nil:
		if published, err = shard.DecodeTable([]byte(cm.Data[shard.TableKey])); err != nil {
			return nil, fmt.Errorf("ConfigMap %s: %w", cm.Name, err)
		}
	case !apierrors.IsNotFound(err):
		return nil, fmt.Errorf("reading the shard table: %w", err)
	}
	nss, err := k.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing namespaces: %w", err)
	}
	names := make([]string, len(nss.Items))
	for i, n := range nss.Items {
		names[i] = n.Name
	}
	var staying, leaving []*coordinationv1.Lease
	renewed, holding, watching := map[string]time.Time{}, map[string]string{}, map[string]bool{}
	for i := range leases.Items {
		l := &leases.Items[i]
		if shard.Leaving(l) {
			leaving = append(leaving, l)
		} else {
			staying = append(staying, l)
		}
		if l.Spec.HolderIdentity == nil {
			continue
		}
		if l.Spec.RenewTime != nil {
			renewed[*l.Spec.HolderIdentity] = l.Spec.RenewTime.Time
		}
		if h, ok := l.Annotations[shard.AnnotationHolding]; ok {
			holding[*l.Spec.HolderIdentity] = h
		}
		watching[*l.Spec.HolderIdentity] = l.Annotations[shard.AnnotationWatching] == "true"
	}
	members := shard.LiveMembers(staying, time.Now())
	st.Leaving = shard.LiveMembers(leaving, time.Now())
	table := shard.InForce(published, names, members, chunks)
	if published != nil {
		st.Generation, st.PublishedBy = published.Generation, published.PublishedBy
	}
	fillShards(st, table, names, members, renewed, holding)
	for i := range st.Members {
		st.Members[i].Watching = watching[st.Members[i].Name]
	}
	return st, nil
}

// fillShards describes table's chunks and each member's part of it; holding is what each member
// reported holding, for those that did.
func fillShards(st *Shards, table *shard.Table, names, members []string, renewed map[string]time.Time, holding map[string]string) {
	owned := map[string][]string{}
	for _, n := range names {
		o := table.Owner(shard.Hash(n))
		owned[o] = append(owned[o], n)
	}
	loads, total := table.Loads(), 0.0
	for _, l := range loads {
		total += l
	}
	count := map[string]int{}
	for i, s := range table.Starts {
		end := "0x10000000000000000"
		if i+1 < len(table.Starts) {
			end = fmt.Sprintf("0x%016x", table.Starts[i+1])
		}
		st.Chunks = append(st.Chunks, Chunk{Start: fmt.Sprintf("0x%016x", s), End: end, Weight: table.Weights[i], Owner: table.Owners[i]})
		count[table.Owners[i]]++
	}
	for _, m := range members {
		sort.Strings(owned[m])
		mb := Member{Name: m, Leader: m == st.Leader, Chunks: count[m], Load: loads[m],
			Namespaces: owned[m], RenewedAt: renewed[m]}
		if total > 0 {
			mb.Share = loads[m] / total
		}
		share := table.Ranges(m)
		for _, r := range share {
			mb.Ranges = append(mb.Ranges, r.String())
		}
		switch h, ok := holding[m]; {
		case !ok:
			mb.HandOver = "unreported"
		case h == share.Encode():
			mb.HandOver = "settled"
		default:
			mb.HandOver = "pending"
		}
		st.Members = append(st.Members, mb)
	}
}

func printShards(o *options, st *Shards, showChunks bool) error {
	leader := st.Leader
	if leader == "" {
		leader = "<none>"
	}
	table := "no table published yet: each replica cuts the namespaces itself"
	if st.Generation > 0 {
		table = fmt.Sprintf("table generation %d, published by %s", st.Generation, st.PublishedBy)
	}
	if len(st.Leaving) > 0 {
		table += "; leaving: " + strings.Join(st.Leaving, ", ")
	}
	fmt.Fprintf(o.out, "Release %s: %d members, leader %s, %d chunks; %s\n\n", st.Release, len(st.Members), leader,
		len(st.Chunks), table)
	t := newTable(o.out, "MEMBER", "LEADER", "CHUNKS", "RANGES", "LOAD", "SHARE", "NAMESPACES", "HAND-OVER", "WATCHING", "RENEWED")
	for _, m := range st.Members {
		t.row(m.Name, fmt.Sprint(m.Leader), fmt.Sprint(m.Chunks), fmt.Sprint(len(m.Ranges)), fmt.Sprintf("%.0f", m.Load),
			fmt.Sprintf("%.1f%%", 100*m.Share), fmt.Sprint(len(m.Namespaces)), m.HandOver, fmt.Sprint(m.Watching),
			age(m.RenewedAt)+" ago")
	}
	if err := t.flush(); err != nil || !showChunks {
		return err
	}
	fmt.Fprintln(o.out)
	c := newTable(o.out, "START", "END", "WEIGHT", "OWNER")
	for _, ch := range st.Chunks {
		c.row(ch.Start, ch.End, fmt.Sprintf("%.0f", ch.Weight), ch.Owner)
	}
	return c.flush()
}
