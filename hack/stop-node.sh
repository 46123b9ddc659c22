#!/usr/bin/env bash
# Stops the node hack/start-node.sh started and leaves the machine as it was: every process by the
# PID it recorded, the pods' containers and network namespaces, kube-proxy's rules, the mounts and
# cgroups under the node's roots, the bridge, and ip_forward. It then compares the iptables rules
# with those before the start and fails if they differ. Running it twice is harmless.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

N=$ZW_STATE/node
B=$K8S_BIN_DIR
BRIDGE=zw-br0
CGROUP_ROOT=zen-watcher-node
[[ -d $N ]] || { log "no node to stop"; exit 0; }

# rules prints the rules and user-defined chains of an iptables-save output (FILE, or the machine's
# now): a table iptables-save merely lists with its built-in chains empty holds no rule.
rules() {
	if (($#)); then cat "$1"; else iptables-save; fi | sed -e 's/\[[0-9]*:[0-9]*\]//' | grep -E '^(-A |:[^ ]+ - )' | sort || true
}

stop_pid "$N/kubelet.pid" 10
if [[ -S $N/containerd/containerd.sock ]]; then
	CTR=(ctr -a "$N/containerd/containerd.sock" -n k8s.io)
	for id in $("${CTR[@]}" tasks ls -q 2>/dev/null); do
		"${CTR[@]}" tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
		"${CTR[@]}" tasks delete -f "$id" >/dev/null 2>&1 || true
	done
	for id in $("${CTR[@]}" containers ls -q 2>/dev/null); do
		"${CTR[@]}" containers delete "$id" >/dev/null 2>&1 || true
	done
fi
stop_pid "$N/kube-proxy.pid" 5
"$B/kube-proxy" --cleanup >"$N/logs/kube-proxy-cleanup.log" 2>&1 || log "kube-proxy --cleanup failed (see $N/logs)"
for p in coredns scheduler kcm apiserver etcd containerd; do
	stop_pid "$N/$p.pid" 10
done

# The pods' network namespaces: those that were not there before the start.
if [[ -f $N/netns.before ]]; then
	for ns in $(ip netns list 2>/dev/null | awk '{print $1}'); do
		grep -qx "$ns" "$N/netns.before" || ip netns delete "$ns" 2>/dev/null || true
	done
fi
# Mounts under the node's roots (snapshots, pod volumes, shm), deepest first; then the files.
awk -v root="$N/" 'index($2, root) == 1 { print $2 }' /proc/self/mounts | sort -r | while read -r m; do
	umount -l "$m" 2>/dev/null || true
done
# The pods' cgroups, below the kubelet's private root in every hierarchy, deepest first.
for h in /sys/fs/cgroup/*/; do
	[[ -d $h$CGROUP_ROOT ]] || continue
	find "$h$CGROUP_ROOT" -depth -type d -exec rmdir {} \; 2>/dev/null || true
done
# kubelet links each container's log from /var/log/containers into its pod log directory.
find /var/log/containers -maxdepth 1 -type l -lname "$N/*" -delete 2>/dev/null || true
# What was created outside the node's directory by a path that cannot be configured.
if [[ -f $N/created.paths ]]; then
	while read -r p; do
		awk -v root="$p/" 'index($2, root) == 1 { print $2 }' /proc/self/mounts | sort -r | while read -r m; do
			umount -l "$m" 2>/dev/null || true
		done
		rm -rf "$p"
	done <"$N/created.paths"
fi
ip link delete "$BRIDGE" 2>/dev/null || true
[[ -f $N/ip_forward.before ]] && sysctl -qw "net.ipv4.ip_forward=$(<"$N/ip_forward.before")"

# The kubelet's own chains (KUBE-FIREWALL and its canaries), which kube-proxy --cleanup leaves:
# removed when the machine had no KUBE- chain before.
if [[ -f $N/iptables.before ]] && ! grep -q KUBE- "$N/iptables.before"; then
	for t in filter nat mangle; do
		iptables-save -t "$t" 2>/dev/null | sed -n 's/^-A \(.*-j KUBE-.*\)$/\1/p' | while read -r rule; do
			eval "iptables -t $t -D $rule" 2>/dev/null || true
		done
		for chain in $(iptables-save -t "$t" 2>/dev/null | sed -n 's/^:\(KUBE-[^ ]*\) .*/\1/p'); do
			iptables -t "$t" -F "$chain" 2>/dev/null || true
		done
		for chain in $(iptables-save -t "$t" 2>/dev/null | sed -n 's/^:\(KUBE-[^ ]*\) .*/\1/p'); do
			iptables -t "$t" -X "$chain" 2>/dev/null || true
		done
	done
fi

status=0
if [[ -f $N/iptables.before ]]; then
	if ! diff <(rules) <(rules "$N/iptables.before") >"$N/iptables.diff"; then
		log "iptables rules differ from before the node started:"
		cat "$N/iptables.diff" >&2
		status=1
	fi
fi
left=$(for h in /sys/fs/cgroup/*/; do if [[ -d $h$CGROUP_ROOT ]]; then echo "$h$CGROUP_ROOT"; fi; done)
[[ -z $left ]] || { log "cgroups left: $left"; status=1; }
if ((status == 0)); then
	rm -rf "$N"
	log "node stopped; the machine is as it was"
else
	log "node stopped, but not everything was undone; $N kept for a look"
fi
exit $status
