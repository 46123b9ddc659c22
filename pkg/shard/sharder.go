package shard

import (
	"log/slog"
	"slices"
	"sync"

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

// Sharder turns the member set into this replica's share, and narrows informers to it.
type Sharder struct {
	self       string
	partitions int
	balanced   bool
	metrics    *metrics.Metrics
	log        *slog.Logger
	membership Membership // nil: informers keep their share for as long as they run

	mu      sync.Mutex
	members []string
	share   Ranges
	joined  bool
	changes chan struct{}
	counted chan struct{}
}

// NewSharder returns the sharder of member self. Until the first Update it owns everything, which is
// right for a replica alone and harmless before it has joined (it is not ready then). balanced
// shards on the Balanced hash instead of the API server's FNV-1a (see Balanced).
func NewSharder(self string, partitions int, balanced bool, m *metrics.Metrics, log *slog.Logger) *Sharder {
	return &Sharder{self: self, partitions: partitions, balanced: balanced, metrics: m, log: log,
		share: Ranges{{}}, changes: make(chan struct{}, 1), counted: make(chan struct{}, 1)}
}

// UseTenure makes each informer wrapped from now on keep nothing once the tenure in force when it
// started no longer holds: a replica that resumes after a pause drops what its watches delivered
// for a share that may be another replica's by then, instead of writing it.
func (s *Sharder) UseTenure(m Membership) { s.membership = m }

// Update recomputes the share from the member set; it reports whether the share changed.
func (s *Sharder) Update(members []string) bool {
	hash := Hash
	if s.balanced {
		hash = Balanced
	}
	ring := NewRingWithHash(members, s.partitions, hash)
	share := ring.Ranges(s.self)
	owned := ring.Partitions()[s.self]
	s.mu.Lock()
	changed := !share.Equal(s.share)
	s.members, s.share, s.joined = members, share, slices.Contains(members, s.self)
	s.mu.Unlock()
	s.metrics.Members.Set(float64(len(members)))
	s.metrics.PartitionsOwned.Set(float64(owned))
	if changed {
		s.metrics.Rebalances.Inc()
		if len(share) == 0 {
			// Failing closed: its informers ask for nothing and keep nothing until it is back.
			s.log.Warn("this replica owns no namespace: it is not in the member set it sees", "self", s.self, "members", members)
		}
		s.log.Info("share changed", "members", members, "partitions", owned, "ranges", len(share))
		for _, c := range []chan struct{}{s.changes, s.counted} {
			select {
			case c <- struct{}{}:
			default:
			}
		}
	}
	return changed
}

// Changes signals each change of the share.
func (s *Sharder) Changes() <-chan struct{} { return s.changes }

// Counted signals each change of the share too, for a second listener (the namespace count).
func (s *Sharder) Counted() <-chan struct{} { return s.counted }

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

// Owns reports whether this replica owns a namespace now.
func (s *Sharder) Owns(namespace string) bool {
	if s.balanced {
		return s.Share().Contains(Balanced(namespace))
	}
	return s.Share().Contains(Hash(namespace))
}

// Wrap narrows an informer's ListerWatcher to the share in force when the informer starts; informers
// are restarted when the share changes.
func (s *Sharder) Wrap(lw cache.ListerWatcher) cache.ListerWatcher {
	var held func() bool
	if m := s.membership; m != nil {
		tenure := m.Tenure()
		held = func() bool { return m.Holds(tenure) }
	}
	share := s.Share()
	if held == nil && share.Whole() {
		return lw
	}
	hash := Hash
	if s.balanced {
		hash = Balanced
	}
	return &listerWatcher{next: lw, share: share, hash: hash, server: !s.balanced && !share.Whole(), held: held}
}
