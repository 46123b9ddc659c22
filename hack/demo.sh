#!/usr/bin/env bash
# `make demo`: a local control plane, Redis, the CRDs, three zen-watcher replicas and a few findings,
# then where to look. `make demo-down` (demo.sh down) stops all of it, by PID.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."

D=$ZW_STATE/demo
KUBECTL=$K8S_BIN_DIR/kubectl
REPLICAS=${REPLICAS:-3}

up() {
	local kc redis
	kc=$(hack/start-k8s.sh)
	redis=$(hack/start-redis.sh)
	k() { "$KUBECTL" --kubeconfig "$kc" "$@"; }
	k apply --server-side -f charts/zen-watcher/crds >/dev/null
	k wait --for condition=Established --timeout 30s -f charts/zen-watcher/crds >/dev/null
	k create namespace zen-system --dry-run=client -o yaml | k apply -f - >/dev/null

	mkdir -p "$D"
	for ((i = 0; i < REPLICAS; i++)); do
		if [[ -f $D/zen-watcher-$i.pid ]] && kill -0 "$(<"$D/zen-watcher-$i.pid")" 2>/dev/null; then
			continue
		fi
		local port hook
		port=$(free_port $((19090 + i)))
		hook=$(free_port $((18080 + i)))
		bin/zen-watcher -kubeconfig "$kc" -namespace zen-system -redis-addr "$redis" \
			-metrics-addr "127.0.0.1:$port" -webhook-addr "127.0.0.1:$hook" >"$D/zen-watcher-$i.log" 2>&1 &
		echo $! >"$D/zen-watcher-$i.pid"
		echo "127.0.0.1:$port" >"$D/zen-watcher-$i.metrics"
	done
	for ((i = 0; i < REPLICAS; i++)); do
		wait_for "zen-watcher-$i" 30 curl -fsS "http://$(<"$D/zen-watcher-$i.metrics")/readyz"
	done

	log "creating findings: Warning Events in namespaces shop and payments"
	for ns in shop payments; do
		k create namespace "$ns" --dry-run=client -o yaml | k apply -f - >/dev/null
	done
	k apply -f - >/dev/null <<'YAML'
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Event
  metadata: {name: cart-0.backoff, namespace: shop}
  involvedObject: {apiVersion: v1, kind: Pod, name: cart-0, namespace: shop}
  reason: BackOff
  message: Back-off restarting failed container cart in pod cart-0
  type: Warning
  count: 12
  source: {component: kubelet}
- apiVersion: v1
  kind: Event
  metadata: {name: cart-1.failedscheduling, namespace: shop}
  involvedObject: {apiVersion: v1, kind: Pod, name: cart-1, namespace: shop}
  reason: FailedScheduling
  message: "0/3 nodes are available: 3 Insufficient memory."
  type: Warning
  count: 1
  source: {component: default-scheduler}
- apiVersion: v1
  kind: Event
  metadata: {name: ledger-data.provisioningfailed, namespace: payments}
  involvedObject: {apiVersion: v1, kind: PersistentVolumeClaim, name: ledger-data, namespace: payments}
  reason: ProvisioningFailed
  message: storageclass.storage.k8s.io "fast-ssd" not found
  type: Warning
  count: 3
  source: {component: persistentvolume-controller}
- apiVersion: v1
  kind: Event
  metadata: {name: ledger-0.unhealthy, namespace: payments}
  involvedObject: {apiVersion: v1, kind: Pod, name: ledger-0, namespace: payments}
  reason: Unhealthy
  message: "Readiness probe failed: HTTP probe failed with statuscode: 503"
  type: Warning
  count: 7
  source: {component: kubelet}
YAML
	wait_for "four Observations" 30 bash -c \
		"[[ \$('$KUBECTL' --kubeconfig '$kc' get obs -A --no-headers 2>/dev/null | wc -l) -ge 4 ]]"
	k get obs -A
	cat <<TXT

zen-watcher is running: $REPLICAS replicas, logs in $D, Redis at $redis.
  KUBECONFIG=$kc $KUBECTL get obs -A
  curl -s http://$(<"$D/zen-watcher-0.metrics")/metrics | grep ^zen_watcher_
Stop everything with: make demo-down
TXT
}

down() {
	for pid in "$D"/zen-watcher-*.pid; do
		[[ -e $pid ]] && stop_pid "$pid" 10
	done
	rm -f "$D"/*.metrics
	hack/stop-redis.sh
	hack/stop-k8s.sh
}

case ${1:-up} in
up) up ;;
down) down ;;
*) die "usage: demo.sh up|down" ;;
esac
