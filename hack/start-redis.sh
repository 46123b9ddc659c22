#!/usr/bin/env bash
# Starts a throw-away redis-server on a free loopback port (no persistence) and prints its address.
# REDIS_PORT picks the first port to try (default 16379). Running it twice is harmless.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
"$(dirname "$0")/ensure-redis.sh"

S=$ZW_STATE/redis
mkdir -p "$S"
if [[ -f $S/redis.pid ]] && kill -0 "$(<"$S/redis.pid")" 2>/dev/null; then
	log "already running"
	cat "$S/address"
	exit 0
fi
port=$(free_port "${REDIS_PORT:-16379}")
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
	--pidfile "$S/redis.pid" --logfile "$S/redis.log" --dir "$S"
wait_for redis 10 redis-cli -p "$port" ping
echo "127.0.0.1:$port" >"$S/address"
log "redis up on 127.0.0.1:$port"
echo "127.0.0.1:$port"
