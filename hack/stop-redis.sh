#!/usr/bin/env bash
# Stops the redis-server started by start-redis.sh, by its PID.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
S=$ZW_STATE/redis
stop_pid "$S/redis.pid" 5
rm -f "$S/address"
log "redis stopped"
