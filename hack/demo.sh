#!/usr/bin/env bash
# `make demo`: a local control plane, Redis and three zen-watcher replicas, the tools' CRDs and
# findings in their real formats across a dozen namespaces, signed Falco alerts and an audit event
# posted to the webhooks, then what a person would look at: the Observations, the shard table, the
# webhooks with a signed curl, the metrics — and a replica killed to show the others take over.
# `make demo-down` (demo.sh down) stops all of it, by PID.
#
# DEMO_EXPECT is the number of Observations the findings below make; the demo fails, saying what
# is missing, if they are not all written.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."

D=$ZW_STATE/demo
KUBECTL=$K8S_BIN_DIR/kubectl
REPLICAS=${REPLICAS:-3}
DEMO_EXPECT=40
# The tools' CRDs, from the repository's copies of the tools' own files.
TOOL_CRDS=(
	testdata/upstream/trivy-operator/aquasecurity.github.io_vulnerabilityreports.yaml
	testdata/upstream/trivy-operator/aquasecurity.github.io_configauditreports.yaml
	testdata/upstream/policyreport/wg-policy_wgpolicyk8s.io_policyreports.yaml
	testdata/upstream/policyreport/wg-policy_wgpolicyk8s.io_clusterpolicyreports.yaml
	testdata/upstream/cert-manager/cert-manager.io_certificates.yaml
)
# Leases shorter than the chart's, so that a killed replica is noticed within seconds, and the
# leader's tuning every 5 s instead of 30, so that its ratios show while the demo runs.
DEMO_FLAGS=(-member-lease-duration 6s -member-renew-interval 2s
	-leader-lease-duration 6s -leader-renew-deadline 4s -leader-retry-period 1s -order-tune-interval 5s)

k() { "$KUBECTL" --kubeconfig "$KC" "$@"; }
obsctl() { bin/obsctl --kubeconfig "$KC" "$@"; }
section() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
count_obs() { k get obs -A --no-headers 2>/dev/null | wc -l; }
metrics_of() { cat "$D/zen-watcher-$1.metrics"; }
webhook_of() { cat "$D/zen-watcher-$1.webhook"; }

# sum_metric SERIES: the sum of a series over the live replicas.
sum_metric() {
	local i sum=0 v
	for ((i = 0; i < REPLICAS; i++)); do
		alive "$i" || continue
		v=$(curl -fsS "http://$(metrics_of "$i")/metrics" | awk -v s="$1" '$1 == s {print $2}')
		sum=$((sum + ${v:-0}))
	done
	echo "$sum"
}

alive() { [[ -f $D/zen-watcher-$1.pid ]] && kill -0 "$(<"$D/zen-watcher-$1.pid")" 2>/dev/null; }

# signed_post URL KEY BODY: posts BODY signed as the falco Ingester wants it; prints the HTTP code.
# A 503 asks the sender to try again (the replica's writer is behind, or Redis is away): it is
# signed afresh and sent again, up to five times, a second apart, as a sender that honours it would.
signed_post() {
	local ts sig code attempt
	for attempt in 1 2 3 4 5; do
		ts=$(date +%s)
		sig=$(printf '%s.%s' "$ts" "$3" | openssl dgst -sha256 -hmac "$2" | sed 's/^.*= //')
		code=$(curl -sS -o /dev/null -w '%{http_code}' -X POST "$1" -H 'Content-Type: application/json' \
			-H "X-Zen-Timestamp: $ts" -H "X-Zen-Signature: sha256=$sig" --data-binary "$3")
		[[ $code == 503 && $attempt -lt 5 ]] || break
		sleep 1
	done
	printf '%s' "$code"
}

# falco_alert RULE PRIORITY NAMESPACE POD TEXT: a Falco alert of now, as Falco's http_output sends it.
falco_alert() {
	local now ns
	now=$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)
	ns=$(date +%s%N)
	printf '{"output":"%s: %s %s k8s.ns=%s k8s.pod=%s","priority":"%s","rule":"%s","time":"%s","source":"syscall",' \
		"$(date -u +%H:%M:%S.%N)" "$2" "$5" "$3" "$4" "$2" "$1" "$now"
	printf '"tags":["container","mitre_execution"],"hostname":"node-2","output_fields":{"evt.time":%s,"k8s.ns.name":"%s","k8s.pod.name":"%s","user.name":"root"}}' \
		"$ns" "$3" "$4"
}

start_replicas() {
	local i port=19089 hook=18079
	mkdir -p "$D"
	for ((i = 0; i < REPLICAS; i++)); do
		alive "$i" && continue
		# Above the last one chosen: the replica before has not bound its ports yet.
		port=$(free_port $((port + 1)))
		hook=$(free_port $((hook + 1)))
		bin/zen-watcher -kubeconfig "$KC" -namespace zen-system -release zen-watcher -member-id "zen-watcher-$i" \
			-redis-addr "$REDIS" -metrics-addr "127.0.0.1:$port" -webhook-addr "127.0.0.1:$hook" "${DEMO_FLAGS[@]}" \
			>"$D/zen-watcher-$i.log" 2>&1 &
		echo $! >"$D/zen-watcher-$i.pid"
		disown # killed on purpose later: no "Killed" from the shell
		echo "127.0.0.1:$port" >"$D/zen-watcher-$i.metrics"
		echo "127.0.0.1:$hook" >"$D/zen-watcher-$i.webhook"
	done
	for ((i = 0; i < REPLICAS; i++)); do
		wait_for "zen-watcher-$i" 30 curl -fsS "http://$(metrics_of "$i")/readyz"
	done
}

# start_prometheus: a Prometheus scraping the replicas every 2 s with the labels the chart's
# ServiceMonitor adds, when prometheus is installed (make prometheus). Prints its URL, or nothing.
start_prometheus() {
	command -v prometheus >/dev/null || return 0
	if [[ -f $D/prometheus.pid ]] && kill -0 "$(<"$D/prometheus.pid")" 2>/dev/null; then
		return 0 # from a demo still up; its targets are the replicas' ports, which are kept too
	fi
	local port i targets=
	port=$(free_port 19190)
	for ((i = 0; i < REPLICAS; i++)); do
		targets+="  - targets: ['$(metrics_of "$i")']
    labels: {namespace: zen-system, pod: zen-watcher-$i}
"
	done
	cat >"$D/prometheus.yml" <<YAML
global: {scrape_interval: 2s, evaluation_interval: 2s}
scrape_configs:
- job_name: zen-watcher
  static_configs:
$targets
YAML
	prometheus --config.file="$D/prometheus.yml" --storage.tsdb.path="$D/prometheus-data" \
		--web.listen-address="127.0.0.1:$port" --log.level=warn >"$D/prometheus.log" 2>&1 &
	echo $! >"$D/prometheus.pid"
	wait_for prometheus 30 curl -fsS "http://127.0.0.1:$port/-/ready"
	echo "http://127.0.0.1:$port" >"$D/prometheus.url"
}

install() {
	k apply --server-side -f charts/zen-watcher/crds >/dev/null
	local f args=()
	for f in "${TOOL_CRDS[@]}"; do args+=(-f "$f"); done
	k apply --server-side "${args[@]}" >/dev/null
	k wait --for condition=Established --timeout 30s -f charts/zen-watcher/crds "${args[@]}" >/dev/null
	k create namespace zen-system --dry-run=client -o yaml | k apply -f - >/dev/null
	# The webhooks' credentials: an HMAC key for Falco's relay, a bearer token for the API server;
	# kept when the demo runs again, so that what was signed with them still verifies.
	k -n zen-system get secret falco-hmac >/dev/null 2>&1 ||
		k -n zen-system create secret generic falco-hmac --from-literal=key="$(openssl rand -hex 32)" >/dev/null
	k -n zen-system get secret audit-webhook >/dev/null 2>&1 ||
		k -n zen-system create secret generic audit-webhook --from-literal=token="$(openssl rand -hex 24)" >/dev/null
	k apply -f hack/demo/ingesters.yaml >/dev/null
}

# findings: the tools' objects, as each tool writes them.
findings() {
	k apply -f hack/demo/namespaces.yaml >/dev/null
	k apply -f hack/demo/trivy.yaml -f hack/demo/kyverno.yaml -f hack/demo/events.yaml \
		-f hack/demo/certificates.yaml >/dev/null
	local now soon past
	now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
	soon=$(date -u -d '+10 days 6 hours' +%Y-%m-%dT%H:%M:%SZ)
	past=$(date -u -d '-3 days' +%Y-%m-%dT%H:%M:%SZ)
	k -n ingress-nginx patch certificate wildcard-shop-example-com --subresource status --type merge -p \
		"{\"status\":{\"conditions\":[{\"type\":\"Ready\",\"status\":\"False\",\"reason\":\"DoesNotExist\",\"message\":\"Issuing certificate as Secret does not exist\",\"lastTransitionTime\":\"$now\"}]}}" >/dev/null
	k -n identity patch certificate sso-example-com --subresource status --type merge -p \
		"{\"status\":{\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\",\"reason\":\"Ready\",\"message\":\"Certificate is up to date and has not expired\",\"lastTransitionTime\":\"$now\"}],\"notAfter\":\"$soon\"}}" >/dev/null
	k -n payments patch certificate payments-mtls --subresource status --type merge -p \
		"{\"status\":{\"conditions\":[{\"type\":\"Ready\",\"status\":\"False\",\"reason\":\"Expired\",\"message\":\"Certificate expired on $past\",\"lastTransitionTime\":\"$now\"}],\"notAfter\":\"$past\"}}" >/dev/null
	# kube-bench and Checkov results, the tools' own output files, kept in ConfigMaps.
	k -n security-scans create configmap kube-bench-node-1 --from-file=results.json=testdata/upstream/kube-bench/result.json \
		--dry-run=client -o yaml | k label --local -f - app=kube-bench kube-bench.aquasecurity.github.io/node=node-1 -o yaml |
		k apply -f - >/dev/null
	k -n security-scans create configmap checkov-platform-terraform \
		--from-file=results.json=testdata/upstream/checkov/defectdojo_checkov-report-severity.json \
		--dry-run=client -o yaml | k label --local -f - app=checkov -o yaml | k apply -f - >/dev/null
}

# webhooks: two Falco alerts to replica 0, a repeat of the first to the next (the same finding
# later: deduplicated through Redis), and the API server's audit event of a cluster-admin binding.
webhooks() {
	local key token shell code
	key=$(k -n zen-system get secret falco-hmac -o jsonpath='{.data.key}' | base64 -d)
	token=$(k -n zen-system get secret audit-webhook -o jsonpath='{.data.token}' | base64 -d)
	# Each replica serves an Ingester's route once it has read the Ingester: wait for every one
	# posted to (an unauthenticated POST is answered 401 once the route is there, 503 before).
	local r
	for ((r = 0; r < REPLICAS; r++)); do
		wait_for "the falco webhook of zen-watcher-$r" 30 bash -c "[[ \$(curl -s -o /dev/null -w '%{http_code}' -X POST http://$(webhook_of "$r")/falco) == 401 ]]"
		wait_for "the audit webhook of zen-watcher-$r" 30 bash -c "[[ \$(curl -s -o /dev/null -w '%{http_code}' -X POST http://$(webhook_of "$r")/audit) == 401 ]]"
	done
	shell=(falco_alert "Terminal shell in container" Notice payments payments-api-7c9d4b6f5-x2k8p
		"A shell was spawned in a container with an attached terminal (user=root shell=bash parent=runc cmdline=bash container_id=3f2a1b9c8d7e image=registry.example.com/payments/api)")
	for code in \
		"$(signed_post "http://$(webhook_of 0)/falco" "$key" "$("${shell[@]}")")" \
		"$(signed_post "http://$(webhook_of 0)/falco" "$key" "$(falco_alert "Read sensitive file untrusted" Warning identity keycloak-64b8f7d5c4-m9w2z \
			"Sensitive file opened for reading by non-trusted program (user=root program=cat command=cat /etc/shadow file=/etc/shadow container_id=9e8d7c6b5a41 image=quay.io/keycloak/keycloak)")")"; do
		[[ $code == 202 ]] || die "a signed Falco alert was answered $code"
	done
	sleep 1 # the repeat comes a second later, with its own time and signature
	code=$(signed_post "http://$(webhook_of $((1 % REPLICAS)))/falco" "$key" "$("${shell[@]}")")
	[[ $code == 202 ]] || die "the repeated Falco alert was answered $code"
	code=$(curl -sS -o /dev/null -w '%{http_code}' -X POST "http://$(webhook_of $((REPLICAS - 1)))/audit" -H "Authorization: Bearer $token" \
		-H 'Content-Type: application/json' --data-binary @testdata/upstream/k8s-audit/attach_cluster_admin_role.json)
	[[ $code == 202 ]] || die "the audit event was answered $code"
}

await_observations() {
	local want=$1 i
	for ((i = 0; i < 300; i++)); do
		(($(count_obs) >= want)) && return 0
		sleep 0.1
	done
	k get obs -A >&2
	die "$(count_obs) Observations after 30s, want $want: see the logs in $D"
}

show() {
	section "Observations (kubectl get obs -A)"
	k get obs -A
	section "By source, severity and category (obsctl stats -A)"
	obsctl stats -A
	section "Falco: three signed alerts, the third a repeat of the first sent to another replica"
	echo "Observations of falco: $(k get obs -A -l zen.kube-zen.io/source=falco --no-headers 2>/dev/null | wc -l);" \
		"deduplicated through Redis: $(sum_metric 'zen_watcher_observations_deduplicated_total{source="falco"}')"
	section "Who owns what (obsctl shards -n zen-system)"
	obsctl shards -n zen-system
	owners
	section "Webhooks"
	local i live=0
	# The curl goes to a replica that is not the leader, which the demo kills next.
	[[ $(obsctl shards -n zen-system -o json | jq -r .leader) == zen-watcher-0 ]] && live=1
	for ((i = 0; i < REPLICAS; i++)); do
		echo "zen-watcher-$i: http://$(webhook_of "$i")/falco (HMAC)  http://$(webhook_of "$i")/audit (bearer token)"
	done
	cat <<TXT
A signed Falco alert, copy-pasteable:
  key=\$($KUBECTL --kubeconfig $KC -n zen-system get secret falco-hmac -o jsonpath='{.data.key}' | base64 -d)
  body='{"output":"hello from curl","priority":"Warning","rule":"Demo rule","time":"'\$(date -u +%Y-%m-%dT%H:%M:%SZ)'","hostname":"node-1","output_fields":{"k8s.ns.name":"storefront"}}'
  ts=\$(date +%s); sig=\$(printf '%s.%s' "\$ts" "\$body" | openssl dgst -sha256 -hmac "\$key" | sed 's/^.*= //')
  curl -sS -X POST http://$(webhook_of "$live")/falco -H 'Content-Type: application/json' \\
    -H "X-Zen-Timestamp: \$ts" -H "X-Zen-Signature: sha256=\$sig" --data-binary "\$body"
TXT
	section "Metrics"
	for ((i = 0; i < REPLICAS; i++)); do
		echo "zen-watcher-$i: http://$(metrics_of "$i")/metrics"
	done
	if [[ -f $D/prometheus.url ]]; then
		echo "Prometheus (scraping every 2s): $(<"$D/prometheus.url")"
		echo "  e.g. $(<"$D/prometheus.url")/graph?g0.expr=sum+by+(source)+(zen_watcher_observations_created_total)"
	else
		echo "Prometheus is not installed (make prometheus installs it; the demo then starts one)."
	fi
}

# owners lists each replica's namespaces and the Observations in them, from the shard table that
# obsctl reads (-o json) and the Observations' namespaces.
owners() {
	local counts
	counts=$(k get obs -A -o json | jq '[.items[].metadata.namespace] | group_by(.) | map({(.[0]): length}) | add // {}')
	echo
	obsctl shards -n zen-system -o json | jq -r --argjson c "$counts" '.members[] |
		"\(.name): \([.namespaces[] | $c[.] // 0] | add // 0) Observations in \([.namespaces[] | select($c[.] != null)] | join(" "))"'
}

# failover kills the leader with SIGKILL, waits for the others to take over its namespaces and
# the lead, then writes a new finding in each namespace it owned and checks nothing is missing.
failover() {
	local leader victim before owned demo_owned ns n=0 i
	leader=$(obsctl shards -n zen-system -o json | jq -r .leader)
	[[ $leader == zen-watcher-* ]] || die "no leader to kill (leader: '$leader')"
	victim=${leader#zen-watcher-}
	owned=$(obsctl shards -n zen-system -o json | jq -r --arg m "$leader" '.members[] | select(.name == $m) | .namespaces[]')
	# The demo's namespaces among them, where it writes a new finding after the kill.
	demo_owned=$(grep -o 'name: [a-z0-9-]*' hack/demo/namespaces.yaml | cut -d' ' -f2 | grep -Fxf <(echo "$owned") || true)
	before=$(count_obs)
	section "Failover: kill -9 the leader, $leader (it owns: $(echo $owned))"
	kill -KILL "$(<"$D/zen-watcher-$victim.pid")"
	rm -f "$D/zen-watcher-$victim.pid"
	local t0=$SECONDS
	for ((i = 0; i < 400; i++)); do
		obsctl shards -n zen-system -o json 2>/dev/null | jq -e --arg m "$leader" --argjson n $((REPLICAS - 1)) \
			'(.members | length) == $n and .leader != "" and .leader != $m and all(.members[]; .name != $m)' >/dev/null &&
			break
		sleep 0.1
	done
	((i < 400)) || die "the survivors did not take over within 40s"
	echo "taken over in $((SECONDS - t0))s:"
	obsctl shards -n zen-system
	for ns in $demo_owned; do
		k -n "$ns" create -f - >/dev/null <<YAML
apiVersion: v1
kind: Event
metadata: {generateName: after-failover-, namespace: $ns}
involvedObject: {apiVersion: v1, kind: Pod, name: canary-0, namespace: $ns}
reason: BackOff
message: Back-off restarting failed container canary in pod canary-0 (written after $leader was killed)
type: Warning
source: {component: kubelet}
YAML
		n=$((n + 1))
	done
	await_observations $((before + n))
	owners
	echo "Observations: $before before the kill, $(count_obs) now: a new Warning Event in each of the $n demo namespaces" \
		"$leader owned ($(echo $demo_owned)) was written by its new owner; nothing lost."
}

up() {
	local t0=$SECONDS
	ensure_debian jq jq
	KC=$(hack/start-k8s.sh)
	REDIS=$(hack/start-redis.sh)
	install
	start_replicas
	start_prometheus
	log "creating findings in $(grep -c 'kind: Namespace' hack/demo/namespaces.yaml) namespaces and posting to the webhooks"
	findings
	webhooks
	await_observations "$DEMO_EXPECT"
	show
	failover
	section "Done in $((SECONDS - t0))s"
	cat <<TXT
$REPLICAS replicas (one killed), logs in $D, Redis at $REDIS.
  export KUBECONFIG=$KC
  $KUBECTL get obs -A
  bin/obsctl shards -n zen-system
Stop everything with: make demo-down
TXT
}

down() {
	local pid
	for pid in "$D"/zen-watcher-*.pid "$D"/prometheus.pid; do
		[[ -e $pid ]] && stop_pid "$pid" 10
	done
	rm -rf "$D"/*.metrics "$D"/*.webhook "$D"/prometheus.url "$D"/prometheus-data
	hack/stop-redis.sh
	hack/stop-k8s.sh
}

case ${1:-up} in
up) up ;;
down) down ;;
*) die "usage: demo.sh up|down" ;;
esac
