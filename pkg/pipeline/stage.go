package pipeline

import (
	"context"
	"errors"
)

// Stage is one step a finding passes through. Process returns false when the finding stops here
// (filtered, or already recorded); the stage's Outcome names why, for metrics.
type Stage interface {
	// Name identifies the stage in metrics and logs.
	Name() string
	// Outcome is what a false from Process means, for counting.
	Outcome() Outcome
	// Process decides whether the finding goes on.
	Process(ctx context.Context, ev *Event) (bool, error)
}

// Outcome is what happened to a finding.
type Outcome int

// The outcomes of a finding.
const (
	OutcomeWritten Outcome = iota
	OutcomeFiltered
	OutcomeDeduplicated
	OutcomeFailed
	OutcomeRateLimited
	// OutcomeHandedOver is a finding the writer did not take or retry because its namespace went
	// to another replica meanwhile (Event.Withdrawn), which lists it again and writes it.
	OutcomeHandedOver
)

// String names the outcome as metrics and logs do.
func (o Outcome) String() string {
	switch o {
	case OutcomeWritten:
		return "written"
	case OutcomeFiltered:
		return "filtered"
	case OutcomeDeduplicated:
		return "deduplicated"
	case OutcomeFailed:
		return "failed"
	case OutcomeRateLimited:
		return "rate_limited"
	case OutcomeHandedOver:
		return "handed_over"
	}
	return "unknown"
}

// Stages runs its stages in order and stops at the first that drops the finding.
type Stages []Stage

// Run passes ev through the stages. It returns the stage that dropped ev, or nil if ev went through.
func (s Stages) Run(ctx context.Context, ev *Event) (Stage, error) {
	for _, st := range s {
		keep, err := st.Process(ctx, ev)
		if err != nil {
			return st, err
		}
		if !keep {
			return st, nil
		}
	}
	return nil, nil
}

// ErrQueueFull is returned when the writer cannot take a finding before the caller's deadline: the
// finding is not lost, the caller still holds it and must retry or report it.
var ErrQueueFull = errors.New("writer queue is full")
