#!/usr/bin/env bash
# Runs every native Go fuzz target in the module for $FUZZTIME each: a
# duration ("60s") or an execution count ("3000x"), as -fuzztime takes them.
# Targets are discovered with `go test -list`, so a new fuzzer is picked up
# without editing this file. FUZZ_PKGS narrows the packages searched
# (default ./...), as in FUZZ_PKGS=./gateway/... make fuzz.
#
# Go 1.26's fuzz coordinator can fail a duration-bounded run with a bare
# "context deadline exceeded" when a worker is mid-call as the deadline
# passes (go.dev/issue/75804, fixed in Go 1.27). Count budgets have no
# deadline and never hit it, so `make test` uses them. For duration runs a
# failure counts as that race only if the output is exactly the bare
# deadline and no failing input was written; then the target's corpus is
# replayed to make sure nothing reproducible is behind it.
set -euo pipefail
export GOTOOLCHAIN=${GOTOOLCHAIN:-go1.27.3}
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-10s}
status=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# shellcheck disable=SC2086 # FUZZ_PKGS is a list of patterns
for pkg in $(go list ${FUZZ_PKGS:-./...}); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
		echo "fuzz $pkg $target ($FUZZTIME)"
		if go test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" "$pkg" >"$log" 2>&1; then
			continue
		fi
		if grep -q '^    context deadline exceeded$' "$log" &&
			! grep -q 'Failing input written to' "$log" &&
			go test -run "^${target}\$" "$pkg" >/dev/null 2>&1; then
			echo "  ignored: Go's fuzz coordinator deadline race (go.dev/issue/75804); corpus in $dir/testdata/fuzz/$target replays clean"
			continue
		fi
		cat "$log"
		status=1
	done
done
exit $status
