// Command ociimage writes an OCI image archive of one static binary, without docker or a
// registry: `go run ./hack/ociimage -binary bin/image/zen-watcher -name ghcr.io/kube-zen/zen-watcher:0.1.0
// -out bin/zen-watcher.oci.tar`. `ctr images import` and `docker load` read the archive, and
// `skopeo copy oci-archive:…` pushes it to a registry.
//
// The archive depends on its inputs alone: every time stamp is the epoch (or SOURCE_DATE_EPOCH),
// every owner root, the entries in a fixed order, so the same binary gives the same digest.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

func main() {
	var (
		spec Spec
		out  string
		port string
	)
	flag.StringVar(&spec.Binary, "binary", "", "the static binary, the image's entrypoint")
	flag.StringVar(&spec.Name, "name", "", "the image's name and tag, e.g. ghcr.io/kube-zen/zen-watcher:0.1.0")
	flag.StringVar(&spec.CABundle, "ca-bundle", "", "a PEM bundle of CA certificates to hold at /etc/ssl/certs/ca-certificates.crt (optional)")
	flag.StringVar(&spec.Arch, "arch", "amd64", "the binary's GOARCH")
	flag.StringVar(&port, "expose", "8080,9090", "TCP ports the image documents, comma-separated")
	flag.StringVar(&out, "out", "", "where to write the archive")
	flag.Parse()
	if spec.Binary == "" || spec.Name == "" || out == "" {
		fmt.Fprintln(os.Stderr, "usage: ociimage -binary FILE -name NAME:TAG -out FILE [-ca-bundle FILE] [-arch GOARCH] [-expose PORTS]")
		os.Exit(2)
	}
	if port != "" {
		spec.Ports = strings.Split(port, ",")
	}
	if epoch := os.Getenv("SOURCE_DATE_EPOCH"); epoch != "" {
		sec, err := strconv.ParseInt(epoch, 10, 64)
		if err != nil {
			fmt.Fprintf(os.Stderr, "ociimage: SOURCE_DATE_EPOCH %q: %v\n", epoch, err)
			os.Exit(2)
		}
		spec.Created = time.Unix(sec, 0).UTC()
	}
	digest, err := writeFile(out, spec)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ociimage:", err)
		os.Exit(1)
	}
	fmt.Printf("%s %s %s\n", out, spec.Name, digest)
}

// writeFile writes the archive of spec to path, through a temporary file so that a failed write
// leaves no half archive behind; it returns the manifest's digest.
func writeFile(path string, spec Spec) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(path), ".ociimage-*")
	if err != nil {
		return "", fmt.Errorf("creating the archive: %w", err)
	}
	defer os.Remove(f.Name())
	digest, err := Write(f, spec)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("writing the archive: %w", cerr)
	}
	if err != nil {
		return "", err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return "", fmt.Errorf("writing the archive: %w", err)
	}
	return digest, nil
}
