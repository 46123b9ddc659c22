package pipeline

import (
	"encoding/json"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
)

func TestWritable(t *testing.T) {
	base := func() *Event {
		return &Event{Source: "falco", Category: v1alpha1.CategorySecurity, Severity: v1alpha1.SeverityHigh,
			EventType: "runtime_alert", Title: "Terminal shell in container",
			Resource: v1alpha1.ResourceRef{APIVersion: "v1", Kind: "Pod", Namespace: "shop", Name: "cart-0"},
			Details:  map[string]string{"proc.name": "bash"}}
	}
	many := map[string]string{}
	for i := range 64 {
		many[strings.Repeat("k", 200)+string(rune('a'+i%26))+string(rune('a'+i/26))] = strings.Repeat("v", 4096)
	}
	for _, tc := range []struct {
		name  string
		spoil func(*Event)
		want  string // part of the reason; "" for writable
	}{
		{"as it is", func(*Event) {}, ""},
		{"a long title is shortened, not refused", func(e *Event) { e.Title = strings.Repeat("t", 10_000) }, ""},
		{"cluster-scoped", func(e *Event) { e.Resource.Namespace = "" }, ""},
		{"pod name over 253", func(e *Event) { e.Resource.Name = strings.Repeat("p", 254) }, "resource.name"},
		{"namespace over 63", func(e *Event) { e.Resource.Namespace = strings.Repeat("n", 64) }, "resource.namespace"},
		{"namespace not a DNS label", func(e *Event) { e.Resource.Namespace = "Shop_1" }, "resource.namespace \"Shop_1\""},
		{"kind over 63", func(e *Event) { e.Resource.Kind = strings.Repeat("K", 64) }, "resource.kind"},
		{"detail key over 253", func(e *Event) { e.Details[strings.Repeat("x", 200_000)] = "1" }, "detail key"},
		{"over 64 KiB in all", func(e *Event) { e.Details = many }, "the Observation would be"},
		{"bad source", func(e *Event) { e.Source = "Falco!" }, "source"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := base()
			tc.spoil(ev)
			err := Writable(ev)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("reason %v, want one naming %q", err, tc.want)
			case err != nil && len(err.Error()) > 300:
				t.Errorf("the reason is %d bytes: it must quote a bounded part of the value", len(err.Error()))
			}
		})
	}
}

// TestSizeBound holds sizeBound to what it promises: never below the size of the Observation as
// encoded, for strings made to encode as large as they can.
func TestSizeBound(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	// Each piece encodes larger than itself: control bytes, HTML characters, invalid UTF-8, the
	// separators JSON escapes, and a multi-byte rune that truncation must not split.
	pieces := []string{"\x00", "\x1f", "<", ">", "&", "\"", "\\", "\xff", "\xc3", "\u2028", "é", "a"}
	str := func(n int) string {
		var b strings.Builder
		for b.Len() < n {
			b.WriteString(pieces[rng.IntN(len(pieces))])
		}
		return b.String()
	}
	empty := &Event{Instance: "x", TTLSeconds: 3600, Details: map[string]string{"k": strings.Repeat("v", v1alpha1.MaxDetailValueLength+1)}}
	if b, _ := json.Marshal(BuildObservation(empty, "")); len(b)-len("k")-v1alpha1.MaxDetailValueLength > observationFrame/2 {
		t.Fatalf("an Observation without strings is %d bytes: observationFrame (%d) has too little margin", len(b), observationFrame)
	}
	for i := range 300 {
		n := []int{0, 1, 10, 300, 5000}[i%5]
		ev := &Event{Source: str(n % 64), Severity: v1alpha1.Severity(str(n % 20)), Category: v1alpha1.Category(str(n % 20)),
			EventType: str(n), Title: str(n * 2), Description: str(n * 3), Instance: str(n), TTLSeconds: int64(i),
			Resource: v1alpha1.ResourceRef{APIVersion: str(n % 253), Kind: str(n % 63), Namespace: str(n % 63), Name: str(n % 253)},
			Details:  map[string]string{}}
		for j := range rng.IntN(80) {
			ev.Details[str(n%253)+strconv.Itoa(j)] = str(n)
		}
		ev.FP = rng.Uint64()
		b, err := json.Marshal(BuildObservation(ev, "default"))
		if err != nil {
			t.Fatal(err)
		}
		if bound := sizeBound(ev); len(b) > bound {
			t.Fatalf("event %d encodes as %d bytes, above its bound %d", i, len(b), bound)
		}
	}
	// The bound must let an ordinary finding through without encoding it, or it saves nothing.
	ev := &Event{Source: "falco", Severity: v1alpha1.SeverityHigh, Category: v1alpha1.CategorySecurity, EventType: "runtime_alert",
		Title: strings.Repeat("t", 200), Description: strings.Repeat("d", 2000), Details: map[string]string{}}
	for j := range 20 {
		ev.Details["detail."+strconv.Itoa(j)] = strings.Repeat("v", 100)
	}
	if bound := sizeBound(ev); bound > MaxObservationBytes {
		t.Errorf("a finding of about 4 KiB is bounded at %d bytes, above the limit: every finding would be encoded", bound)
	}
}
