#!/usr/bin/env bash
# Runs every Go fuzz target in the module for the given duration each.
set -euo pipefail
fuzztime=${1:-5s}
cd "$(dirname "$0")/.."
status=0
passed=0
failed=0
for pkg in $(go list ./...); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	targets=$(grep -hoE '^func (Fuzz[A-Za-z0-9_]+)\(' "$dir"/*_test.go 2>/dev/null | sed -E 's/^func (Fuzz[A-Za-z0-9_]+)\(/\1/' | sort -u || true)
	for t in $targets; do
		echo "fuzz $pkg $t ($fuzztime)"
		log=$(mktemp)
		if go test -run '^$' -fuzz "^${t}\$" -fuzztime "$fuzztime" "$pkg" >"$log" 2>&1; then
			passed=$((passed + 1))
		else
			cat "$log"
			failed=$((failed + 1))
			status=1
		fi
		rm -f "$log"
	done
done
echo "fuzz: $passed passed, $failed failed"
exit $status
