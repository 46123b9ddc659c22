#!/usr/bin/env bash
# Makes sure redis-server is installed: installs Debian's package when it is missing and we are root,
# otherwise prints the exact command to run and fails.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

if command -v redis-server >/dev/null 2>&1; then
	exit 0
fi
cmd="apt-get update && apt-get install -y redis-server"
if [[ $(id -u) != 0 ]]; then
	die "redis-server is not installed; as root run: $cmd"
fi
log "installing redis-server (Debian package)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq redis-server >/dev/null
command -v redis-server >/dev/null || die "redis-server still missing after: $cmd"
