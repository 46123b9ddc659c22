#!/usr/bin/env bash
# Builds kube-apiserver, kubectl, etcd and (optionally) kube-controller-manager from the Go module
# proxy into a cache directory outside the checkout. The binaries are about 340 MB and take ~11 minutes
# to build cold, so they are built once per machine and reused; a present, runnable set is never rebuilt.
#
# Environment:
#   K8S_VERSION     Kubernetes release to build (default v1.37.2)
#   ETCD_VERSION    etcd release to build (default v3.6.16)
#   K8S_BIN_DIR     where the binaries go (default ~/.cache/zen-watcher/k8s/$K8S_VERSION)
#   WITH_KCM=1      also build kube-controller-manager (namespace deletion, garbage collection)
#   WITH_NODE=1     also build what a node needs: kube-controller-manager, kube-scheduler, kubelet,
#                   kube-proxy, and CoreDNS (COREDNS_VERSION, default v1.15.0) for the cluster's DNS
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.37.2}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
K8S_BIN_DIR=${K8S_BIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/zen-watcher/k8s/$K8S_VERSION}
WITH_KCM=${WITH_KCM:-0}
WITH_NODE=${WITH_NODE:-0}
COREDNS_VERSION=${COREDNS_VERSION:-v1.15.0}

staging_version="v0.${K8S_VERSION#v1.}"
minor=${K8S_VERSION#v1.}
minor=${minor%%.*}

log() { printf '[build-k8s-bins] %s\n' "$*" >&2; }

wanted=(kube-apiserver kubectl etcd)
[[ "$WITH_KCM" == 1 || "$WITH_NODE" == 1 ]] && wanted+=(kube-controller-manager)
[[ "$WITH_NODE" == 1 ]] && wanted+=(kube-scheduler kubelet kube-proxy coredns)

missing=()
for b in "${wanted[@]}"; do
	[[ -x "$K8S_BIN_DIR/$b" ]] || missing+=("$b")
done
if ((${#missing[@]} == 0)); then
	log "all binaries present in $K8S_BIN_DIR"
	exit 0
fi
log "building ${missing[*]} into $K8S_BIN_DIR (cold: about 11 minutes, 2.5 GB of memory)"

mkdir -p "$K8S_BIN_DIR"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

build_k8s() {
	local mod="$work/k8s"
	mkdir -p "$mod"
	cd "$mod"
	cat >go.mod <<EOF
module local/zen-watcher-k8sbins

go 1.26.0

require k8s.io/kubernetes $K8S_VERSION
EOF
	# k8s.io/kubernetes refers to its staging modules as v0.0.0 with replace directives, which a
	# dependent module does not inherit: pin every one of them to the matching published release.
	local kdir
	kdir=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	[[ -n "$kdir" ]] || { log "could not download k8s.io/kubernetes@$K8S_VERSION"; exit 1; }
	{
		echo "replace ("
		sed -n 's/^[[:space:]]*\(k8s\.io\/[a-z0-9-]*\) => \.\/staging\/.*/\1/p' "$kdir/go.mod" |
			sort -u | while read -r m; do echo "	$m => $m $staging_version"; done
		echo ")"
	} >>go.mod
	cat >tools.go <<'EOF'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
EOF
	go mod tidy >/dev/null
	local ver="-X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
	ver+=" -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
	for b in "${missing[@]}"; do
		[[ "$b" == etcd || "$b" == coredns ]] && continue
		log "go build $b"
		go build -trimpath -ldflags "-s -w $ver" -o "$K8S_BIN_DIR/$b.tmp" "k8s.io/kubernetes/cmd/$b"
		mv "$K8S_BIN_DIR/$b.tmp" "$K8S_BIN_DIR/$b"
	done
}

build_etcd() {
	local mod="$work/etcd"
	mkdir -p "$mod"
	cd "$mod"
	cat >go.mod <<EOF
module local/zen-watcher-etcd

go 1.26.0

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
EOF
	cat >tools.go <<'EOF'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
EOF
	go mod tidy >/dev/null
	log "go build etcd $ETCD_VERSION"
	go build -trimpath -ldflags "-s -w" -o "$K8S_BIN_DIR/etcd.tmp" go.etcd.io/etcd/server/v3
	mv "$K8S_BIN_DIR/etcd.tmp" "$K8S_BIN_DIR/etcd"
}

build_coredns() {
	local mod="$work/coredns"
	mkdir -p "$mod"
	cd "$mod"
	cat >go.mod <<EOF
module local/zen-watcher-coredns

go 1.26.0

require github.com/coredns/coredns $COREDNS_VERSION
EOF
	# Only the plugins the node's Corefile uses (hack/start-node.sh), in the order of CoreDNS's
	# plugin.cfg: the full build also compiles the cloud providers' SDKs, tracing and the rest,
	# minutes of a fresh machine's two cores for nothing the node runs.
	cat >main.go <<'EOF'
// Command coredns is CoreDNS with the plugins a zen-watcher test node serves kube-dns with.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/kubernetes"
)

func init() { dnsserver.Directives = []string{"bind", "errors", "cache", "kubernetes"} }

func main() { coremain.Run() }
EOF
	go mod tidy >/dev/null
	log "go build coredns $COREDNS_VERSION (bind, errors, cache, kubernetes)"
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$K8S_BIN_DIR/coredns.tmp" .
	mv "$K8S_BIN_DIR/coredns.tmp" "$K8S_BIN_DIR/coredns"
}

needs_k8s=0
for b in "${missing[@]}"; do [[ "$b" != etcd && "$b" != coredns ]] && needs_k8s=1; done
((needs_k8s)) && build_k8s
[[ " ${missing[*]} " == *" etcd "* ]] && build_etcd
[[ " ${missing[*]} " == *" coredns "* ]] && build_coredns

log "done: $(ls "$K8S_BIN_DIR" | tr '\n' ' ')"
