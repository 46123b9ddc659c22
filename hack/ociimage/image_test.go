package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// archive is an OCI image archive read back: its files by name.
type archive map[string][]byte

func readTar(t *testing.T, data []byte) (archive, map[string]*tar.Header) {
	t.Helper()
	files, headers := archive{}, map[string]*tar.Header{}
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files, headers
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name], headers[h.Name] = b, h
	}
}

// blob reads the blob a descriptor points at, checking its digest and size.
func (a archive) blob(t *testing.T, d descriptor) []byte {
	t.Helper()
	b, ok := a["blobs/sha256/"+strings.TrimPrefix(d.Digest, "sha256:")]
	if !ok {
		t.Fatalf("no blob %s", d.Digest)
	}
	if sum := sha256.Sum256(b); "sha256:"+hex.EncodeToString(sum[:]) != d.Digest || int64(len(b)) != d.Size {
		t.Fatalf("blob %s: digest or size (%d, want %d) wrong", d.Digest, len(b), d.Size)
	}
	return b
}

func decode(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}

func testSpec(t *testing.T) Spec {
	dir := t.TempDir()
	bin := filepath.Join(dir, "zen-watcher")
	if err := os.WriteFile(bin, []byte("\x7fELF not really"), 0o700); err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(ca, []byte("-----BEGIN CERTIFICATE-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return Spec{Files: []Add{{Src: bin, Dst: "/zen-watcher"}}, User: Nonroot, Name: "ghcr.io/kube-zen/zen-watcher:0.1.0", CABundle: ca, Arch: "amd64", Ports: []string{"8080", "9090"}}
}

// TestImageIsReproducible: the same inputs give the same archive, byte for byte, whenever and
// wherever it is written; another binary gives another digest.
func TestImageIsReproducible(t *testing.T) {
	spec := testSpec(t)
	var a, b bytes.Buffer
	da, err := Write(&a, spec)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // a clock that leaked in would show now
	if err := os.Chtimes(spec.Files[0].Src, time.Now(), time.Now()); err != nil {
		t.Fatal(err)
	}
	db, err := Write(&b, spec)
	if err != nil {
		t.Fatal(err)
	}
	if da != db || !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Errorf("two archives of the same inputs differ: %s and %s", da, db)
	}
	if err := os.WriteFile(spec.Files[0].Src, []byte("\x7fELF another"), 0o700); err != nil {
		t.Fatal(err)
	}
	var c bytes.Buffer
	if dc, err := Write(&c, spec); err != nil || dc == da {
		t.Errorf("another binary gave digest %s (error %v), want one other than %s", dc, err, da)
	}
}

// TestImageLayout: the archive is an OCI image layout whose index names the image for containerd,
// whose blobs match their digests, whose config runs the binary as a non-root user, and whose one
// layer's digest uncompressed is the config's diff ID.
func TestImageLayout(t *testing.T) {
	spec := testSpec(t)
	var buf bytes.Buffer
	digest, err := Write(&buf, spec)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := readTar(t, buf.Bytes())
	if got := string(a["oci-layout"]); got != `{"imageLayoutVersion":"1.0.0"}` {
		t.Errorf("oci-layout %s", got)
	}
	var index struct{ Manifests []descriptor }
	decode(t, a["index.json"], &index)
	if len(index.Manifests) != 1 {
		t.Fatalf("index holds %d manifests, want 1", len(index.Manifests))
	}
	ref := index.Manifests[0]
	if ref.Digest != digest || ref.MediaType != mediaManifest || ref.Platform == nil || ref.Platform.Architecture != "amd64" {
		t.Errorf("index points at %+v, want manifest %s for amd64", ref, digest)
	}
	if ref.Annotations["io.containerd.image.name"] != spec.Name || ref.Annotations["org.opencontainers.image.ref.name"] != "0.1.0" {
		t.Errorf("index annotations %v", ref.Annotations)
	}
	var manifest struct {
		SchemaVersion int
		Config        descriptor
		Layers        []descriptor
	}
	decode(t, a.blob(t, ref), &manifest)
	if manifest.SchemaVersion != 2 || len(manifest.Layers) != 1 || manifest.Config.MediaType != mediaConfig {
		t.Fatalf("manifest %+v", manifest)
	}
	var config struct {
		Architecture, OS string
		Config           struct {
			User         string
			Entrypoint   []string
			ExposedPorts map[string]struct{}
		}
		RootFS struct {
			Type    string
			DiffIDs []string `json:"diff_ids"`
		}
	}
	decode(t, a.blob(t, manifest.Config), &config)
	if config.OS != "linux" || config.Config.User != "65532:65532" || len(config.Config.Entrypoint) != 1 ||
		config.Config.Entrypoint[0] != "/zen-watcher" || len(config.Config.ExposedPorts) != 2 {
		t.Errorf("config %+v", config)
	}
	zr, err := gzip.NewReader(bytes.NewReader(a.blob(t, manifest.Layers[0])))
	if err != nil {
		t.Fatal(err)
	}
	layer, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(layer); len(config.RootFS.DiffIDs) != 1 || config.RootFS.DiffIDs[0] != "sha256:"+hex.EncodeToString(sum[:]) {
		t.Errorf("diff IDs %v, want the uncompressed layer's digest", config.RootFS.DiffIDs)
	}
	files, headers := readTar(t, layer)
	bin, _ := os.ReadFile(spec.Files[0].Src)
	if h := headers["zen-watcher"]; h == nil || h.Mode != 0o755 || h.Uid != 0 || !bytes.Equal(files["zen-watcher"], bin) {
		t.Errorf("the layer's binary: %+v", h)
	}
	if !strings.Contains(string(files["etc/passwd"]), "nonroot:x:65532:65532:") {
		t.Errorf("etc/passwd %q names no nonroot user", files["etc/passwd"])
	}
	if h := headers["tmp/"]; h == nil || h.Typeflag != tar.TypeDir || h.Mode != 0o1777 {
		t.Errorf("tmp/: %+v", h)
	}
	if _, ok := files["etc/ssl/certs/ca-certificates.crt"]; !ok {
		t.Error("the CA bundle is missing")
	}
}

func TestImageRefuses(t *testing.T) {
	spec := testSpec(t)
	for name, change := range map[string]func(*Spec){
		"no tag":         func(s *Spec) { s.Name = "ghcr.io/kube-zen/zen-watcher" },
		"port not a tag": func(s *Spec) { s.Name = "localhost:5000/zen-watcher" },
		"empty tag":      func(s *Spec) { s.Name = "zen-watcher:" },
		"no binary":      func(s *Spec) { s.Files = []Add{{Src: filepath.Join(t.TempDir(), "missing"), Dst: "/x"}} },
		"no files":       func(s *Spec) { s.Files = nil },
		"a file twice":   func(s *Spec) { s.Files = append(s.Files, s.Files[0]) },
		"root":           func(s *Spec) { s.User = User{Name: "root", ID: 0} },
		"no CA bundle":   func(s *Spec) { s.CABundle = filepath.Join(t.TempDir(), "missing") },
	} {
		s := spec
		change(&s)
		if _, err := Write(io.Discard, s); err == nil {
			t.Errorf("%s: written", name)
		}
	}
}

// TestImageOfFiles: an image of several files — a dynamically linked program with its libraries —
// holds each at its destination under every directory it needs, a link's target's content under
// the link's destination, and runs the first as the user named.
func TestImageOfFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	server := write("redis-check-rdb", "\x7fELF server", 0o755)
	link := filepath.Join(dir, "redis-server")
	if err := os.Symlink(server, link); err != nil {
		t.Fatal(err)
	}
	lib := write("libjemalloc.so.2", "\x7fELF lib", 0o644)
	spec := Spec{Name: "zen-watcher-redis:7.0.15", Arch: "amd64", User: User{Name: "redis", ID: 999},
		Files: []Add{{Src: link, Dst: "/usr/bin/redis-server"}, {Src: lib, Dst: "/lib/x86_64-linux-gnu/libjemalloc.so.2"}}}
	var buf bytes.Buffer
	if _, err := Write(&buf, spec); err != nil {
		t.Fatal(err)
	}
	a, _ := readTar(t, buf.Bytes())
	var index struct{ Manifests []descriptor }
	decode(t, a["index.json"], &index)
	var manifest struct {
		Config descriptor
		Layers []descriptor
	}
	decode(t, a.blob(t, index.Manifests[0]), &manifest)
	var config struct {
		Config struct {
			User       string
			Entrypoint []string
		}
	}
	decode(t, a.blob(t, manifest.Config), &config)
	if config.Config.User != "999:999" || len(config.Config.Entrypoint) != 1 || config.Config.Entrypoint[0] != "/usr/bin/redis-server" {
		t.Errorf("config %+v", config.Config)
	}
	zr, err := gzip.NewReader(bytes.NewReader(a.blob(t, manifest.Layers[0])))
	if err != nil {
		t.Fatal(err)
	}
	layer, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	files, headers := readTar(t, layer)
	var order []string
	tr := tar.NewReader(bytes.NewReader(layer))
	for h, err := tr.Next(); err == nil; h, err = tr.Next() {
		order = append(order, h.Name)
	}
	want := []string{"etc/group", "etc/passwd", "lib/", "lib/x86_64-linux-gnu/", "lib/x86_64-linux-gnu/libjemalloc.so.2",
		"tmp/", "usr/", "usr/bin/", "usr/bin/redis-server"}
	if strings.Join(order, " ") != strings.Join(want, " ") {
		t.Errorf("the layer holds\n%v\nwant\n%v", order, want)
	}
	if string(files["usr/bin/redis-server"]) != "\x7fELF server" || headers["usr/bin/redis-server"].Mode != 0o755 ||
		headers["usr/bin/redis-server"].Typeflag != tar.TypeReg {
		t.Errorf("usr/bin/redis-server: %+v", headers["usr/bin/redis-server"])
	}
	if headers["lib/x86_64-linux-gnu/libjemalloc.so.2"].Mode != 0o644 {
		t.Errorf("a library is made executable")
	}
	if !strings.Contains(string(files["etc/passwd"]), "redis:x:999:999:") {
		t.Errorf("etc/passwd %q", files["etc/passwd"])
	}
}
