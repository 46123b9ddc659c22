// Package sources turns the tools' objects and payloads into findings. This package holds what every
// source shares: the Handler the findings go to, the parsers' contracts, and the informer that reads
// a tool's objects, keeps only their findings, and hands on what changed. Each tool's parser lives
// in a package of its own below this one.
package sources

import (
	"context"
	"io"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kube-zen/zen-watcher/pkg/pipeline"
)

// Handler takes the findings a source produces; the pipeline is the production Handler.
type Handler interface {
	Handle(ctx context.Context, ev *pipeline.Event) error
}

// ObjectParser turns one of a tool's Kubernetes objects into its findings. An error means the object
// is malformed (a field of the wrong type, say); it is counted and the object yields no findings.
// A parser must not keep obj.
type ObjectParser interface {
	ParseObject(obj *unstructured.Unstructured) ([]*pipeline.Event, error)
}

// PayloadParser turns the body of a webhook request into its findings. An error means the body is
// malformed; the request is answered 400 with it.
type PayloadParser interface {
	ParsePayload(body []byte) ([]*pipeline.Event, error)
}

// Tally is what a payload parser read besides its findings: the events of the body, and those it
// did not turn into findings, by reason. Senders count what they send (the API server's
// apiserver_audit_event_total, say); this is the count to hold against theirs.
type Tally struct {
	Events  int
	Ignored map[string]int
	// Cut is how many events lost members to a bound of their size (and were judged on the rest).
	Cut int
}

// TallyingParser is a PayloadParser that also tallies what it read.
type TallyingParser interface {
	PayloadParser
	ParseTallied(body []byte) ([]*pipeline.Event, Tally, error)
}

// StreamingParser is a TallyingParser that reads a body as it arrives, keeping one event of it at
// a time: a body far larger than what it keeps costs time, not memory. The webhook server streams
// a body to it when the body needs no reading before it is authenticated.
type StreamingParser interface {
	TallyingParser
	ParseStream(r io.Reader) ([]*pipeline.Event, Tally, error)
}

// ObjectParserFunc adapts a function to ObjectParser.
type ObjectParserFunc func(obj *unstructured.Unstructured) ([]*pipeline.Event, error)

// ParseObject implements ObjectParser.
func (f ObjectParserFunc) ParseObject(obj *unstructured.Unstructured) ([]*pipeline.Event, error) {
	return f(obj)
}

// PayloadParserFunc adapts a function to PayloadParser.
type PayloadParserFunc func(body []byte) ([]*pipeline.Event, error)

// ParsePayload implements PayloadParser.
func (f PayloadParserFunc) ParsePayload(body []byte) ([]*pipeline.Event, error) { return f(body) }
