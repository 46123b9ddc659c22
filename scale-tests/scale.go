package main

import (
	"context"
	"log"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// relistedMetric counts the findings a replica's informers handed on from a first list.
const relistedMetric = "zen_watcher_findings_relisted_total"

// leader is the replica that holds the release's leader Lease, "" when none does.
func (r *run) leader() string {
	lease, err := r.env.cluster.Kube.CoordinationV1().Leases(r.release).Get(context.Background(), r.release+"-leader", metav1.GetOptions{})
	if err != nil || lease.Spec.HolderIdentity == nil {
		return ""
	}
	return *lease.Spec.HolderIdentity
}

// scale takes the scenario's scale steps whose moment has come: it starts replicas, or stops
// followers, then the leader, gracefully. A stop runs in the background, as a rolling change
// would; the load goes on.
func (r *run) scale(elapsed Duration) {
	for r.scaled < len(r.sc.Scale) && r.sc.Scale[r.scaled].After <= elapsed {
		want := r.sc.Scale[r.scaled].Replicas
		r.scaled++
		var alive []*replica
		for _, rep := range r.replicas {
			if rep.alive() && !rep.stopping {
				alive = append(alive, rep)
			}
		}
		for i := len(alive); i < want; i++ {
			rep, err := r.startReplica(context.Background(), len(r.replicas))
			if err != nil {
				log.Printf("%s: starting a replica: %v", r.sc.Name, err)
				continue
			}
			r.replicas = append(r.replicas, rep)
			if r.sampler != nil {
				r.sampler.add(rep)
			}
		}
		leader := r.leader()
		// Followers first, so that leadership moves at most once.
		for _, lead := range []bool{false, true} {
			for _, rep := range alive {
				if len(alive)-r.stoppedOf(alive) <= want {
					break
				}
				if (rep.id == leader) == lead {
					r.stopInBackground(rep)
				}
			}
		}
	}
}

// stoppedOf counts the replicas of reps being stopped.
func (r *run) stoppedOf(reps []*replica) int {
	n := 0
	for _, rep := range reps {
		if rep.stopping {
			n++
		}
	}
	return n
}

// stopInBackground stops rep gracefully, counting what it re-listed first.
func (r *run) stopInBackground(rep *replica) {
	rep.stopping = true
	if m, err := rep.metrics(); err == nil {
		r.relistedGone += m[relistedMetric]
	}
	r.stops.Go(rep.stop)
}

// relisted is the findings re-listed by every replica of the run so far (those stopped counted
// when their stop began).
func (r *run) relisted() float64 {
	n := r.relistedGone
	for _, rep := range r.replicas {
		if !rep.alive() || rep.stopping {
			continue
		}
		if m, err := rep.metrics(); err == nil {
			n += m[relistedMetric]
		}
	}
	return n
}

// refusedCreates is the API server's count of Observation creates refused as conflicts (409)
// in metrics.
func refusedCreates(metrics map[string]float64) float64 {
	n := 0.0
	for series, v := range metrics {
		if strings.HasPrefix(series, "apiserver_request_total{") && strings.Contains(series, `code="409"`) &&
			strings.Contains(series, `resource="observations"`) && strings.Contains(series, `verb="POST"`) {
			n += v
		}
	}
	return n
}

// scaleFigures records, once the stops are done, the findings re-listed since relisted0 and the
// creates the API server refused since before: a hand-over must cost next to no refused create.
func (r *run) scaleFigures(ctx context.Context, relisted0 float64, before counters) {
	r.stops.Wait()
	relisted := r.relisted() - relisted0
	refused := r.env.counters(ctx).refused - before.refused
	r.res.Extra["relisted"] = relisted
	r.res.Extra["refusedCreates"] = refused
	r.res.Extra["refusedPerRelisted"] = refused / max(relisted, 1)
	r.res.Extra["replicasAtEnd"] = len(r.replicas) - r.stoppedOf(r.replicas)
}
