#!/usr/bin/env bash
# Makes sure what a node runs besides its Kubernetes binaries is installed: containerd and runc,
# iptables for kube-proxy, conntrack, and the CNI plugins — Debian's packages, installed when one is
# missing and we are root; otherwise prints the exact command to run and fails.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ensure_debian "containerd runc iptables conntrack containernetworking-plugins" "containerd ctr runc iptables-save conntrack"
[[ -x /usr/lib/cni/bridge ]] || ensure_debian containernetworking-plugins /usr/lib/cni/bridge
