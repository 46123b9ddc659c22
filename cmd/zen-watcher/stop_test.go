package main

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

func TestDelayedStop(t *testing.T) {
	for _, tc := range []struct {
		name string
		// delay is the shutdown delay; handOver how long stopping takes (a replica's depart).
		delay, handOver time.Duration
	}{
		{"no delay", 0, 0},
		{"a delay", 300 * time.Millisecond, 0},
		{"a hand-over", 0, 300 * time.Millisecond},
		{"a delay longer than the hand-over", 400 * time.Millisecond, 100 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parent, signal := context.WithCancel(context.Background())
			var stopping, endedEarly atomic.Bool
			ctx, cancel := delayedStop(parent, tc.delay, func(ctx context.Context) {
				stopping.Store(true)
				time.Sleep(tc.handOver)
				endedEarly.Store(ctx.Err() != nil)
			})
			defer cancel()
			if stopping.Load() || ctx.Err() != nil {
				t.Fatal("stopping before the signal")
			}
			signal()
			at := time.Now()
			deadline := at.Add(5 * time.Second)
			for !stopping.Load() && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			if !stopping.Load() {
				t.Fatal("not told it is stopping after the signal")
			}
			select {
			case <-ctx.Done():
			case <-time.After(tc.delay + tc.handOver + 5*time.Second):
				t.Fatal("the context did not end after the delay")
			}
			if endedEarly.Load() {
				t.Error("the context ended while stopping ran")
			}
			if want := max(tc.delay, tc.handOver); time.Since(at) < want-10*time.Millisecond {
				t.Errorf("ended %v after the signal, before the delay of %v and the hand-over of %v",
					time.Since(at), tc.delay, tc.handOver)
			}
		})
	}
	t.Run("cancelled before any signal", func(t *testing.T) {
		var stopping atomic.Bool
		ctx, cancel := delayedStop(context.Background(), time.Hour, func(context.Context) { stopping.Store(true) })
		cancel()
		<-ctx.Done()
		time.Sleep(10 * time.Millisecond)
		if stopping.Load() {
			t.Error("told it is stopping without a signal")
		}
	})
}
