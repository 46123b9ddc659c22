#!/usr/bin/env bash
# Makes sure containerd, ctr and runc are installed: installs Debian's packages when one is missing
# and we are root, otherwise prints the exact command to run and fails. Nothing is started: the
# tests start a containerd of their own.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ensure_debian "containerd runc" "containerd ctr runc"
