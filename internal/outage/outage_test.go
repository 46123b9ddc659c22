package outage

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

func TestReportLogsChangesOfState(t *testing.T) {
	down := errors.New("connection refused")
	type step struct {
		what  string
		err   error
		attrs []any
	}
	for _, tc := range []struct {
		name  string
		steps []step
		want  []string // the lines, by level and message, in order
	}{
		{"success alone says nothing", []step{{"reading", nil, nil}, {"reading", nil, nil}}, nil},
		{"an outage is one warning and one recovery",
			[]step{{"reading", nil, nil}, {"reading", down, nil}, {"reading", down, nil}, {"reading", down, nil}, {"reading", nil, nil}},
			[]string{"level=WARN msg=\"reading failing; retrying\" error=\"connection refused\"",
				"level=INFO msg=\"reading works again\" after=\"connection refused\""}},
		{"failing from the start warns", []step{{"reading", down, nil}}, []string{"level=WARN msg=\"reading failing; retrying\""}},
		{"operations and their attributes are apart",
			[]step{{"reading", down, []any{"stream", "a"}}, {"reading", down, []any{"stream", "b"}}, {"acking", down, nil},
				{"reading", nil, []any{"stream", "a"}}},
			[]string{"msg=\"reading failing; retrying\" stream=a", "msg=\"reading failing; retrying\" stream=b",
				"msg=\"acking failing; retrying\"", "msg=\"reading works again\" stream=a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			l := New(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{ReplaceAttr: dropTime})))
			for _, s := range tc.steps {
				l.Report(s.what, s.err, s.attrs...)
			}
			lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
			if buf.Len() == 0 {
				lines = nil
			}
			if len(lines) != len(tc.want) {
				t.Fatalf("logged %d lines, want %d:\n%s", len(lines), len(tc.want), buf.String())
			}
			for i, w := range tc.want {
				if !strings.Contains(lines[i], w) {
					t.Errorf("line %d = %q, want it to hold %q", i, lines[i], w)
				}
			}
		})
	}
}

func TestNilLogIsQuiet(t *testing.T) {
	var none *Log
	none.Report("reading", errors.New("connection refused")) // must not panic
}

func dropTime(_ []string, a slog.Attr) slog.Attr {
	if a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}
