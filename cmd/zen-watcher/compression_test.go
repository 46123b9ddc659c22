package main

import (
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// TestRestConfigCompression: a replica's requests ask for no gzip unless -kube-compression, both on
// a host with TLS (a transport client-go builds) and on one without (Go's default transport, which
// asks for gzip on its own unless told otherwise).
func TestRestConfigCompression(t *testing.T) {
	cases := []struct {
		name             string
		tls, compress    bool
		wantGzip         bool
		defaultTransport bool
	}{
		{name: "TLS host", tls: true, defaultTransport: false},
		{name: "plain host", tls: false, defaultTransport: true},
		{name: "TLS host, compression asked for", tls: true, compress: true, wantGzip: true},
		{name: "plain host, compression asked for", tls: false, compress: true, wantGzip: true, defaultTransport: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			asked := make(chan string, 1)
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				asked <- r.Header.Get("Accept-Encoding")
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write([]byte(`{"major":"1","minor":"37"}`))
			}))
			if tc.tls {
				srv.StartTLS()
			} else {
				srv.Start()
			}
			defer srv.Close()

			rc, err := restConfig(&config{kubeconfig: kubeconfigFor(t, srv), kubeCompress: tc.compress})
			if err != nil {
				t.Fatal(err)
			}
			if got := sentThroughDefaultTransport(rc); got != tc.defaultTransport {
				t.Errorf("sent through Go's default transport: %v, want %v", got, tc.defaultTransport)
			}
			hc, err := rest.HTTPClientFor(rc)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := hc.Get(srv.URL + "/version")
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			if enc := <-asked; strings.Contains(enc, "gzip") != tc.wantGzip {
				t.Errorf("Accept-Encoding %q; want gzip asked for: %v", enc, tc.wantGzip)
			}
		})
	}
}

// kubeconfigFor writes a kubeconfig that names srv, trusting its certificate when it has one.
func kubeconfigFor(t *testing.T, srv *httptest.Server) string {
	t.Helper()
	cluster := &clientcmdapi.Cluster{Server: srv.URL}
	if c := srv.Certificate(); c != nil {
		cluster.CertificateAuthorityData = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["test"] = cluster
	cfg.AuthInfos["test"] = &clientcmdapi.AuthInfo{Token: "t"}
	cfg.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "test"}
	cfg.CurrentContext = "test"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}
