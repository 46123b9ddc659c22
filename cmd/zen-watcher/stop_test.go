package main

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

func TestDelayedStop(t *testing.T) {
	for _, tc := range []struct {
		name  string
		delay time.Duration
	}{
		{"no delay", 0},
		{"a delay", 300 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parent, signal := context.WithCancel(context.Background())
			var stopping atomic.Bool
			ctx, cancel := delayedStop(parent, tc.delay, func() { stopping.Store(true) })
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
			if tc.delay > 0 {
				if ctx.Err() != nil {
					t.Fatal("the context ended before the delay")
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(tc.delay + 5*time.Second):
				t.Fatal("the context did not end after the delay")
			}
			if took := time.Since(at); took < tc.delay-10*time.Millisecond {
				t.Errorf("ended %v after the signal, before the delay of %v", took, tc.delay)
			}
		})
	}
	t.Run("cancelled before any signal", func(t *testing.T) {
		var stopping atomic.Bool
		ctx, cancel := delayedStop(context.Background(), time.Hour, func() { stopping.Store(true) })
		cancel()
		<-ctx.Done()
		time.Sleep(10 * time.Millisecond)
		if stopping.Load() {
			t.Error("told it is stopping without a signal")
		}
	})
}
