// Command ociimage writes an OCI image archive without docker or a registry: a static binary
// (`go run ./hack/ociimage -binary bin/image/zen-watcher -name ghcr.io/kube-zen/zen-watcher:0.1.0
// -out bin/zen-watcher.oci.tar`), or any files with the first as the entrypoint (-add SRC=DST,
// repeated). `ctr images import` and `docker load` read the archive, and `skopeo copy
// oci-archive:…` pushes it to a registry.
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
		spec   Spec
		out    string
		port   string
		binary string
		user   = fmt.Sprintf("%s:%d", Nonroot.Name, Nonroot.ID)
	)
	flag.StringVar(&binary, "binary", "", "a static binary, put at /<its name> as the image's entrypoint")
	flag.Func("add", "SRC=DST: a file put at DST in the image, repeated; the first is the entrypoint unless -binary is given",
		func(v string) error {
			src, dst, ok := strings.Cut(v, "=")
			if !ok || src == "" || dst == "" {
				return fmt.Errorf("want SRC=DST, got %q", v)
			}
			spec.Files = append(spec.Files, Add{Src: src, Dst: dst})
			return nil
		})
	flag.StringVar(&user, "user", user, "NAME:ID of the user the image runs as (its group has the same)")
	flag.StringVar(&spec.Name, "name", "", "the image's name and tag, e.g. ghcr.io/kube-zen/zen-watcher:0.1.0")
	flag.StringVar(&spec.CABundle, "ca-bundle", "", "a PEM bundle of CA certificates to hold at /etc/ssl/certs/ca-certificates.crt (optional)")
	flag.StringVar(&spec.Arch, "arch", "amd64", "the binary's GOARCH")
	flag.StringVar(&port, "expose", "8080,9090", "TCP ports the image documents, comma-separated")
	flag.StringVar(&out, "out", "", "where to write the archive")
	flag.Parse()
	if binary != "" {
		spec.Files = append([]Add{{Src: binary, Dst: "/" + filepath.Base(binary)}}, spec.Files...)
	}
	name, id, ok := strings.Cut(user, ":")
	uid, err := strconv.Atoi(id)
	if !ok || err != nil {
		fmt.Fprintf(os.Stderr, "ociimage: -user %q: want NAME:ID\n", user)
		os.Exit(2)
	}
	spec.User = User{Name: name, ID: uid}
	if len(spec.Files) == 0 || spec.Name == "" || out == "" {
		fmt.Fprintln(os.Stderr, "usage: ociimage {-binary FILE | -add SRC=DST ...} -name NAME:TAG -out FILE [-user NAME:ID] [-ca-bundle FILE] [-arch GOARCH] [-expose PORTS]")
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
