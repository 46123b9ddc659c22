package sources

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
)

// streamed collects what StreamItems hands on.
type streamed struct {
	items []string
	cuts  []string
}

func stream(body string, opts StreamOptions) (streamed, error) {
	var got streamed
	err := StreamItems(strings.NewReader(body), opts, func(raw json.RawMessage, cut []string) error {
		got.items = append(got.items, string(raw))
		got.cuts = append(got.cuts, strings.Join(cut, ","))
		return nil
	})
	return got, err
}

func TestStreamItems(t *testing.T) {
	big := `"` + strings.Repeat("x", 100) + `"`
	list := StreamOptions{ListKey: "items", MaxItemBytes: 64}
	cases := []struct {
		name  string
		body  string
		opts  StreamOptions
		items []string
		cuts  []string
	}{
		{"one object", ` {"a":1} `, StreamOptions{}, []string{`{"a":1}`}, []string{""}},
		{"white space between tokens", "{ \"a\" :\t[1, {\"b\" : null}] ,\n\"c\":\"d\" }", StreamOptions{},
			[]string{`{"a":[1, {"b" : null}],"c":"d"}`}, []string{""}},
		{"array", `[{"a":1},{"b":"}]"}]`, StreamOptions{}, []string{`{"a":1}`, `{"b":"}]"}`}, []string{"", ""}},
		{"empty array", `[]`, StreamOptions{}, nil, nil},
		{"empty object", `{}`, StreamOptions{}, []string{`{}`}, []string{""}},
		{"JSON lines", "{\"a\":1}\n{\"a\":2}\n", StreamOptions{}, []string{`{"a":1}`, `{"a":2}`}, []string{"", ""}},
		{"escaped quotes", `{"a":"x\"}\\","b":true}`, StreamOptions{}, []string{`{"a":"x\"}\\","b":true}`}, []string{""}},
		{"a list", `{"kind":"EventList","items":[{"a":1},{"a":2}],"metadata":{}}`, list,
			[]string{`{"a":1}`, `{"a":2}`}, []string{"", ""}},
		{"a list of none", `{"kind":"EventList","items":null}`, list, nil, nil},
		{"without ListKey a list is an item", `{"items":[{"a":1}]}`, StreamOptions{}, []string{`{"items":[{"a":1}]}`}, []string{""}},
		{"an object without the list key is an item", `{"kind":"Event","a":1}`, list, []string{`{"kind":"Event","a":1}`}, []string{""}},
		{"a member over the bound is cut, the rest kept", `{"a":1,"big":` + big + `,"b":[2]}`, list,
			[]string{`{"a":1,"b":[2]}`}, []string{"big"}},
		{"cut members of list items", `{"items":[{"o":{"x":` + big + `},"id":"1"},{"id":"2"}]}`, list,
			[]string{`{"id":"1"}`, `{"id":"2"}`}, []string{"o", ""}},
		{"a last member cut", `{"a":1,"big":` + big + `}`, list, []string{`{"a":1}`}, []string{"big"}},
		{"every member cut", `{"big":` + big + `,"big2":` + big + `}`, list, []string{`{}`}, []string{"big,big2"}},
		{"exactly the bound", `{"a":"` + strings.Repeat("y", 56) + `"}`, list, []string{`{"a":"` + strings.Repeat("y", 56) + `"}`}, []string{""}},
		{"one byte over the bound", `{"a":"` + strings.Repeat("y", 57) + `"}`, list, []string{`{}`}, []string{"a"}},
		{"numbers kept exactly", `{"n":1764547200123456789,"f":-1.5e3}`, StreamOptions{}, []string{`{"n":1764547200123456789,"f":-1.5e3}`}, []string{""}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := stream(tc.body, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got.items) != fmt.Sprint(tc.items) || fmt.Sprint(got.cuts) != fmt.Sprint(tc.cuts) {
				t.Errorf("items %q cut %q, want %q cut %q", got.items, got.cuts, tc.items, tc.cuts)
			}
			for _, it := range got.items {
				if !json.Valid([]byte(it)) || len(it) > max(tc.opts.MaxItemBytes, DefaultMaxItemBytes*boolInt(tc.opts.MaxItemBytes == 0)) {
					t.Errorf("item %q is not valid JSON within the bound", it)
				}
			}
		})
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestStreamItemsRefuses(t *testing.T) {
	cases := []struct{ name, body, want string }{
		{"empty", "  \n", "empty body"},
		{"a number", `1`, "not a JSON object or array"},
		{"an array of numbers", `[1]`, "item 0 is not a JSON object"},
		{"trailing comma in an array", `[{},]`, "not a JSON object"},
		{"trailing comma in an object", `{"a":1,}`, "'}' after ','"},
		{"missing value", `{"a":}`, "where a value belongs"},
		{"a quote after a number", `{"a":1"}`, "after a number"},
		{"missing colon", `{"a" 1}`, `where one of ":" belongs`},
		{"unterminated string", `{"a":"b`, "unexpected EOF"},
		{"unterminated object", `{"a":{"b":1}`, "unexpected EOF"},
		{"mismatched brackets", `{"a":[1}`, `'}' where ']' belongs`},
		{"control character", "{\"a\":\"\x01\"}", "control character"},
		{"nested too deep", `{"a":` + strings.Repeat("[", maxNesting+1), "nested more than"},
		{"member name too long", `{"` + strings.Repeat("k", maxKeyBytes+1) + `":1}`, "member name over"},
		{"a list's items not an array", `{"items":3}`, "not an array"},
		{"too many items", strings.Repeat("{}\n", MaxItems+1), fmt.Sprintf("more than %d items", MaxItems)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := stream(tc.body, StreamOptions{ListKey: "items"})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one with %q", err, tc.want)
			}
		})
	}
}

// TestStreamItemsPassesOnErrors: the reader's errors and the callback's reach the caller wrapped.
func TestStreamItemsPassesOnErrors(t *testing.T) {
	broken := errors.New("connection reset")
	r := io.MultiReader(strings.NewReader(`[{"a":1},{"b":`), &failing{broken})
	err := StreamItems(r, StreamOptions{}, func(json.RawMessage, []string) error { return nil })
	if !errors.Is(err, broken) {
		t.Errorf("error %v, want the reader's", err)
	}
	stop := errors.New("not an event")
	err = StreamItems(strings.NewReader(`[{"a":1}]`), StreamOptions{}, func(json.RawMessage, []string) error { return stop })
	if !errors.Is(err, stop) || !strings.Contains(err.Error(), "item 0") {
		t.Errorf("error %v, want the callback's, naming the item", err)
	}
}

type failing struct{ err error }

func (f *failing) Read([]byte) (int, error) { return 0, f.err }

// endless is a body of one list whose first item has a member of n bytes, generated as it is
// read: nothing holds it whole.
type endless struct {
	head, tail string
	n, off     int
}

func (e *endless) Read(p []byte) (int, error) {
	total := len(e.head) + e.n + len(e.tail)
	if e.off >= total {
		return 0, io.EOF
	}
	k := 0
	for k < len(p) && e.off < total {
		switch {
		case e.off < len(e.head):
			p[k] = e.head[e.off]
		case e.off < len(e.head)+e.n:
			p[k] = 'z'
		default:
			p[k] = e.tail[e.off-len(e.head)-e.n]
		}
		k++
		e.off++
	}
	return k, nil
}

// TestStreamKeepsOneItemAtATime: a 64 MiB member is read through and cut, and reading it
// allocates a small fraction of its size.
func TestStreamKeepsOneItemAtATime(t *testing.T) {
	body := &endless{
		head: `{"kind":"EventList","items":[{"auditID":"a","responseObject":{"data":"`,
		tail: `"},"verb":"create"},{"auditID":"b"}]}`, n: 64 << 20,
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	got := map[string]string{}
	err := StreamItems(body, StreamOptions{ListKey: "items"}, func(raw json.RawMessage, cut []string) error {
		got[string(raw)] = strings.Join(cut, ",")
		return nil
	})
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{`{"auditID":"a","verb":"create"}`: "responseObject", `{"auditID":"b"}`: ""}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("items %v, want %v", got, want)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4<<20 {
		t.Errorf("allocated %d bytes reading a body of %d", alloc, body.n)
	}
}

// FuzzStreamItems holds StreamItems to encoding/json: what it hands on stays within the bound, and
// a body that is a valid JSON object, or array of objects, is never refused and yields valid JSON
// items. (What it keeps of an invalid body is checked by its caller's decoding.)
func FuzzStreamItems(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `[{"a":"b"},{}]`, `{"items":[{"x":[1,2,{"y":null}]}]}`, "{}\n{}", `{"a":"\u00e9\"x"}`} {
		f.Add(s, 32)
	}
	f.Fuzz(func(t *testing.T, body string, bound int) {
		bound = 2 + abs(bound)%512
		valid := validObjects(body)
		err := StreamItems(strings.NewReader(body), StreamOptions{ListKey: "items", MaxItemBytes: bound},
			func(raw json.RawMessage, cut []string) error {
				if valid && !json.Valid(raw) {
					t.Fatalf("handed on %q of a valid body, not valid JSON", raw)
				}
				if len(raw) > bound {
					t.Fatalf("handed on %d bytes, bound %d", len(raw), bound)
				}
				return nil
			})
		if err != nil && valid {
			t.Fatalf("refused %q: %v", body, err)
		}
	})
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// validObjects says whether body is one valid JSON object (whose items, if any, are null or an
// array of objects), or an array of objects, of no more than MaxItems items.
func validObjects(body string) bool {
	var obj map[string]json.RawMessage
	// "null" unmarshals into a map (leaving it nil) and a slice alike, but is neither.
	if json.Unmarshal([]byte(body), &obj) == nil && obj != nil {
		items, ok := obj["items"]
		return !ok || string(items) == "null" || objects(items)
	}
	return objects(json.RawMessage(body))
}

func objects(raw json.RawMessage) bool {
	var list []json.RawMessage
	if json.Unmarshal(raw, &list) != nil || list == nil || len(list) > MaxItems {
		return false
	}
	for _, it := range list {
		if len(it) == 0 || it[0] != '{' {
			return false
		}
	}
	return true
}
