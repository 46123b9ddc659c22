#!/usr/bin/env bash
# Makes sure redis-server is installed: installs Debian's package when it is missing and we are root,
# otherwise prints the exact command to run and fails.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ensure_debian redis-server redis-server
