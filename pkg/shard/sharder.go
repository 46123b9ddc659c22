package shard

import (
	"log/slog"
	"slices"
	"sync"
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
	published    *Table
	table        *Table
	share        Ranges
	// applied is the share informers are narrowed to (see Apply); it trails share until the
	// replica has read what is written in the new one.
	applied Ranges
	// hasApplied is whether Apply was called: before, applied is the whole space.
	hasApplied bool
	joined     bool
	changes    chan struct{}

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
	})
}

// SetPublished takes a table the leader published; an older generation than the one held is
// ignored. It reports whether the share changed.
func (s *Sharder) SetPublished(t *Table) bool {
	return s.update(func() {
		if t != nil && (s.published == nil || t.Generation >= s.published.Generation) {
			s.published = t
		}
	})
}

// update applies change and computes the table and share in force.
func (s *Sharder) update(change func()) bool {
	s.mu.Lock()
	change()
	t := s.inForce()
	share := t.Ranges(s.self)
	if !slices.Contains(s.members, s.self) {
		share = nil
	}
	changed := !slices.Equal(share, s.share)
	s.table, s.share, s.joined = t, share, slices.Contains(s.members, s.self)
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
	s.weigher.reset()
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

// Apply makes share (one Share returned) the one informers wrapped from now on are narrowed to.
// Until it is called for a new share, informers keep being narrowed to the one applied before: a
// replica reads the Observations written in the new share (through WrapAhead), then applies it and
// restarts its informers, and a share that changes meanwhile waits for its own read instead of
// being listed with the index of another.
func (s *Sharder) Apply(share Ranges) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.applied, s.hasApplied = share, true
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

// Owns reports whether this replica owns a namespace now.
func (s *Sharder) Owns(namespace string) bool { return s.ownsHash(Hash(namespace)) }

func (s *Sharder) ownsHash(h uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.share.Contains(h)
}

// Wrap narrows an informer's ListerWatcher to the share applied when the informer starts (see
// Apply); informers are restarted when the share changes.
func (s *Sharder) Wrap(lw cache.ListerWatcher) cache.ListerWatcher {
	s.mu.Lock()
	share := s.applied
	s.mu.Unlock()
	return s.wrap(lw, share)
}

// WrapAhead narrows lw to the share in force, applied or not: for reading what is written in a
// share before its informers start.
func (s *Sharder) WrapAhead(lw cache.ListerWatcher) cache.ListerWatcher { return s.wrap(lw, s.Share()) }

func (s *Sharder) wrap(lw cache.ListerWatcher, share Ranges) cache.ListerWatcher {
	var held func() bool
	if m := s.membership; m != nil {
		tenure := m.Tenure()
		held = func() bool { return m.Holds(tenure) }
	}
	if held == nil && share.Whole() {
		return lw
	}
	return &listerWatcher{next: lw, share: share, held: held, tally: s.weigher.start(), inForce: s.ownsHash,
		kept: s.metrics.ShardObjects.WithLabelValues("kept"), dropped: s.metrics.ShardObjects.WithLabelValues("dropped")}
}
