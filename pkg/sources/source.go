// Package sources holds what every source of findings shares: the Handler they feed and the
// informer plumbing. Each tool's adapter lives in a package of its own below this one.
package sources

import (
	"context"

	"github.com/kube-zen/zen-watcher/pkg/pipeline"
)

// Handler takes the findings a source produces; the pipeline is the production Handler.
type Handler interface {
	Handle(ctx context.Context, ev *pipeline.Event) error
}

// Source produces findings until its context ends.
type Source interface {
	// Name is the source name findings carry.
	Name() string
	// Run reads the tool's objects or payloads and hands findings to h until ctx ends.
	Run(ctx context.Context, h Handler) error
	// HasSynced reports whether the source has read the state that existed when it started.
	HasSynced() bool
}
