package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Media types of the OCI image spec (image-spec v1.1).
const (
	mediaIndex    = "application/vnd.oci.image.index.v1+json"
	mediaManifest = "application/vnd.oci.image.manifest.v1+json"
	mediaConfig   = "application/vnd.oci.image.config.v1+json"
	mediaLayer    = "application/vnd.oci.image.layer.v1.tar+gzip"
)

// Spec is what goes into an image.
type Spec struct {
	// Files are what the image holds besides its users and /tmp: the first is the entrypoint.
	Files []Add
	// User is the user the image runs as, named in its /etc/passwd and /etc/group; its ID is
	// also its group's.
	User User
	// Name is the image's name with its tag.
	Name string
	// CABundle, when set, is installed at /etc/ssl/certs/ca-certificates.crt, for TLS to servers
	// with public certificates (a Redis service, say).
	CABundle string
	// Arch is the binary's architecture (GOARCH).
	Arch string
	// Ports are the TCP ports the image documents.
	Ports []string
	// Created stamps the config and every file; the zero time stamps the epoch.
	Created time.Time
}

// Add is a file of the build machine, Src, put at Dst in the image, executable or not as it is.
// A symbolic link is followed: the image holds its target's content under Dst's name.
type Add struct {
	Src, Dst string
}

// User is a user without a shell.
type User struct {
	Name string
	ID   int
}

// Nonroot is the user a static binary runs as, the one distroless names.
var Nonroot = User{Name: "nonroot", ID: 65532}

// descriptor points at a blob (image-spec descriptor.md).
type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Platform    *platform         `json:"platform,omitempty"`
}

type platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
}

type blob struct {
	desc descriptor
	data []byte
}

func newBlob(mediaType string, data []byte) blob {
	sum := sha256.Sum256(data)
	return blob{desc: descriptor{MediaType: mediaType, Digest: "sha256:" + hex.EncodeToString(sum[:]), Size: int64(len(data))}, data: data}
}

// Write writes the OCI image archive of spec to w and returns its manifest's digest.
func Write(w io.Writer, spec Spec) (string, error) {
	repo, tag, err := splitName(spec.Name)
	if err != nil {
		return "", err
	}
	created := spec.Created
	if created.IsZero() {
		created = time.Unix(0, 0).UTC()
	}
	layerTar, err := rootFS(spec, created)
	if err != nil {
		return "", err
	}
	layer, err := gzipped(layerTar)
	if err != nil {
		return "", err
	}
	diffID := sha256.Sum256(layerTar)
	config, err := configBlob(spec, created, "sha256:"+hex.EncodeToString(diffID[:]))
	if err != nil {
		return "", err
	}
	layerBlob := newBlob(mediaLayer, layer)
	manifest, err := jsonBlob(mediaManifest, map[string]any{
		"schemaVersion": 2,
		"mediaType":     mediaManifest,
		"config":        config.desc,
		"layers":        []descriptor{layerBlob.desc},
	})
	if err != nil {
		return "", err
	}
	ref := manifest.desc
	ref.Platform = &platform{Architecture: spec.Arch, OS: "linux"}
	ref.Annotations = map[string]string{
		// containerd names the image it imports from this one; the OCI key holds the tag alone.
		"io.containerd.image.name":          repo + ":" + tag,
		"org.opencontainers.image.ref.name": tag,
	}
	index, err := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": mediaIndex, "manifests": []descriptor{ref}})
	if err != nil {
		return "", fmt.Errorf("encoding the index: %w", err)
	}
	files := []file{
		{name: "oci-layout", data: []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{name: "index.json", data: index},
	}
	for _, b := range []blob{manifest, config, layerBlob} {
		files = append(files, file{name: "blobs/sha256/" + strings.TrimPrefix(b.desc.Digest, "sha256:"), data: b.data})
	}
	tw := tar.NewWriter(w)
	if err := writeFiles(tw, files, created); err != nil {
		return "", fmt.Errorf("writing the archive: %w", err)
	}
	if err := tw.Close(); err != nil {
		return "", fmt.Errorf("writing the archive: %w", err)
	}
	return manifest.desc.Digest, nil
}

// splitName splits name:tag; a name without a tag is refused rather than guessed at.
func splitName(name string) (repo, tag string, err error) {
	i := strings.LastIndexByte(name, ':')
	if i <= 0 || i == len(name)-1 || strings.Contains(name[i:], "/") {
		return "", "", fmt.Errorf("image name %q: want repository:tag", name)
	}
	return name[:i], name[i+1:], nil
}

func jsonBlob(mediaType string, v any) (blob, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return blob{}, fmt.Errorf("encoding the %s: %w", mediaType, err)
	}
	return newBlob(mediaType, data), nil
}

// configBlob is the image's configuration (image-spec config.md).
func configBlob(spec Spec, created time.Time, diffID string) (blob, error) {
	ports := map[string]struct{}{}
	for _, p := range spec.Ports {
		ports[strings.TrimSpace(p)+"/tcp"] = struct{}{}
	}
	if len(spec.Files) == 0 {
		return blob{}, fmt.Errorf("an image without an entrypoint")
	}
	entry := "/" + strings.TrimPrefix(spec.Files[0].Dst, "/")
	id := strconv.Itoa(spec.User.ID)
	return jsonBlob(mediaConfig, map[string]any{
		"created":      created.Format(time.RFC3339),
		"architecture": spec.Arch,
		"os":           "linux",
		"config": map[string]any{
			"User":         id + ":" + id,
			"Entrypoint":   []string{entry},
			"ExposedPorts": ports,
			"WorkingDir":   "/",
			"Env":          []string{"PATH=/usr/bin:/"},
		},
		"rootfs":  map[string]any{"type": "layers", "diff_ids": []string{diffID}},
		"history": []map[string]string{{"created": created.Format(time.RFC3339), "created_by": "hack/ociimage"}},
	})
}

// file is one entry of a tar: a directory when data is nil and dir is set.
type file struct {
	name string
	mode int64
	dir  bool
	data []byte
}

// rootFS is the image's one layer: the files, the user they run as, a /tmp, the CA bundle when
// one is given, and every directory these need, in the order of their paths.
func rootFS(spec Spec, created time.Time) ([]byte, error) {
	if spec.User.Name == "" || spec.User.ID <= 0 {
		return nil, fmt.Errorf("user %+v: want a name and an ID other than root's", spec.User)
	}
	id := strconv.Itoa(spec.User.ID)
	entries := map[string]file{
		"etc/group": {mode: 0o644, data: []byte("root:x:0:\n" + spec.User.Name + ":x:" + id + ":\n")},
		"etc/passwd": {mode: 0o644, data: []byte("root:x:0:0:root:/root:/sbin/nologin\n" +
			spec.User.Name + ":x:" + id + ":" + id + ":" + spec.User.Name + ":/:/sbin/nologin\n")},
		"tmp/": {dir: true, mode: 0o1777},
	}
	adds := spec.Files
	if spec.CABundle != "" {
		adds = append(slices.Clone(adds), Add{Src: spec.CABundle, Dst: "/etc/ssl/certs/ca-certificates.crt"})
	}
	for _, a := range adds {
		name := strings.TrimPrefix(path.Clean("/"+a.Dst), "/")
		if name == "" {
			return nil, fmt.Errorf("%s: no destination", a.Src)
		}
		if _, taken := entries[name]; taken {
			return nil, fmt.Errorf("%s: %s is in the image twice", a.Src, a.Dst)
		}
		info, err := os.Stat(a.Src)
		if err != nil {
			return nil, fmt.Errorf("adding %s: %w", a.Src, err)
		}
		data, err := os.ReadFile(a.Src)
		if err != nil {
			return nil, fmt.Errorf("adding %s: %w", a.Src, err)
		}
		mode := int64(0o644)
		if info.Mode()&0o111 != 0 {
			mode = 0o755
		}
		entries[name] = file{mode: mode, data: data}
		for dir := path.Dir(name); dir != "."; dir = path.Dir(dir) {
			entries[dir+"/"] = file{dir: true, mode: 0o755}
		}
	}
	files := make([]file, 0, len(entries))
	for _, name := range slices.Sorted(maps.Keys(entries)) {
		f := entries[name]
		f.name = name
		files = append(files, f)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := writeFiles(tw, files, created); err != nil {
		return nil, fmt.Errorf("writing the layer: %w", err)
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("writing the layer: %w", err)
	}
	return buf.Bytes(), nil
}

// writeFiles writes files in their order, owned by root and stamped created, in the PAX format
// with nothing of the machine that wrote them.
func writeFiles(tw *tar.Writer, files []file, created time.Time) error {
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: f.mode, ModTime: created, Format: tar.FormatPAX, Typeflag: tar.TypeReg, Size: int64(len(f.data))}
		if f.mode == 0 {
			h.Mode = 0o644
		}
		if f.dir {
			h.Typeflag, h.Size = tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("%s: %w", f.name, err)
		}
		if _, err := tw.Write(f.data); err != nil {
			return fmt.Errorf("%s: %w", f.name, err)
		}
	}
	return nil
}

// gzipped compresses data with no name and no time in the header, so the same data compresses
// to the same bytes.
func gzipped(data []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(data); err != nil {
		return nil, fmt.Errorf("compressing the layer: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("compressing the layer: %w", err)
	}
	return buf.Bytes(), nil
}
