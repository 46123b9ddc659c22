#!/usr/bin/env bash
# Fails when a file tracked by git is an executable binary, holds binary data (a NUL byte), is
# marked executable without being a script, or is larger than 1 MiB. Built binaries and caches
# belong in bin/ or outside the checkout, never in the history every clone downloads.
#
#   hack/check-tracked-files.sh              check this repository (make lint)
#   hack/check-tracked-files.sh --self-test  prove the check refuses what it should
set -euo pipefail

MAX_BYTES=$((1 << 20))
# Paths allowed past the rules above, one per line, each with its reason. None are needed today:
# the generated CRDs and dashboards are text well under the limit.
EXCEPTIONS=()

is_exception() {
	local p
	for p in "${EXCEPTIONS[@]+"${EXCEPTIONS[@]}"}"; do [[ $1 == "$p" ]] && return 0; done
	return 1
}

# check REPO: prints one line per offending file and returns 1 when there is any.
check() {
	local repo=$1 bad=0 mode path size
	while IFS=$'\t' read -r meta path; do
		mode=${meta%% *}
		[[ $mode == 120000 || $mode == 160000 ]] && continue # symlinks and submodules hold no content
		is_exception "$path" && continue
		[[ -f $repo/$path ]] || continue                    # deleted in the work tree, not yet committed
		size=$(stat -c %s "$repo/$path")
		if ((size > MAX_BYTES)); then
			echo "$path: $size bytes, over the $MAX_BYTES-byte limit"
			bad=1
		fi
		if LC_ALL=C grep -qaP '\x00' "$repo/$path"; then
			echo "$path: binary content (a NUL byte); built files belong in bin/, which git ignores"
			bad=1
		elif [[ $mode == 100755 ]] && [[ $(head -c2 "$repo/$path") != '#!' ]]; then
			echo "$path: marked executable but not a script (no #! line)"
			bad=1
		fi
	done < <(git -C "$repo" ls-files -s -z | tr '\0' '\n' | awk -F'\t' '{ split($1, m, " "); print m[1] " " m[2] "\t" $2 }')
	return "$bad"
}

self_test() {
	local tmp out
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' RETURN
	git -C "$tmp" init -q
	printf '#!/bin/sh\necho ok\n' >"$tmp/script.sh" && chmod +x "$tmp/script.sh"
	printf 'text\n' >"$tmp/notes.md"
	git -C "$tmp" add . >/dev/null
	check "$tmp" >/dev/null || { echo "self-test: a clean tree was refused"; return 1; }

	printf '\x7fELF\x02\x01\x01\x00\x00' >"$tmp/tool" && chmod +x "$tmp/tool"
	head -c $((MAX_BYTES + 1)) /dev/zero | tr '\0' 'a' >"$tmp/big.txt"
	printf 'no shebang\n' >"$tmp/runme" && chmod +x "$tmp/runme"
	git -C "$tmp" add . >/dev/null
	if out=$(check "$tmp"); then
		echo "self-test: a tree with a binary, a large file and a non-script executable passed"
		return 1
	fi
	for want in "tool: binary" "big.txt: $((MAX_BYTES + 1)) bytes" "runme: marked executable"; do
		grep -q "$want" <<<"$out" || { echo "self-test: no complaint about ${want%%:*}: $out"; return 1; }
	done
}

case ${1:-} in
--self-test) self_test ;;
"") check "$(git rev-parse --show-toplevel)" ;;
*) echo "usage: $0 [--self-test]" >&2; exit 2 ;;
esac
