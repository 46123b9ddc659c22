package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kube-zen/zen-watcher/internal/testenv"
	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/server"
)

// tlsPoster posts to replicas over TLS, trusting the test CA, with an optional client certificate.
type tlsPoster struct {
	t     *testing.T
	roots *testenv.CA
}

func (p tlsPoster) post(r *replica, path string, body []byte, header http.Header, cert *tls.Certificate) int {
	p.t.Helper()
	cfg := &tls.Config{RootCAs: p.roots.Pool(), MinVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
	req, err := http.NewRequest(http.MethodPost, "https://"+r.WebhookAddr+path, bytes.NewReader(body))
	if err != nil {
		p.t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		p.t.Fatalf("POST %s to %s: %v", path, r.Name, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func signedHeader(key []byte, at time.Time, body []byte) http.Header {
	h := http.Header{}
	h.Set(server.DefaultSignatureHeader, server.Sign(key, at, body))
	h.Set(server.DefaultTimestampHeader, strconv.FormatInt(at.Unix(), 10))
	return h
}

// TestWebhookAuthModes runs two replicas serving webhooks over TLS, one webhook signed with HMAC
// and one authenticated by client certificate, and checks that each accepts the right credential
// and refuses wrong, missing, expired and replayed ones (a replay to the other replica included),
// that a rotated key takes effect without a restart, that no secret reaches the logs, and that
// pprof answers on loopback only when asked for.
func TestWebhookAuthModes(t *testing.T) {
	redis, err := testenv.StartRedis()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = redis.Close() })
	ca, err := testenv.NewCA("zen-e2e-ca")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	_, certPEM, keyPEM, err := ca.Leaf("zen-watcher", time.Now().Add(time.Hour), true)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}

	const oldKey, newKey = "hmac-key-one-9f3a", "hmac-key-two-77c1"
	ensureNamespace(t, "zen-system")
	secrets := cluster.Kube.CoreV1().Secrets("zen-system")
	for name, data := range map[string]map[string][]byte{
		"falco-hmac": {"key": []byte(oldKey)},
		"falco-ca":   {"ca.crt": ca.CertPEM()},
	} {
		if _, err := secrets.Create(context.Background(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: data},
			metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = secrets.Delete(context.Background(), name, metav1.DeleteOptions{}) })
	}
	ingester(t, "falco-hmac", v1alpha1.IngesterSpec{Source: "falcoh", Adapter: v1alpha1.AdapterFalco,
		Webhook: &v1alpha1.WebhookSource{Path: "/falcoh", Auth: v1alpha1.WebhookAuth{Type: v1alpha1.WebhookAuthHMAC,
			SecretRef: &v1alpha1.SecretKeyRef{Name: "falco-hmac", Key: "key"}}}})
	ingester(t, "falco-mtls", v1alpha1.IngesterSpec{Source: "falcom", Adapter: v1alpha1.AdapterFalco,
		Webhook: &v1alpha1.WebhookSource{Path: "/falcom", Auth: v1alpha1.WebhookAuth{Type: v1alpha1.WebhookAuthMTLS,
			SecretRef: &v1alpha1.SecretKeyRef{Name: "falco-ca", Key: "ca.crt"}}}})

	pprofPort := testenv.FreePort(t)
	start := func(id string, extra ...string) *replica {
		args := append([]string{"-namespace", "zen-system", "-release", "auth", "-member-id", id, "-redis-addr", redis.Addr,
			"-webhook-tls-cert-file", certFile, "-webhook-tls-key-file", keyFile, "-webhook-secret-refresh", "1s"}, extra...)
		return startReplica(t, id, args...)
	}
	a := start("auth-a", "-enable-pprof", "-pprof-port", strconv.Itoa(pprofPort))
	b := start("auth-b")
	p := tlsPoster{t: t, roots: ca}
	for _, r := range []*replica{a, b} {
		r.WaitReady(t, 60*time.Second)
		eventually(t, 20*time.Second, func(context.Context) error {
			for _, path := range []string{"/falcom", "/falcoh"} {
				if code := p.post(r, path, []byte(alertBody("probe")), nil, nil); code == http.StatusNotFound {
					return fmt.Errorf("%s not served by %s yet", path, r.Name)
				}
			}
			return nil
		})
	}

	body := []byte(alertBody("hmac-1"))
	now := time.Now()
	fresh := signedHeader([]byte(oldKey), now, body)
	client, _, _, err := ca.Leaf("falcosidekick", now.Add(time.Hour), false)
	if err != nil {
		t.Fatal(err)
	}
	expired, _, _, err := ca.Leaf("falcosidekick", now.Add(-time.Minute), false)
	if err != nil {
		t.Fatal(err)
	}
	other, err := testenv.NewCA("someone-else")
	if err != nil {
		t.Fatal(err)
	}
	foreign, _, _, err := other.Leaf("falcosidekick", now.Add(time.Hour), false)
	if err != nil {
		t.Fatal(err)
	}
	// The same signature spelled in upper case: the same request again, refused on any replica.
	upper := fresh.Clone()
	upper.Set(server.DefaultSignatureHeader, "sha256="+strings.ToUpper(strings.TrimPrefix(fresh.Get(server.DefaultSignatureHeader), "sha256=")))
	cases := []struct {
		name   string
		to     *replica
		path   string
		body   []byte
		header http.Header
		cert   *tls.Certificate
		want   int
	}{
		{"hmac right", a, "/falcoh", body, fresh, nil, 202},
		{"hmac replayed to the same replica", a, "/falcoh", body, fresh, nil, 401},
		{"hmac replayed to another replica", b, "/falcoh", body, fresh, nil, 401},
		{"hmac replayed in upper case", b, "/falcoh", body, upper, nil, 401},
		{"hmac wrong key", a, "/falcoh", body, signedHeader([]byte("guess"), now, body), nil, 401},
		{"hmac missing", a, "/falcoh", body, nil, nil, 401},
		{"hmac expired", b, "/falcoh", body, signedHeader([]byte(oldKey), now.Add(-10*time.Minute), body), nil, 401},
		{"mtls right", b, "/falcom", []byte(alertBody("mtls-1")), nil, &client, 202},
		{"mtls foreign CA", a, "/falcom", []byte(alertBody("mtls-2")), nil, &foreign, 401},
		{"mtls expired", a, "/falcom", []byte(alertBody("mtls-3")), nil, &expired, 401},
		{"mtls missing", a, "/falcom", []byte(alertBody("mtls-4")), nil, nil, 401},
	}
	for _, tc := range cases {
		if code := p.post(tc.to, tc.path, tc.body, tc.header, tc.cert); code != tc.want {
			t.Errorf("%s: HTTP %d, want %d", tc.name, code, tc.want)
		}
	}
	waitObservations(t, "zen-system", "falcoh", 1)
	waitObservations(t, "zen-system", "falcom", 1)

	// Rotation: the Secret gets a new key; within the refresh the old one is refused.
	s, err := secrets.Get(context.Background(), "falco-hmac", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Data["key"] = []byte(newKey)
	if _, err := secrets.Update(context.Background(), s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func(context.Context) error {
		b2 := []byte(alertBody(fmt.Sprintf("rotated-%d", time.Now().UnixNano())))
		if code := p.post(a, "/falcoh", b2, signedHeader([]byte(newKey), time.Now(), b2), nil); code != 202 {
			return fmt.Errorf("new key: HTTP %d", code)
		}
		return nil
	})
	b3 := []byte(alertBody("old-key-after-rotation"))
	if code := p.post(a, "/falcoh", b3, signedHeader([]byte(oldKey), time.Now(), b3), nil); code != 401 {
		t.Errorf("old key after rotation: HTTP %d", code)
	}

	if a.metric(`zen_watcher_webhook_auth_failures_total{reason="replayed",source="falcoh"}`) != 1 ||
		b.metric(`zen_watcher_webhook_auth_failures_total{reason="replayed",source="falcoh"}`) != 2 {
		t.Error("replays not counted on each replica")
	}

	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/", pprofPort))
	if err != nil {
		t.Fatalf("pprof: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("pprof: HTTP %d", resp.StatusCode)
	}
	if !strings.Contains(a.Out.String(), fmt.Sprintf(`"address":"127.0.0.1:%d"`, pprofPort)) {
		t.Error("pprof not reported as served on loopback")
	}
	for _, r := range []*replica{a, b} {
		for _, secret := range []string{oldKey, newKey} {
			if strings.Contains(r.Out.String(), secret) {
				t.Errorf("%s logged a webhook secret", r.Name)
			}
		}
	}
}

// alertBody is a Falco alert whose output is distinct for each id.
func alertBody(id string) string {
	return fmt.Sprintf(`{"output":"auth test %s","priority":"Warning","rule":"Auth test","time":"2026-11-26T10:00:00Z","hostname":"node-auth"}`, id)
}

// TestDocumentedSigningExample runs the shell example of docs/SOURCES.md — openssl and curl, as
// a user would paste it — against a replica's hmac webhook, with the test's key and address in
// place of the example's kubectl and Service lines.
func TestDocumentedSigningExample(t *testing.T) {
	for _, tool := range []string{"bash", "openssl", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the documented example needs %s: %v", tool, err)
		}
	}
	script := documentedBlock(t, "docs/SOURCES.md", "<!-- hmac-shell -->")
	const key = "doc-example-key-5d2e"
	secret(t, "falco-hmac-doc", map[string][]byte{"key": []byte(key)})
	ingester(t, "falco-hmac-doc", v1alpha1.IngesterSpec{Source: "falcod", Adapter: v1alpha1.AdapterFalco,
		Webhook: &v1alpha1.WebhookSource{Path: "/falcod", Auth: v1alpha1.WebhookAuth{Type: v1alpha1.WebhookAuthHMAC,
			SecretRef: &v1alpha1.SecretKeyRef{Name: "falco-hmac-doc", Key: "key"}}}})
	r := startReplica(t, "doc-example", "-namespace", "zen-system", "-release", "doc-example", "-member-id", "doc-example")
	r.WaitReady(t, 60*time.Second)
	waitRoute(t, r, "/falcod")

	var lines []string
	for _, l := range strings.Split(script, "\n") {
		switch {
		case strings.HasPrefix(l, "key="):
			l = "key=" + key
		case strings.HasPrefix(l, "url="):
			l = "url=http://" + r.WebhookAddr + "/falcod"
		}
		lines = append(lines, l)
	}
	run := func() string {
		out, err := exec.Command("bash", "-euo", "pipefail", "-c", strings.Join(lines, "\n")).CombinedOutput()
		if err != nil {
			t.Fatalf("the documented example failed: %v\n%s", err, out)
		}
		return string(out)
	}
	if out := run(); !strings.Contains(out, `"accepted":1`) {
		t.Fatalf("the documented example was answered %q, want one finding accepted", out)
	}
	waitObservations(t, "zen-system", "falcod", 1)
	if n := r.metric(`zen_watcher_webhook_auth_failures_total{reason="bad_signature",source="falcod"}`); n > 0 {
		t.Errorf("%v bad signatures counted", n)
	}
}

// documentedBlock returns the fenced code block that follows marker in the repository file path,
// without the indentation of the list item it sits in.
func documentedBlock(t *testing.T, path, marker string) string {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, path))
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(b), marker)
	if !ok {
		t.Fatalf("%s has no %s", path, marker)
	}
	var block []string
	in := false
	for _, l := range strings.Split(after, "\n") {
		l = strings.TrimPrefix(l, "  ")
		switch {
		case !in && strings.HasPrefix(l, "```"):
			in = true
		case in && strings.HasPrefix(l, "```"):
			return strings.Join(block, "\n")
		case in:
			block = append(block, l)
		}
	}
	t.Fatalf("%s: no closed code block after %s", path, marker)
	return ""
}
