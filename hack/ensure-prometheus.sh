#!/usr/bin/env bash
# Makes sure prometheus and promtool are installed (the alert tests run the chart's rules in them):
# installs Debian's package when they are missing and we are root, otherwise prints the exact
# command to run and fails.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ensure_debian prometheus "prometheus promtool"
