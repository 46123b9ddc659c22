//go:build leaderelection

package main

import (
	"context"
	"errors"
	"time"

	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

func init() {
	elect = func() error {
		_, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock: nobody{}, LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second,
			Callbacks: leaderelection.LeaderCallbacks{OnStartedLeading: func(context.Context) {}, OnStoppedLeading: func() {}},
		})
		return err
	}
}

// nobody is a lock that holds nothing: the probe measures what leader election links, not what
// a lock does.
type nobody struct{}

func (nobody) Get(context.Context) (*resourcelock.LeaderElectionRecord, []byte, error) {
	return nil, nil, errors.New("no lock")
}
func (nobody) Create(context.Context, resourcelock.LeaderElectionRecord) error { return nil }
func (nobody) Update(context.Context, resourcelock.LeaderElectionRecord) error { return nil }
func (nobody) RecordEvent(string)                                              {}
func (nobody) Identity() string                                                { return "memprobe" }
func (nobody) Describe() string                                                { return "memprobe" }
