#!/usr/bin/env bash
# Writes an OCI image archive of Debian's redis-server, for the chart's bundled Redis where no
# registry is reachable: the binary and every library it links, found by ldd, under their own
# paths, run as user redis (999, as the chart's pod asks). Usage: redis-image.sh ARCHIVE [NAME:TAG]
# (default NAME:TAG ghcr.io/kube-zen/zen-watcher-redis:<redis-server's version>).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

out=${1:?usage: redis-image.sh ARCHIVE [NAME:TAG]}
"$(dirname "$0")/ensure-redis.sh"
server=$(readlink -f "$(command -v redis-server)")
version=$(redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p')
[[ -n $version ]] || die "cannot read redis-server's version"
name=${2:-ghcr.io/kube-zen/zen-watcher-redis:$version}

# The program is redis-check-rdb linked as redis-server: it acts on the name it is run by, so the
# image holds it as /usr/bin/redis-server.
adds=(-add "$server=/usr/bin/redis-server")
while read -r lib; do
	adds+=(-add "$lib=$lib")
done < <(ldd "$server" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u)
((${#adds[@]} > 2)) || die "ldd found no library of $server"
mkdir -p "$(dirname "$out")"
${GO:-go} run ./hack/ociimage "${adds[@]}" -user redis:999 -expose 6379 -name "$name" -out "$out"
