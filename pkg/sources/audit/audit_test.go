package audit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/kube-zen/zen-watcher/internal/testenv"
	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
)

func TestFixtures(t *testing.T) {
	cases := []struct {
		file      string
		eventType string
		sev       v1alpha1.Severity
		res       v1alpha1.ResourceRef
		user      string
	}{
		{"create_secret.json", "secret_modified", "medium", v1alpha1.ResourceRef{APIVersion: "v1", Kind: "Secret", Namespace: "default", Name: "example-secret"}, "minikube-user"},
		{"delete_secret.json", "secret_modified", "medium", v1alpha1.ResourceRef{APIVersion: "v1", Kind: "Secret", Namespace: "default", Name: "example-secret"}, "minikube-user"},
		{"create_kube_system_secret.json", "secret_modified", "high", v1alpha1.ResourceRef{APIVersion: "v1", Kind: "Secret", Namespace: "kube-system", Name: "bootstrap-token-ne7bxu"}, "admin"},
		{"create_service_account_token_secret.json", "secret_modified", "medium", v1alpha1.ResourceRef{APIVersion: "v1", Kind: "Secret", Namespace: "test2", Name: "default-token-7v4pb"}, "system:kube-controller-manager"},
		{"exec_pod.json", "pod_exec", "high", v1alpha1.ResourceRef{APIVersion: "v1", Kind: "Pod", Namespace: "default", Name: "nginx-deployment-7998647bdf-phvq7"}, "minikube-user"},
		{"create_nginx_pod_privileged.json", "privileged_pod_created", "high", v1alpha1.ResourceRef{APIVersion: "v1", Kind: "Pod", Namespace: "default"}, "system:serviceaccount:kube-system:replicaset-controller"},
		{"attach_cluster_admin_role.json", "rbac_modified", "critical", v1alpha1.ResourceRef{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRoleBinding", Name: "some-reader-binding"}, "minikube-user"},
		{"anonymous_creates_namespace_foo.json", "anonymous_request", "high", v1alpha1.ResourceRef{APIVersion: "v1", Kind: "Namespace", Namespace: "foo", Name: "foo"}, "system:anonymous"},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			body, err := testenv.Fixture("k8s-audit/" + tc.file)
			if err != nil {
				t.Fatal(err)
			}
			evs, err := Parser{}.ParsePayload(body)
			if err != nil {
				t.Fatal(err)
			}
			if len(evs) != 1 {
				t.Fatalf("%d findings, want 1", len(evs))
			}
			e := evs[0]
			res := e.Resource
			if tc.file == "create_nginx_pod_privileged.json" {
				if res.Name == "" {
					t.Error("the created pod's name was not taken from the response")
				}
				res.Name = ""
			}
			if e.EventType != tc.eventType || e.Severity != tc.sev || res != tc.res || e.Details["user"] != tc.user ||
				e.Details["auditID"] == "" || e.Instance != e.Details["auditID"] || e.Category != v1alpha1.CategorySecurity {
				t.Errorf("finding %s %s %+v %v", e.EventType, e.Severity, e.Resource, e.Details)
			}
		})
	}
}

// TestEventList posts all fixtures as one EventList, as the audit webhook backend does, with events
// that are not findings mixed in.
func TestEventList(t *testing.T) {
	files := []string{"create_secret.json", "exec_pod.json", "attach_cluster_admin_role.json", "anonymous_creates_namespace_foo.json"}
	var items []json.RawMessage
	for _, f := range files {
		b, err := testenv.Fixture("k8s-audit/" + f)
		if err != nil {
			t.Fatal(err)
		}
		items = append(items, bytes.TrimSpace(b))
	}
	items = append(items,
		json.RawMessage(`{"kind":"Event","auditID":"a1","stage":"ResponseComplete","verb":"list","objectRef":{"resource":"pods"},"responseStatus":{"code":200},"user":{"username":"bob"}}`),
		json.RawMessage(`{"kind":"Event","auditID":"a2","stage":"RequestReceived","verb":"delete","objectRef":{"resource":"pods","name":"x"},"user":{"username":"bob"}}`),
		json.RawMessage(`{"kind":"Event","auditID":"a3","stage":"ResponseComplete","verb":"get","objectRef":{"resource":"secrets","name":"s","namespace":"x"},"responseStatus":{"code":403},"user":{"username":"eve"}}`),
		json.RawMessage(`{"kind":"Event","auditID":"a4","stage":"ResponseComplete","verb":"delete","objectRef":{"resource":"deployments","apiGroup":"apps","apiVersion":"v1","name":"web","namespace":"shop"},"responseStatus":{"code":200},"user":{"username":"bob"}}`),
	)
	body, _ := json.Marshal(map[string]any{"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": items})
	evs, err := Parser{}.ParsePayload(body)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, e := range evs {
		got[e.EventType]++
	}
	want := map[string]int{"secret_modified": 1, "pod_exec": 1, "rbac_modified": 1, "anonymous_request": 1, "request_denied": 1, "resource_deleted": 1}
	if len(got) != len(want) {
		t.Fatalf("findings %v, want %v", got, want)
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%s: %d, want %d", k, got[k], n)
		}
	}
}

func TestBadPayloads(t *testing.T) {
	for name, body := range map[string]string{
		"not JSON":      "audit!",
		"no audit id":   `{"kind":"Event","verb":"get"}`,
		"wrong types":   `{"kind":"Event","auditID":7,"verb":"get"}`,
		"bad list item": `{"kind":"EventList","items":[{"kind":"Event","auditID":"x"}]}`,
	} {
		if _, err := (Parser{}).ParsePayload([]byte(body)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func FuzzParsePayload(f *testing.F) {
	for _, p := range []string{"k8s-audit/create_secret.json", "k8s-audit/attach_cluster_admin_role.json"} {
		if b, err := testenv.Fixture(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`{"kind":"EventList","items":[{"kind":"EventList","items":[]}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		evs, err := Parser{}.ParsePayload(body)
		if err != nil {
			return
		}
		for _, e := range evs {
			if e.Instance == "" || e.EventType == "" {
				t.Fatalf("finding without audit ID or type from %q", body)
			}
		}
	})
}

// TestFailedAuthenticationAndOwnRequests: a failed authentication, audited at ResponseStarted
// with no user, is a denied request; the user the parser ignores (zen-watcher's own) yields none.
func TestFailedAuthenticationAndOwnRequests(t *testing.T) {
	for _, tc := range []struct {
		name   string
		parser Parser
		event  string
		want   string // the finding's eventType, and /severity to check it; "" for none
	}{
		{"401 at ResponseStarted", Parser{},
			`{"kind":"Event","auditID":"u1","stage":"ResponseStarted","verb":"create","requestURI":"/api/v1/namespaces/default/configmaps","objectRef":{"resource":"configmaps","namespace":"default"},"responseStatus":{"code":401},"user":{}}`,
			"request_denied"},
		{"200 at ResponseStarted", Parser{},
			`{"kind":"Event","auditID":"u2","stage":"ResponseStarted","verb":"delete","objectRef":{"resource":"configmaps","namespace":"default","name":"c"},"responseStatus":{"code":200},"user":{"username":"bob"}}`,
			""},
		{"cluster-admin granted by a patch", Parser{},
			`{"kind":"Event","auditID":"u5","stage":"ResponseComplete","verb":"patch","objectRef":{"resource":"clusterrolebindings","apiGroup":"rbac.authorization.k8s.io","name":"ops"},"responseStatus":{"code":200},"user":{"username":"alice"},"requestObject":{"subjects":[{"kind":"User","name":"mallory"}]},"responseObject":{"roleRef":{"kind":"ClusterRole","name":"cluster-admin"},"subjects":[{"kind":"User","name":"mallory"}]}}`,
			"rbac_modified/critical"},
		{"own delete", Parser{IgnoreUser: "system:serviceaccount:zen-system:zen-watcher"},
			`{"kind":"Event","auditID":"u3","stage":"ResponseComplete","verb":"delete","objectRef":{"resource":"observations","apiGroup":"zen.kube-zen.io","namespace":"x","name":"o"},"responseStatus":{"code":200},"user":{"username":"system:serviceaccount:zen-system:zen-watcher"}}`,
			""},
		{"someone else's delete", Parser{IgnoreUser: "system:serviceaccount:zen-system:zen-watcher"},
			`{"kind":"Event","auditID":"u4","stage":"ResponseComplete","verb":"delete","objectRef":{"resource":"observations","apiGroup":"zen.kube-zen.io","namespace":"x","name":"o"},"responseStatus":{"code":200},"user":{"username":"alice"}}`,
			"resource_deleted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			evs, err := tc.parser.ParsePayload([]byte(tc.event))
			if err != nil {
				t.Fatal(err)
			}
			want, severity, _ := strings.Cut(tc.want, "/")
			switch {
			case want == "" && len(evs) != 0:
				t.Errorf("finding %s, want none", evs[0].EventType)
			case want != "" && (len(evs) != 1 || evs[0].EventType != want):
				t.Fatalf("findings %v, want one %s", evs, want)
			case severity != "" && string(evs[0].Severity) != severity:
				t.Errorf("severity %s, want %s", evs[0].Severity, severity)
			}
			if tc.want == "request_denied" && !strings.HasPrefix(evs[0].Title, "an unauthenticated client create") {
				t.Errorf("title %q", evs[0].Title)
			}
		})
	}
}

// TestTally: every event of a list counts once, as a finding or under the reason it is none.
func TestTally(t *testing.T) {
	body := `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[` +
		`{"kind":"Event","auditID":"t1","stage":"ResponseComplete","verb":"delete","objectRef":{"resource":"configmaps","namespace":"a","name":"c"},"responseStatus":{"code":200},"user":{"username":"bob"}},` +
		`{"kind":"Event","auditID":"t2","stage":"RequestReceived","verb":"delete","objectRef":{"resource":"configmaps","namespace":"a","name":"c"},"user":{"username":"bob"}},` +
		`{"kind":"Event","auditID":"t3","stage":"ResponseComplete","verb":"update","objectRef":{"resource":"leases","apiGroup":"coordination.k8s.io"},"responseStatus":{"code":200},"user":{"username":"zw"}},` +
		`{"kind":"Event","auditID":"t4","stage":"ResponseComplete","verb":"update","objectRef":{"resource":"deployments","apiGroup":"apps"},"responseStatus":{"code":200},"user":{"username":"bob"}}]}`
	evs, tally, err := Parser{IgnoreUser: "zw"}.ParseTallied([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{IgnoredStage: 1, IgnoredOwnRequest: 1, IgnoredNoFinding: 1}
	if len(evs) != 1 || tally.Events != 4 || len(tally.Ignored) != len(want) {
		t.Fatalf("%d findings, tally %+v; want 1 finding of 4 events, ignored %v", len(evs), tally, want)
	}
	for reason, n := range want {
		if tally.Ignored[reason] != n {
			t.Errorf("ignored %s: %d, want %d", reason, tally.Ignored[reason], n)
		}
	}
}

// TestKinds: a resource Kubernetes serves gets its kind; one it does not know gets none (a plural
// is no kind), and its plural is in the details either way.
func TestKinds(t *testing.T) {
	for _, tc := range []struct{ resource, group, kind string }{
		{"leases", "coordination.k8s.io", "Lease"},
		{"observations", "zen.kube-zen.io", "Observation"},
		{"widgets", "example.com", ""},
	} {
		body := fmt.Sprintf(`{"kind":"Event","auditID":"k-%s","stage":"ResponseComplete","verb":"delete","objectRef":{"resource":%q,"apiGroup":%q,"apiVersion":"v1","namespace":"a","name":"n"},"responseStatus":{"code":200},"user":{"username":"bob"}}`,
			tc.resource, tc.resource, tc.group)
		evs, err := Parser{}.ParsePayload([]byte(body))
		if err != nil || len(evs) != 1 {
			t.Fatalf("%s: %v, %v", tc.resource, evs, err)
		}
		if evs[0].Resource.Kind != tc.kind || evs[0].Details["resource"] != tc.resource {
			t.Errorf("%s: kind %q, resource detail %q; want %q, %q", tc.resource, evs[0].Resource.Kind, evs[0].Details["resource"], tc.kind, tc.resource)
		}
	}
}

// BenchmarkParseBatch parses an EventList of 400 events, the API server's largest batch by default,
// at the RequestResponse level: Secret writes with their objects.
func BenchmarkParseBatch(b *testing.B) {
	items := make([]string, 400)
	for i := range items {
		obj := fmt.Sprintf(`{"kind":"Secret","apiVersion":"v1","metadata":{"name":"s%d","namespace":"ns","labels":{"app":"web"}},"data":{"k":"%s"}}`, i, strings.Repeat("QUJD", 256))
		items[i] = fmt.Sprintf(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"id-%d","stage":"ResponseComplete",`+
			`"requestURI":"/api/v1/namespaces/ns/secrets","verb":"create","user":{"username":"bob","groups":["dev"]},"sourceIPs":["10.0.0.1"],`+
			`"objectRef":{"resource":"secrets","namespace":"ns","name":"s%d","apiVersion":"v1"},"responseStatus":{"code":201},`+
			`"requestObject":%s,"responseObject":%s,"requestReceivedTimestamp":"2026-12-01T10:00:00.000000Z"}`, i, i, obj, obj)
	}
	body := []byte(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[` + strings.Join(items, ",") + `]}`)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		evs, err := Parser{}.ParsePayload(body)
		if err != nil || len(evs) != 400 {
			b.Fatalf("%d findings, %v", len(evs), err)
		}
	}
}
