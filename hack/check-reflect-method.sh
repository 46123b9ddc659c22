#!/usr/bin/env bash
# Fails when the linker sees a reachable call of reflect.Value.Method or MethodByName (a symbol
# marked <ReflectMethod> in -dumpdep): it then keeps every exported method of every type that
# reaches an interface, which took the binary from 39 to 72 MB and an idle replica's RSS with it
# (docs/PERFORMANCE.md, memory). text/template's Execute is the usual way in.
#
#   hack/check-reflect-method.sh              check ./cmd/zen-watcher (make lint)
#   hack/check-reflect-method.sh --self-test  prove the check finds such a call
set -euo pipefail

reaches() { # module dir, package → 0 when the linker marks a ReflectMethod
	local deps
	deps=$(cd "$1" && go build -o /dev/null -ldflags=-dumpdep "${2:-.}" 2>&1) || { echo "$deps" >&2; exit 1; }
	grep -q '<ReflectMethod>' <<<"$deps"
}

if [[ ${1:-} == --self-test ]]; then
	dir=$(mktemp -d)
	trap 'rm -rf "$dir"' EXIT
	printf 'module selftest\n\ngo 1.26\n' > "$dir/go.mod"
	printf 'package main\n\nimport (\n\t"os"\n\t"text/template"\n)\n\nfunc main() {\n\t_ = template.Must(template.New("t").Parse("{{.}}")).Execute(os.Stdout, os.Args)\n}\n' > "$dir/main.go"
	if ! reaches "$dir"; then
		echo "self-test: a program that executes a text/template was not caught"; exit 1
	fi
	echo "self-test: ok"
	exit 0
fi

if reaches . ./cmd/zen-watcher; then
	echo "cmd/zen-watcher reaches reflect.Value.Method: see what marks <ReflectMethod> in"
	echo "  go build -o /dev/null -ldflags=-dumpdep ./cmd/zen-watcher 2>&1 | grep ReflectMethod"
	exit 1
fi
