#!/usr/bin/env bash
# failures.sh prints, from the go test output in the files named, each failed test with the lines it
# wrote itself — its errors and logs, up to where the output of the processes it ran begins — and
# each package that failed. A CI log ends with thousands of lines of replica output; this says,
# at its very end, what failed and why.
set -euo pipefail
awk '
  /^[ \t]*--- FAIL: / { keep = 1; n = 0; print; next }
  keep && /: output of [^ ]+:$/ { print $0 " [its output is in the log above]"; keep = 0; next }
  keep && /^([ \t]*--- (PASS|SKIP):|=== |PASS$|FAIL$|ok[ \t]|FAIL[ \t])/ { keep = 0 }
  keep && n++ < 40 { print; next }
  keep { next }
  /^FAIL[ \t]/ || /^panic: / { print }
' "$@"
