#!/usr/bin/env bash
# Stops the local control plane started by start-k8s.sh, by the PIDs it recorded. The API server goes
# before etcd: without etcd it hangs in shutdown.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
S=$ZW_STATE/cluster
stop_pid "$S/kcm.pid" 5
stop_pid "$S/apiserver.pid" 5
stop_pid "$S/etcd.pid" 5
rm -rf "$S/etcd"
log "control plane stopped"
