package shard

import (
	"context"
	"slices"
	"time"
)

// Publisher publishes the shard table (ConfigMapTables).
type Publisher interface {
	// Publish writes t as the next generation and returns it with that generation.
	Publish(ctx context.Context, t *Table) (*Table, error)
}

// LeadConfig tunes the leader's part in sharding.
type LeadConfig struct {
	Publisher Publisher
	// Held reports whether this replica still leads; nothing is published once it does not.
	Held func() bool
	// Every is how often the table is looked at (default 2s).
	Every time.Duration
	// Threshold is the max/avg load over which the table is re-cut (default 1.15).
	Threshold float64
	// Quiet is how long the namespaces must not have changed before a re-cut (default 3s): a
	// batch of namespaces created together is cut once.
	Quiet time.Duration
	// MinInterval is the least time between two re-cuts (default 20s).
	MinInterval time.Duration
	// Weights, when set, is where the replicas publish what their namespaces weigh; without it
	// every namespace weighs one.
	Weights WeightStore
	// LoadInterval is the least time between two re-cuts when only the weights changed, not the
	// namespaces (default 2m): a re-cut moves chunks, and every chunk moved is listed again.
	LoadInterval time.Duration
}

func (c *LeadConfig) setDefaults() {
	if c.Every <= 0 {
		c.Every = 2 * time.Second
	}
	if c.Threshold <= 1 {
		c.Threshold = 1.15
	}
	if c.Quiet <= 0 {
		c.Quiet = 3 * time.Second
	}
	if c.MinInterval <= 0 {
		c.MinInterval = 20 * time.Second
	}
	if c.LoadInterval <= 0 {
		c.LoadInterval = 2 * time.Minute
	}
}

// Lead keeps the published table right while this replica leads (until ctx ends): it publishes the
// first table, the table adapted to each new member set, and a re-cut when the namespaces have
// drifted from the cut — sixty namespaces named alike created after the cut land in one or two
// chunks, so their owner would take them all.
func (s *Sharder) Lead(ctx context.Context, cfg LeadConfig) {
	cfg.setDefaults()
	t := time.NewTicker(cfg.Every)
	defer t.Stop()
	var (
		lastCut, weighed time.Time
		measured         map[string]float64
	)
	for {
		if cfg.Weights != nil && time.Since(weighed) >= WeighEvery {
			m, err := cfg.Weights.Weights(ctx)
			switch {
			case err != nil && ctx.Err() == nil:
				s.log.Warn("reading the namespaces' weights; they weigh what was read last", "error", err)
			case err == nil:
				measured, weighed = m, time.Now()
			}
		}
		if next, why := s.next(cfg, lastCut, measured); next != nil && cfg.Held() {
			pub, err := cfg.Publisher.Publish(ctx, next)
			switch {
			case err != nil && ctx.Err() == nil:
				s.log.Warn("publishing the shard table", "error", err)
			case err == nil:
				if why != "members" {
					lastCut = time.Now()
				}
				s.log.Info("published the shard table", "generation", pub.Generation, "why", why,
					"chunks", len(pub.Starts), "members", pub.Members())
				s.SetPublished(pub)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// next is the table the leader should publish now, and why; nil when the published one is right.
// measured is what the replicas measured their namespaces weigh (see Weighed).
func (s *Sharder) next(cfg LeadConfig, lastCut time.Time, measured map[string]float64) (*Table, string) {
	s.mu.Lock()
	pub, members, names, changed, cutFor := s.published, slices.Clone(s.members), s.names, s.namesChanged, s.cutFor
	s.mu.Unlock()
	if len(members) == 0 || len(names) == 0 {
		return nil, ""
	}
	weighed := Weighed(names, measured)
	if pub == nil {
		return NewTable(weighed, members, s.chunks, nil), "first"
	}
	if lastCut.IsZero() {
		// A leader new to the role counts from the last publication it reads, not from never: a
		// failover is no reason to move chunks.
		lastCut = pub.PublishedAt
	}
	adapted := pub
	if !slices.Equal(pub.Members(), members) {
		adapted = pub.Adapt(members)
	}
	// New namespaces that crowd a member are cut in soon: what is created in them next is to
	// spread. A shift of load alone waits longer, so that a burst does not move chunks back and
	// forth — and so does a shift of load beside a namespace or two created, as busy clusters
	// create them all day: each would otherwise move chunks under the load.
	least := cfg.LoadInterval
	if changed.After(lastCut) {
		if known, expected := expect(weighed, cutFor); crowded(adapted, known, expected, members) {
			// Cut for what the new namespaces will weigh, not for the one each weighs unmeasured.
			least, weighed = cfg.MinInterval, expected
		}
	}
	if time.Since(changed) >= cfg.Quiet && time.Since(lastCut) >= least {
		if was := adapted.Imbalance(weighed, members); was > cfg.Threshold {
			cut := NewTable(weighed, members, s.chunks, adapted)
			cut.Generation = pub.Generation
			// A namespace is never split: with few namespaces the best cut is uneven too, and
			// cutting again would move chunks for nothing.
			if cut.Imbalance(weighed, members) < was/1.05 {
				return cut, "re-cut"
			}
		}
	}
	if adapted != pub {
		return adapted, "members"
	}
	return nil, ""
}

// expect splits the namespaces into those known to the cut (cutFor) and all of them with each
// that appeared since weighing at least as much as an average known one: nothing is measured in
// a new namespace yet, and it is as likely to get findings as any. With nothing known, every
// namespace is known.
func expect(weighed []Namespace, cutFor map[uint64]bool) (known, expected []Namespace) {
	if len(cutFor) == 0 {
		return weighed, weighed
	}
	total := 0.0
	for _, n := range weighed {
		if cutFor[n.Hash] {
			known = append(known, n)
			total += n.Weight
		}
	}
	avg := 1.0
	if len(known) > 0 {
		avg = total / float64(len(known))
	}
	expected = slices.Clone(weighed)
	for i, n := range expected {
		if !cutFor[n.Hash] {
			expected[i].Weight = max(n.Weight, avg)
		}
	}
	return known, expected
}

// crowded tells whether the namespaces that appeared since the cut unbalance it by themselves:
// with the weights they are expected to have (see expect), max/avg load is more than 5% above
// what the known ones alone weigh. One namespace more among hundreds does not; sixty named
// alike, which land in a chunk or two, do.
func crowded(t *Table, known, expected []Namespace, members []string) bool {
	return len(expected) > len(known) && t.Imbalance(expected, members) > 1.05*t.Imbalance(known, members)
}
