package testenv

import (
	"os"
	"strconv"
	"testing"
)

// PositiveIntFromEnv is the value of the environment variable name, or def when it is unset. A
// value that is not a positive integer fails the test rather than being ignored: a run asked for
// with ZW_DURABLE_ALERTS=2k must not quietly run the default and be reported as the one asked for.
func PositiveIntFromEnv(tb testing.TB, name string, def int) int {
	tb.Helper()
	s, ok := os.LookupEnv(name)
	if !ok {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		tb.Fatalf("%s=%q: want a positive integer (unset for the default, %d)", name, s, def)
	}
	return n
}
