package testenv

import (
	"fmt"
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

// unitOnly refuses to start a real part when ZW_UNIT_ONLY=1, which make test-unit sets: the
// packages it names must hold only tests that need no control plane or Redis, and a test added to
// one of them that does need them fails there with this message instead of quietly starting one.
func unitOnly(what string) error {
	switch v := os.Getenv("ZW_UNIT_ONLY"); v {
	case "", "0":
		return nil
	case "1":
		return fmt.Errorf("ZW_UNIT_ONLY=1 (make test-unit) but this package starts %s: move its tests out of "+
			"the test-unit list in the Makefile", what)
	default:
		return fmt.Errorf("ZW_UNIT_ONLY=%q: want 1, 0 or unset", v)
	}
}
