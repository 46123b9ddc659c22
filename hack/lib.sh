# Shared helpers of the hack/ scripts; sourced, not run.

# Where binaries are cached and where running services keep their state; both outside the checkout.
ZW_CACHE=${ZW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/zen-watcher}
ZW_STATE=${ZW_STATE:-${TMPDIR:-/tmp}/zen-watcher-$(id -u)}
K8S_VERSION=${K8S_VERSION:-v1.37.2}
K8S_BIN_DIR=${K8S_BIN_DIR:-$ZW_CACHE/k8s/$K8S_VERSION}

log() { printf '[%s] %s\n' "$(basename "$0" .sh)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# port_in_use PORT: true when something listens on 127.0.0.1:PORT.
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# free_port WANTED: prints WANTED if it is free, else the next free port above it (and says so).
free_port() {
	local p=$1
	while port_in_use "$p"; do
		p=$((p + 1))
		((p < $1 + 200)) || die "no free port in $1..$p"
	done
	[[ $p == "$1" ]] || log "port $1 is taken; using $p"
	echo "$p"
}

# stop_pid FILE [GRACE]: stops the process whose PID is in FILE (TERM, then KILL after GRACE
# seconds), and removes FILE. Never by name: other processes of the same name are not ours.
stop_pid() {
	local file=$1 grace=${2:-5} pid i
	[[ -f $file ]] || return 0
	pid=$(<"$file")
	if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < grace * 10; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$file"
}

# wait_for DESCRIPTION SECONDS COMMAND...: retries COMMAND until it succeeds or time runs out.
wait_for() {
	local what=$1 secs=$2 i
	shift 2
	for ((i = 0; i < secs * 10; i++)); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	die "$what did not come up within ${secs}s"
}

# ensure_debian PACKAGES COMMANDS: makes sure every command in the space-separated COMMANDS is on
# the PATH, installing Debian's PACKAGES when one is missing and we are root; otherwise prints the
# exact command to run and fails.
ensure_debian() {
	local packages=$1 commands=$2 c missing=
	for c in $commands; do
		command -v "$c" >/dev/null 2>&1 || missing=1
	done
	[[ -z $missing ]] && return 0
	local cmd="apt-get update && apt-get install -y --no-install-recommends $packages"
	[[ $(id -u) == 0 ]] || die "$commands: not all installed; as root run: $cmd"
	log "installing $packages (Debian packages)"
	# shellcheck disable=SC2086 # the package list is split on purpose
	DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null &&
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $packages >/dev/null ||
		die "installing $packages failed: $cmd"
	for c in $commands; do
		command -v "$c" >/dev/null || die "$c still missing after: $cmd"
	done
}
