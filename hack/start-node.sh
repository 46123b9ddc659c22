#!/usr/bin/env bash
# Starts a one-node cluster on this machine, where the chart's pods really run: etcd,
# kube-apiserver, kube-controller-manager, kube-scheduler, containerd (Debian's, with runc and the
# CNI plugins), kubelet, kube-proxy (iptables mode) and CoreDNS serving as kube-dns. Every process is
# started by its PID and everything lives under $ZW_STATE/node; hack/stop-node.sh undoes all of it
# and leaves the machine as it was. Needs root (a node does). Prints the kubeconfig's path.
#
# The node and the pods share a bridge of their own (zw-br0, 10.244.0.1/24) that nothing leaves the
# machine through; the API server, the kubelet and CoreDNS listen on its address, which pods reach
# through the bridge and through the kubernetes and kube-dns Services.
#
# Environment: IMAGES, space-separated OCI archives to import into the node (the product's and the
# bundled Redis's; see make image and make redis-image).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."

N=$ZW_STATE/node
B=$K8S_BIN_DIR
BRIDGE=zw-br0
NODE_IP=10.244.0.1
POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.96.0.0/24
DNS_IP=10.96.0.10
NODE_NAME=zw-node
PAUSE_IMAGE=localhost/zen-watcher-pause:1
CGROUP_ROOT=/zen-watcher-node

[[ $(id -u) == 0 ]] || die "a node needs root"
for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy coredns kubectl; do
	[[ -x $B/$b ]] || die "$B/$b is missing: run 'make node-tools'"
done
for b in containerd ctr runc iptables-save ip; do
	command -v "$b" >/dev/null || die "$b is missing: run 'make node-tools'"
done
[[ -x /usr/lib/cni/bridge ]] || die "the CNI plugins are missing: run 'make node-tools'"
if [[ -f $N/apiserver.pid ]] && kill -0 "$(<"$N/apiserver.pid")" 2>/dev/null; then
	log "already running"
	echo "$N/kubeconfig"
	exit 0
fi
[[ ! -e $N ]] || die "$N holds a node that is not running: run hack/stop-node.sh first"
mkdir -p "$N"/{certs,logs,cni/net.d,cni/ipam,containerd,kubelet,pod-logs}

# What the machine was before, for stop-node.sh to return it to.
iptables-save >"$N/iptables.before"
sysctl -n net.ipv4.ip_forward >"$N/ip_forward.before"
ip netns list 2>/dev/null | awk '{print $1}' >"$N/netns.before"
# Paths the kubelet, containerd's shims and the CNI plugins write whatever their configuration says
# (the device-plugin socket, shim sockets, CNI results, network namespaces).
for p in /var/lib/kubelet /run/containerd /var/lib/cni /run/netns /var/log/pods /var/log/containers; do
	[[ -e $p ]] || echo "$p"
done >"$N/created.paths"

# The bridge, with the node's address; pods are routed to ClusterIPs through it.
ip link add "$BRIDGE" type bridge
ip addr add "$NODE_IP/24" dev "$BRIDGE"
ip link set "$BRIDGE" up
# A Service's backend on the same bridge as its client is reached through the node.
sysctl -qw net.ipv4.ip_forward=1

# Control plane.
openssl genrsa -out "$N/certs/sa.key" 2048 2>/dev/null
openssl rsa -in "$N/certs/sa.key" -pubout -out "$N/certs/sa.pub" 2>/dev/null
token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
echo "$token,admin,admin-uid,system:masters" >"$N/certs/tokens.csv"
chmod 600 "$N/certs/tokens.csv"
etcd_port=$(free_port 22379)
peer_port=$(free_port $((etcd_port + 1000)))
api_port=$(free_port 26443)

start() { # start NAME COMMAND...: runs COMMAND in the background, its PID in $N/NAME.pid
	local name=$1
	shift
	"$@" >"$N/logs/$name.log" 2>&1 &
	echo $! >"$N/$name.pid"
}

start etcd "$B/etcd" --name zw-node --data-dir "$N/etcd" \
	--listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
	--listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
	--initial-cluster "zw-node=http://127.0.0.1:$peer_port" --log-level warn
wait_for etcd 30 curl -fsS "http://127.0.0.1:$etcd_port/health"

start apiserver "$B/kube-apiserver" --etcd-servers "http://127.0.0.1:$etcd_port" \
	--bind-address "$NODE_IP" --advertise-address "$NODE_IP" --secure-port "$api_port" --cert-dir "$N/certs" \
	--token-auth-file "$N/certs/tokens.csv" --authorization-mode RBAC \
	--service-account-issuer https://kubernetes.default.svc.cluster.local \
	--service-account-key-file "$N/certs/sa.pub" --service-account-signing-key-file "$N/certs/sa.key" \
	--service-cluster-ip-range "$SERVICE_CIDR" --allow-privileged=true \
	--kubelet-preferred-address-types InternalIP --feature-gates ShardedListAndWatch=true

cat >"$N/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: zw-node
  cluster: {server: "https://$NODE_IP:$api_port", insecure-skip-tls-verify: true}
users:
- name: admin
  user: {token: "$token"}
contexts:
- name: zw-node
  context: {cluster: zw-node, user: admin, namespace: default}
current-context: zw-node
KC
chmod 600 "$N/kubeconfig"
wait_for kube-apiserver 60 curl -fsSk -H "Authorization: Bearer $token" "https://$NODE_IP:$api_port/readyz"
kc() { "$B/kubectl" --kubeconfig "$N/kubeconfig" "$@"; }

start kcm "$B/kube-controller-manager" --kubeconfig "$N/kubeconfig" \
	--authentication-kubeconfig "$N/kubeconfig" --authorization-kubeconfig "$N/kubeconfig" \
	--leader-elect=false --secure-port 0 --service-account-private-key-file "$N/certs/sa.key" \
	--root-ca-file "$N/certs/apiserver.crt" --service-cluster-ip-range "$SERVICE_CIDR"
start scheduler "$B/kube-scheduler" --kubeconfig "$N/kubeconfig" \
	--authentication-kubeconfig "$N/kubeconfig" --authorization-kubeconfig "$N/kubeconfig" \
	--leader-elect=false --secure-port 0

# containerd with the CRI plugin: its own root, state and socket; pods get the pause image below.
cat >"$N/containerd/config.toml" <<TOML
version = 2
root = "$N/containerd/root"
state = "$N/containerd/state"
[grpc]
  address = "$N/containerd/containerd.sock"
[ttrpc]
  address = "$N/containerd/containerd.sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # Lowering a process's oom_score_adj needs CAP_SYS_RESOURCE, which this machine's root lacks.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$N/cni/net.d"
TOML
cat >"$N/cni/net.d/10-zw.conflist" <<CNI
{
  "cniVersion": "1.0.0",
  "name": "zw-node",
  "plugins": [
    {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "isDefaultGateway": true, "ipMasq": false,
     "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "$N/cni/ipam", "ranges": [[{"subnet": "$POD_CIDR",
       "rangeStart": "10.244.0.10", "gateway": "$NODE_IP"}]]}},
    {"type": "loopback"}
  ]
}
CNI
start containerd containerd --config "$N/containerd/config.toml"
CTR=(ctr -a "$N/containerd/containerd.sock" -n k8s.io)
wait_for containerd 30 "${CTR[@]}" version

# The pause image, and the images the caller brings.
mkdir -p "$N/images"
CGO_ENABLED=0 ${GO:-go} build -trimpath -ldflags "-s -w -buildid=" -o "$N/images/pause" ./hack/pause
${GO:-go} run ./hack/ociimage -binary "$N/images/pause" -name "$PAUSE_IMAGE" -out "$N/images/pause.oci.tar" >/dev/null
for archive in "$N/images/pause.oci.tar" ${IMAGES:-}; do
	"${CTR[@]}" images import "$archive" >/dev/null
done

# kubelet: cgroup v1 and cgroupfs here, no swap accounting, a private cgroup root, small eviction
# thresholds so that a small disk does not evict the test's pods.
cat >"$N/kubelet/config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: $CGROUP_ROOT
failSwapOn: false
containerRuntimeEndpoint: unix://$N/containerd/containerd.sock
resolvConf: ""
clusterDNS: [$DNS_IP]
clusterDomain: cluster.local
address: $NODE_IP
port: $(free_port 20250)
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $(free_port 20248)
podLogsDir: $N/pod-logs
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
evictionHard: {memory.available: 50Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
YAML
# The kubelet's private cgroup root must exist in every hierarchy (cgroup v1); a new cpuset has no
# CPUs or memory nodes until given its parent's.
for h in /sys/fs/cgroup/*/; do
	[[ $h == */unified/ ]] && continue
	mkdir -p "$h${CGROUP_ROOT#/}"
	if [[ -f ${h}cpuset.cpus ]]; then
		cat "${h}cpuset.cpus" >"$h${CGROUP_ROOT#/}/cpuset.cpus"
		cat "${h}cpuset.mems" >"$h${CGROUP_ROOT#/}/cpuset.mems"
	fi
done
start kubelet "$B/kubelet" --config "$N/kubelet/config.yaml" --kubeconfig "$N/kubeconfig" \
	--root-dir "$N/kubelet/root" --cert-dir "$N/kubelet/pki" --node-ip "$NODE_IP" --hostname-override "$NODE_NAME"

start kube-proxy "$B/kube-proxy" --kubeconfig "$N/kubeconfig" --proxy-mode iptables --hostname-override "$NODE_NAME" \
	--cluster-cidr "$POD_CIDR" --masquerade-all --iptables-localhost-nodeports=false \
	--conntrack-max-per-core 0 --conntrack-min 0 --conntrack-tcp-timeout-established 0 --conntrack-tcp-timeout-close-wait 0 \
	--metrics-bind-address "127.0.0.1:$(free_port 20249)" --healthz-bind-address "127.0.0.1:$(free_port 20256)"

# CoreDNS on the node's address, serving as the kube-dns Service.
cat >"$N/Corefile" <<COREFILE
.:53 {
    bind $NODE_IP
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $N/kubeconfig zw-node
        pods insecure
    }
    cache 5
}
COREFILE
start coredns "$B/coredns" -conf "$N/Corefile"
kc apply -f - >/dev/null <<SVC
apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  clusterIP: $DNS_IP
  ports: [{name: dns, port: 53, protocol: UDP}, {name: dns-tcp, port: 53, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kube-dns-node
  namespace: kube-system
  labels: {kubernetes.io/service-name: kube-dns, endpointslice.kubernetes.io/managed-by: zen-watcher-node}
addressType: IPv4
endpoints: [{addresses: ["$NODE_IP"], conditions: {ready: true}}]
ports: [{name: dns, port: 53, protocol: UDP}, {name: dns-tcp, port: 53, protocol: TCP}]
SVC

node_ready() { [[ $(kc get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}') == True ]]; }
wait_for "node $NODE_NAME Ready" 120 node_ready
wait_for "the default ServiceAccount" 60 kc get serviceaccount default
log "node $NODE_NAME up: https://$NODE_IP:$api_port (logs in $N/logs)"
echo "$N/kubeconfig"
