package chart

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestGeneratedWebhookTLS: with webhook.tls.generate the chart makes a CA and a serving
// certificate for the webhook Service's names, the Deployment mounts them, and an upgrade keeps
// the very same certificate, so that senders configured with the CA go on trusting it.
func TestGeneratedWebhookTLS(t *testing.T) {
	const ns, release = "chart-tls", "tls"
	ctx := context.Background()
	runHelm(t, "install", release, ".", "-n", ns, "--create-namespace",
		"--set", "webhook.tls.enabled=true", "--set", "webhook.tls.generate=true")
	t.Cleanup(func() {
		_, _ = command(chartDir, helm, "uninstall", release, "-n", ns, "--kubeconfig", cluster.Kubeconfig)
	})
	secrets := cluster.Kube.CoreV1().Secrets(ns)
	s, err := secrets.Get(ctx, "tls-zen-watcher-webhook-tls", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(s.Data["ca.crt"]) {
		t.Fatal("ca.crt holds no certificate")
	}
	block, _ := pem.Decode(s.Data["tls.crt"])
	if block == nil {
		t.Fatal("tls.crt holds no certificate")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"tls-zen-watcher", "tls-zen-watcher.chart-tls.svc", "tls-zen-watcher.chart-tls.svc.cluster.local"} {
		if _, err := cert.Verify(x509.VerifyOptions{DNSName: name, Roots: roots, CurrentTime: time.Now(),
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("the certificate does not serve %s under ca.crt: %v", name, err)
		}
	}
	dep, err := cluster.Kube.AppsV1().Deployments(ns).Get(ctx, "tls-zen-watcher", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mounted := false
	for _, v := range dep.Spec.Template.Spec.Volumes {
		mounted = mounted || v.Secret != nil && v.Secret.SecretName == "tls-zen-watcher-webhook-tls"
	}
	if !mounted {
		t.Error("the Deployment does not mount the generated Secret")
	}

	runHelm(t, "upgrade", release, ".", "-n", ns, "--reuse-values", "--set", "replicaCount=2")
	after, err := secrets.Get(ctx, "tls-zen-watcher-webhook-tls", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"tls.crt", "tls.key", "ca.crt"} {
		if string(after.Data[key]) != string(s.Data[key]) {
			t.Errorf("the upgrade changed %s", key)
		}
	}
}
