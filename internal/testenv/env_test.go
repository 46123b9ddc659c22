package testenv

import (
	"strings"
	"testing"
)

// fatalRecorder records a Fatalf instead of ending the test, so that the refusal can be asserted.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (f *fatalRecorder) Helper() {}

func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.msg = format
	panic(f)
}

func TestPositiveIntFromEnv(t *testing.T) {
	for _, tc := range []struct {
		name, value string
		set         bool
		want        int
		refused     bool
	}{
		{name: "unset", want: 7},
		{name: "set", value: "300", set: true, want: 300},
		{name: "empty", value: "", set: true, refused: true},
		{name: "not a number", value: "2k", set: true, refused: true},
		{name: "zero", value: "0", set: true, refused: true},
		{name: "negative", value: "-5", set: true, refused: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const key = "ZW_TESTENV_PROBE"
			if tc.set {
				t.Setenv(key, tc.value)
			}
			rec := &fatalRecorder{TB: t}
			got, refused := func() (n int, refused bool) {
				defer func() {
					if r := recover(); r != nil {
						if r != rec {
							panic(r)
						}
						refused = true
					}
				}()
				return PositiveIntFromEnv(rec, key, 7), false
			}()
			if refused != tc.refused {
				t.Fatalf("refused = %v, want %v (message %q)", refused, tc.refused, rec.msg)
			}
			if refused && !strings.Contains(rec.msg, "positive integer") {
				t.Errorf("refusal %q does not say what is wanted", rec.msg)
			}
			if !refused && got != tc.want {
				t.Errorf("got %d, want %d", got, tc.want)
			}
		})
	}
}
