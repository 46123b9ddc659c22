// Package outage logs the failures of an operation that is retried (a read of Redis every second,
// say) by their changes of state: the first failure at WARN, the recovery at INFO, and nothing for
// the repeats in between. An outage is then visible at the default log level without flooding it.
package outage

import (
	"fmt"
	"log/slog"
	"sync"
)

// Log remembers which operations are failing. A nil *Log logs nothing.
type Log struct {
	log *slog.Logger

	mu      sync.Mutex
	failing map[string]error
}

// New returns a Log that writes to log.
func New(log *slog.Logger) *Log {
	return &Log{log: log, failing: map[string]error{}}
}

// Report records the outcome of the operation what; attrs tell it apart from others of the same
// name (a stream's key) and go into its lines. A failure after success, or the first of all, is
// logged at WARN with its error and the words "failing; retrying"; a success after failures at INFO
// with the error it recovered from.
func (l *Log) Report(what string, err error, attrs ...any) {
	if l == nil {
		return
	}
	key := what + "\x00" + fmt.Sprint(attrs...)
	l.mu.Lock()
	prev, was := l.failing[key]
	if err != nil {
		l.failing[key] = err
	} else {
		delete(l.failing, key)
	}
	l.mu.Unlock()
	switch {
	case err != nil && !was:
		l.log.Warn(what+" failing; retrying", append(attrs, "error", err)...)
	case err == nil && was:
		l.log.Info(what+" works again", append(attrs, "after", prev)...)
	}
}
