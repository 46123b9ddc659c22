package shard

import (
	"fmt"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/kube-zen/zen-watcher/pkg/metrics"
)

func newTestSharder(self string) *Sharder {
	return NewSharder(self, DefaultChunks, metrics.New(prometheus.NewRegistry()), slog.New(slog.NewTextHandler(io.Discard, nil)))
}

func names(format string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf(format, i+1)
	}
	return out
}

// TestFrozenShareStays: once frozen, a replica's share changes with neither the members, the
// namespaces nor a table published; only leaving the member set empties it.
func TestFrozenShareStays(t *testing.T) {
	s := newTestSharder("a")
	s.SetNamespaces(names("team-%d", 60))
	s.SetMembers([]string{"a", "b", "c"})
	share := s.Share()
	s.Freeze()
	for _, tc := range []struct {
		name   string
		change func() bool
	}{
		{"a member leaves", func() bool { return s.SetMembers([]string{"a", "b"}) }},
		{"a member joins", func() bool { return s.SetMembers([]string{"a", "b", "c", "d"}) }},
		{"namespaces appear", func() bool { return s.SetNamespaces(names("prod-%d", 60)) }},
		{"a table is published", func() bool {
			return s.SetPublished(NewTable(CountWeighted(names("prod-%d", 60)), []string{"a", "d"}, DefaultChunks, nil))
		}},
	} {
		if tc.change() || !slices.Equal(s.Share(), share) {
			t.Errorf("%s: the frozen share changed to %v", tc.name, s.Share())
		}
	}
	if !s.SetMembers(nil) || len(s.Share()) != 0 {
		t.Errorf("a frozen replica outside the member set owns %v", s.Share())
	}
}

// TestSharderFailsClosed: a replica whose member set is empty, or holds only others, owns no
// namespace, cluster-scoped objects (the empty namespace) included.
func TestSharderFailsClosed(t *testing.T) {
	for name, members := range map[string][]string{"no members": nil, "only others": {"zw-1", "zw-2"}} {
		s := newTestSharder("zw-0")
		if !s.SetMembers(members) {
			t.Errorf("%s: the share did not change from the whole space", name)
		}
		s.SetNamespaces(names("team-%d", 10))
		for _, ns := range []string{"default", "kube-system", "team-1", ""} {
			if s.Owns(ns) {
				t.Errorf("%s: owns %q", name, ns)
			}
		}
		if len(s.Share()) != 0 || s.Joined() {
			t.Errorf("%s: share %v, joined %v", name, s.Share(), s.Joined())
		}
	}
}

// owners maps each namespace to the members of sharders that own it.
func owners(sharders []*Sharder, nss []string) map[string][]string {
	out := map[string][]string{}
	for _, ns := range nss {
		for _, s := range sharders {
			if s.Owns(ns) {
				out[ns] = append(out[ns], s.self)
			}
		}
	}
	return out
}

// TestSharderAgrees: replicas that see the same namespaces, members and published table own every
// namespace exactly once — before any table is published, with one published, when a member has
// left and before the leader has published again, and for namespaces created after the cut.
func TestSharderAgrees(t *testing.T) {
	nss := append(names("team-%d", 50), "default", "kube-system", "monitoring")
	later := names("later-%d", 40)
	members := []string{"zw-a", "zw-b", "zw-c"}
	var sharders []*Sharder
	for _, m := range members {
		s := newTestSharder(m)
		s.SetNamespaces(nss)
		s.SetMembers(members)
		sharders = append(sharders, s)
	}
	check := func(step string, want []string) {
		t.Helper()
		got := owners(sharders, append(slices.Clone(nss), later...))
		count := map[string]int{}
		for ns, os := range got {
			if len(os) != 1 {
				t.Fatalf("%s: %s owned by %v", step, ns, os)
			}
			count[os[0]]++
		}
		if len(got) != len(nss)+len(later) {
			t.Fatalf("%s: %d of %d namespaces owned", step, len(got), len(nss)+len(later))
		}
		for _, m := range want {
			if n := count[m]; n < len(nss)/len(want)-3 {
				t.Errorf("%s: %s owns %d of %d namespaces", step, m, n, len(nss))
			}
		}
	}
	check("local cut", members)
	pub := NewTable(CountWeighted(nss), members, DefaultChunks, nil)
	pub.Generation = 1
	for _, s := range sharders {
		if s.SetPublished(pub) {
			t.Errorf("%s: the published table, equal to the local cut, changed the share", s.self)
		}
	}
	check("published", members)
	before := sharders[0].Share()
	left := members[:2]
	for _, s := range sharders {
		s.SetMembers(left)
	}
	sharders = sharders[:2]
	check("a member left", left)
	for _, r := range before {
		if !sharders[0].Share().Contains(r.Start) {
			t.Errorf("zw-a lost %v when zw-c left", r)
		}
	}
	old := &Table{Starts: []uint64{0}, Weights: []float64{1}, Owners: []string{"zw-c"}}
	if sharders[0].SetPublished(old) || sharders[0].Table().Generation != 1 {
		t.Error("an older generation replaced the table in force")
	}
}

// TestLeaderRecutsDriftedNamespaces: the leader publishes a first table, the table adapted to a new
// member set, and a re-cut once namespaces named alike have come after the cut — but only once
// they have been quiet, and not again while nothing would improve.
func TestLeaderRecutsDriftedNamespaces(t *testing.T) {
	cfg := LeadConfig{Quiet: time.Hour, MinInterval: time.Hour}
	cfg.setDefaults()
	s := newTestSharder("zw-a")
	members := []string{"zw-a", "zw-b", "zw-c"}
	s.SetMembers(members)
	if next, _ := s.next(cfg, time.Time{}, nil); next != nil {
		t.Fatal("a table before any namespace was seen")
	}
	s.SetNamespaces([]string{"default", "kube-system", "zen-system", "monitoring"})
	next, why := s.next(cfg, time.Time{}, nil)
	if why != "first" {
		t.Fatalf("first: %q", why)
	}
	next.Generation = 1
	s.SetPublished(next)
	if n, why := s.next(cfg, time.Time{}, nil); n != nil {
		t.Fatalf("published again (%s) with nothing changed", why)
	}
	s.SetMembers(append(members, "zw-d"))
	if n, why := s.next(cfg, time.Time{}, nil); n == nil || why != "members" || !slices.Contains(n.Members(), "zw-d") {
		t.Fatalf("a new member: %q %v", why, n)
	} else {
		s.SetPublished(&Table{Starts: n.Starts, Weights: n.Weights, Owners: n.Owners, Generation: 2})
	}
	all := append([]string{"default", "kube-system", "zen-system", "monitoring"}, names("team-%d", 60)...)
	s.SetNamespaces(all)
	if n, why := s.next(cfg, time.Time{}, nil); n != nil {
		t.Fatalf("re-cut (%s) while the namespaces were not quiet", why)
	}
	cfg.Quiet = time.Nanosecond
	n, why := s.next(cfg, time.Time{}, nil)
	if why != "re-cut" {
		t.Fatalf("60 namespaces named alike after the cut: %q", why)
	}
	weighed := CountWeighted(all)
	was := s.Table().Imbalance(weighed, s.members)
	if got := n.Imbalance(weighed, s.members); got > 1.15 || was < 1.5 {
		t.Errorf("imbalance %.2f before the re-cut (want the drift to show), %.2f after (want ≤ 1.15)", was, got)
	}
	n.Generation = 3
	s.SetPublished(n)
	if n, why := s.next(cfg, time.Time{}, nil); n != nil {
		t.Errorf("published again (%s) right after the re-cut", why)
	}
	if n, _ := s.next(cfg, time.Now(), nil); n != nil {
		t.Error("re-cut within the least interval")
	}
}

// TestTableEncoding: a table reads back as written; a table whose chunks do not tile the space is
// refused.
func TestTableEncoding(t *testing.T) {
	tb := NewTable(CountWeighted(names("prod-%03d", 500)), []string{"a", "b", "c"}, DefaultChunks, nil)
	tb.Generation = 7
	b, err := EncodeTable(tb, "zw-a", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeTable(b)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Starts, tb.Starts) || !slices.Equal(got.Owners, tb.Owners) ||
		!slices.Equal(got.Weights, tb.Weights) || got.Generation != 7 {
		t.Errorf("read back %+v", got)
	}
	for name, body := range map[string]string{
		"not json":       `{`,
		"no chunks":      `{"generation":1,"chunks":[]}`,
		"not from zero":  `{"chunks":[{"start":"0x0000000000000001","owner":"a"}]}`,
		"out of order":   `{"chunks":[{"start":"0x0000000000000000","owner":"a"},{"start":"0x0000000000000000","owner":"b"}]}`,
		"no owner":       `{"chunks":[{"start":"0x0000000000000000","owner":""}]}`,
		"not a hash":     `{"chunks":[{"start":"zero","owner":"a"}]}`,
		"wrong type":     `{"generation":"1","chunks":[{"start":"0x0000000000000000","owner":"a"}]}`,
		"over the space": `{"chunks":[{"start":"0x10000000000000000","owner":"a"}]}`,
	} {
		if _, err := DecodeTable([]byte(body)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestInformersGetTheShareApplied: informers are narrowed to the share applied, not to one that
// changed after it — the replica has read the Observations written in the applied share only.
func TestInformersGetTheShareApplied(t *testing.T) {
	s := newTestSharder("zw-a")
	s.SetNamespaces(names("team-%d", 30))
	s.SetMembers([]string{"zw-a", "zw-b", "zw-c"})
	three := s.Share()
	s.Apply(three)
	s.SetMembers([]string{"zw-a", "zw-b"})
	two := s.Share()
	if slices.Equal(three, two) {
		t.Fatal("the share did not change when a member left")
	}
	shareOf := func() Ranges {
		l, ok := s.Wrap(&cache.ListWatch{}).(*listerWatcher)
		if !ok {
			t.Fatal("the informer was not wrapped")
		}
		return l.share
	}
	if got, want := shareOf(), three.Intersect(two); !slices.Equal(got, want) {
		t.Errorf("an informer wrapped before the new share was applied got %v, want the applied less what left, %v", got, want)
	}
	gained := s.GainedRanges()
	if len(gained) == 0 || !slices.Equal(gained, two.Minus(three)) {
		t.Fatalf("gained %v going from %v to %v", gained, three, two)
	}
	ahead, ok := s.WrapRanges(s.GainedRanges())(&cache.ListWatch{}).(*listerWatcher)
	if !ok || !slices.Equal(ahead.share, gained) || ahead.tally != nil {
		t.Errorf("reading ahead is narrowed to %v (weighed: %v), want what the share in force gains, %v, unweighed",
			ahead.share, ahead.tally != nil, gained)
	}
	if s.Apply(two); !slices.Equal(shareOf(), two) {
		t.Errorf("after Apply informers get %v, want %v", shareOf(), two)
	}
	if g := s.GainedRanges(); len(g) != 0 {
		t.Errorf("after Apply the share gains %v, want nothing", g)
	}
	s.SetMembers([]string{"zw-a", "zw-b", "zw-c"})
	if g := s.GainedRanges(); len(g) != 0 {
		t.Errorf("a share that only shrank gains %v, want nothing", g)
	}
}

// TestApplySteps: the informers restart on the first share, when their tenure ended and when a
// gain would make more than MaxPieces sets of them; otherwise a share that gained is read by
// informers over the gained ranges alone, and one that only shrank by the informers running.
func TestApplySteps(t *testing.T) {
	tenure := &stubTenure{}
	s := newTestSharder("zw-a")
	s.UseTenure(tenure)
	s.SetNamespaces(names("team-%d", 30))
	ab, abc := []string{"zw-a", "zw-b"}, []string{"zw-a", "zw-b", "zw-c"}
	for _, step := range []struct {
		name      string
		members   []string
		endTenure bool
		want      Step
	}{
		{"the first share", ab, false, Restart},
		{"a member joins: the share shrinks", abc, false, Narrow},
		{"nothing changed", abc, false, Narrow},
		{"a member leaves: the share grows", ab, false, Extend},
		{"joins again", abc, false, Narrow},
		{"leaves again", ab, false, Extend},
		{"joins a third time", abc, false, Narrow},
		{"leaves a third time: the fourth set", ab, false, Extend},
		{"joins a fourth time", abc, false, Narrow},
		{"leaves a fourth time: one set in place of five", ab, false, Restart},
		{"shrinks after the tenure ended", abc, true, Restart},
		{"shrinks in the new tenure", []string{"zw-a", "zw-b", "zw-c", "zw-d"}, false, Narrow},
	} {
		before := s.Share()
		s.SetMembers(step.members)
		if step.endTenure {
			tenure.n.Add(1)
		}
		got, ranges := s.Apply(s.Share())
		if got != step.want {
			t.Errorf("%s (%v → %v): step %v, want %v", step.name, before, s.Share(), got, step.want)
		}
		var want Ranges
		switch got {
		case Restart:
			want = s.Share()
		case Extend:
			want = s.Share().Minus(before)
		}
		if !slices.Equal(ranges, want) {
			t.Errorf("%s: informers to start over %v, want %v", step.name, ranges, want)
		}
		if got != Narrow {
			s.Within(ranges, nil, nil)
		}
	}
}

// TestWhatLeftIsReadAnew: a namespace that leaves the share and comes back before the next Apply is
// listed anew by informers over it, and never kept again by those that dropped its events meanwhile.
func TestWhatLeftIsReadAnew(t *testing.T) {
	s := newTestSharder("zw-a")
	s.SetNamespaces(names("team-%d", 30))
	s.SetMembers([]string{"zw-a", "zw-b"})
	two := s.Share()
	step, ranges := s.Apply(two)
	if step != Restart {
		t.Fatalf("the first share: step %v", step)
	}
	first, ok := s.Within(ranges, nil, nil)(&cache.ListWatch{}).(*listerWatcher)
	if !ok {
		t.Fatal("the informers were not wrapped")
	}
	s.SetMembers([]string{"zw-a", "zw-b", "zw-c"})
	lost := two.Minus(s.Share())
	if len(lost) == 0 {
		t.Fatal("a member joined and the share lost nothing")
	}
	s.SetMembers([]string{"zw-a", "zw-b"}) // back before the replica applied the smaller share
	if !slices.Equal(s.Share(), two) {
		t.Fatalf("the share came back as %v, want %v", s.Share(), two)
	}
	if g := s.GainedRanges(); !slices.Equal(g, lost) {
		t.Errorf("Observations are read again in %v, want what left and came back, %v", g, lost)
	}
	step, ranges = s.Apply(two)
	if step != Extend || !slices.Equal(ranges, lost) {
		t.Fatalf("applying the share back: step %v over %v, want Extend over %v", step, ranges, lost)
	}
	if got := first.ranges(); len(got.Intersect(lost)) != 0 || !slices.Equal(got, two.Minus(lost)) {
		t.Errorf("the first informers read %v, want %v: never again what left", got, two.Minus(lost))
	}
	second, ok := s.Within(ranges, nil, nil)(&cache.ListWatch{}).(*listerWatcher)
	if !ok || !slices.Equal(second.ranges(), lost) {
		t.Fatalf("the informers added read %v, want %v", second.ranges(), lost)
	}
	for _, ns := range names("team-%d", 30) {
		h := Hash(ns)
		if first.ranges().Contains(h) && second.ranges().Contains(h) || first.Reads(ns) && second.Reads(ns) {
			t.Errorf("%s is read by both sets of informers", ns)
		}
		if two.Contains(h) != (first.ranges().Contains(h) || second.ranges().Contains(h)) {
			t.Errorf("%s: in the share %v, read by either set %v", ns, two.Contains(h), !two.Contains(h))
		}
	}
	if sel := first.options(metav1.ListOptions{}).ShardSelector; sel != two.Minus(lost).Selector() {
		t.Errorf("the first informers' next list asks for %q", sel)
	}
}

// TestGained: the namespaces a replica is about to list anew, and must hear the members that held
// them let go of first, are those the table in force gives it and the one it applied did not.
func TestGained(t *testing.T) {
	nss := names("team-%d", 60)
	// cut is the table a leader publishes for members; moved is the same with one of from's
	// chunks given to to.
	cut := func(members []string) *Table {
		tab := NewTable(CountWeighted(nss), members, DefaultChunks, nil)
		tab.Generation = 7
		return tab
	}
	moved := func(members []string, from, to string) *Table {
		tab := cut(members)
		i := slices.Index(tab.Owners, from)
		tab.Owners[i] = to
		return tab
	}
	for _, tc := range []struct {
		name          string
		self          string
		before, after []string // before nil: nothing applied yet
		first         *Table   // published before the first share, if any
		published     *Table   // published after the first share, if any
		gains         bool
	}{
		{name: "first share, alone", self: "zw-0", after: []string{"zw-0"}, gains: true},
		{name: "first share, others running", self: "zw-3", after: []string{"zw-0", "zw-1", "zw-2", "zw-3"}, gains: true},
		{name: "a member left", self: "zw-0", before: []string{"zw-0", "zw-1", "zw-2"}, after: []string{"zw-0", "zw-1"},
			first: cut([]string{"zw-0", "zw-1", "zw-2"}), gains: true},
		{name: "a member left, the table cut anew", self: "zw-0", before: []string{"zw-0", "zw-1", "zw-2"}, after: []string{"zw-0", "zw-1"},
			gains: true},
		{name: "a running member's chunk moved here", self: "zw-0", before: []string{"zw-0", "zw-1"}, after: []string{"zw-0", "zw-1"},
			published: moved([]string{"zw-0", "zw-1"}, "zw-1", "zw-0"), gains: true},
		{name: "this member's chunk moved away", self: "zw-0", before: []string{"zw-0", "zw-1"}, after: []string{"zw-0", "zw-1"},
			published: moved([]string{"zw-0", "zw-1"}, "zw-0", "zw-1")},
		{name: "nothing changed", self: "zw-1", before: []string{"zw-0", "zw-1"}, after: []string{"zw-0", "zw-1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestSharder(tc.self)
			s.SetNamespaces(nss)
			if tc.first != nil {
				s.SetPublished(tc.first)
			}
			var before *Table
			if tc.before != nil {
				s.SetMembers(tc.before)
				s.Apply(s.Share())
				before = s.Table()
			}
			if tc.published != nil {
				s.SetPublished(tc.published)
			}
			s.SetMembers(tc.after)
			// What the tables' owners say, chunk by chunk, rather than the shares' ranges.
			var want []uint64
			for _, name := range nss {
				h := Hash(name)
				if s.Table().Owner(h) == tc.self && (before == nil || before.Owner(h) != tc.self) {
					want = append(want, h)
				}
			}
			got := s.Gained()
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("Gained() = %d namespaces, want %d: %x, want %x", len(got), len(want), got, want)
			}
			if (len(got) > 0) != tc.gains {
				t.Errorf("Gained() = %d namespaces; the case means the share to gain: %v", len(got), tc.gains)
			}
			s.Apply(s.Share())
			if again := s.Gained(); len(again) != 0 {
				t.Errorf("after Apply, Gained() = %d namespaces, want none", len(again))
			}
		})
	}
}

// TestWithinHoldsListsUntilRead: informers over ranges Within was given a read to wait for report
// it (sources.Holding), and their bridge waits for what it was given (sources.BridgeHolding; nil:
// nothing); others wait for nothing.
func TestWithinHoldsListsUntilRead(t *testing.T) {
	s := newTestSharder("zw-a")
	s.SetNamespaces(names("team-%d", 30))
	s.SetMembers([]string{"zw-a", "zw-b"})
	_, ranges := s.Apply(s.Share())
	read, bridged := make(chan struct{}), make(chan struct{})
	for name, tc := range map[string]struct {
		lw            cache.ListerWatcher
		lists, bridge <-chan struct{}
	}{
		"within, read pending":    {s.Within(ranges, read, nil)(&cache.ListWatch{}), read, nil},
		"within, joining":         {s.Within(ranges, read, bridged)(&cache.ListWatch{}), read, bridged},
		"within, nothing to read": {s.Within(ranges, nil, nil)(&cache.ListWatch{}), nil, nil},
		"wrapped":                 {s.Wrap(&cache.ListWatch{}), nil, nil},
	} {
		l, ok := tc.lw.(*listerWatcher)
		if !ok {
			t.Fatalf("%s: not wrapped", name)
		}
		if got := l.ListedAfter(); got != tc.lists {
			t.Errorf("%s: lists wait for %v, want %v", name, got, tc.lists)
		}
		b, ok := l.Bridge().(*fromNow)
		if !ok || b.tally != nil {
			t.Errorf("%s: the bridge is %T (weighed: %v), want an unweighed fromNow", name, l.Bridge(), ok && b.tally != nil)
			continue
		}
		if got := b.BridgedAfter(); got != tc.bridge {
			t.Errorf("%s: the bridge waits for %v, want %v", name, got, tc.bridge)
		}
	}
}
