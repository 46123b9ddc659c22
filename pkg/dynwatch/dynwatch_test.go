package dynwatch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/kube-zen/zen-watcher/internal/testenv"
)

func TestEventStreamDecode(t *testing.T) {
	tests := []struct {
		name     string
		stream   string
		wantType watch.EventType
		want     map[string]any
		// wantStatus, when set, is the typed object wanted instead of want.
		wantStatus *metav1.Status
		wantErr    string
	}{
		{name: "added, numbers as unstructured has them",
			stream:   `{"type":"ADDED","object":{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"a","generation":3},"spec":{"ratio":0.5,"big":12345678901234,"Name":"x","name":"y"}}}`,
			wantType: watch.Added,
			want: map[string]any{"kind": "ConfigMap", "apiVersion": "v1", "metadata": map[string]any{"name": "a", "generation": int64(3)},
				"spec": map[string]any{"ratio": 0.5, "big": int64(12345678901234), "Name": "x", "name": "y"}}},
		{name: "bookmark", stream: `{"type":"BOOKMARK","object":{"kind":"ConfigMap","apiVersion":"v1","metadata":{"resourceVersion":"12","annotations":{"k8s.io/initial-events-end":"true"}}}}`,
			wantType: watch.Bookmark,
			want: map[string]any{"kind": "ConfigMap", "apiVersion": "v1",
				"metadata": map[string]any{"resourceVersion": "12", "annotations": map[string]any{"k8s.io/initial-events-end": "true"}}}},
		{name: "error", stream: `{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Expired","code":410}}`,
			wantType: watch.Error,
			wantStatus: &metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusFailure,
				Reason: metav1.StatusReasonExpired, Code: 410}},
		{name: "a Status of another group", stream: `{"type":"ADDED","object":{"kind":"Status","apiVersion":"example.com/v1","code":"green"}}`,
			wantType: watch.Added,
			want:     map[string]any{"kind": "Status", "apiVersion": "example.com/v1", "code": "green"}},
		{name: "unknown type", stream: `{"type":"RENAMED","object":{"kind":"ConfigMap"}}`, wantErr: `invalid watch event type: "RENAMED"`},
		{name: "no object", stream: `{"type":"ADDED"}`, wantErr: "has no object"},
		{name: "no kind", stream: `{"type":"ADDED","object":{"metadata":{"name":"a"}}}`, wantErr: "has no kind"},
		{name: "object of the wrong type", stream: `{"type":"ADDED","object":[1,2]}`, wantErr: "cannot unmarshal array"},
		{name: "cut short", stream: `{"type":"ADDED","object":{"kind":"ConfigMap","metadata":{"na`, wantErr: io.ErrUnexpectedEOF.Error()},
		{name: "ended", stream: ``, wantErr: io.EOF.Error()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newEventStream(io.NopCloser(strings.NewReader(tt.stream)))
			typ, obj, err := s.Decode()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Decode() error = %v, want one with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decode(): %v", err)
			}
			if tt.wantStatus != nil {
				if typ != tt.wantType || !reflect.DeepEqual(obj, tt.wantStatus) {
					t.Errorf("Decode() = %s %#v, want %s %#v", typ, obj, tt.wantType, tt.wantStatus)
				}
				return
			}
			u, ok := obj.(*unstructured.Unstructured)
			if typ != tt.wantType || !ok || !reflect.DeepEqual(u.Object, tt.want) {
				t.Errorf("Decode() = %s %#v, want %s %#v", typ, obj, tt.wantType, tt.want)
			}
		})
	}
}

// TestDecodesAsTheDynamicClient: the same stream, watched with the same options through client-go's
// dynamic client and through this one, asks the server the same thing and yields the same events.
func TestDecodesAsTheDynamicClient(t *testing.T) {
	const stream = `{"type":"ADDED","object":{"kind":"VulnerabilityReport","apiVersion":"aquasecurity.github.io/v1alpha1","metadata":{"name":"r","namespace":"shop","resourceVersion":"7","labels":{"a":"b"}},"report":{"summary":{"criticalCount":2,"score":7.5},"vulnerabilities":[{"vulnerabilityID":"CVE-1","fixedVersion":"","links":[]}]}}}
{"type":"MODIFIED","object":{"kind":"VulnerabilityReport","apiVersion":"aquasecurity.github.io/v1alpha1","metadata":{"name":"r","namespace":"shop","resourceVersion":"8"},"report":null}}
{"type":"BOOKMARK","object":{"kind":"VulnerabilityReport","apiVersion":"aquasecurity.github.io/v1alpha1","metadata":{"resourceVersion":"9"}}}
{"type":"DELETED","object":{"kind":"VulnerabilityReport","apiVersion":"aquasecurity.github.io/v1alpha1","metadata":{"name":"r","namespace":"shop","resourceVersion":"10"}}}
{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version: 1 (10)","reason":"Expired","code":410}}
`
	var asked []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked = append(asked, r.URL.Path+"?"+r.URL.RawQuery)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, stream)
	}))
	defer srv.Close()
	cfg := &rest.Config{Host: srv.URL}
	plain, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ours, err := NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	gvr := schema.GroupVersionResource{Group: "aquasecurity.github.io", Version: "v1alpha1", Resource: "vulnerabilityreports"}
	timeout := int64(300)
	opts := metav1.ListOptions{LabelSelector: "a=b", FieldSelector: "metadata.name=r", ResourceVersion: "6",
		ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan, AllowWatchBookmarks: true, TimeoutSeconds: &timeout,
		ShardSelector: "shardRange(object.metadata.namespace, '0x0', '0x8000000000000000')"}
	var got [][]watch.Event
	for _, c := range []dynamic.Interface{plain, ours} {
		for _, ri := range []dynamic.ResourceInterface{c.Resource(gvr).Namespace("shop"), c.Resource(gvr)} {
			w, err := ri.Watch(context.Background(), opts)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, drain(t, w))
		}
	}
	if len(asked) != 4 || asked[0] != asked[2] || asked[1] != asked[3] {
		t.Errorf("the two clients asked differently (dynamic, dynamic, ours, ours):\n%s", strings.Join(asked, "\n"))
	}
	if !strings.HasPrefix(asked[2], "/apis/aquasecurity.github.io/v1alpha1/namespaces/shop/vulnerabilityreports?") ||
		!strings.HasPrefix(asked[3], "/apis/aquasecurity.github.io/v1alpha1/vulnerabilityreports?") {
		t.Errorf("paths: %v", asked)
	}
	if len(got[0]) != 5 {
		t.Fatalf("client-go's dynamic client decoded %d events of 5: %v", len(got[0]), got[0])
	}
	for i := 1; i < len(got); i++ {
		if !reflect.DeepEqual(got[i], got[0]) {
			t.Errorf("watch %d decoded\n%#v\nclient-go's\n%#v", i, got[i], got[0])
		}
	}
}

// drain reads w until its stream ends.
func drain(t *testing.T, w watch.Interface) []watch.Event {
	t.Helper()
	defer w.Stop()
	var out []watch.Event
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				return out
			}
			out = append(out, ev)
		case <-timeout:
			t.Fatal("the watch did not end with its stream")
		}
	}
}

// TestRefusedWatchIsAnAPIError: a watch the server refuses fails with the server's Status, as
// client-go's does, so that a reflector tells "gone, list again" from other failures.
func TestRefusedWatchIsAnAPIError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusGone)
		_, _ = io.WriteString(w, `{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old","reason":"Expired","code":410}`)
	}))
	defer srv.Close()
	ours, err := NewForConfig(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	_, err = ours.Resource(schema.GroupVersionResource{Version: "v1", Resource: "events"}).Watch(context.Background(), metav1.ListOptions{})
	var status interface{ Status() metav1.Status }
	if !errors.As(err, &status) || status.Status().Code != http.StatusGone || status.Status().Reason != metav1.StatusReasonExpired {
		t.Errorf("Watch() error = %v, want the server's 410 Expired", err)
	}
}

// BenchmarkWatchDecode reads a watch of real Trivy reports through client-go's dynamic client and
// through this one: `go test ./pkg/dynwatch -run '^$' -bench WatchDecode -benchmem`.
func BenchmarkWatchDecode(b *testing.B) {
	reports, err := testenv.FixtureObjects("trivy-operator/vulnerabilityReportList.json")
	if err != nil {
		b.Fatal(err)
	}
	var stream bytes.Buffer
	events := 0
	for events < 1000 {
		for _, r := range reports {
			line, err := json.Marshal(map[string]any{"type": "ADDED", "object": r.Object})
			if err != nil {
				b.Fatal(err)
			}
			stream.Write(append(line, '\n'))
			events++
		}
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(stream.Bytes())
	}))
	defer srv.Close()
	cfg := &rest.Config{Host: srv.URL}
	plain, err := dynamic.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	ours, err := NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	gvr := schema.GroupVersionResource{Group: "aquasecurity.github.io", Version: "v1alpha1", Resource: "vulnerabilityreports"}
	for name, c := range map[string]dynamic.Interface{"client-go": plain, "one-pass": ours} {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(stream.Len()))
			for b.Loop() {
				w, err := c.Resource(gvr).Watch(context.Background(), metav1.ListOptions{})
				if err != nil {
					b.Fatal(err)
				}
				n := 0
				for range w.ResultChan() {
					n++
				}
				if n != events {
					b.Fatalf("%d events of %d", n, events)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*events), "µs/event")
		})
	}
}
