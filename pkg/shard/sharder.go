package shard

import (
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/client-go/tools/cache"

	"github.com/kube-zen/zen-watcher/pkg/metrics"
)

// Membership is this replica's membership as its own clock sees it (Members).
type Membership interface {
	// Tenure names the tenure in force.
	Tenure() uint64
	// Holds reports whether tenure is still in force and unexpired.
	Holds(tenure uint64) bool
}

// Sharder turns the member set, the namespaces and the table the leader published into this
// replica's share, and narrows informers to it.
//
// The table in force is the published one adapted to the members alive now (see Table.Adapt):
// every replica computes the same from the same inputs, so the namespaces of a member that left
// are owned again as soon as its Lease is gone, without waiting for a leader. Before any table is
// published, every replica cuts the same count-weighted table from the namespaces it sees.
type Sharder struct {
	self       string
	chunks     int
	metrics    *metrics.Metrics
	log        *slog.Logger
	membership Membership // nil: informers keep their share for as long as they run

	mu      sync.Mutex
	members []string
	names   []string
	// namesChanged is when the namespaces last changed: the leader re-cuts once they are quiet.
	namesChanged time.Time
	// cutFor holds the hashes of the namespaces there were when the published table was cut (as
	// this replica saw them when it took that cut): the leader tells by them what appeared since.
	cutFor    map[uint64]bool
	published *Table
	table     *Table
	share     Ranges
	// applied is the share informers are narrowed to (see Apply); it trails share until the
	// replica has read what is written in the new one.
	applied Ranges
	// hasApplied is whether Apply was called: before, applied is the whole space.
	hasApplied bool
	// pieces are the ranges of the sets of informers reading the share (see Within), each
	// narrowed as the share loses ranges; Apply restarts them all once there are MaxPieces.
	pieces []*piece
	// tenure is the one in force when Apply last had the informers restart.
	tenure  uint64
	joined  bool
	changes chan struct{}
	// frozen keeps the share as it is (Freeze).
	frozen bool

	// weigher counts what the informers started on the share in force deliver.
	weigher weigher
}

// NewSharder returns the sharder of member self, cutting tables of chunks chunks. Until it has
// a member set it owns everything, which is right for a replica alone and harmless before it has
// joined (it is not ready then).
func NewSharder(self string, chunks int, m *metrics.Metrics, log *slog.Logger) *Sharder {
	if chunks < 1 {
		chunks = DefaultChunks
	}
	m.ShardObjects.WithLabelValues("kept")
	m.ShardObjects.WithLabelValues("dropped")
	return &Sharder{self: self, chunks: chunks, metrics: m, log: log, share: Ranges{{}}, applied: Ranges{{}},
		changes: make(chan struct{}, 1)}
}

// UseTenure makes each informer wrapped from now on keep nothing once the tenure in force when it
// started no longer holds: a replica that resumes after a pause drops what its watches delivered
// for a share that may be another replica's by then, instead of writing it.
func (s *Sharder) UseTenure(m Membership) { s.membership = m }

// SetMembers takes a new member set; it reports whether the share changed.
func (s *Sharder) SetMembers(members []string) bool {
	return s.update(func() { s.members = slices.Clone(members) })
}

// SetNamespaces takes the namespaces now; it reports whether the share changed (only before a
// table is published: a published table's chunks tile the space, new namespaces included).
func (s *Sharder) SetNamespaces(names []string) bool {
	return s.update(func() {
		if !slices.Equal(s.names, names) {
			if s.names != nil { // the first namespaces seen are not a change of them
				s.namesChanged = time.Now()
			}
			s.names = names
		}
		if s.cutFor == nil && s.published != nil {
			s.cutFor = hashSet(names)
		}
	})
}

// SetPublished takes a table the leader published; an older generation than the one held is
// ignored. It reports whether the share changed.
func (s *Sharder) SetPublished(t *Table) bool {
	return s.update(func() {
		if t != nil && (s.published == nil || t.Generation >= s.published.Generation) {
			// A table adapted to a new member set keeps its cut, and what appeared before it is
			// still new to that cut.
			if s.published == nil || !slices.Equal(s.published.Starts, t.Starts) {
				s.cutFor = hashSet(s.names)
			}
			s.published = t
		}
	})
}

// update applies change and computes the table and share in force.
func (s *Sharder) update(change func()) bool {
	s.mu.Lock()
	change()
	if s.frozen && slices.Contains(s.members, s.self) {
		s.mu.Unlock()
		return false
	}
	t := s.inForce()
	share := t.Ranges(s.self)
	if !slices.Contains(s.members, s.self) {
		share = nil
	}
	changed := !slices.Equal(share, s.share)
	s.table, s.share, s.joined = t, share, slices.Contains(s.members, s.self)
	if changed {
		// What leaves the share, the informers reading it never keep again, even should it come
		// back before the next Apply: their watches dropped its events meanwhile, so it is read
		// anew (Gained) as any other gain.
		s.applied = s.applied.Intersect(share)
		for _, p := range s.pieces {
			p.narrow(share)
		}
	}
	members, owned := len(s.members), s.countOwned(share)
	chunks := 0
	if share != nil { // a replica outside the member set owns no chunk, whatever the table says
		for _, o := range t.Owners {
			if o == s.self {
				chunks++
			}
		}
	}
	s.mu.Unlock()
	s.metrics.Members.Set(float64(members))
	s.metrics.ChunksOwned.Set(float64(chunks))
	s.metrics.TableGeneration.Set(float64(t.Generation))
	s.metrics.NamespacesOwned.Set(float64(owned))
	if !changed {
		return false
	}
	s.metrics.Rebalances.Inc()
	if len(share) == 0 {
		// Failing closed: its informers ask for nothing and keep nothing until it is back.
		s.log.Warn("this replica owns no namespace", "self", s.self, "members", members)
	}
	s.log.Info("share changed", "generation", t.Generation, "members", members, "chunks", chunks,
		"ranges", len(share), "namespaces", owned)
	select {
	case s.changes <- struct{}{}:
	default:
	}
	return true
}

// inForce is the table in force now. Called with mu held.
func (s *Sharder) inForce() *Table { return InForce(s.published, s.names, s.members, s.chunks) }

// InForce is the table every replica applies: the published one adapted to the members alive now,
// or, before any is published, the count-weighted cut of the namespaces into chunks chunks.
func InForce(published *Table, namespaces, members []string, chunks int) *Table {
	if p := published; p != nil && len(p.Starts) > 0 {
		if slices.Equal(p.Members(), members) {
			return p
		}
		return p.Adapt(members)
	}
	return NewTable(CountWeighted(namespaces), members, chunks, nil)
}

func (s *Sharder) countOwned(share Ranges) int {
	n := 0
	for _, name := range s.names {
		if share.Contains(Hash(name)) {
			n++
		}
	}
	return n
}

// Changes signals each change of the share.
func (s *Sharder) Changes() <-chan struct{} { return s.changes }

// Joined reports whether this replica is in the member set it last saw.
func (s *Sharder) Joined() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.joined
}

// Share is this replica's current share.
func (s *Sharder) Share() Ranges {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.share
}

// Table is the table in force; nil before the first member set.
func (s *Sharder) Table() *Table {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.table
}

// A Step is what the informers do to read a share applied (Sharder.Apply).
type Step int

const (
	// Narrow: the share only lost ranges. The informers read on; what left, their ListerWatchers
	// drop already, and listing the rest again would only cost the API server and this replica a
	// list of what they hold.
	Narrow Step = iota
	// Extend: informers over the ranges gained (and only those) join the ones running, so that a
	// gain lists what is new to the replica and not what it has read all along.
	Extend
	// Restart: the informers restart on the whole share: the first share, one whose tenure ended
	// (the informers keep nothing then), or a gain that would make more than MaxPieces sets.
	Restart
)

func (s Step) String() string {
	switch s {
	case Narrow:
		return "narrow"
	case Extend:
		return "extend"
	case Restart:
		return "restart"
	}
	return fmt.Sprintf("Step(%d)", int(s))
}

// MaxPieces is how many sets of informers may read a share (one started on a whole share, one per
// gain since) before the next gain restarts them on the whole share instead: each set is a watch
// per resource, and its ranges only shrink.
const MaxPieces = 4

// Apply makes share (one Share returned) the one informers are narrowed to. Until it is called for
// a new share, informers keep reading the one applied before, less what left it: a replica applies it
// once the members that held what it gains have let go, and its informers hand on nothing listed in
// the gained ranges until it has read the Observations written there (Within, WrapRanges): a share
// that changes meanwhile waits for its own read instead of being listed with the index of another.
//
// It returns what the informers must do to read share, and the ranges to start informers over
// (Within): the whole share to Restart, the gained ranges to Extend, none to Narrow.
func (s *Sharder) Apply(share Ranges) (Step, Ranges) {
	s.mu.Lock()
	defer s.mu.Unlock()
	gained := share.Minus(s.applied)
	step := Narrow
	switch {
	case !s.hasApplied, s.membership != nil && !s.membership.Holds(s.tenure):
		step = Restart // the informers keep nothing once their tenure has ended
	case len(gained) > 0 && len(s.pieces) >= MaxPieces:
		// Pieces whose ranges all left count too: their informers run until the restart.
		step = Restart
	case len(gained) > 0:
		step = Extend
	}
	s.applied, s.hasApplied = share, true
	switch step {
	case Restart:
		if s.membership != nil {
			s.tenure = s.membership.Tenure()
		}
		s.pieces = nil
		s.weigher.reset() // the informers counting now stop
		return Restart, share
	case Extend:
		return Extend, gained
	}
	return Narrow, nil
}

// Within returns the ListerWatcher decorator of a set of informers over ranges (those Apply
// returned): narrowed to them with the API server's help, and further as the share loses ranges.
// Their informers hand on nothing they list until read is closed (nil: at once), which the replica
// closes once it has read the Observations written in ranges: the lists run meanwhile, and their
// bridges hand on what changes (ListedAfter) once bridged is closed (nil: at once; BridgedAfter).
func (s *Sharder) Within(ranges Ranges, read, bridged <-chan struct{}) func(cache.ListerWatcher) cache.ListerWatcher {
	s.mu.Lock()
	p := newPiece(ranges.Intersect(s.share))
	p.read, p.bridged = read, bridged
	s.pieces = append(s.pieces, p)
	s.mu.Unlock()
	return func(lw cache.ListerWatcher) cache.ListerWatcher {
		return s.wrap(lw, p.get(), p, s.weigher.start())
	}
}

// piece is the ranges of one set of informers; they only ever shrink.
type piece struct {
	ranges atomic.Pointer[Ranges]

	mu sync.Mutex
	// narrowed is closed when the ranges shrink, and replaced.
	narrowed chan struct{}
	// read, when set, is closed once the Observations written in the piece have been read.
	read <-chan struct{}
	// bridged, when set, is closed once the bridges may hand on what they watch.
	bridged <-chan struct{}
}

func newPiece(r Ranges) *piece {
	p := &piece{narrowed: make(chan struct{})}
	p.ranges.Store(&r)
	return p
}

func (p *piece) get() Ranges { return *p.ranges.Load() }

// narrow keeps what share holds. Called with the Sharder's mu held.
func (p *piece) narrow(share Ranges) {
	r := p.get().Intersect(share)
	if slices.Equal(r, p.get()) {
		return
	}
	p.ranges.Store(&r)
	p.mu.Lock()
	close(p.narrowed)
	p.narrowed = make(chan struct{})
	p.mu.Unlock()
}

// changes is closed when the ranges next shrink.
func (p *piece) changes() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.narrowed
}

// Gained is the hashes of the namespaces the share in force holds and the share applied last did
// not (all of them before the first Apply): where this replica is about to list anew, and where
// the members that held them may still be writing what they took there before.
func (s *Sharder) Gained() []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var gained []uint64
	for _, name := range s.names {
		h := Hash(name)
		if s.share.Contains(h) && (!s.hasApplied || !s.applied.Contains(h)) {
			gained = append(gained, h)
		}
	}
	return gained
}

// Freeze keeps the share as it is from now on, whatever the members, the namespaces or the table
// published: a replica leaving writes on in the namespaces it hands over until the others watch
// them, and takes on none. Leaving the member set (a lapse) still empties it.
func (s *Sharder) Freeze() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.frozen = true
}

// Owned is the hashes of the namespaces the share in force holds: what a replica leaving hands
// over (Members.AwaitTakenOver).
func (s *Sharder) Owned() []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var owned []uint64
	for _, name := range s.names {
		if h := Hash(name); s.share.Contains(h) {
			owned = append(owned, h)
		}
	}
	return owned
}

// Owns reports whether this replica owns a namespace now.
func (s *Sharder) Owns(namespace string) bool { return s.OwnsHash(Hash(namespace)) }

// OwnsHash reports whether this replica owns the namespaces of hash h now.
func (s *Sharder) OwnsHash(h uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.share.Contains(h)
}

// Wrap narrows an informer's ListerWatcher to the share applied when the informer starts (see
// Apply), for an informer that does not follow later shares: informers that do start from Within.
func (s *Sharder) Wrap(lw cache.ListerWatcher) cache.ListerWatcher {
	s.mu.Lock()
	share := s.applied
	s.mu.Unlock()
	return s.wrap(lw, share, nil, s.weigher.start())
}

// WrapRanges narrows lw to ranges: for reading the Observations written in the ranges a share
// gains (GainedRanges, taken before Apply) while the informers over them list. Where the replica
// keeps, its informers read already, and their re-list hands on nothing that was handed on before.
// What it lists is not weighed: the namespaces' weights are their source objects and changes.
func (s *Sharder) WrapRanges(ranges Ranges) func(cache.ListerWatcher) cache.ListerWatcher {
	return func(lw cache.ListerWatcher) cache.ListerWatcher { return s.wrap(lw, ranges, nil, nil) }
}

// GainedRanges is the part of the share in force that the share applied last does not hold (all
// of it before the first Apply); empty when the share only shrank.
func (s *Sharder) GainedRanges() Ranges {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.hasApplied {
		return s.share
	}
	return s.share.Minus(s.applied)
}

// wrap narrows lw to share, or to p's ranges as they shrink (p nil: share alone); what it keeps is
// counted in weight (nil: not weighed).
func (s *Sharder) wrap(lw cache.ListerWatcher, share Ranges, p *piece, weight *tally) cache.ListerWatcher {
	var held func() bool
	if m := s.membership; m != nil {
		tenure := m.Tenure()
		held = func() bool { return m.Holds(tenure) }
	}
	if held == nil && p == nil && share.Whole() {
		return lw
	}
	return &listerWatcher{next: lw, share: share, piece: p, held: held, tally: weight, inForce: s.OwnsHash,
		kept: s.metrics.ShardObjects.WithLabelValues("kept"), dropped: s.metrics.ShardObjects.WithLabelValues("dropped")}
}

// hashSet is the set of names' hashes; nil for no names (nothing known yet).
func hashSet(names []string) map[uint64]bool {
	if len(names) == 0 {
		return nil
	}
	set := make(map[uint64]bool, len(names))
	for _, n := range names {
		set[Hash(n)] = true
	}
	return set
}
