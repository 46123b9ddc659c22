#!/usr/bin/env bash
# Starts a local control plane on loopback: etcd and kube-apiserver (with ShardedListAndWatch on),
# optionally kube-controller-manager (WITH_KCM=1: namespace deletion, garbage collection). Writes a
# kubeconfig to $ZW_STATE/cluster/kubeconfig and prints its path. Running it twice is harmless.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

S=$ZW_STATE/cluster
ETCD=${ETCD:-$K8S_BIN_DIR/etcd}
APISERVER=$K8S_BIN_DIR/kube-apiserver
KCM=$K8S_BIN_DIR/kube-controller-manager
WITH_KCM=${WITH_KCM:-0}

for b in "$ETCD" "$APISERVER"; do
	[[ -x $b ]] || die "$b is missing: run 'make tools' (it builds the control plane into $K8S_BIN_DIR)"
done
[[ $WITH_KCM != 1 || -x $KCM ]] || die "$KCM is missing: run 'WITH_KCM=1 hack/build-k8s-bins.sh' (or 'make node-tools')"

if [[ -f $S/apiserver.pid ]] && kill -0 "$(<"$S/apiserver.pid")" 2>/dev/null; then
	log "already running"
	echo "$S/kubeconfig"
	exit 0
fi
mkdir -p "$S/certs"
rm -rf "$S/etcd"

etcd_port=$(free_port "${ETCD_PORT:-12379}")
peer_port=$(free_port $((etcd_port + 1000)))
api_port=$(free_port "${APISERVER_PORT:-16443}")

if [[ ! -f $S/certs/sa.key ]]; then
	openssl genrsa -out "$S/certs/sa.key" 2048 2>/dev/null
	openssl rsa -in "$S/certs/sa.key" -pubout -out "$S/certs/sa.pub" 2>/dev/null
fi
token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
echo "$token,admin,admin-uid,system:masters" >"$S/certs/tokens.csv"
chmod 600 "$S/certs/tokens.csv"

"$ETCD" --name zw --data-dir "$S/etcd" \
	--listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
	--listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
	--initial-cluster "zw=http://127.0.0.1:$peer_port" --initial-cluster-state new \
	--quota-backend-bytes 4294967296 --log-level warn >"$S/etcd.log" 2>&1 &
echo $! >"$S/etcd.pid"
wait_for etcd 30 curl -fsS "http://127.0.0.1:$etcd_port/health"

"$APISERVER" --etcd-servers "http://127.0.0.1:$etcd_port" --bind-address 127.0.0.1 \
	--advertise-address 127.0.0.1 --secure-port "$api_port" --cert-dir "$S/certs" \
	--token-auth-file "$S/certs/tokens.csv" --authorization-mode RBAC \
	--service-account-issuer https://kubernetes.default.svc.cluster.local \
	--service-account-key-file "$S/certs/sa.pub" --service-account-signing-key-file "$S/certs/sa.key" \
	--service-cluster-ip-range 10.0.0.0/24 --allow-privileged=true \
	--endpoint-reconciler-type none --disable-admission-plugins ServiceAccount \
	--feature-gates ShardedListAndWatch=true >"$S/apiserver.log" 2>&1 &
echo $! >"$S/apiserver.pid"

cat >"$S/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: zen-watcher-local
  cluster: {server: "https://127.0.0.1:$api_port", insecure-skip-tls-verify: true}
users:
- name: admin
  user: {token: "$token"}
contexts:
- name: zen-watcher-local
  context: {cluster: zen-watcher-local, user: admin, namespace: default}
current-context: zen-watcher-local
KC
chmod 600 "$S/kubeconfig"
wait_for kube-apiserver 60 curl -fsSk -H "Authorization: Bearer $token" "https://127.0.0.1:$api_port/readyz"

if [[ $WITH_KCM == 1 ]]; then
	"$KCM" --kubeconfig "$S/kubeconfig" --authentication-kubeconfig "$S/kubeconfig" \
		--authorization-kubeconfig "$S/kubeconfig" --leader-elect=false --secure-port 0 \
		--controllers namespace,garbagecollector,serviceaccount,serviceaccount-token \
		--service-account-private-key-file "$S/certs/sa.key" --root-ca-file "$S/certs/apiserver.crt" \
		>"$S/kcm.log" 2>&1 &
	echo $! >"$S/kcm.pid"
fi
log "control plane up: https://127.0.0.1:$api_port (logs in $S)"
echo "$S/kubeconfig"
